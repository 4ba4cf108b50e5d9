/* json.c - JSON decoder into the arena and EMQX-compatible encoder; see json.h. */
#include "json.h"

#include "utf8.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- numbers ------------------------------------------------------------ */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void c_locale_init(void) {
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* strtod in the C locale whatever the process locale is. */
static double strtod_c(const char *s, char **end) {
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? strtod_l(s, end, c_locale) : strtod(s, end);
}

/* Correctly rounded p-digit form of d (> 0): digits into dig, returns count,
 * decimal exponent of the first digit into *e10. */
static int digits_at(double d, int p, char *dig, int *e10) {
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
    int n = 0;
    const char *s = tmp;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') dig[n++] = *s;
    *e10 = *s == 'e' ? atoi(s + 1) : 0;
    return n;
}

static bool round_trips(double d, const char *dig, int n, int e10) {
    char tmp[48];
    int k = 0;
    tmp[k++] = dig[0];
    tmp[k++] = '.';
    for (int i = 1; i < n; i++)
        tmp[k++] = dig[i];
    snprintf(tmp + k, sizeof tmp - (size_t)k, "e%d", e10);
    return strtod_c(tmp, NULL) == d;
}

size_t json_fmt_double(double d, char *buf) {
    if (!isfinite(d)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    size_t k = 0;
    if (d == 0) { /* UNIQUE_ZERO: -0.0 prints as 0.0 */
        memcpy(buf, "0.0", 4);
        return 3;
    }
    if (d < 0) {
        buf[k++] = '-';
        d = -d;
    }
    /* Fewest digits that read back as d: more digits never stop round-tripping,
     * so binary search over 1..17. */
    char dig[20];
    int lo = 1, hi = 17, n = 0, e10 = 0;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int m = digits_at(d, mid, dig, &e10);
        if (round_trips(d, dig, m, e10))
            hi = mid;
        else
            lo = mid + 1;
    }
    n = digits_at(d, lo, dig, &e10);
    while (n > 1 && dig[n - 1] == '0')
        n--; /* %e pads with zeros */

    int point = e10 + 1; /* digits before the decimal point */
    if (e10 >= -6 && e10 < 21) {
        if (point <= 0) {
            buf[k++] = '0';
            buf[k++] = '.';
            for (int i = 0; i < -point; i++)
                buf[k++] = '0';
            memcpy(buf + k, dig, (size_t)n);
            k += (size_t)n;
        } else if (point >= n) {
            memcpy(buf + k, dig, (size_t)n);
            k += (size_t)n;
            for (int i = n; i < point; i++)
                buf[k++] = '0';
            buf[k++] = '.';
            buf[k++] = '0';
        } else {
            memcpy(buf + k, dig, (size_t)point);
            k += (size_t)point;
            buf[k++] = '.';
            memcpy(buf + k, dig + point, (size_t)(n - point));
            k += (size_t)(n - point);
        }
    } else {
        buf[k++] = dig[0];
        if (n > 1) {
            buf[k++] = '.';
            memcpy(buf + k, dig + 1, (size_t)(n - 1));
            k += (size_t)(n - 1);
        }
        k += (size_t)snprintf(buf + k, JSON_DOUBLE_MAX_CHARS - k, "e%c%d", e10 < 0 ? '-' : '+',
                              e10 < 0 ? -e10 : e10);
    }
    buf[k] = '\0';
    return k;
}

size_t json_fmt_int(int64_t i, char *buf) {
    char tmp[21];
    size_t n = 0, k = 0;
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (i < 0) buf[k++] = '-';
    while (n)
        buf[k++] = tmp[--n];
    buf[k] = '\0';
    return k;
}

/* ---- decoder ------------------------------------------------------------ */

typedef struct jdec {
    arena *a;
    const char *text;
    const char *p;
    const char *end;
    unsigned max_depth;
    ec_error *err;
} jdec;

static ec_status dec_fail(jdec *d, const char *at, const char *what) {
    if (at >= d->end)
        return ec_fail_at(d->err, EC_EPARSE, d->text, (size_t)(d->end - d->text),
                          "unexpected end of JSON input, expected %s", what);
    unsigned char c = (unsigned char)*at;
    if (c >= 0x20 && c < 0x7F)
        return ec_fail_at(d->err, EC_EPARSE, d->text, (size_t)(at - d->text),
                          "unexpected '%c' at byte %zu, expected %s", c, (size_t)(at - d->text),
                          what);
    return ec_fail_at(d->err, EC_EPARSE, d->text, (size_t)(at - d->text),
                      "unexpected byte 0x%02X at byte %zu, expected %s", c, (size_t)(at - d->text),
                      what);
}

