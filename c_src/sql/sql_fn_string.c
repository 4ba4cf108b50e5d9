/* sql_fn_string.c - string functions (rule-functions §5).
 *
 * Positions and lengths count grapheme clusters. Clusters are approximated:
 * a code point plus following zero-width marks (glibc C.UTF-8 wcwidth == 0),
 * ZWJ sequences, variation selectors, emoji modifiers and regional-indicator
 * pairs; CR LF is one cluster. Case mapping is per code point (towupper in
 * C.UTF-8; no multi-character mappings such as ß -> SS). Regular expressions
 * are PCRE2 in byte mode, as Erlang's re on binaries. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <locale.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>
#include <wctype.h>

#include "../core/json.h"
#include "../core/utf8.h"
#include "sql_fn.h"

static locale_t utf8_loc;
static pthread_once_t loc_once = PTHREAD_ONCE_INIT;
static void loc_init(void) {
    utf8_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}
static locale_t loc(void) {
    pthread_once(&loc_once, loc_init);
    return utf8_loc;
}

static bool is_extend(uint32_t cp) {
    if (cp < 0x300) return false;
    if (cp == 0x200D || (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0xE0100 && cp <= 0xE01EF) ||
        (cp >= 0x1F3FB && cp <= 0x1F3FF) || (cp >= 0xE0020 && cp <= 0xE007F))
        return true;
    if (cp == 0x200B || (cp >= 0x2028 && cp <= 0x202E) || cp == 0xFEFF ||
        (cp >= 0x2060 && cp <= 0x2064))
        return false;
    locale_t l = loc();
    if (!l) return cp <= 0x36F;
    locale_t old = uselocale(l);
    int w = wcwidth((wchar_t)cp);
    uselocale(old);
    return w == 0;
}

static bool is_ri(uint32_t cp) {
    return cp >= 0x1F1E6 && cp <= 0x1F1FF;
}

/* Byte length of the grapheme cluster at s (s < end). Invalid UTF-8 bytes are
 * one cluster each. */
static size_t grapheme(const char *s, const char *end) {
    const unsigned char *p = (const unsigned char *)s, *e = (const unsigned char *)end;
    if (p[0] < 0x80) {
        if (p[0] == '\r' && p + 1 < e && p[1] == '\n') return 2;
        if (p + 1 >= e || p[1] < 0x80) return 1; /* ASCII fast path */
    }
    uint32_t cp;
    int k = utf8_decode(p, (size_t)(e - p), &cp);
    if (!k) return 1;
    const unsigned char *q = p + k;
    uint32_t prev = cp;
    bool ri_open = is_ri(cp);
    while (q < e) {
        uint32_t c2;
        int k2 = utf8_decode(q, (size_t)(e - q), &c2);
        if (!k2) break;
        if (is_extend(c2) || prev == 0x200D || (ri_open && is_ri(c2))) {
            if (ri_open && is_ri(c2)) ri_open = false;
            q += k2;
            prev = c2;
            continue;
        }
        break;
    }
    return (size_t)(q - p);
}

static size_t glen(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i += grapheme(s + i, s + n))
        count++;
    return count;
}

/* byte offset of the k-th grapheme (or n) */
static size_t goffset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (k-- && i < n)
        i += grapheme(s + i, s + n);
    return i;
}

static ec_status case_map(sql_eval *ev, const value *a, bool up, value *out) {
    NEED_TEXT(up ? "upper" : "lower", 0, s, len);
    ec_buf b;
    buf_init_arena(&b, ev->a);
    if (!buf_reserve(&b, len)) return fn_oom(ev);
    locale_t l = loc();
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        if (*p < 0x80) {
            char c = (char)*p++;
            buf_putc(&b, up ? (c >= 'a' && c <= 'z' ? c - 32 : c)
                            : (c >= 'A' && c <= 'Z' ? c + 32 : c));
            continue;
        }
        uint32_t cp;
        int k = utf8_decode(p, (size_t)(end - p), &cp);
        if (!k) { /* not UTF-8: keep the byte */
            buf_putc(&b, (char)*p++);
            continue;
        }
        p += k;
        if (l) cp = (uint32_t)(up ? towupper_l((wint_t)cp, l) : towlower_l((wint_t)cp, l));
        char u[4];
        buf_append(&b, u, utf8_put(u, cp));
    }
    return fn_ret_ab(ev, &b, out);
}

