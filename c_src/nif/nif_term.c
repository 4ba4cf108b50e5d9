/* nif_term.c - term <-> value conversion; see nif_term.h. */
#include "nif_term.h"

#include <math.h>
#include <string.h>

#include "../core/json.h"
#include "nif_atoms.h"

static ec_status to_value(ErlNifEnv *env, ERL_NIF_TERM t, arena *a, value *out, ec_error *err,
                          unsigned depth) {
    if (depth > JSON_MAX_DEPTH)
        return ec_fail(err, EC_ELIMIT, "term nested deeper than %u levels", JSON_MAX_DEPTH);
    ErlNifBinary bin;
    ErlNifSInt64 i64;
    ErlNifUInt64 u64;
    double d;
    unsigned len;
    if (enif_is_binary(env, t)) {
        enif_inspect_binary(env, t, &bin);
        if (bin.size > UINT32_MAX) return ec_fail(err, EC_ELIMIT, "binary over 4 GiB");
        *out = v_bin((const char *)bin.data, bin.size);
        return EC_OK;
    }
    if (enif_get_int64(env, t, &i64)) {
        *out = v_int(i64);
        return EC_OK;
    }
    if (enif_get_uint64(env, t, &u64)) {
        *out = v_float((double)u64);
        return EC_OK;
    }
    if (enif_get_double(env, t, &d)) {
        *out = v_float(d);
        return EC_OK;
    }
    if (enif_is_atom(env, t)) {
        if (enif_is_identical(t, ATOM_true))
            *out = v_bool(true);
        else if (enif_is_identical(t, ATOM_false))
            *out = v_bool(false);
        else if (enif_is_identical(t, ATOM_null))
            *out = v_null();
        else if (enif_is_identical(t, ATOM_undefined))
            *out = v_undef();
        else {
            if (!enif_get_atom_length(env, t, &len, ERL_NIF_LATIN1))
                return ec_fail(err, EC_ETYPE, "unreadable atom");
            char *s = arena_alloc(a, len + 1);
            if (!s) return ec_fail(err, EC_ENOMEM, "out of memory converting term");
            enif_get_atom(env, t, s, len + 1, ERL_NIF_LATIN1);
            *out = v_atom(s, len);
        }
        return EC_OK;
    }
    if (enif_is_map(env, t)) {
        size_t n;
        enif_get_map_size(env, t, &n);
        bool ok;
        value m = v_map_new(a, (uint32_t)n, &ok);
        if (!ok) return ec_fail(err, EC_ENOMEM, "out of memory converting term");
        ErlNifMapIterator it;
        if (!enif_map_iterator_create(env, t, &it, ERL_NIF_MAP_ITERATOR_FIRST))
            return ec_fail(err, EC_ETYPE, "unreadable map");
        ERL_NIF_TERM k, v;
        ec_status st = EC_OK;
        while (st == EC_OK && enif_map_iterator_get_pair(env, &it, &k, &v)) {
            value kv, vv;
            st = to_value(env, k, a, &kv, err, depth + 1);
            if (st == EC_OK && kv.type != VT_BIN)
                st = ec_fail(err, EC_ETYPE, "map keys must be atoms or binaries");
            if (st == EC_OK) st = to_value(env, v, a, &vv, err, depth + 1);
            if (st == EC_OK && !v_map_append(a, &m, kv, vv))
                st = ec_fail(err, EC_ENOMEM, "out of memory converting term");
            enif_map_iterator_next(env, &it);
        }
        enif_map_iterator_destroy(env, &it);
        *out = m;
        return st;
    }
    if (enif_get_list_length(env, t, &len)) {
        bool ok;
        value arr = v_array_new(a, len, &ok);
        if (!ok) return ec_fail(err, EC_ENOMEM, "out of memory converting term");
        ERL_NIF_TERM head, tail = t;
        while (enif_get_list_cell(env, tail, &head, &tail)) {
            value item;
            ec_status st = to_value(env, head, a, &item, err, depth + 1);
            if (st) return st;
            if (!v_array_push(a, &arr, item))
                return ec_fail(err, EC_ENOMEM, "out of memory converting term");
        }
        *out = arr;
        return EC_OK;
    }
    if (enif_is_number(env, t)) return ec_fail(err, EC_ELIMIT, "integer outside 64-bit range");
    return ec_fail(err, EC_ETYPE, "unsupported term (tuple, pid, reference, fun or port)");
}

ec_status nif_term_to_value(ErlNifEnv *env, ERL_NIF_TERM t, arena *a, value *out, ec_error *err) {
    return to_value(env, t, a, out, err, 0);
}

ERL_NIF_TERM nif_make_binary(ErlNifEnv *env, const void *s, size_t len) {
    ERL_NIF_TERM t;
    unsigned char *p = enif_make_new_binary(env, len, &t);
    if (len) memcpy(p, s, len);
    return t;
}

ERL_NIF_TERM nif_value_to_term(ErlNifEnv *env, const value *v) {
    switch ((vtype)v->type) {
    case VT_UNDEF: return ATOM_undefined;
    case VT_NULL: return ATOM_null;
    case VT_BOOL: return v->u.b ? ATOM_true : ATOM_false;
    case VT_INT: return enif_make_int64(env, v->u.i);
    case VT_FLOAT: return isfinite(v->u.f) ? enif_make_double(env, v->u.f) : ATOM_null;
    case VT_BIN: return nif_make_binary(env, v->u.s, v->len);
    case VT_ARRAY: {
        ERL_NIF_TERM list = enif_make_list(env, 0);
        for (uint32_t i = v->len; i > 0; i--)
            list = enif_make_list_cell(env, nif_value_to_term(env, &v->u.items[i - 1]), list);
        return list;
    }
    case VT_MAP: {
        ERL_NIF_TERM m = enif_make_new_map(env);
        for (uint32_t i = 0; i < v->len; i++) {
            const vpair *p = &v->u.pairs[i];
            /* put (not make_from_arrays): a caller-built map could repeat a key */
            enif_make_map_put(env, m, nif_make_binary(env, p->key.u.s, p->key.len),
                              nif_value_to_term(env, &p->val), &m);
        }
        return m;
    }
    }
    return ATOM_undefined;
}

static ERL_NIF_TERM status_atom(ec_status st) {
    switch (st) {
    case EC_ENOMEM: return ATOM_enomem;
    case EC_EPARSE: return ATOM_parse;
    case EC_ELIMIT: return ATOM_limit;
    case EC_EINVAL: return ATOM_invalid;
    case EC_ETYPE: return ATOM_type;
    case EC_EKAFKA: return ATOM_kafka;
    case EC_ESTATE: return ATOM_state;
    case EC_EEXPIRED: return ATOM_expired;
    case EC_OK: break;
    }
    return ATOM_error;
}

ERL_NIF_TERM nif_error_term(ErlNifEnv *env, const ec_error *err) {
    ERL_NIF_TERM m = enif_make_new_map(env);
    enif_make_map_put(env, m, ATOM_reason, status_atom(err->code), &m);
    enif_make_map_put(env, m, ATOM_message, nif_make_binary(env, err->msg, strlen(err->msg)), &m);
    if (err->line > 0) {
        enif_make_map_put(env, m, ATOM_position, enif_make_uint64(env, err->pos), &m);
        enif_make_map_put(env, m, ATOM_line, enif_make_int(env, err->line), &m);
        enif_make_map_put(env, m, ATOM_column, enif_make_int(env, err->column), &m);
    }
    return enif_make_tuple2(env, ATOM_error, m);
}
