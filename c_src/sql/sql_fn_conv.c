/* sql_fn_conv.c - type conversion, type checks and conditional functions
 * (rule-functions §3, §4, §14), including str(), which '+' concatenation,
 * concat() and join_to_string() share. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../core/json.h"
#include "../core/text.h"
#include "../core/utf8.h"
#include "sql_fn.h"

ec_status fn_str_append(sql_eval *ev, const value *v, ec_buf *b, const char *fname) {
    if (!text_append(b, v, TEXT_UNDEF_WORD))
        return sql_fn_fail(ev,
                           "%s: a bit string that is not whole bytes cannot be text "
                           "(use bin2hexstr)",
                           fname);
    return b->oom ? fn_oom(ev) : EC_OK;
}

ec_status sql_value_to_str(sql_eval *ev, const value *v, value *out) {
    if (v->type == VT_BIN && !((v->flags >> 4) & 7)) {
        *out = *v;
        out->flags = 0;
        return EC_OK;
    }
    ec_buf b;
    buf_init_arena(&b, ev->a);
    ec_status st = fn_str_append(ev, v, &b, "str");
    if (st) return st;
    return fn_ret_ab(ev, &b, out);
}

FN(str) {
    UNUSED_ARGS;
    return sql_value_to_str(ev, &a[0], out);
}

FN(str_utf8) {
    UNUSED_ARGS;
    ec_status st = sql_value_to_str(ev, &a[0], out);
    if (st) return st;
    if (!utf8_valid(out->u.s, out->len)) return sql_fn_fail(ev, "str_utf8: not valid UTF-8");
    return EC_OK;
}

FN(str_utf16_le) {
    UNUSED_ARGS;
    value s;
    ec_status st = sql_value_to_str(ev, &a[0], &s);
    if (st) return st;
    ec_buf b;
    buf_init_arena(&b, ev->a);
    const unsigned char *p = (const unsigned char *)s.u.s, *end = p + s.len;
    while (p < end) {
        uint32_t cp;
        int k = utf8_decode(p, (size_t)(end - p), &cp);
        if (!k) return sql_fn_fail(ev, "str_utf16_le: not valid UTF-8");
        p += k;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            uint16_t hi = (uint16_t)(0xD800 + (cp >> 10)), lo = (uint16_t)(0xDC00 + (cp & 0x3FF));
            char w[4] = {(char)(hi & 0xFF), (char)(hi >> 8), (char)(lo & 0xFF), (char)(lo >> 8)};
            buf_append(&b, w, 4);
        } else {
            char w[2] = {(char)(cp & 0xFF), (char)(cp >> 8)};
            buf_append(&b, w, 2);
        }
    }
    return fn_ret_ab(ev, &b, out);
}

FN(int) {
    UNUSED_ARGS;
    const value *x = &a[0];
    double d;
    switch (x->type) {
    case VT_INT: *out = *x; return EC_OK;
    case VT_BOOL: *out = v_int(x->u.b ? 1 : 0); return EC_OK;
    case VT_FLOAT: d = x->u.f; break;
    case VT_BIN: {
        value nv;
        if (!sql_str_to_number(x->u.s, x->len, &nv))
            return sql_fn_fail(ev, "int: cannot convert '%.*s' to an integer",
                               (int)(x->len > 40 ? 40 : x->len), x->u.s);
        if (nv.type == VT_INT) {
            *out = nv;
            return EC_OK;
        }
        d = nv.u.f;
        break;
    }
    default: return fn_badarg(ev, "int", "a number, boolean or numeric string", x);
    }
    d = floor(d);
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return sql_fn_fail(ev, "int: value outside the 64-bit integer range");
    *out = v_int((int64_t)d);
    return EC_OK;
}

static bool str_to_float(const char *s, size_t len, double *out) {
    value nv;
    if (!sql_str_to_number(s, len, &nv)) return false;
    *out = nv.type == VT_INT ? (double)nv.u.i : nv.u.f;
    return true;
}

FN(float) {
    const value *x = &a[0];
    double d;
    if (x->type == VT_INT)
        d = (double)x->u.i;
    else if (x->type == VT_FLOAT)
        d = x->u.f;
    else if (x->type == VT_BIN) {
        if (!str_to_float(x->u.s, x->len, &d))
            return sql_fn_fail(ev, "float: cannot convert '%.*s' to a float",
                               (int)(x->len > 40 ? 40 : x->len), x->u.s);
    } else
        return fn_badarg(ev, "float", "a number or numeric string", x);
    if (n == 2) {
        NEED_INT("float", 1, dec);
        if (dec <= 0 || dec > 253) return sql_fn_fail(ev, "float: decimals must be 1..253");
        char tmp[400];
        int len = snprintf(tmp, sizeof tmp, "%.*f", (int)dec, d);
        if (len > 0 && (size_t)len < sizeof tmp) d = strtod(tmp, NULL);
    }
    *out = v_float(d);
    return EC_OK;
}

FN(float2str) {
    UNUSED_ARGS;
    if (a[0].type != VT_FLOAT) return fn_badarg(ev, "float2str", "a float", &a[0]);
    NEED_INT("float2str", 1, dec);
    if (dec < 0 || dec > 253) return sql_fn_fail(ev, "float2str: decimals must be 0..253");
    int len = snprintf(NULL, 0, "%.*f", (int)dec, a[0].u.f);
    char *p = arena_alloc(ev->a, (size_t)len + 1);
    if (!p) return fn_oom(ev);
    snprintf(p, (size_t)len + 1, "%.*f", (int)dec, a[0].u.f);
    if (dec > 0) {
        char *dot = strchr(p, '.');
        while (len > 0 && p + len - 1 > dot + 1 && p[len - 1] == '0')
            len--;
    }
    *out = v_bin(p, (size_t)len);
    return EC_OK;
}

FN(bool) {
    UNUSED_ARGS;
    const value *x = &a[0];
    if (x->type == VT_BOOL)
        *out = *x;
    else if (fn_is(x, "true") || (x->type == VT_INT && x->u.i == 1) ||
             (x->type == VT_FLOAT && x->u.f == 1.0))
        *out = v_bool(true);
    else if (fn_is(x, "false") || (x->type == VT_INT && x->u.i == 0) ||
             (x->type == VT_FLOAT && x->u.f == 0.0))
        *out = v_bool(false);
    else
        return sql_fn_fail(ev, "bool: cannot convert %s to a boolean", vtype_name((vtype)x->type));
    return EC_OK;
}

ec_status fn_as_map(sql_eval *ev, const char *fname, const value *v, value *out) {
    if (v->type == VT_MAP) {
        *out = *v;
        return EC_OK;
    }
    if (v->type == VT_BIN) {
        ec_error e;
        if (json_decode(ev->a, v->u.s, v->len, NULL, out, &e) != EC_OK)
            return sql_fn_fail(ev, "%s: not a JSON object (%s)", fname, e.msg);
        if (out->type == VT_MAP) return EC_OK;
    }
    return fn_badarg(ev, fname, "a map or a JSON object string", v);
}

FN(map) {
    UNUSED_ARGS;
    return fn_as_map(ev, "map", &a[0], out);
}

static ec_status hex_of(sql_eval *ev, const value *v, const char *prefix, size_t plen, value *out) {
    static const char hx[] = "0123456789ABCDEF";
    ec_buf b;
    buf_init_arena(&b, ev->a);
    buf_append(&b, prefix, plen);
    uint32_t pad = (v->flags >> 4) & 7;
    const unsigned char *p = (const unsigned char *)v->u.s;
    if (!pad) {
        if (buf_reserve(&b, (size_t)v->len * 2))
            for (uint32_t i = 0; i < v->len; i++) {
                b.p[b.len++] = hx[p[i] >> 4];
                b.p[b.len++] = hx[p[i] & 15];
            }
    } else { /* a bit string: its value, left-padded to a nibble boundary */
        uint64_t bits = (uint64_t)v->len * 8 - pad, nibbles = (bits + 3) / 4;
        uint64_t lead = nibbles * 4 - bits; /* zero bits in front */
        for (uint64_t k = 0; k < nibbles; k++) {
            unsigned nib = 0;
            for (int j = 0; j < 4; j++) {
                uint64_t pos = k * 4 + (uint64_t)j; /* in the padded sequence */
                int bit = pos < lead ? 0 : (p[(pos - lead) / 8] >> (7 - (pos - lead) % 8)) & 1;
                nib = (nib << 1) | (unsigned)bit;
            }
            buf_putc(&b, hx[nib]);
        }
    }
    return fn_ret_ab(ev, &b, out);
}