static inline void skip_ws(jdec *d) {
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

static ec_status oom(jdec *d) {
    return ec_fail(d->err, EC_ENOMEM, "out of memory decoding JSON");
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(const char *s, const char *end, unsigned *out) {
    if (end - s < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return false;
        v = (v << 4) | (unsigned)h;
    }
    *out = v;
    return true;
}

static ec_status dec_string(jdec *d, value *out) {
    const char *start = ++d->p; /* after the quote */
    const char *s = start;
    bool escaped = false;
    /* first pass: find the end, validate UTF-8, note escapes */
    while (s < d->end) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') break;
        if (c == '\\') {
            escaped = true;
            s += 2;
            continue;
        }
        if (c < 0x20)
            return dec_fail(d, s, "a string character (control characters must be escaped)");
        if (c < 0x80) {
            s++;
            continue;
        }
        uint32_t cp;
        int n = utf8_decode((const unsigned char *)s, (size_t)(d->end - s), &cp);
        if (!n)
            return ec_fail_at(d->err, EC_EPARSE, d->text, (size_t)(s - d->text),
                              "invalid UTF-8 in string at byte %zu", (size_t)(s - d->text));
        s += n;
    }
    if (s >= d->end) return dec_fail(d, d->end, "'\"' closing the string");
    if (!escaped) {
        *out = v_bin(start, (size_t)(s - start));
        d->p = s + 1;
        return EC_OK;
    }
    /* second pass: unescape into the arena (output never longer than input) */
    char *o = arena_alloc(d->a, (size_t)(s - start) + 1);
    if (!o) return oom(d);
    size_t k = 0;
    const char *q = start;
    while (q < s) {
        if (*q != '\\') {
            o[k++] = *q++;
            continue;
        }
        q++;
        char e = *q++;
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!read_hex4(q, s, &cp)) return dec_fail(d, q, "four hex digits after \\u");
            q += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (s - q >= 6 && q[0] == '\\' && q[1] == 'u' && read_hex4(q + 2, s, &lo) &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    q += 6;
                } else {
                    return dec_fail(d, q, "a low surrogate \\uDC00-\\uDFFF after a high surrogate");
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return dec_fail(d, q - 6, "a high surrogate before a low surrogate");
            }
            k += utf8_put(o + k, cp);
            break;
        }
        default:
            return dec_fail(d, q - 1, "a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
        }
    }
    *out = v_bin(o, k);
    d->p = s + 1;
    return EC_OK;
}

static ec_status dec_number(jdec *d, value *out) {
    const char *s = d->p, *q = s;
    bool is_float = false;
    if (q < d->end && *q == '-') q++;
    if (q >= d->end || *q < '0' || *q > '9') return dec_fail(d, q, "a digit");
    if (*q == '0')
        q++;
    else
        while (q < d->end && *q >= '0' && *q <= '9')
            q++;
    if (q < d->end && *q == '.') {
        is_float = true;
        q++;
        if (q >= d->end || *q < '0' || *q > '9') return dec_fail(d, q, "a digit after '.'");
        while (q < d->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < d->end && (*q == 'e' || *q == 'E')) {
        is_float = true;
        q++;
        if (q < d->end && (*q == '+' || *q == '-')) q++;
        if (q >= d->end || *q < '0' || *q > '9') return dec_fail(d, q, "a digit in the exponent");
        while (q < d->end && *q >= '0' && *q <= '9')
            q++;
    }
    size_t n = (size_t)(q - s);
    if (!is_float) {
        /* exact int64 when it fits; otherwise fall through to double */
        bool neg = *s == '-';
        uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        bool fits = true;
        for (const char *c = s + neg; c < q; c++) {
            unsigned dgt = (unsigned)(*c - '0');
            if (acc > (lim - dgt) / 10) {
                fits = false;
                break;
            }
            acc = acc * 10 + dgt;
        }
        if (fits) {
            *out = v_int(neg ? (int64_t)(0 - acc) : (int64_t)acc);
            d->p = q;
            return EC_OK;
        }
    }
    char small[64];
    char *tmp = n < sizeof small ? small : arena_alloc(d->a, n + 1);
    if (!tmp) return oom(d);
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double f = strtod_c(tmp, NULL);
    if (!isfinite(f))
        return ec_fail_at(d->err, EC_EPARSE, d->text, (size_t)(s - d->text),
                          "number out of range at byte %zu", (size_t)(s - d->text));
    *out = v_float(f);
    d->p = q;
    return EC_OK;
}

static int key_cmp(const void *x, const void *y);

/* Keeps the last of duplicate keys (jiffy map semantics). */
static ec_status dedupe_keys(jdec *d, value *map) {
    uint32_t n = map->len;
    if (n < 2) return EC_OK;
    vpair *pairs = map->u.pairs;
    bool dup = false;
    if (n <= 16) {
        for (uint32_t i = 1; i < n && !dup; i++)
            for (uint32_t j = 0; j < i; j++)
                if (pairs[i].key.len == pairs[j].key.len &&
                    memcmp(pairs[i].key.u.s, pairs[j].key.u.s, pairs[i].key.len) == 0) {
                    dup = true;
                    break;
                }
    } else {
        const vpair **idx = arena_alloc(d->a, sizeof *idx * n);
        if (!idx) return oom(d);
        for (uint32_t i = 0; i < n; i++)
            idx[i] = &pairs[i];
        qsort(idx, n, sizeof *idx, key_cmp);
        for (uint32_t i = 1; i < n; i++)
            if (key_cmp(&idx[i - 1], &idx[i]) == 0) {
                dup = true;
                break;
            }
    }
    if (!dup) return EC_OK;
    /* rare: rebuild keeping each key at its first position with its last value */
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j;
        for (j = 0; j < k; j++)
            if (pairs[j].key.len == pairs[i].key.len &&
                memcmp(pairs[j].key.u.s, pairs[i].key.u.s, pairs[i].key.len) == 0)
                break;
        if (j < k)
            pairs[j].val = pairs[i].val;
        else
            pairs[k++] = pairs[i];
    }
    map->len = k;
    return EC_OK;
}