FN(upper) {
    (void)n;
    return case_map(ev, a, true, out);
}
FN(lower) {
    (void)n;
    return case_map(ev, a, false, out);
}

/* Erlang's whitespace (unicode_util:whitespace/0) */
static size_t ws_at(const char *s, const char *end) {
    unsigned char c = (unsigned char)*s;
    if (c == ' ' || (c >= 9 && c <= 13)) return 1;
    uint32_t cp;
    int k = utf8_decode((const unsigned char *)s, (size_t)(end - s), &cp);
    if (k && (cp == 0x85 || cp == 0x200E || cp == 0x200F || cp == 0x2028 || cp == 0x2029))
        return (size_t)k;
    return 0;
}

/* the start of the code point ending at end (for trimming from the right) */
static const char *cp_start(const char *s, const char *end) {
    const char *p = end - 1;
    while (p > s && ((unsigned char)*p & 0xC0) == 0x80 && end - p < 4)
        p--;
    return p;
}

static ec_status trim_impl(sql_eval *ev, const value *a, bool left, bool right, const char *name,
                           value *out) {
    NEED_TEXT(name, 0, s, len);
    const char *b = s, *e = s + len;
    size_t k;
    if (left)
        while (b < e && (k = ws_at(b, e)))
            b += k;
    if (right)
        while (e > b) {
            const char *p = cp_start(b, e);
            if (ws_at(p, e) != (size_t)(e - p)) break;
            e = p;
        }
    *out = v_bin(b, (size_t)(e - b));
    return EC_OK;
}

FN(trim) {
    (void)n;
    return trim_impl(ev, a, true, true, "trim", out);
}
FN(ltrim) {
    (void)n;
    return trim_impl(ev, a, true, false, "ltrim", out);
}
FN(rtrim) {
    if (n == 1) return trim_impl(ev, a, false, true, "rtrim", out);
    NEED_TEXT("rtrim", 0, s, len);
    NEED_TEXT("rtrim", 1, chars, clen);
    size_t e = len;
    for (;;) { /* strip any trailing grapheme that is one of chars' graphemes */
        bool hit = false;
        for (size_t i = 0; i < clen;) {
            size_t g = grapheme(chars + i, chars + clen);
            if (g <= e && memcmp(s + e - g, chars + i, g) == 0 &&
                goffset(s, e, glen(s, e) - 1) == e - g) {
                e -= g;
                hit = true;
                break;
            }
            i += g;
        }
        if (!hit || e == 0) break;
    }
    *out = v_bin(s, e);
    return EC_OK;
}

FN(reverse) {
    UNUSED_ARGS;
    NEED_TEXT("reverse", 0, s, len);
    char *o = arena_alloc(ev->a, len ? len : 1);
    if (!o) return fn_oom(ev);
    size_t w = len;
    for (size_t i = 0; i < len;) {
        size_t g = grapheme(s + i, s + len);
        w -= g;
        memcpy(o + w, s + i, g);
        i += g;
    }
    *out = v_bin(o, len);
    return EC_OK;
}

FN(strlen) {
    UNUSED_ARGS;
    NEED_TEXT("strlen", 0, s, len);
    *out = v_int((int64_t)glen(s, len));
    return EC_OK;
}

FN(substr) {
    NEED_TEXT("substr", 0, s, len);
    NEED_INT("substr", 1, start);
    if (start < 0) return sql_fn_fail(ev, "substr: negative start %lld", (long long)start);
    size_t b = goffset(s, len, (size_t)start), e = len;
    if (n == 3) {
        NEED_INT("substr", 2, cnt);
        if (cnt < 0) return sql_fn_fail(ev, "substr: negative length");
        e = b + goffset(s + b, len - b, (size_t)cnt);
    }
    *out = v_bin(s + b, e - b);
    return EC_OK;
}