FN(bin2hexstr) {
    if (a[0].type != VT_BIN) return fn_badarg(ev, "bin2hexstr", "a binary", &a[0]);
    if (n == 2) {
        NEED_TEXT("bin2hexstr", 1, pre, plen);
        return hex_of(ev, &a[0], pre, plen, out);
    }
    return hex_of(ev, &a[0], "", 0, out);
}

FN(sqlserver_bin2hexstr) {
    UNUSED_ARGS;
    if (a[0].type != VT_BIN) return fn_badarg(ev, "sqlserver_bin2hexstr", "a binary", &a[0]);
    return hex_of(ev, &a[0], "0x", 2, out);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

FN(hexstr2bin) {
    NEED_TEXT("hexstr2bin", 0, s, len);
    if (n == 2) {
        NEED_TEXT("hexstr2bin", 1, pre, plen);
        if (len < plen || memcmp(s, pre, plen) != 0)
            return sql_fn_fail(ev, "hexstr2bin: binary_prefix_unmatch");
        s += plen;
        len -= plen;
    }
    size_t bytes = (len + 1) / 2;
    char *o = arena_alloc(ev->a, bytes ? bytes : 1);
    if (!o) return fn_oom(ev);
    size_t i = 0, k = 0;
    if (len % 2) { /* odd length: a leading 0 */
        int h = hexval(s[0]);
        if (h < 0) return sql_fn_fail(ev, "hexstr2bin: not a hex string");
        o[k++] = (char)h;
        i = 1;
    }
    for (; i < len; i += 2) {
        int h = hexval(s[i]), l = hexval(s[i + 1]);
        if (h < 0 || l < 0) return sql_fn_fail(ev, "hexstr2bin: not a hex string");
        o[k++] = (char)(h << 4 | l);
    }
    *out = v_bin(o, k);
    return EC_OK;
}

#define CHECK_FN(name, expr)                                                                       \
    FN(name) {                                                                                     \
        UNUSED_ARGS;                                                                               \
        (void)ev;                                                                                  \
        const value *x = &a[0];                                                                    \
        *out = v_bool(expr);                                                                       \
        return EC_OK;                                                                              \
    }
CHECK_FN(is_null, x->type == VT_UNDEF)
CHECK_FN(is_null_var, x->type == VT_UNDEF || x->type == VT_NULL)
CHECK_FN(is_not_null, x->type != VT_UNDEF)
CHECK_FN(is_not_null_var, x->type != VT_UNDEF && x->type != VT_NULL)
CHECK_FN(is_str, x->type == VT_BIN && !(x->flags & VF_ATOM))
CHECK_FN(is_bool, x->type == VT_BOOL)
CHECK_FN(is_int, x->type == VT_INT)
CHECK_FN(is_float, x->type == VT_FLOAT)
CHECK_FN(is_num, x->type == VT_INT || x->type == VT_FLOAT)
CHECK_FN(is_map, x->type == VT_MAP)
CHECK_FN(is_array, x->type == VT_ARRAY)

FN(is_empty) {
    UNUSED_ARGS;
    const value *x = &a[0];
    if (x->type == VT_ARRAY || (x->type == VT_BIN && x->len == 0)) {
        *out = v_bool(x->len == 0);
        return EC_OK;
    }
    value m;
    ec_status st = fn_as_map(ev, "is_empty", x, &m);
    if (st) return st;
    *out = v_bool(m.len == 0);
    return EC_OK;
}

static bool empty_str(const value *v) {
    return v->type == VT_BIN && v->len == 0;
}

static ec_status coalesce_impl(const value *a, uint32_t n, bool skip_empty, value *out) {
    if (n == 2) {
        bool skip = a[0].type == VT_UNDEF || (skip_empty && empty_str(&a[0]));
        *out = skip ? a[1] : a[0];
        return EC_OK;
    }
    *out = v_undef();
    if (a[0].type != VT_ARRAY) { /* coalesce(x) of a non-list: itself */
        *out = a[0];
        return EC_OK;
    }
    for (uint32_t i = 0; i < a[0].len; i++) {
        const value *e = &a[0].u.items[i];
        if (e->type != VT_UNDEF && !(skip_empty && empty_str(e))) {
            *out = *e;
            break;
        }
    }
    return EC_OK;
}

FN(coalesce) {
    (void)ev;
    return coalesce_impl(a, n, false, out);
}
FN(coalesce_ne) {
    (void)ev;
    return coalesce_impl(a, n, true, out);
}

FN(null) {
    UNUSED_ARGS;
    (void)ev;
    *out = v_undef();
    return EC_OK;
}
