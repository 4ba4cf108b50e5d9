/* sql_fn_coll.c - map and array functions (rule-functions §6-7). */
#include "../core/json.h"
#include "sql_fn.h"

/* map argument of map_get: a map, or a string that decodes to one; else NULL */
static bool soft_map(sql_eval *ev, const value *v, value *out) {
    if (v->type == VT_MAP) {
        *out = *v;
        return true;
    }
    if (v->type == VT_BIN && json_decode(ev->a, v->u.s, v->len, NULL, out, NULL) == EC_OK)
        return true;
    return false;
}

FN(map_new) {
    UNUSED_ARGS;
    bool ok;
    *out = v_map_new(ev->a, 4, &ok);
    return ok ? EC_OK : fn_oom(ev);
}

/* nested lookup along "a.b.c"; strings met on the way are decoded */
FN(map_get) {
    NEED_TEXT("map_get", 0, key, klen);
    value cur;
    bool found = soft_map(ev, &a[1], &cur);
    size_t i = 0;
    while (found && i <= klen) {
        size_t j = i;
        while (j < klen && key[j] != '.')
            j++;
        if (cur.type == VT_BIN && !soft_map(ev, &cur, &cur)) {
            found = false;
            break;
        }
        const value *next = cur.type == VT_MAP ? v_map_get(&cur, key + i, j - i) : NULL;
        if (!next) {
            found = false;
            break;
        }
        cur = *next;
        i = j + 1;
    }
    *out = found ? cur : (n == 3 ? a[2] : v_undef());
    return EC_OK;
}

static ec_status nested_put(sql_eval *ev, const value *m, const char *key, size_t klen, value v,
                            value *out) {
    size_t j = 0;
    while (j < klen && key[j] != '.')
        j++;
    value base = m && m->type == VT_MAP ? *m : v_undef();
    value nv = v;
    if (j < klen) {
        const value *child = base.type == VT_MAP ? v_map_get(&base, key, j) : NULL;
        ec_status st = nested_put(ev, child, key + j + 1, klen - j - 1, v, &nv);
        if (st) return st;
    }
    bool ok;
    uint32_t len = base.type == VT_MAP ? base.len : 0;
    value copy = v_map_new(ev->a, len + 1, &ok);
    if (!ok) return fn_oom(ev);
    if (len) {
        memcpy(copy.u.pairs, base.u.pairs, len * sizeof(vpair));
        copy.len = len;
    }
    if (!v_map_put(ev->a, &copy, key, j, nv)) return fn_oom(ev);
    *out = copy;
    return EC_OK;
}

/* a value nested under `levels` more maps must stay within VALUE_MAX_DEPTH */
static ec_status check_nesting(sql_eval *ev, const char *fname, size_t levels, const value *v) {
    if (levels > VALUE_MAX_DEPTH || !v_depth_within(v, VALUE_MAX_DEPTH - (unsigned)levels))
        return sql_fn_fail(ev, "%s: result nested deeper than %d levels", fname, VALUE_MAX_DEPTH);
    return EC_OK;
}

FN(map_put) {
    UNUSED_ARGS;
    NEED_TEXT("map_put", 0, key, klen);
    size_t levels = 1;
    for (size_t i = 0; i < klen; i++)
        levels += key[i] == '.';
    ec_status st =
        check_nesting(ev, "map_put", levels, &a[1]); /* also bounds nested_put's recursion */
    if (st) return st;
    return nested_put(ev, &a[2], key, klen, a[1], out);
}

FN(mget) {
    value m;
    if (a[0].type != VT_BIN) { /* e.g. an array key: not supported, like EMQX */
        *out = n == 3 ? a[2] : v_undef();
        return EC_OK;
    }
    ec_status st = fn_as_map(ev, "mget", &a[1], &m);
    if (st) return st;
    const value *v = v_map_get(&m, a[0].u.s, a[0].len);
    *out = v ? *v : (n == 3 ? a[2] : v_undef());
    return EC_OK;
}

FN(mput) {
    UNUSED_ARGS;
    NEED_TEXT("mput", 0, key, klen);
    value m;
    ec_status st = check_nesting(ev, "mput", 1, &a[1]);
    if (st || (st = fn_as_map(ev, "mput", &a[2], &m))) return st;
    bool ok;
    value copy = v_map_new(ev->a, m.len + 1, &ok);
    if (!ok) return fn_oom(ev);
    memcpy(copy.u.pairs, m.u.pairs, m.len * sizeof(vpair));
    copy.len = m.len;
    if (!v_map_put(ev->a, &copy, key, klen, a[1])) return fn_oom(ev);
    *out = copy;
    return EC_OK;
}