static const char *find_sub(const char *s, size_t n, const char *pat, size_t pn, bool last) {
    if (pn == 0 || pn > n) return pn == 0 ? s : NULL;
    const char *found = NULL;
    for (const char *p = s; p + pn <= s + n; p++) {
        if (memcmp(p, pat, pn) == 0) {
            found = p;
            if (!last) break;
        }
    }
    return found;
}

static ec_status push_part(sql_eval *ev, value *arr, const char *s, size_t len, bool keep_empty) {
    if (!len && !keep_empty) return EC_OK;
    return v_array_push(ev->a, arr, v_bin(s, len)) ? EC_OK : fn_oom(ev);
}

FN(split) {
    NEED_TEXT("split", 0, s, len);
    NEED_TEXT("split", 1, sep, slen);
    bool notrim = false, leading = false, trailing = false;
    if (n == 3) {
        if (fn_is(&a[2], "notrim"))
            notrim = true;
        else if (fn_is(&a[2], "leading"))
            leading = true;
        else if (fn_is(&a[2], "leading_notrim"))
            leading = notrim = true;
        else if (fn_is(&a[2], "trailing"))
            trailing = true;
        else if (fn_is(&a[2], "trailing_notrim"))
            trailing = notrim = true;
        else
            return sql_fn_fail(ev, "split: invalid option");
    }
    bool ok;
    value arr = v_array_new(ev->a, 4, &ok);
    if (!ok) return fn_oom(ev);
    ec_status st = EC_OK;
    if (slen == 0) {
        st = push_part(ev, &arr, s, len, notrim);
    } else if (leading || trailing) {
        const char *p = find_sub(s, len, sep, slen, trailing);
        if (!p)
            st = push_part(ev, &arr, s, len, notrim);
        else if (!(st = push_part(ev, &arr, s, (size_t)(p - s), notrim)))
            st = push_part(ev, &arr, p + slen, len - (size_t)(p - s) - slen, notrim);
    } else {
        size_t i = 0;
        for (;;) {
            const char *p = find_sub(s + i, len - i, sep, slen, false);
            if (!p) {
                st = push_part(ev, &arr, s + i, len - i, notrim);
                break;
            }
            if ((st = push_part(ev, &arr, s + i, (size_t)(p - (s + i)), notrim))) break;
            i = (size_t)(p - s) + slen;
        }
    }
    if (st) return st;
    *out = arr;
    return EC_OK;
}

/* is the code point at p one of the separator code points in chars? */
static size_t sep_at(const char *p, const char *end, const char *chars, size_t clen, bool crlf) {
    if (crlf && (*p == '\r' || *p == '\n'))
        return (*p == '\r' && p + 1 < end && p[1] == '\n') ? 2 : 1;
    uint32_t cp;
    int k = utf8_decode((const unsigned char *)p, (size_t)(end - p), &cp);
    if (!k) k = 1;
    for (size_t i = 0; i < clen;) {
        uint32_t c2;
        int k2 = utf8_decode((const unsigned char *)chars + i, clen - i, &c2);
        if (!k2) k2 = 1;
        if (k2 == k && memcmp(chars + i, p, (size_t)k) == 0) return (size_t)k;
        i += (size_t)k2;
    }
    return 0;
}

FN(tokens) {
    NEED_TEXT("tokens", 0, s, len);
    NEED_TEXT("tokens", 1, chars, clen);
    bool crlf = false;
    if (n == 3) {
        if (!fn_is(&a[2], "nocrlf")) return sql_fn_fail(ev, "tokens: invalid option");
        crlf = true;
    }
    bool ok;
    value arr = v_array_new(ev->a, 4, &ok);
    if (!ok) return fn_oom(ev);
    if (clen == 0 && !crlf) {
        if (len && !v_array_push(ev->a, &arr, v_bin(s, len))) return fn_oom(ev);
        *out = arr;
        return EC_OK;
    }
    size_t i = 0, tok = 0;
    while (i < len) {
        size_t k = sep_at(s + i, s + len, chars, clen, crlf);
        if (k) {
            if (i > tok && !v_array_push(ev->a, &arr, v_bin(s + tok, i - tok))) return fn_oom(ev);
            i += k;
            tok = i;
        } else {
            i++;
        }
    }
    if (len > tok && !v_array_push(ev->a, &arr, v_bin(s + tok, len - tok))) return fn_oom(ev);
    *out = arr;
    return EC_OK;
}

