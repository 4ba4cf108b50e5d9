/* sql_fn.h - helpers for the function families (sql_fn_*.c); not a public API. */
#ifndef EC_SQL_FN_H
#define EC_SQL_FN_H

#include <stdbool.h>
#include <string.h>

#include "../core/buf.h"
#include "sql_eval.h"
#include "sql_funcs.h"

/* Caps on what one function call may build (a rule cannot exhaust memory). */
#define SQL_MAX_RESULT_BYTES ((size_t)16 << 20)
#define SQL_MAX_RESULT_ITEMS 1000000

#define FN(name)    ec_status fn_##name(sql_eval *ev, const value *a, uint32_t n, value *out)
#define UNUSED_ARGS (void)a, (void)n

/* "bad_sql_function_argument: upper/1 expects a string, got int" */
ec_status fn_badarg(sql_eval *ev, const char *fname, const char *want, const value *got);

/* text of a string or an atom-like value (VT_BIN); false for anything else */
static inline bool fn_text(const value *v, const char **s, size_t *len) {
    if (v->type != VT_BIN) return false;
    *s = v->u.s;
    *len = v->len;
    return true;
}
#define NEED_TEXT(fname, idx, s, len)                                                              \
    const char *s;                                                                                 \
    size_t len;                                                                                    \
    if (!fn_text(&a[idx], &s, &len)) return fn_badarg(ev, fname, "a string", &a[idx])
#define NEED_INT(fname, idx, var)                                                                  \
    int64_t var;                                                                                   \
    if (a[idx].type != VT_INT) return fn_badarg(ev, fname, "an integer", &a[idx]);                 \
    var = a[idx].u.i
#define NEED_NUM(fname, idx, var)                                                                  \
    double var;                                                                                    \
    if (!v_is_number(&a[idx])) return fn_badarg(ev, fname, "a number", &a[idx]);                   \
    var = a[idx].type == VT_INT ? (double)a[idx].u.i : a[idx].u.f

/* the string literal equal to lit? */
static inline bool fn_is(const value *v, const char *lit) {
    size_t n = strlen(lit);
    return v->type == VT_BIN && v->len == n && memcmp(v->u.s, lit, n) == 0;
}

/* The string built in an arena buffer (buf_init_arena) as the function result. */
ec_status fn_ret_ab(sql_eval *ev, ec_buf *b, value *out);

/* A binary copied into the evaluation arena (undefined type on OOM: check). */
ec_status fn_ret_bin(sql_eval *ev, const char *s, size_t len, value *out);
/* Finishes a buffer-built result: copies b into the arena as a binary. */
ec_status fn_ret_buf(sql_eval *ev, const ec_buf *b, value *out);
ec_status fn_oom(sql_eval *ev);

/* str(): EMQX's value-to-text conversion (spec rule-functions §3). */
ec_status sql_value_to_str(sql_eval *ev, const value *v, value *out);
/* Appends str(v) to b; an error (in ev) when v cannot be converted. */
ec_status fn_str_append(sql_eval *ev, const value *v, ec_buf *b, const char *fname);
/* Decodes a JSON string argument that stands for a map (map functions). */
ec_status fn_as_map(sql_eval *ev, const char *fname, const value *v, value *out);

#endif
