/* tmpl.c - template compile, lookup and rendering; see tmpl.h. */
#include "tmpl.h"

#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "../core/json.h"
#include "../core/text.h"

typedef struct pvec {
    tmpl_part *v;
    uint32_t n, cap;
} pvec;

static bool push_part(tmpl *t, pvec *pv, tmpl_part p) {
    /* merge adjacent literals */
    if (!p.is_var && pv->n && !pv->v[pv->n - 1].is_var &&
        pv->v[pv->n - 1].lit + pv->v[pv->n - 1].len == p.lit) {
        pv->v[pv->n - 1].len += p.len;
        return true;
    }
    if (!p.is_var && p.len == 0) return true;
    if (!ARENA_GROW(&t->a, pv->v, pv->cap, pv->n)) return false;
    pv->v[pv->n++] = p;
    return true;
}

/* name -> path: one leading '.' dropped; "" (after it) = whole context */
static bool make_var(tmpl *t, const char *name, size_t len, tmpl_part *out) {
    memset(out, 0, sizeof *out);
    out->is_var = true;
    if (len && name[0] == '.') name++, len--;
    if (len == 0) return true;
    uint32_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += name[i] == '.';
    out->path = arena_alloc(&t->a, n * sizeof *out->path);
    if (!out->path) return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || name[i] == '.') {
            out->path[out->npath++] = (tmpl_seg){name + start, (uint32_t)(i - start)};
            start = i + 1;
        }
    }
    return true;
}

static bool new_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_';
}

ec_status tmpl_compile(tmpl_syntax syntax, const char *text, size_t len, tmpl **out,
                       ec_error *err) {
    if (len > TMPL_MAX_BYTES)
        return ec_fail(err, EC_ELIMIT, "template of %zu bytes is over the %d-byte limit", len,
                       TMPL_MAX_BYTES);
    tmpl *t = calloc(1, sizeof *t);
    if (!t) return ec_fail(err, EC_ENOMEM, "out of memory compiling template");
    arena_init(&t->a, 1024);
    t->syntax = syntax;
    t->src = arena_strndup(&t->a, text, len);
    t->src_len = len;
    if (!t->src) goto oom;
    const char *s = t->src, *end = s + len;
    pvec pv = {0};
    const char *lit = s;
    while (s < end) {
        if (!(s[0] == '$' && s + 1 < end && s[1] == '{')) {
            s++;
            continue;
        }
        const char *name = s + 2;
        if (syntax == TMPL_LEGACY) {
            const char *close = memchr(name, '}', (size_t)(end - name));
            if (!close) break;   /* unclosed: the rest is literal */
            if (close == name) { /* ${} is literal */
                s = close + 1;
                continue;
            }
            if (!push_part(t, &pv, (tmpl_part){.lit = lit, .len = (uint32_t)(s - lit)})) goto oom;
            tmpl_part v;
            if (!make_var(t, name, (size_t)(close - name), &v) || !push_part(t, &pv, v)) goto oom;
            s = lit = close + 1;
        } else {
            if (name + 2 <= end && name[0] == '$' && name + 1 < end && name[1] == '}') { /* ${$} */
                if (!push_part(t, &pv, (tmpl_part){.lit = lit, .len = (uint32_t)(s - lit)}) ||
                    !push_part(t, &pv, (tmpl_part){.lit = s, .len = 1}))
                    goto oom;
                /* the literal "$" points at s[0]; continue after "${$}" */
                s = lit = name + 2;
                /* break the merge chain: the next literal does not follow "$" */
                continue;
            }
            const char *q = name;
            if (q < end && *q == '.') q++;
            while (q < end && new_name_char(*q))
                q++;
            if (q >= end || *q != '}') { /* not a placeholder: stays literal */
                s += 2;
                continue;
            }
            if (!push_part(t, &pv, (tmpl_part){.lit = lit, .len = (uint32_t)(s - lit)})) goto oom;
            tmpl_part v;
            if (!make_var(t, name, (size_t)(q - name), &v) || !push_part(t, &pv, v)) goto oom;
            s = lit = q + 1;
        }
    }
    if (!push_part(t, &pv, (tmpl_part){.lit = lit, .len = (uint32_t)(end - lit)})) goto oom;
    t->parts = pv.v;
    t->nparts = pv.n;
    *out = t;
    return EC_OK;
oom:
    tmpl_free(t);
    return ec_fail(err, EC_ENOMEM, "out of memory compiling template");
}

void tmpl_free(tmpl *t) {
    if (!t) return;
    arena_free(&t->a);
    free(t);
}

bool tmpl_is_single_var(const tmpl *t) {
    return t->nparts == 1 && t->parts[0].is_var;
}

bool tmpl_is_literal(const tmpl *t) {
    for (uint32_t i = 0; i < t->nparts; i++)
        if (t->parts[i].is_var) return false;
    return true;
}