FN(concat) {
    ec_buf b;
    buf_init_arena(&b, ev->a);
    ec_status st;
    if (n == 2) {
        if ((st = fn_str_append(ev, &a[0], &b, "concat")) ||
            (st = fn_str_append(ev, &a[1], &b, "concat")))
            return st;
    } else {
        if (a[0].type != VT_ARRAY) return fn_badarg(ev, "concat", "an array or two values", &a[0]);
        for (uint32_t i = 0; i < a[0].len; i++)
            if ((st = fn_str_append(ev, &a[0].u.items[i], &b, "concat"))) return st;
    }
    return fn_ret_ab(ev, &b, out);
}

/* ---- sprintf: a subset of io_lib:format --------------------------------- */

static void erl_float(double d, ec_buf *b) {
    char tmp[JSON_DOUBLE_MAX_CHARS + 4];
    json_fmt_double(d, tmp);
    char *e = strchr(tmp, 'e');
    if (!e) {
        buf_puts(b, tmp);
        return;
    }
    /* Erlang: 1.0e21, 1.5e-7 (a ".0" mantissa, no '+') */
    buf_append(b, tmp, (size_t)(e - tmp));
    if (!memchr(tmp, '.', (size_t)(e - tmp))) buf_puts(b, ".0");
    buf_putc(b, 'e');
    buf_puts(b, e[1] == '+' ? e + 2 : e + 1);
}

static bool printable_bin(const value *v) {
    for (uint32_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->u.s[i];
        if (c < 32 && !(c >= 8 && c <= 13) && c != 27) return false;
        if (c == 127) return false;
    }
    return utf8_valid(v->u.s, v->len);
}

/* ~p / ~w of a value, in Erlang syntax */
static void erl_term(const value *v, ec_buf *b) {
    char tmp[32];
    switch ((vtype)v->type) {
    case VT_UNDEF: buf_puts(b, "undefined"); break;
    case VT_NULL: buf_puts(b, "null"); break;
    case VT_BOOL: buf_puts(b, v->u.b ? "true" : "false"); break;
    case VT_INT: buf_append(b, tmp, json_fmt_int(v->u.i, tmp)); break;
    case VT_FLOAT: erl_float(v->u.f, b); break;
    case VT_BIN:
        if (v->flags & VF_ATOM) {
            buf_append(b, v->u.s, v->len);
        } else if (printable_bin(v)) {
            buf_puts(b, "<<\"");
            for (uint32_t i = 0; i < v->len; i++) {
                char c = v->u.s[i];
                if (c == '"' || c == '\\') buf_putc(b, '\\');
                if (c == '\n')
                    buf_puts(b, "\\n");
                else if (c == '\t')
                    buf_puts(b, "\\t");
                else if (c == '\r')
                    buf_puts(b, "\\r");
                else
                    buf_putc(b, c);
            }
            bool ascii = true;
            for (uint32_t i = 0; i < v->len; i++)
                ascii &= (unsigned char)v->u.s[i] < 0x80;
            buf_puts(b, ascii ? "\">>" : "\"/utf8>>");
        } else {
            buf_puts(b, "<<");
            for (uint32_t i = 0; i < v->len; i++) {
                if (i) buf_putc(b, ',');
                buf_append(b, tmp, json_fmt_int((unsigned char)v->u.s[i], tmp));
            }
            buf_puts(b, ">>");
        }
        break;
    case VT_ARRAY:
        buf_putc(b, '[');
        for (uint32_t i = 0; i < v->len; i++) {
            if (i) buf_putc(b, ',');
            erl_term(&v->u.items[i], b);
        }
        buf_putc(b, ']');
        break;
    case VT_MAP:
        buf_puts(b, "#{");
        for (uint32_t i = 0; i < v->len; i++) {
            if (i) buf_putc(b, ',');
            erl_term(&v->u.pairs[i].key, b);
            buf_puts(b, " => ");
            erl_term(&v->u.pairs[i].val, b);
        }
        buf_putc(b, '}');
        break;
    }
}

