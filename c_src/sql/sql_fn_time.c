/* sql_fn_time.c - date and time, UUID and environment functions
 * (rule-functions §11-12). Local offsets come from the host zone (TZ). */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sql_fn.h"

typedef enum { U_S = 0, U_MS, U_US, U_NS } tunit;
static const int64_t per_sec[] = {1, 1000, 1000000, 1000000000};

static bool get_unit(const value *v, tunit *u) {
    if (fn_is(v, "second"))
        *u = U_S;
    else if (fn_is(v, "millisecond"))
        *u = U_MS;
    else if (fn_is(v, "microsecond"))
        *u = U_US;
    else if (fn_is(v, "nanosecond"))
        *u = U_NS;
    else
        return false;
    return true;
}
#define NEED_UNIT(fname, i, u)                                                                     \
    tunit u;                                                                                       \
    if (!get_unit(&a[i], &u))                                                                      \
    return sql_fn_fail(ev, "%s: the unit must be second, millisecond, microsecond or nanosecond",  \
                       fname)

/* days since 1970-01-01 of a civil date (proleptic Gregorian) */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool valid_date(int64_t y, int m, int d) {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= mdays[m - 1] + (m == 2 && leap);
}

static int64_t floor_div(int64_t a, int64_t b) {
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

static int64_t local_offset(int64_t secs) {
    time_t t = (time_t)secs;
    struct tm tm;
    if (!localtime_r(&t, &tm)) return 0;
    return tm.tm_gmtoff;
}

/* offset syntax: Z z +hh +hh:mm +hh:mm:ss +hhmm +hhmmss local, or integer seconds */
#define MAX_OFFSET_SECS (366 * 86400)   /* larger offsets are refused as invalid */
#define MAX_ABS_SECS    1000000000000LL /* about +-31,000 years around 1970 */

static bool parse_offset(const value *v, int64_t at_secs, int64_t *out) {
    if (v->type == VT_INT) {
        if (v->u.i > MAX_OFFSET_SECS || v->u.i < -MAX_OFFSET_SECS) return false;
        *out = v->u.i;
        return true;
    }
    if (v->type == VT_UNDEF) {
        *out = 0;
        return true;
    }
    if (v->type != VT_BIN) return false;
    const char *s = v->u.s;
    size_t n = v->len;
    if (n == 1 && (s[0] == 'Z' || s[0] == 'z')) return (*out = 0, true);
    if (n == 5 && memcmp(s, "local", 5) == 0) return (*out = local_offset(at_secs), true);
    if (n < 3 || (s[0] != '+' && s[0] != '-')) return false;
    int parts[3] = {0, 0, 0}, np = 0;
    size_t i = 1;
    while (i < n && np < 3) {
        if (i + 1 >= n + 0 && !(i + 2 <= n)) return false;
        if (i + 2 > n || s[i] < '0' || s[i] > '9' || s[i + 1] < '0' || s[i + 1] > '9') return false;
        parts[np++] = (s[i] - '0') * 10 + (s[i + 1] - '0');
        i += 2;
        if (i < n && s[i] == ':') i++;
    }
    if (i != n) return false;
    if (parts[1] > 59 || parts[2] > 59) return false;
    int64_t secs = parts[0] * 3600 + parts[1] * 60 + parts[2];
    *out = s[0] == '-' ? -secs : secs;
    return true;
}

static void put_offset(ec_buf *b, int64_t off, int colons) {
    char tmp[16];
    int64_t a = off < 0 ? -off : off;
    int k;
    if (colons == 0)
        k = snprintf(tmp, sizeof tmp, "%c%02d%02d", off < 0 ? '-' : '+', (int)(a / 3600),
                     (int)(a / 60 % 60));
    else if (colons == 1)
        k = snprintf(tmp, sizeof tmp, "%c%02d:%02d", off < 0 ? '-' : '+', (int)(a / 3600),
                     (int)(a / 60 % 60));
    else
        k = snprintf(tmp, sizeof tmp, "%c%02d:%02d:%02d", off < 0 ? '-' : '+', (int)(a / 3600),
                     (int)(a / 60 % 60), (int)(a % 60));
    buf_append(b, tmp, (size_t)k);
}

static int64_t now_in(tunit u) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * per_sec[u] + (int64_t)ts.tv_nsec / (1000000000 / per_sec[u]);
}