bool tmpl_lookup_var(const tmpl_part *p, const value *ctx, tmpl_lookup mode, arena *a, value *out) {
    value cur = *ctx;
    bool decoded = false;
    for (uint32_t i = 0; i < p->npath; i++) {
        if (cur.type == VT_BIN && mode != TMPL_PLAIN && !(mode == TMPL_DECODE_ONCE && decoded)) {
            value d;
            if (json_decode(a, cur.u.s, cur.len, NULL, &d, NULL) != EC_OK) return false;
            cur = d;
            decoded = true;
        }
        if (cur.type != VT_MAP) return false;
        const value *v = v_map_get(&cur, p->path[i].s, p->path[i].len);
        if (!v) return false;
        cur = *v;
    }
    if (cur.type == VT_UNDEF) return false;
    *out = cur;
    return true;
}

/* Appends the rendering of t; returns the first placeholder that had no
 * value (NULL when all resolved). Missing values render as "undefined" when
 * undefined_word, else as nothing. */
static const tmpl_part *render(const tmpl *t, const value *ctx, tmpl_lookup mode,
                               bool undefined_word, arena *a, ec_buf *out) {
    const tmpl_part *missing = NULL;
    for (uint32_t i = 0; i < t->nparts; i++) {
        const tmpl_part *p = &t->parts[i];
        if (!p->is_var) {
            buf_append(out, p->lit, p->len);
            continue;
        }
        value v;
        if (!tmpl_lookup_var(p, ctx, mode, a, &v) || !text_append(out, &v, TEXT_UNDEF_EMPTY)) {
            if (undefined_word) buf_puts(out, "undefined");
            if (!missing) missing = p;
        }
    }
    return missing;
}

bool tmpl_render(const tmpl *t, const value *ctx, tmpl_lookup mode, bool undefined_word, arena *a,
                 ec_buf *out) {
    (void)render(t, ctx, mode, undefined_word, a, out);
    return buf_ok(out);
}

bool tmpl_render_ref(const tmpl *t, const value *ctx, tmpl_lookup mode, arena *a, const char **p,
                     size_t *len) {
    if (t->nparts != 1 || !t->parts[0].is_var) return false;
    value v;
    if (!tmpl_lookup_var(&t->parts[0], ctx, mode, a, &v)) { /* missing: "" as render says */
        *p = "";
        *len = 0;
        return true;
    }
    if (v.type != VT_BIN || ((v.flags >> 4) & 7)) return false; /* text rules (or a bit string) */
    *p = v.u.s;
    *len = v.len;
    return true;
}

bool tmpl_render_bytes(const tmpl *t, const value *ctx, arena *a, ec_buf *out, const char **p,
                       size_t *len) {
    if (tmpl_render_ref(t, ctx, TMPL_DECODE_EVERY, a, p, len)) return true;
    if (!tmpl_render(t, ctx, TMPL_DECODE_EVERY, false, a, out)) return false;
    *p = out->p ? out->p : "";
    *len = out->len;
    return true;
}

ec_status tmpl_render_strict(const tmpl *t, const value *ctx, tmpl_lookup mode, arena *a,
                             ec_buf *out, ec_error *err) {
    const tmpl_part *p = render(t, ctx, mode, false, a, out);
    if (p) {
        char name[128];
        size_t k = 0;
        for (uint32_t j = 0; j < p->npath && k < sizeof name - 2; j++) {
            if (j) name[k++] = '.';
            size_t l = p->path[j].len < sizeof name - 2 - k ? p->path[j].len : sizeof name - 2 - k;
            memcpy(name + k, p->path[j].s, l);
            k += l;
        }
        name[k] = '\0';
        return ec_fail(err, EC_EINVAL, "failed_to_render_topic: no value for ${%s}", name);
    }
    return buf_ok(out) ? EC_OK : ec_fail(err, EC_ENOMEM, "out of memory rendering template");
}

/* the rendered integer, or INT64_MIN when it is not one */
static int64_t parse_ts(const tmpl *t, const value *ctx, arena *a) {
    ec_buf b;
    buf_init_arena(&b, a);
    if (!tmpl_render(t, ctx, TMPL_DECODE_EVERY, false, a, &b) || b.len == 0 || b.len > 20)
        return INT64_MIN;
    size_t i = b.p[0] == '-' ? 1 : 0;
    if (i == b.len) return INT64_MIN;
    uint64_t acc = 0;
    for (; i < b.len; i++) {
        unsigned d = (unsigned)(b.p[i] - '0');
        if (d > 9 || acc > (UINT64_MAX - d) / 10) return INT64_MIN;
        acc = acc * 10 + d;
    }
    if (b.p[0] == '-') return acc > (uint64_t)INT64_MAX + 1 ? INT64_MIN : (int64_t)(0 - acc);
    return acc > (uint64_t)INT64_MAX ? INT64_MIN : (int64_t)acc;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tmpl_render_timestamp(const tmpl *t, const value *ctx, arena *a) {
    /* `${timestamp}` holding an integer: what rendering and parsing back
     * would give, without the text round trip */
    value v;
    if (tmpl_is_single_var(t) && tmpl_lookup_var(&t->parts[0], ctx, TMPL_DECODE_EVERY, a, &v) &&
        v.type == VT_INT)
        return v.u.i;
    int64_t r = parse_ts(t, ctx, a);
    return r == INT64_MIN ? wall_ms() : r;
}
