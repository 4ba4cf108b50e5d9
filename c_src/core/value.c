/* value.c - constructors, containers and equality for value; see value.h.
 *
 * Array and map storage carries a hidden capacity word just before the first
 * element so that appends amortise to O(1) without a capacity field in every
 * value (which keeps sizeof(value) at 16 bytes). */
#include "value.h"

#include <string.h>

typedef struct {
    uint64_t cap; /* elements the block can hold */
} vhdr;

static inline vhdr *hdr_of(void *elems) {
    return (vhdr *)elems - 1;
}

static void *block_new(arena *a, size_t elem, uint32_t cap) {
    if (cap == 0) cap = 4;
    vhdr *h = arena_alloc(a, sizeof(vhdr) + elem * cap);
    if (!h) return NULL;
    h->cap = cap;
    return h + 1;
}

/* Ensures room for one more element; returns the (possibly moved) block. */
static void *block_grow(arena *a, void *elems, size_t elem, uint32_t len) {
    if (!elems) return block_new(a, elem, 4);
    vhdr *h = hdr_of(elems);
    if (len < h->cap) return elems;
    if (h->cap >= VALUE_MAX_ITEMS) return NULL;
    uint64_t ncap = h->cap * 2;
    vhdr *nh = arena_realloc(a, h, sizeof(vhdr) + elem * h->cap, sizeof(vhdr) + elem * ncap);
    if (!nh) return NULL;
    nh->cap = ncap;
    return nh + 1;
}

value v_bin_copy(arena *a, const char *s, size_t len) {
    char *p = arena_alloc(a, len ? len : 1);
    if (!p) return v_undef();
    if (len) memcpy(p, s, len);
    return v_bin(p, len);
}

value v_array_new(arena *a, uint32_t hint, bool *ok) {
    value v = {.type = VT_ARRAY};
    v.u.items = block_new(a, sizeof(value), hint);
    if (ok) *ok = v.u.items != NULL;
    return v;
}

bool v_array_push(arena *a, value *arr, value item) {
    value *items = block_grow(a, arr->u.items, sizeof(value), arr->len);
    if (!items) return false;
    items[arr->len++] = item;
    arr->u.items = items;
    return true;
}

value v_map_new(arena *a, uint32_t hint, bool *ok) {
    value v = {.type = VT_MAP};
    v.u.pairs = block_new(a, sizeof(vpair), hint);
    if (ok) *ok = v.u.pairs != NULL;
    return v;
}

bool v_map_append(arena *a, value *map, value key, value val) {
    vpair *pairs = block_grow(a, map->u.pairs, sizeof(vpair), map->len);
    if (!pairs) return false;
    pairs[map->len].key = key;
    pairs[map->len].val = val;
    map->len++;
    map->u.pairs = pairs;
    return true;
}

static vpair *find_pair(const value *map, const char *key, size_t klen) {
    if (map->type != VT_MAP) return NULL;
    for (uint32_t i = 0; i < map->len; i++) {
        vpair *p = &map->u.pairs[i];
        if (p->key.len == klen && memcmp(p->key.u.s, key, klen) == 0) return p;
    }
    return NULL;
}

bool v_map_put(arena *a, value *map, const char *key, size_t klen, value val) {
    vpair *p = find_pair(map, key, klen);
    if (p) {
        p->val = val;
        return true;
    }
    return v_map_append(a, map, v_bin(key, klen), val);
}

const value *v_map_get(const value *map, const char *key, size_t klen) {
    vpair *p = find_pair(map, key, klen);
    return p ? &p->val : NULL;
}

bool v_deep_copy(arena *a, const value *src, value *dst) {
    switch (src->type) {
    case VT_BIN: {
        value c = v_bin_copy(a, src->u.s, src->len);
        if (c.type != VT_BIN) return false;
        c.flags = src->flags;
        *dst = c;
        return true;
    }
    case VT_ARRAY: {
        bool ok;
        value arr = v_array_new(a, src->len, &ok);
        if (!ok) return false;
        for (uint32_t i = 0; i < src->len; i++) {
            value item;
            if (!v_deep_copy(a, &src->u.items[i], &item) || !v_array_push(a, &arr, item))
                return false;
        }
        *dst = arr;
        return true;
    }
    case VT_MAP: {
        bool ok;
        value map = v_map_new(a, src->len, &ok);
        if (!ok) return false;
        for (uint32_t i = 0; i < src->len; i++) {
            value k, v;
            if (!v_deep_copy(a, &src->u.pairs[i].key, &k) ||
                !v_deep_copy(a, &src->u.pairs[i].val, &v) || !v_map_append(a, &map, k, v))
                return false;
        }
        *dst = map;
        return true;
    }
    default: *dst = *src; return true;
    }
}

bool v_depth_within(const value *v, unsigned limit) {
    if (v->type != VT_ARRAY && v->type != VT_MAP) return true;
    if (limit == 0) return false;
    for (uint32_t i = 0; i < v->len; i++)
        if (!v_depth_within(v->type == VT_ARRAY ? &v->u.items[i] : &v->u.pairs[i].val, limit - 1))
            return false;
    return true;
}

bool v_equal(const value *x, const value *y) {
    if (x->type != y->type) return false;
    switch (x->type) {
    case VT_UNDEF:
    case VT_NULL: return true;
    case VT_BOOL: return x->u.b == y->u.b;
    case VT_INT: return x->u.i == y->u.i;
    case VT_FLOAT: return x->u.f == y->u.f;
    case VT_BIN: return x->len == y->len && memcmp(x->u.s, y->u.s, x->len) == 0;
    case VT_ARRAY:
        if (x->len != y->len) return false;
        for (uint32_t i = 0; i < x->len; i++)
            if (!v_equal(&x->u.items[i], &y->u.items[i])) return false;
        return true;
    case VT_MAP:
        if (x->len != y->len) return false;
        for (uint32_t i = 0; i < x->len; i++) {
            const vpair *p = &x->u.pairs[i];
            const value *o = v_map_get(y, p->key.u.s, p->key.len);
            if (!o || !v_equal(&p->val, o)) return false;
        }
        return true;
    }
    return false;
}

const char *vtype_name(vtype t) {
    static const char *const names[] = {"undefined", "null",   "bool",  "int",
                                        "float",     "binary", "array", "map"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}