/* formats ts (in unit u) shifted by off seconds with EMQX's directives */
static ec_status format_ts(sql_eval *ev, int64_t ts, tunit u, int64_t off, const char *fmt,
                           size_t flen, value *out) {
    int64_t secs = floor_div(ts, per_sec[u]);
    if (secs > MAX_ABS_SECS || secs < -MAX_ABS_SECS)
        return sql_fn_fail(ev, "timestamp out of range");
    int64_t frac_ns = (ts - secs * per_sec[u]) * (1000000000 / per_sec[u]);
    int64_t local = secs + off;
    int64_t days = floor_div(local, 86400), sod = local - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    ec_buf b;
    buf_init_arena(&b, ev->a);
    char tmp[32];
    for (size_t i = 0; i < flen; i++) {
        if (fmt[i] != '%' || i + 1 >= flen) {
            buf_putc(&b, fmt[i]);
            continue;
        }
        const char *p = fmt + i + 1;
        size_t rest = flen - i - 1;
        int k = -1;
        if (*p == 'Y')
            k = snprintf(tmp, sizeof tmp, "%04lld", (long long)y), i += 1;
        else if (*p == 'm')
            k = snprintf(tmp, sizeof tmp, "%02d", m), i += 1;
        else if (*p == 'd')
            k = snprintf(tmp, sizeof tmp, "%02d", d), i += 1;
        else if (*p == 'H')
            k = snprintf(tmp, sizeof tmp, "%02d", (int)(sod / 3600)), i += 1;
        else if (*p == 'M')
            k = snprintf(tmp, sizeof tmp, "%02d", (int)(sod / 60 % 60)), i += 1;
        else if (*p == 'S')
            k = snprintf(tmp, sizeof tmp, "%02d", (int)(sod % 60)), i += 1;
        else if (*p == 'N')
            k = snprintf(tmp, sizeof tmp, "%09lld", (long long)frac_ns), i += 1;
        else if (rest >= 2 && p[0] == '6' && p[1] == 'N')
            k = snprintf(tmp, sizeof tmp, "%06lld", (long long)(frac_ns / 1000)), i += 2;
        else if (rest >= 2 && p[0] == '3' && p[1] == 'N')
            k = snprintf(tmp, sizeof tmp, "%03lld", (long long)(frac_ns / 1000000)), i += 2;
        else if (*p == 'z')
            put_offset(&b, off, 0), i += 1;
        else if (rest >= 2 && p[0] == ':' && p[1] == 'z')
            put_offset(&b, off, 1), i += 2;
        else if (rest >= 3 && p[0] == ':' && p[1] == ':' && p[2] == 'z')
            put_offset(&b, off, 2), i += 3;
        else {
            buf_putc(&b, '%');
            continue;
        }
        if (k > 0) buf_append(&b, tmp, (size_t)k);
    }
    return fn_ret_ab(ev, &b, out);
}

static ec_status rfc3339(sql_eval *ev, int64_t ts, tunit u, value *out) {
    static const char *const fmts[] = {"%Y-%m-%dT%H:%M:%S%:z", "%Y-%m-%dT%H:%M:%S.%3N%:z",
                                       "%Y-%m-%dT%H:%M:%S.%6N%:z", "%Y-%m-%dT%H:%M:%S.%N%:z"};
    int64_t off = local_offset(floor_div(ts, per_sec[u]));
    return format_ts(ev, ts, u, off, fmts[u], strlen(fmts[u]), out);
}

FN(now_timestamp) {
    tunit u = U_S;
    if (n == 1 && !get_unit(&a[0], &u)) return sql_fn_fail(ev, "now_timestamp: invalid unit");
    *out = v_int(now_in(u));
    return EC_OK;
}

FN(now_rfc3339) {
    tunit u = U_S;
    if (n == 1 && !get_unit(&a[0], &u)) return sql_fn_fail(ev, "now_rfc3339: invalid unit");
    return rfc3339(ev, now_in(u), u, out);
}

FN(unix_ts_to_rfc3339) {
    NEED_INT("unix_ts_to_rfc3339", 0, ts);
    tunit u = U_S;
    if (n == 2 && !get_unit(&a[1], &u)) return sql_fn_fail(ev, "unix_ts_to_rfc3339: invalid unit");
    return rfc3339(ev, ts, u, out);
}