static ec_status dec_value(jdec *d, value *out, unsigned depth);

static ec_status dec_array(jdec *d, value *out, unsigned depth) {
    bool ok;
    d->p++;
    *out = v_array_new(d->a, 4, &ok);
    if (!ok) return oom(d);
    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        return EC_OK;
    }
    for (;;) {
        value item;
        ec_status st = dec_value(d, &item, depth + 1);
        if (st) return st;
        if (!v_array_push(d->a, out, item)) return oom(d);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            return EC_OK;
        }
        return dec_fail(d, d->p, "',' or ']'");
    }
}

static ec_status dec_object(jdec *d, value *out, unsigned depth) {
    bool ok;
    d->p++;
    *out = v_map_new(d->a, 4, &ok);
    if (!ok) return oom(d);
    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        return EC_OK;
    }
    for (;;) {
        skip_ws(d);
        if (d->p >= d->end || *d->p != '"') return dec_fail(d, d->p, "a string key");
        value key, val;
        ec_status st = dec_string(d, &key);
        if (st) return st;
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':') return dec_fail(d, d->p, "':'");
        d->p++;
        st = dec_value(d, &val, depth + 1);
        if (st) return st;
        if (!v_map_append(d->a, out, key, val)) return oom(d);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            return dedupe_keys(d, out);
        }
        return dec_fail(d, d->p, "',' or '}'");
    }
}

static bool match_word(jdec *d, const char *w, size_t n) {
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, w, n) != 0) return false;
    d->p += n;
    return true;
}

static ec_status dec_value(jdec *d, value *out, unsigned depth) {
    skip_ws(d);
    if (d->p >= d->end) return dec_fail(d, d->p, "a JSON value");
    switch (*d->p) {
    case '{':
    case '[':
        if (depth >= d->max_depth)
            return ec_fail_at(d->err, EC_ELIMIT, d->text, (size_t)(d->p - d->text),
                              "JSON nested deeper than %u levels at byte %zu", d->max_depth,
                              (size_t)(d->p - d->text));
        return *d->p == '{' ? dec_object(d, out, depth) : dec_array(d, out, depth);
    case '"': return dec_string(d, out);
    case 't':
        if (match_word(d, "true", 4)) {
            *out = v_bool(true);
            return EC_OK;
        }
        break;
    case 'f':
        if (match_word(d, "false", 5)) {
            *out = v_bool(false);
            return EC_OK;
        }
        break;
    case 'n':
        if (match_word(d, "null", 4)) {
            *out = v_null();
            return EC_OK;
        }
        break;
    default:
        if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return dec_number(d, out);
    }
    return dec_fail(d, d->p, "a JSON value");
}

ec_status json_decode(arena *a, const char *text, size_t len, const json_limits *limits, value *out,
                      ec_error *err) {
    size_t max_bytes = limits && limits->max_bytes ? limits->max_bytes : JSON_MAX_BYTES;
    if (len > max_bytes)
        return ec_fail(err, EC_ELIMIT, "JSON document of %zu bytes is over the %zu-byte limit", len,
                       max_bytes);
    jdec d = {.a = a,
              .text = text,
              .p = text,
              .end = text + len,
              .max_depth = limits && limits->max_depth ? limits->max_depth : JSON_MAX_DEPTH,
              .err = err};
    ec_status st = dec_value(&d, out, 0);
    if (st) return st;
    skip_ws(&d);
    if (d.p != d.end) return dec_fail(&d, d.p, "end of input after the JSON value");
    return EC_OK;
}

