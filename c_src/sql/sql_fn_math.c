/* sql_fn_math.c - mathematical and bitwise functions (rule-functions §1-2).
 * Integers are 64-bit: results that overflow are an error (EMQX: bignums). */
#include <math.h>
#include <stdlib.h>

#include "../core/rng.h"
#include "sql_fn.h"

/* a float result must be finite (EMQX raises badarith otherwise) */
static ec_status ret_float(sql_eval *ev, const char *fname, double d, value *out) {
    if (!isfinite(d)) return sql_fn_fail(ev, "badarith: %s result is not a finite number", fname);
    *out = v_float(d);
    return EC_OK;
}

/* double -> int64 for ceil/floor/round; out of range is an error */
static ec_status ret_int_of(sql_eval *ev, const char *fname, double d, value *out) {
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return sql_fn_fail(ev, "%s: result outside the 64-bit integer range", fname);
    *out = v_int((int64_t)d);
    return EC_OK;
}

FN(abs) {
    UNUSED_ARGS;
    NEED_INT("abs", 0, x); /* integers only in EMQX 5.10.4 */
    if (x == INT64_MIN) return sql_fn_fail(ev, "abs: integer overflow");
    *out = v_int(x < 0 ? -x : x);
    return EC_OK;
}

#define ROUNDING(name, expr)                                                                       \
    FN(name) {                                                                                     \
        UNUSED_ARGS;                                                                               \
        if (a[0].type == VT_INT) {                                                                 \
            *out = a[0];                                                                           \
            return EC_OK;                                                                          \
        }                                                                                          \
        NEED_NUM(#name, 0, x);                                                                     \
        return ret_int_of(ev, #name, expr, out);                                                   \
    }
ROUNDING(ceil, ceil(x))
ROUNDING(floor, floor(x))
ROUNDING(round, round(x)) /* C round: halves away from zero, as Erlang */

/* one-argument float functions with a domain check */
#define UNARY(name, cfn, domain)                                                                   \
    FN(name) {                                                                                     \
        UNUSED_ARGS;                                                                               \
        NEED_NUM(#name, 0, x);                                                                     \
        if (!(domain)) return sql_fn_fail(ev, "badarith: %s(%g) is undefined", #name, x);          \
        return ret_float(ev, #name, cfn(x), out);                                                  \
    }
UNARY(sqrt, sqrt, x >= 0)
UNARY(exp, exp, 1)
UNARY(log, log, x > 0)
UNARY(log10, log10, x > 0)
UNARY(log2, log2, x > 0)
UNARY(sin, sin, 1)
UNARY(cos, cos, 1)
UNARY(tan, tan, 1)
UNARY(asin, asin, x >= -1 && x <= 1)
UNARY(acos, acos, x >= -1 && x <= 1)
UNARY(atan, atan, 1)
UNARY(sinh, sinh, 1)
UNARY(cosh, cosh, 1)
UNARY(tanh, tanh, 1)
UNARY(asinh, asinh, 1)
UNARY(acosh, acosh, x >= 1)
UNARY(atanh, atanh, x > -1 && x < 1)

FN(power) {
    UNUSED_ARGS;
    NEED_NUM("power", 0, x);
    NEED_NUM("power", 1, y);
    return ret_float(ev, "power", pow(x, y), out);
}

FN(fmod) {
    UNUSED_ARGS;
    NEED_NUM("fmod", 0, x);
    NEED_NUM("fmod", 1, y);
    if (y == 0) return sql_fn_fail(ev, "badarith: fmod by zero");
    return ret_float(ev, "fmod", fmod(x, y), out);
}

FN(random) {
    UNUSED_ARGS;
    (void)ev;
    *out = v_float(rng_unit());
    return EC_OK;
}

static ec_status int_div(sql_eval *ev, const char *fname, const value *a, bool is_mod, value *out) {
    if (a[0].type != VT_INT || a[1].type != VT_INT)
        return sql_fn_fail(ev, "bad_sql_function_argument: %s needs two integers", fname);
    if (a[1].u.i == 0) return sql_fn_fail(ev, "badarith: %s by zero", fname);
    if (a[0].u.i == INT64_MIN && a[1].u.i == -1) {
        if (is_mod) {
            *out = v_int(0);
            return EC_OK;
        }
        return sql_fn_fail(ev, "%s: integer overflow", fname);
    }
    *out = v_int(is_mod ? a[0].u.i % a[1].u.i : a[0].u.i / a[1].u.i);
    return EC_OK;
}
FN(div) {
    (void)n;
    return int_div(ev, "div", a, false, out);
}
FN(mod) {
    (void)n;
    return int_div(ev, "mod", a, true, out);
}

/* ---- bits -------------------------------------------------------------- */

#define BITOP(name, op)                                                                            \
    FN(name) {                                                                                     \
        UNUSED_ARGS;                                                                               \
        NEED_INT(#name, 0, x);                                                                     \
        NEED_INT(#name, 1, y);                                                                     \
        *out = v_int(x op y);                                                                      \
        return EC_OK;                                                                              \
    }
BITOP(bitand, &)
BITOP(bitor, |)
BITOP(bitxor, ^)

FN(bitnot) {
    UNUSED_ARGS;
    NEED_INT("bitnot", 0, x);
    *out = v_int(~x);
    return EC_OK;
}

FN(bitsl) {
    UNUSED_ARGS;
    NEED_INT("bitsl", 0, x);
    NEED_INT("bitsl", 1, s);
    if (s < 0) {
        *out = v_int(s <= -64 ? (x < 0 ? -1 : 0) : x >> -s);
        return EC_OK;
    }
    if (x == 0) {
        *out = v_int(0);
        return EC_OK;
    }
    /* x * 2^s must fit in 64 bits (EMQX has bignums; we refuse what does not fit) */
    int64_t r;
    if (s < 63 && !__builtin_mul_overflow(x, (int64_t)1 << s, &r)) {
        *out = v_int(r);
        return EC_OK;
    }
    if (s == 63 && x == -1) {
        *out = v_int(INT64_MIN);
        return EC_OK;
    }
    return sql_fn_fail(ev, "bitsl: result outside the 64-bit integer range");
}

FN(bitsr) {
    UNUSED_ARGS;
    NEED_INT("bitsr", 0, x);
    NEED_INT("bitsr", 1, s);
    if (s < 0) {
        value neg[2] = {a[0], v_int(-s)};
        return fn_bitsl(ev, neg, 2, out);
    }
    *out = v_int(s >= 64 ? (x < 0 ? -1 : 0) : x >> s); /* arithmetic shift */
    return EC_OK;
}

static uint32_t bin_bits(const value *v) {
    uint32_t pad = (v->flags >> 4) & 7; /* bitstrings keep their unused tail bit count */
    return v->len * 8 - pad;
}

FN(bitsize) {
    UNUSED_ARGS;
    if (a[0].type != VT_BIN) return fn_badarg(ev, "bitsize", "a binary", &a[0]);
    *out = v_int(bin_bits(&a[0]));
    return EC_OK;
}

FN(bytesize) {
    UNUSED_ARGS;
    if (a[0].type != VT_BIN) return fn_badarg(ev, "bytesize", "a binary", &a[0]);
    *out = v_int(a[0].len);
    return EC_OK;
}

static int bit_at(const unsigned char *p, uint64_t i) {
    return (p[i / 8] >> (7 - i % 8)) & 1;
}

/* subbits(bin, len) | (bin, start, len) | (..., type) | (..., type, signedness)
 *   | (..., type, signedness, endianness); start is 1-based in bits. */
FN(subbits) {
    if (a[0].type != VT_BIN) return fn_badarg(ev, "subbits", "a binary", &a[0]);
    int64_t start = 1, len;
    uint32_t k = 1;
    if (n == 2) {
        NEED_INT("subbits", 1, l);
        len = l;
    } else {
        NEED_INT("subbits", 1, s);
        NEED_INT("subbits", 2, l);
        start = s;
        len = l;
        k = 3;
    }
    const char *type = "integer", *sign = "unsigned", *endian = "big";
    const char *opts[3] = {type, sign, endian};
    for (uint32_t i = k == 3 ? 3 : 2, o = 0; i < n; i++, o++) {
        if (a[i].type != VT_BIN) return fn_badarg(ev, "subbits", "an option string", &a[i]);
        static const char *const allowed[3][2] = {
            {"integer", "float"}, {"signed", "unsigned"}, {"big", "little"}};
        if (fn_is(&a[i], allowed[o][0]))
            opts[o] = allowed[o][0];
        else if (fn_is(&a[i], allowed[o][1]))
            opts[o] = allowed[o][1];
        else if (o == 0 && fn_is(&a[i], "bits"))
            opts[o] = "bits";
        else
            return sql_fn_fail(ev, "subbits: invalid option '%.*s'", (int)a[i].len, a[i].u.s);
    }
    type = opts[0], sign = opts[1], endian = opts[2];
    uint64_t total = bin_bits(&a[0]);
    if (start < 1 || len < 0) return sql_fn_fail(ev, "subbits: invalid start or length");
    if ((uint64_t)start > total) {
        *out = v_undef();
        return EC_OK;
    }
    uint64_t avail = total - (uint64_t)(start - 1);
    uint64_t bits = (uint64_t)len < avail ? (uint64_t)len : avail;
    const unsigned char *p = (const unsigned char *)a[0].u.s;
    uint64_t off = (uint64_t)(start - 1);
    if (strcmp(type, "bits") == 0) {
        size_t bytes = (size_t)((bits + 7) / 8);
        unsigned char *o = arena_calloc(ev->a, bytes ? bytes : 1);
        if (!o) return fn_oom(ev);
        for (uint64_t i = 0; i < bits; i++)
            if (bit_at(p, off + i)) o[i / 8] |= (unsigned char)(0x80 >> (i % 8));
        value r = v_bin((const char *)o, bytes);
        r.flags = (uint8_t)(((bytes * 8 - bits) & 7) << 4);
        *out = r;
        return EC_OK;
    }
    if (bits > 64) return sql_fn_fail(ev, "subbits: more than 64 bits cannot be an integer here");
    uint64_t u = 0;
    for (uint64_t i = 0; i < bits; i++)
        u = (u << 1) | (uint64_t)bit_at(p, off + i);
    if (strcmp(endian, "little") == 0) {
        if (bits % 8)
            return sql_fn_fail(ev, "subbits: little endian needs a whole number of bytes");
        uint64_t r = 0;
        for (uint64_t i = 0; i < bits / 8; i++)
            r |= ((u >> (8 * i)) & 0xFF) << (8 * (bits / 8 - 1 - i));
        u = r;
    }
    if (strcmp(type, "float") == 0) {
        if (bits == 64) {
            double d;
            memcpy(&d, &u, 8);
            *out = v_float(d);
        } else if (bits == 32) {
            uint32_t w = (uint32_t)u;
            float f;
            memcpy(&f, &w, 4);
            *out = v_float(f);
        } else if (bits == 16) { /* IEEE half */
            int s = (int)((u >> 15) & 1), e = (int)((u >> 10) & 31), m = (int)(u & 1023);
            double d = e == 0    ? ldexp(m, -24)
                       : e == 31 ? (m ? NAN : INFINITY)
                                 : ldexp(m + 1024, e - 25);
            *out = v_float(s ? -d : d);
        } else {
            return sql_fn_fail(ev, "subbits: a float needs 16, 32 or 64 bits");
        }
        if (!isfinite(out->u.f)) return sql_fn_fail(ev, "subbits: not a finite float");
        return EC_OK;
    }
    if (strcmp(sign, "signed") == 0 && bits > 0 && bits < 64 && (u >> (bits - 1)) & 1)
        *out = v_int((int64_t)(u | ~((1ULL << bits) - 1)));
    else if (bits == 64 && strcmp(sign, "unsigned") == 0 && (u >> 63))
        return sql_fn_fail(ev, "subbits: unsigned 64-bit value outside the integer range");
    else
        *out = v_int((int64_t)u);
    return EC_OK;
}
