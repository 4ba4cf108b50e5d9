/* userprops.c - see userprops.h. */
#include "userprops.h"

void userprops_init(userprops *u, arena *a) {
    bool ok;
    u->map = v_map_new(a, 4, &ok);
    u->pairs = v_array_new(a, 4, &ok);
}

void userprops_add(userprops *u, arena *a, value k, value v) {
    bool ok;
    v_map_put(a, &u->map, k.u.s, k.len, v); /* last duplicate wins */
    value pair = v_map_new(a, 2, &ok);
    v_map_append(a, &pair, V_LIT("key"), k);
    v_map_append(a, &pair, V_LIT("value"), v);
    v_array_push(a, &u->pairs, pair);
}

void userprops_finish(userprops *u, arena *a, value *props) {
    v_map_append(a, props, V_LIT("User-Property"), u->map);
    if (u->pairs.len) v_map_append(a, props, V_LIT("User-Property-Pairs"), u->pairs);
}