static ec_status do_sprintf(sql_eval *ev, const char *fmt, size_t flen, const value *args,
                            uint32_t nargs, value *out) {
    ec_buf b;
    buf_init_arena(&b, ev->a);
    uint32_t ai = 0;
    for (size_t i = 0; i < flen; i++) {
        if (fmt[i] != '~') {
            buf_putc(&b, fmt[i]);
            continue;
        }
        if (++i >= flen) return sql_fn_fail(ev, "sprintf: format ends with '~'");
        bool t = false;
        if (fmt[i] == 't') {
            t = true;
            if (++i >= flen) return sql_fn_fail(ev, "sprintf: format ends with '~t'");
        }
        (void)t;
        char c = fmt[i];
        if (c == 'n') {
            buf_putc(&b, '\n');
            continue;
        }
        if (c == '~') {
            buf_putc(&b, '~');
            continue;
        }
        if (ai >= nargs) return sql_fn_fail(ev, "sprintf: too few arguments for the format");
        const value *v = &args[ai++];
        switch (c) {
        case 's':
            if (v->type == VT_BIN)
                buf_append(&b, v->u.s, v->len);
            else if (v->type == VT_BOOL || v->type == VT_NULL || v->type == VT_UNDEF)
                erl_term(v, &b);
            else if (v->type == VT_ARRAY && v->len == 0)
                break;
            else
                return sql_fn_fail(ev, "sprintf: ~s needs a string, got %s",
                                   vtype_name((vtype)v->type));
            break;
        case 'p':
        case 'w': erl_term(v, &b); break;
        case 'b':
        case 'B':
            if (v->type != VT_INT) return sql_fn_fail(ev, "sprintf: ~%c needs an integer", c);
            erl_term(v, &b);
            break;
        case 'f':
        case 'e':
        case 'g': {
            if (v->type != VT_FLOAT) return sql_fn_fail(ev, "sprintf: ~%c needs a float", c);
            char tmp[64];
            int k = snprintf(tmp, sizeof tmp, c == 'f' ? "%.6f" : c == 'e' ? "%.5e" : "%g", v->u.f);
            buf_append(&b, tmp, (size_t)k);
            break;
        }
        case 'c':
            if (v->type != VT_INT || v->u.i < 0 || v->u.i > 0x10FFFF)
                return sql_fn_fail(ev, "sprintf: ~c needs a character code");
            {
                char u[4];
                buf_append(&b, u, utf8_put(u, (uint32_t)v->u.i));
            }
            break;
        default: return sql_fn_fail(ev, "sprintf: unsupported control sequence ~%c", c);
        }
    }
    if (ai != nargs)
        return sql_fn_fail(ev, "sprintf: %u arguments but the format uses %u", nargs, ai);
    return fn_ret_ab(ev, &b, out);
}

FN(sprintf) {
    NEED_TEXT("sprintf", 0, fmt, flen);
    return do_sprintf(ev, fmt, flen, a + 1, n - 1, out);
}

FN(sprintf_s) {
    UNUSED_ARGS;
    NEED_TEXT("sprintf_s", 0, fmt, flen);
    if (a[1].type != VT_ARRAY) return fn_badarg(ev, "sprintf_s", "an array", &a[1]);
    return do_sprintf(ev, fmt, flen, a[1].u.items, a[1].len, out);
}

