/* value.h - the one dynamic value type shared by JSON, rule SQL, templates
 * and the NIF boundary (EMQX rule-engine data model, spec/rule-sql.md §3).
 *
 * Kinds: undefined, null, bool, int (64-bit), float (double), binary (bytes,
 * usually UTF-8), array, map (string keys, insertion order kept).
 *
 * Memory: values never own memory. Containers and copied bytes live in an
 * arena (arena.h) that the caller resets after each message; binaries may
 * also point at bytes owned by someone else (the MQTT payload, an Erlang
 * binary) for as long as that owner keeps them alive ("borrowed").
 *
 * Integer policy: EMQX integers are arbitrary precision; ours are int64.
 * A JSON integer literal outside int64 decodes as a float (nearest double).
 * Arithmetic that overflows int64 (in the rule evaluator) yields a float.
 *
 * Atoms: EMQX keeps column names and some values (event names, reasons) as
 * atoms. They behave like strings here; the VF_ATOM flag on a binary only
 * changes JSON key order (atom keys sort below string keys, json.h). */
#ifndef EC_VALUE_H
#define EC_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

typedef enum vtype {
    VT_UNDEF = 0, /* zero-initialised memory is undefined */
    VT_NULL,
    VT_BOOL,
    VT_INT,
    VT_FLOAT,
    VT_BIN,
    VT_ARRAY,
    VT_MAP,
} vtype;

enum { VF_ATOM = 1 }; /* binary held as an atom by EMQX (see above) */

typedef struct value value;
typedef struct vpair vpair;

struct value {
    uint8_t type;  /* vtype */
    uint8_t flags; /* VF_* */
    uint32_t len;  /* bytes of a binary; items of an array; pairs of a map */
    union {
        bool b;
        int64_t i;
        double f;
        const char *s;
        value *items;
        vpair *pairs;
    } u;
};

struct vpair {
    value key; /* always VT_BIN */
    value val;
};

/* The largest array or map we build: counts are 32-bit. */
#define VALUE_MAX_ITEMS (UINT32_MAX / 2)

static inline value v_undef(void) {
    return (value){.type = VT_UNDEF};
}
static inline value v_null(void) {
    return (value){.type = VT_NULL};
}
static inline value v_bool(bool b) {
    return (value){.type = VT_BOOL, .u.b = b};
}
static inline value v_int(int64_t i) {
    return (value){.type = VT_INT, .u.i = i};
}
static inline value v_float(double f) {
    return (value){.type = VT_FLOAT, .u.f = f};
}
/* A binary borrowing s[0..len): no copy. */
static inline value v_bin(const char *s, size_t len) {
    return (value){.type = VT_BIN, .len = (uint32_t)len, .u.s = s};
}
static inline value v_atom(const char *s, size_t len) {
    return (value){.type = VT_BIN, .flags = VF_ATOM, .len = (uint32_t)len, .u.s = s};
}
#define V_LIT(str)  v_bin((str), sizeof(str) - 1)
#define V_ATOM(str) v_atom((str), sizeof(str) - 1)
static inline bool v_is_bin(const value *v) {
    return v->type == VT_BIN;
}
static inline bool v_is_number(const value *v) {
    return v->type == VT_INT || v->type == VT_FLOAT;
}

/* A binary holding a copy of s in the arena; .type VT_UNDEF on OOM. */
value v_bin_copy(arena *a, const char *s, size_t len);

/* Arrays and maps are built by appending; storage grows in the arena.
 * Each returns false on out-of-memory (the container is unchanged). */
value v_array_new(arena *a, uint32_t capacity_hint, bool *ok);
bool v_array_push(arena *a, value *arr, value item);
value v_map_new(arena *a, uint32_t capacity_hint, bool *ok);
/* Appends without looking for an existing key (caller knows it is new). */
bool v_map_append(arena *a, value *map, value key, value val);
/* Sets key: replaces the value of an existing key in place, else appends. */
bool v_map_put(arena *a, value *map, const char *key, size_t klen, value val);

/* Map lookup by key bytes (atom and string keys match alike); NULL if absent. */
const value *v_map_get(const value *map, const char *key, size_t klen);
#define V_MAP_GET(map, lit) v_map_get((map), (lit), sizeof(lit) - 1)

/* Deep copy into arena a (binaries copied too): used when a value must
 * outlive the buffers it borrows from. */
bool v_deep_copy(arena *a, const value *src, value *dst);

/* The deepest value the rule engine builds (maps/arrays nested in each
 * other). Constructors that add nesting check it (v_depth_within), so every
 * recursive walk over values (equality, comparison, copies, JSON, terms) is
 * bounded and cannot exhaust a scheduler's stack. */
#define VALUE_MAX_DEPTH 1000

/* True when v nests at most limit levels (a scalar is 0, [] and {} are 1).
 * Recursion is bounded by limit. */
bool v_depth_within(const value *v, unsigned limit);

/* Exact equality (same kind and value; 1 and 1.0 differ; maps compare as
 * sets of pairs, arrays element-wise). Atom flag is ignored. */
bool v_equal(const value *x, const value *y);

const char *vtype_name(vtype t);

#endif