static bool digits(const char *s, size_t n, size_t at, int count, int64_t *out) {
    if (at + (size_t)count > n) return false;
    int64_t v = 0;
    for (int i = 0; i < count; i++) {
        char c = s[at + (size_t)i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

/* seconds + fraction -> unit; false when it does not fit in 64 bits */
static bool to_unit(int64_t secs, int64_t frac_ns, tunit u, int64_t *out) {
    int64_t r;
    if (__builtin_mul_overflow(secs, per_sec[u], &r) ||
        __builtin_add_overflow(r, frac_ns / (1000000000 / per_sec[u]), &r))
        return false;
    *out = r;
    return true;
}

FN(rfc3339_to_unix_ts) {
    NEED_TEXT("rfc3339_to_unix_ts", 0, s, len);
    tunit u = U_S;
    if (n == 2 && !get_unit(&a[1], &u)) return sql_fn_fail(ev, "rfc3339_to_unix_ts: invalid unit");
    int64_t y, mo, d, h, mi, se, frac = 0;
    size_t i = 0;
    if (!digits(s, len, 0, 4, &y) || len < 19 || s[4] != '-' || !digits(s, len, 5, 2, &mo) ||
        s[7] != '-' || !digits(s, len, 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, len, 11, 2, &h) ||
        s[13] != ':' || !digits(s, len, 14, 2, &mi) || s[16] != ':' || !digits(s, len, 17, 2, &se))
        goto bad;
    i = 19;
    if (i < len && s[i] == '.') {
        i++;
        int nd = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nd < 9) frac = frac * 10 + (s[i] - '0'), nd++;
            i++;
        }
        if (!nd) goto bad;
        while (nd++ < 9)
            frac *= 10;
    }
    if (i >= len) goto bad; /* the offset is required */
    int64_t off;
    if (!parse_offset(&(value){.type = VT_BIN, .u.s = s + i, .len = (uint32_t)(len - i)}, 0,
                      &off) ||
        (len - i == 5 && memcmp(s + i, "local", 5) == 0))
        goto bad;
    if (!valid_date(y, (int)mo, (int)d) || h > 23 || mi > 59 || se > 60) goto bad;
    int64_t secs = days_from_civil(y, (int)mo, (int)d) * 86400 + h * 3600 + mi * 60 + se - off, r;
    if (!to_unit(secs, frac, u, &r))
        return sql_fn_fail(ev, "rfc3339_to_unix_ts: result out of range");
    *out = v_int(r);
    return EC_OK;
bad:
    return sql_fn_fail(ev, "rfc3339_to_unix_ts: invalid RFC 3339 time '%.*s'",
                       (int)(len > 60 ? 60 : len), s);
}

FN(format_date) {
    NEED_UNIT("format_date", 0, u);
    NEED_TEXT("format_date", 2, fmt, flen);
    int64_t ts = now_in(u);
    if (n == 4) {
        NEED_INT("format_date", 3, t);
        ts = t;
    }
    int64_t off;
    if (!parse_offset(&a[1], floor_div(ts, per_sec[u]), &off))
        return sql_fn_fail(ev, "format_date: invalid offset");
    return format_ts(ev, ts, u, off, fmt, flen, out);
}

FN(date_to_unix_ts) {
    NEED_UNIT("date_to_unix_ts", 0, u);
    uint32_t fi = n == 4 ? 2 : 1;
    NEED_TEXT("date_to_unix_ts", fi, fmt, flen);
    NEED_TEXT("date_to_unix_ts", fi + 1, s, len);
    int64_t extra_off = 0;
    if (n == 4 && !parse_offset(&a[1], 0, &extra_off))
        return sql_fn_fail(ev, "date_to_unix_ts: invalid offset");
    int64_t f[6] = {0, 0, 0, 0, 0, 0}; /* Y m d H M S */
    bool have[6] = {false};
    int64_t frac = 0, off = 0;
    size_t i = 0;
    for (size_t k = 0; k < flen; k++) {
        if (fmt[k] != '%' || k + 1 >= flen) { /* a literal: one separator of the input */
            if (i >= len) return sql_fn_fail(ev, "date_to_unix_ts: input shorter than the format");
            if (s[i] >= '0' && s[i] <= '9' && s[i] != fmt[k])
                return sql_fn_fail(ev, "date_to_unix_ts: input does not match the format");
            i++;
            continue;
        }
        const char *p = fmt + k + 1;
        size_t rest = flen - k - 1;
        int idx = -1, width = 2, fd = 0;
        if (*p == 'Y')
            idx = 0, width = 4;
        else if (*p == 'm')
            idx = 1;
        else if (*p == 'd')
            idx = 2;
        else if (*p == 'H')
            idx = 3;
        else if (*p == 'M')
            idx = 4;
        else if (*p == 'S')
            idx = 5;
        else if (*p == 'N')
            fd = 9;
        else if (rest >= 2 && p[0] == '6' && p[1] == 'N')
            fd = 6, k++;
        else if (rest >= 2 && p[0] == '3' && p[1] == 'N')
            fd = 3, k++;
        if (idx >= 0) {
            if (!digits(s, len, i, width, &f[idx]))
                return sql_fn_fail(ev, "date_to_unix_ts: cannot read %%%c at position %zu", *p, i);
            have[idx] = true;
            i += (size_t)width;
            k++;
        } else if (fd) {
            int64_t v;
            if (!digits(s, len, i, fd, &v))
                return sql_fn_fail(ev, "date_to_unix_ts: cannot read fraction");
            for (int z = fd; z < 9; z++)
                v *= 10;
            frac = v;
            i += (size_t)fd;
            k++;
        } else if (*p == 'z' || (rest >= 2 && p[0] == ':' && p[1] == 'z') ||
                   (rest >= 3 && p[0] == ':' && p[1] == ':' && p[2] == 'z')) {
            size_t zl = *p == 'z' ? 5 : p[1] == 'z' ? 6 : 9;
            if (i < len && (s[i] == 'Z' || s[i] == 'z')) zl = 1;
            if (i + zl > len ||
                !parse_offset(&(value){.type = VT_BIN, .u.s = s + i, .len = (uint32_t)zl}, 0, &off))
                return sql_fn_fail(ev, "date_to_unix_ts: cannot read the zone offset");
            i += zl;
            k += *p == 'z' ? 1 : p[1] == 'z' ? 2 : 3;
        } else {
            return sql_fn_fail(ev, "date_to_unix_ts: unsupported directive %%%c", *p);
        }
    }
    static const char *const names[] = {"year", "month", "day", "hour", "minute", "second"};
    for (int z = 0; z < 6; z++)
        if (!have[z]) return sql_fn_fail(ev, "date_to_unix_ts: missing_date_part %s", names[z]);
    if (!valid_date(f[0], (int)f[1], (int)f[2]) || f[3] > 23 || f[4] > 59 || f[5] > 60)
        return sql_fn_fail(ev, "date_to_unix_ts: invalid date");
    int64_t secs = days_from_civil(f[0], (int)f[1], (int)f[2]) * 86400 + f[3] * 3600 + f[4] * 60 +
                   f[5] - off - extra_off,
            r;
    if (!to_unit(secs, frac, u, &r)) return sql_fn_fail(ev, "date_to_unix_ts: result out of range");
    *out = v_int(r);
    return EC_OK;
}

FN(timezone_to_offset_seconds) {
    UNUSED_ARGS;
    int64_t off;
    if (!parse_offset(&a[0], time(NULL), &off))
        return sql_fn_fail(ev, "timezone_to_offset_seconds: invalid offset");
    *out = v_int(off);
    return EC_OK;
}

static ec_status uuid(sql_eval *ev, bool hyphens, value *out) {
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) return sql_fn_fail(ev, "uuid_v4: no randomness available");
    r[6] = (unsigned char)((r[6] & 0x0F) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3F) | 0x80);
    static const char hx[] = "0123456789abcdef";
    char *o = arena_alloc(ev->a, 36);
    if (!o) return fn_oom(ev);
    size_t k = 0;
    for (int i = 0; i < 16; i++) {
        if (hyphens && (i == 4 || i == 6 || i == 8 || i == 10)) o[k++] = '-';
        o[k++] = hx[r[i] >> 4];
        o[k++] = hx[r[i] & 15];
    }
    *out = v_bin(o, k);
    return EC_OK;
}

FN(uuid_v4) {
    UNUSED_ARGS;
    return uuid(ev, true, out);
}
FN(uuid_v4_no_hyphen) {
    UNUSED_ARGS;
    return uuid(ev, false, out);
}

FN(getenv) {
    UNUSED_ARGS;
    NEED_TEXT("getenv", 0, name, len);
    char key[256];
    if (len > sizeof key - 9) return sql_fn_fail(ev, "getenv: name too long");
    memcpy(key, "EMQXVAR_", 8);
    memcpy(key + 8, name, len);
    key[8 + len] = '\0';
    const char *v = getenv(key);
    return v ? fn_ret_bin(ev, v, strlen(v), out) : (*out = v_bin("", 0), EC_OK);
}