FN(pad) {
    NEED_TEXT("pad", 0, s, len);
    NEED_INT("pad", 1, want);
    int dir = 1; /* 0 leading, 1 trailing, 2 both */
    const char *pc = " ";
    size_t pclen = 1;
    if (n >= 3) {
        if (fn_is(&a[2], "trailing"))
            dir = 1;
        else if (fn_is(&a[2], "leading"))
            dir = 0;
        else if (fn_is(&a[2], "both"))
            dir = 2;
        else
            return sql_fn_fail(ev, "pad: direction must be leading, trailing or both");
    }
    if (n == 4) {
        if (!fn_text(&a[3], &pc, &pclen)) return fn_badarg(ev, "pad", "a string", &a[3]);
    }
    int64_t have = (int64_t)glen(s, len), k = want > have ? want - have : 0;
    if (k > 0 && (uint64_t)k > SQL_MAX_RESULT_BYTES / (pclen ? pclen : 1))
        return sql_fn_fail(ev, "pad: result larger than %zu bytes", SQL_MAX_RESULT_BYTES);
    int64_t left = dir == 0 ? k : dir == 2 ? k / 2 : 0, right = k - left;
    ec_buf b;
    buf_init_arena(&b, ev->a);
    for (int64_t i = 0; i < left; i++)
        buf_append(&b, pc, pclen);
    buf_append(&b, s, len);
    for (int64_t i = 0; i < right; i++)
        buf_append(&b, pc, pclen);
    return fn_ret_ab(ev, &b, out);
}

FN(replace) {
    NEED_TEXT("replace", 0, s, len);
    NEED_TEXT("replace", 1, pat, plen);
    NEED_TEXT("replace", 2, rep, rlen);
    int mode = 0; /* all, leading, trailing */
    if (n == 4) {
        if (fn_is(&a[3], "all"))
            mode = 0;
        else if (fn_is(&a[3], "leading"))
            mode = 1;
        else if (fn_is(&a[3], "trailing"))
            mode = 2;
        else
            return sql_fn_fail(ev, "replace: option must be all, leading or trailing");
    }
    if (plen == 0) {
        *out = a[0];
        return EC_OK;
    }
    ec_buf b;
    buf_init_arena(&b, ev->a);
    if (mode != 0) {
        const char *p = find_sub(s, len, pat, plen, mode == 2);
        if (!p) {
            *out = a[0];
            return EC_OK;
        }
        buf_append(&b, s, (size_t)(p - s));
        buf_append(&b, rep, rlen);
        buf_append(&b, p + plen, len - (size_t)(p - s) - plen);
        return fn_ret_ab(ev, &b, out);
    }
    size_t i = 0;
    for (;;) {
        const char *p = find_sub(s + i, len - i, pat, plen, false);
        if (!p) break;
        buf_append(&b, s + i, (size_t)(p - (s + i)));
        buf_append(&b, rep, rlen);
        i = (size_t)(p - s) + plen;
    }
    buf_append(&b, s + i, len - i);
    return fn_ret_ab(ev, &b, out);
}

/* ---- regular expressions (PCRE2, compiled patterns cached per thread) --- */

#define RE_CACHE 16
typedef struct re_slot {
    char *pat;
    size_t len;
    pcre2_code *code;
} re_slot;
static _Thread_local re_slot re_cache[RE_CACHE];
static _Thread_local unsigned re_next;
static _Thread_local pcre2_match_data *re_md;

static pcre2_code *re_get(sql_eval *ev, const char *pat, size_t len, const char *fname) {
    for (unsigned i = 0; i < RE_CACHE; i++)
        if (re_cache[i].code && re_cache[i].len == len && memcmp(re_cache[i].pat, pat, len) == 0)
            return re_cache[i].code;
    int errc;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, len, 0, &errc, &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(errc, msg, sizeof msg);
        sql_fn_fail(ev, "%s: invalid regular expression at %zu: %s", fname, (size_t)erroff,
                    (char *)msg);
        return NULL;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        pcre2_code_free(code);
        fn_oom(ev);
        return NULL;
    }
    memcpy(copy, pat, len);
    re_slot *s = &re_cache[re_next++ % RE_CACHE];
    if (s->code) {
        pcre2_code_free(s->code);
        free(s->pat);
    }
    s->pat = copy;
    s->len = len;
    s->code = code;
    if (!re_md) re_md = pcre2_match_data_create(32, NULL);
    return code;
}