/* ---- encoder ------------------------------------------------------------ */

void json_encode_string(const char *s, size_t len, ec_buf *out) {
    static const char hex[] = "0123456789abcdef";
    if (!buf_reserve(out, len + 2)) return;
    buf_putc(out, '"');
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    const unsigned char *run = p; /* start of bytes to copy verbatim */
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            p++;
            continue;
        }
        uint32_t cp;
        int n = c >= 0x80 ? utf8_decode(p, (size_t)(end - p), &cp) : 0;
        if (n) {
            p += n;
            continue;
        }
        buf_append(out, run, (size_t)(p - run));
        switch (c) {
        case '"': buf_append(out, "\\\"", 2); break;
        case '\\': buf_append(out, "\\\\", 2); break;
        case '\b': buf_append(out, "\\b", 2); break;
        case '\f': buf_append(out, "\\f", 2); break;
        case '\n': buf_append(out, "\\n", 2); break;
        case '\r': buf_append(out, "\\r", 2); break;
        case '\t': buf_append(out, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_append(out, u, 6);
            } else {
                buf_append(out, "\xEF\xBF\xBD", 3); /* invalid UTF-8 byte -> U+FFFD */
            }
        }
        p++;
        run = p;
    }
    buf_append(out, run, (size_t)(p - run));
    buf_putc(out, '"');
}

/* Erlang term order of map keys: atoms < binaries; within a kind, bytes. */
static int key_order(const value *x, const value *y) {
    int xa = x->flags & VF_ATOM, ya = y->flags & VF_ATOM;
    if (xa != ya) return xa ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->u.s, y->u.s, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int key_cmp(const void *x, const void *y) {
    const vpair *a = *(const vpair *const *)x, *b = *(const vpair *const *)y;
    size_t n = a->key.len < b->key.len ? a->key.len : b->key.len;
    int c = memcmp(a->key.u.s, b->key.u.s, n);
    if (c) return c;
    return a->key.len < b->key.len ? -1 : a->key.len > b->key.len;
}

static bool enc_value(const value *v, ec_buf *out, unsigned depth);

static bool enc_map(const value *v, ec_buf *out, unsigned depth) {
    uint32_t n = v->len;
    buf_putc(out, '{');
    if (n <= JSON_SMALL_MAP_KEYS) {
        /* descending Erlang key order: insertion sort of at most 32 indexes */
        uint8_t idx[JSON_SMALL_MAP_KEYS];
        for (uint32_t i = 0; i < n; i++) {
            uint32_t j = i;
            while (j > 0 && key_order(&v->u.pairs[idx[j - 1]].key, &v->u.pairs[i].key) < 0) {
                idx[j] = idx[j - 1];
                j--;
            }
            idx[j] = (uint8_t)i;
        }
        for (uint32_t i = 0; i < n; i++) {
            const vpair *p = &v->u.pairs[idx[i]];
            if (i) buf_putc(out, ',');
            json_encode_string(p->key.u.s, p->key.len, out);
            buf_putc(out, ':');
            if (!enc_value(&p->val, out, depth + 1)) return false;
        }
    } else {
        for (uint32_t i = 0; i < n; i++) {
            const vpair *p = &v->u.pairs[i];
            if (i) buf_putc(out, ',');
            json_encode_string(p->key.u.s, p->key.len, out);
            buf_putc(out, ':');
            if (!enc_value(&p->val, out, depth + 1)) return false;
        }
    }
    buf_putc(out, '}');
    return true;
}

static bool enc_value(const value *v, ec_buf *out, unsigned depth) {
    if (depth > 2 * JSON_MAX_DEPTH) return false;
    char tmp[JSON_DOUBLE_MAX_CHARS];
    switch ((vtype)v->type) {
    case VT_UNDEF: buf_append(out, "\"undefined\"", 11); break;
    case VT_NULL: buf_append(out, "null", 4); break;
    case VT_BOOL: v->u.b ? buf_append(out, "true", 4) : buf_append(out, "false", 5); break;
    case VT_INT: buf_append(out, tmp, json_fmt_int(v->u.i, tmp)); break;
    case VT_FLOAT: buf_append(out, tmp, json_fmt_double(v->u.f, tmp)); break;
    case VT_BIN: json_encode_string(v->u.s, v->len, out); break;
    case VT_ARRAY:
        buf_putc(out, '[');
        for (uint32_t i = 0; i < v->len; i++) {
            if (i) buf_putc(out, ',');
            if (!enc_value(&v->u.items[i], out, depth + 1)) return false;
        }
        buf_putc(out, ']');
        break;
    case VT_MAP:
        if (!enc_map(v, out, depth)) return false;
        break;
    }
    return buf_ok(out);
}

bool json_encode(const value *v, ec_buf *out) {
    return enc_value(v, out, 0);
}
