/* userprops.h - EMQX's printable MQTT 5 properties (emqx_utils_maps:
 * printable_props): the `User-Property` pairs become a map (last duplicate
 * wins) under "User-Property" (always present, {} when none), and the pairs
 * in order under "User-Property-Pairs" as [{"key": K, "value": V}] (only
 * when there is one). Shared by the publish path (from #message{} headers)
 * and the MQTT source (from libmosquitto properties). */
#ifndef EC_USERPROPS_H
#define EC_USERPROPS_H

#include "value.h"

typedef struct userprops {
    value map, pairs;
} userprops;

void userprops_init(userprops *u, arena *a);
/* k and v are borrowed (they must outlive the value built) */
void userprops_add(userprops *u, arena *a, value k, value v);
/* appends "User-Property" (and "User-Property-Pairs") to the props map */
void userprops_finish(userprops *u, arena *a, value *props);

#endif