static int re_run(pcre2_code *code, const char *s, size_t len, size_t start) {
    if (!re_md) return -1;
    return pcre2_match(code, (PCRE2_SPTR)s, len, start, 0, re_md, NULL);
}

FN(regex_match) {
    UNUSED_ARGS;
    NEED_TEXT("regex_match", 0, s, len);
    NEED_TEXT("regex_match", 1, pat, plen);
    pcre2_code *code = re_get(ev, pat, plen, "regex_match");
    if (!code) return ev->err ? ev->err->code : EC_EINVAL;
    int rc = re_run(code, s, len, 0);
    if (rc < -1) return sql_fn_fail(ev, "regex_match: matching failed (%d)", rc);
    *out = v_bool(rc >= 0);
    return EC_OK;
}

FN(regex_replace) {
    UNUSED_ARGS;
    NEED_TEXT("regex_replace", 0, s, len);
    NEED_TEXT("regex_replace", 1, pat, plen);
    NEED_TEXT("regex_replace", 2, rep, rlen);
    pcre2_code *code = re_get(ev, pat, plen, "regex_replace");
    if (!code) return ev->err ? ev->err->code : EC_EINVAL;
    ec_buf b;
    buf_init_arena(&b, ev->a);
    size_t pos = 0, copied = 0;
    while (pos <= len) {
        int rc = re_run(code, s, len, pos);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return sql_fn_fail(ev, "regex_replace: matching failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re_md);
        size_t ms = ov[0], me = ov[1];
        buf_append(&b, s + copied, ms - copied);
        for (size_t i = 0; i < rlen; i++) { /* & = whole match, \N = group N */
            if (rep[i] == '&') {
                buf_append(&b, s + ms, me - ms);
            } else if (rep[i] == '\\' && i + 1 < rlen && rep[i + 1] >= '0' && rep[i + 1] <= '9') {
                int g = rep[++i] - '0';
                if (g < rc && ov[2 * g] != PCRE2_UNSET)
                    buf_append(&b, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
            } else if (rep[i] == '\\' && i + 1 < rlen &&
                       (rep[i + 1] == '&' || rep[i + 1] == '\\')) {
                buf_putc(&b, rep[++i]);
            } else {
                buf_putc(&b, rep[i]);
            }
        }
        copied = me;
        if (me > ms) {
            pos = me;
        } else { /* an empty match: keep one byte and move past it */
            if (ms >= len) break;
            buf_putc(&b, s[ms]);
            copied = ms + 1;
            pos = ms + 1;
        }
    }
    if (copied < len) buf_append(&b, s + copied, len - copied);
    return fn_ret_ab(ev, &b, out);
}

FN(regex_extract) {
    UNUSED_ARGS;
    NEED_TEXT("regex_extract", 0, s, len);
    NEED_TEXT("regex_extract", 1, pat, plen);
    pcre2_code *code = re_get(ev, pat, plen, "regex_extract");
    if (!code) return ev->err ? ev->err->code : EC_EINVAL;
    bool ok;
    value arr = v_array_new(ev->a, 4, &ok);
    if (!ok) return fn_oom(ev);
    int rc = re_run(code, s, len, 0);
    if (rc > 1) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re_md);
        for (int g = 1; g < rc; g++) {
            value part = ov[2 * g] == PCRE2_UNSET ? v_bin("", 0)
                                                  : v_bin(s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
            if (!v_array_push(ev->a, &arr, part)) return fn_oom(ev);
        }
    } else if (rc < -1) {
        return sql_fn_fail(ev, "regex_extract: matching failed (%d)", rc);
    }
    *out = arr;
    return EC_OK;
}

FN(ascii) {
    UNUSED_ARGS;
    NEED_TEXT("ascii", 0, s, len);
    if (len == 0) return sql_fn_fail(ev, "ascii: empty string");
    *out = v_int((unsigned char)s[0]);
    return EC_OK;
}

FN(find) {
    NEED_TEXT("find", 0, s, len);
    NEED_TEXT("find", 1, pat, plen);
    bool trailing = false;
    if (n == 3) {
        if (fn_is(&a[2], "trailing"))
            trailing = true;
        else if (!fn_is(&a[2], "leading"))
            return sql_fn_fail(ev, "find: option must be leading or trailing");
    }
    const char *p = find_sub(s, len, pat, plen, trailing);
    *out = p ? v_bin(p, len - (size_t)(p - s)) : v_bin("", 0);
    return EC_OK;
}

FN(rm_prefix) {
    UNUSED_ARGS;
    NEED_TEXT("rm_prefix", 0, s, len);
    NEED_TEXT("rm_prefix", 1, pre, plen);
    if (plen <= len && memcmp(s, pre, plen) == 0)
        *out = v_bin(s + plen, len - plen);
    else
        *out = a[0];
    return EC_OK;
}

FN(join_to_string) {
    const char *sep = ", ";
    size_t slen = 2;
    const value *arr = &a[n - 1];
    if (n == 2 && !fn_text(&a[0], &sep, &slen))
        return fn_badarg(ev, "join_to_string", "a separator string", &a[0]);
    if (arr->type != VT_ARRAY) return fn_badarg(ev, "join_to_string", "an array", arr);
    ec_buf b;
    buf_init_arena(&b, ev->a);
    for (uint32_t i = 0; i < arr->len; i++) {
        if (i) buf_append(&b, sep, slen);
        ec_status st = fn_str_append(ev, &arr->u.items[i], &b, "join_to_string");
        if (st) return st;
    }
    return fn_ret_ab(ev, &b, out);
}

FN(unescape) {
    UNUSED_ARGS;
    NEED_TEXT("unescape", 0, s, len);
    ec_buf b;
    buf_init_arena(&b, ev->a);
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\') {
            buf_putc(&b, s[i]);
            continue;
        }
        if (++i >= len) return sql_fn_fail(ev, "unescape: trailing backslash");
        char c = s[i];
        const char *simple = strchr("ntrbfv'\"\\?a", c);
        if (c && simple) {
            static const char map[] = "\n\t\r\b\f\v'\"\\?\a";
            buf_putc(&b, map[simple - "ntrbfv'\"\\?a"]);
        } else if (c == 'x') {
            uint32_t cp = 0;
            size_t k = i + 1;
            while (k < len && strchr("0123456789abcdefABCDEF", s[k]) && s[k]) {
                if (cp > 0x10FFFF) break;
                cp = cp * 16 + (uint32_t)(s[k] <= '9' ? s[k] - '0' : (s[k] | 32) - 'a' + 10);
                k++;
            }
            if (k == i + 1 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return sql_fn_fail(ev, "unescape: invalid \\x escape");
            char u[4];
            buf_append(&b, u, utf8_put(u, cp));
            i = k - 1;
        } else {
            return sql_fn_fail(ev, "unescape: unknown escape \\%c", c);
        }
    }
    return fn_ret_ab(ev, &b, out);
}

FN(join_to_sql_values_string) {
    UNUSED_ARGS;
    if (a[0].type != VT_ARRAY) return fn_badarg(ev, "join_to_sql_values_string", "an array", &a[0]);
    ec_buf b;
    buf_init_arena(&b, ev->a);
    for (uint32_t i = 0; i < a[0].len; i++) {
        const value *v = &a[0].u.items[i];
        if (i) buf_puts(&b, ", ");
        if (v_is_number(v)) {
            ec_status st = fn_str_append(ev, v, &b, "join_to_sql_values_string");
            if (st) return st;
            continue;
        }
        ec_buf t;
        buf_init_arena(&t, ev->a);
        ec_status st = fn_str_append(ev, v, &t, "join_to_sql_values_string");
        if (st) return st;
        buf_putc(&b, '\'');
        for (size_t k = 0; k < t.len; k++) {
            if (t.p[k] == '\'') buf_putc(&b, '\\');
            buf_putc(&b, t.p[k]);
        }
        buf_putc(&b, '\'');
    }
    return fn_ret_ab(ev, &b, out);
}