static ec_status map_list(sql_eval *ev, const char *fname, const value *a, int what, value *out) {
    value m;
    ec_status st = fn_as_map(ev, fname, &a[0], &m);
    if (st) return st;
    bool ok;
    value arr = v_array_new(ev->a, m.len, &ok);
    if (!ok) return fn_oom(ev);
    for (uint32_t i = 0; i < m.len; i++) {
        value item = what == 0 ? m.u.pairs[i].key : m.u.pairs[i].val;
        if (what == 2) {
            item = v_map_new(ev->a, 2, &ok);
            if (!ok || !v_map_append(ev->a, &item, V_LIT("key"), m.u.pairs[i].key) ||
                !v_map_append(ev->a, &item, V_LIT("value"), m.u.pairs[i].val))
                return fn_oom(ev);
        }
        item.flags &= (uint8_t)~VF_ATOM;
        if (!v_array_push(ev->a, &arr, item)) return fn_oom(ev);
    }
    *out = arr;
    return EC_OK;
}

FN(map_keys) {
    (void)n;
    return map_list(ev, "map_keys", a, 0, out);
}
FN(map_values) {
    (void)n;
    return map_list(ev, "map_values", a, 1, out);
}
FN(map_to_entries) {
    (void)n;
    ec_status st = map_list(ev, "map_to_entries", a, 2, out);
    return st ? st : check_nesting(ev, "map_to_entries", 0, out);
}

FN(map_size) {
    UNUSED_ARGS;
    value m;
    ec_status st = fn_as_map(ev, "map_size", &a[0], &m);
    if (st) return st;
    *out = v_int(m.len);
    return EC_OK;
}

#define NEED_ARRAY(fname, i)                                                                       \
    if (a[i].type != VT_ARRAY) return fn_badarg(ev, fname, "an array", &a[i])

FN(nth) {
    UNUSED_ARGS;
    NEED_INT("nth", 0, k);
    NEED_ARRAY("nth", 1);
    if (k < 1 || k > a[1].len) return sql_fn_fail(ev, "nth: index %lld out of range", (long long)k);
    *out = a[1].u.items[k - 1];
    return EC_OK;
}

FN(length) {
    UNUSED_ARGS;
    NEED_ARRAY("length", 0);
    *out = v_int(a[0].len);
    return EC_OK;
}

FN(sublist) {
    int64_t start = 1, len;
    const value *arr = &a[n - 1];
    if (arr->type != VT_ARRAY) return fn_badarg(ev, "sublist", "an array", arr);
    if (n == 3) {
        NEED_INT("sublist", 0, s);
        NEED_INT("sublist", 1, l);
        start = s;
        len = l;
        if (start < 1 || start > (int64_t)arr->len + 1)
            return sql_fn_fail(ev, "sublist: start %lld out of range", (long long)start);
    } else {
        NEED_INT("sublist", 0, l);
        len = l;
    }
    if (len < 0) return sql_fn_fail(ev, "sublist: negative length");
    int64_t avail = (int64_t)arr->len - (start - 1);
    int64_t take = len < avail ? len : avail;
    *out = (value){.type = VT_ARRAY, .len = (uint32_t)take, .u.items = arr->u.items + (start - 1)};
    if (take == 0) { /* an empty array still needs its own storage header */
        bool ok;
        *out = v_array_new(ev->a, 1, &ok);
        if (!ok) return fn_oom(ev);
    } else { /* copy so that later appends cannot write into the source */
        bool ok;
        value c = v_array_new(ev->a, (uint32_t)take, &ok);
        if (!ok) return fn_oom(ev);
        memcpy(c.u.items, arr->u.items + (start - 1), (size_t)take * sizeof(value));
        c.len = (uint32_t)take;
        *out = c;
    }
    return EC_OK;
}

FN(first) {
    UNUSED_ARGS;
    NEED_ARRAY("first", 0);
    if (!a[0].len) return sql_fn_fail(ev, "first: empty array");
    *out = a[0].u.items[0];
    return EC_OK;
}

FN(last) {
    UNUSED_ARGS;
    NEED_ARRAY("last", 0);
    if (!a[0].len) return sql_fn_fail(ev, "last: empty array");
    *out = a[0].u.items[a[0].len - 1];
    return EC_OK;
}

FN(contains) {
    UNUSED_ARGS;
    NEED_ARRAY("contains", 1);
    bool hit = false;
    for (uint32_t i = 0; i < a[1].len && !hit; i++)
        hit = v_equal(&a[0], &a[1].u.items[i]);
    *out = v_bool(hit);
    return EC_OK;
}
