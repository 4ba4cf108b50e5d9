/* kheaders.c - Kafka headers; see kheaders.h. */
#include "kheaders.h"

#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../core/text.h"

ec_status kh_compile(const char *headers, size_t hlen, const char *const *ext,
                     const size_t *ext_len, uint32_t next, bool json_mode, kh_spec **out,
                     ec_error *err) {
    kh_spec *s = calloc(1, sizeof *s);
    if (!s) return ec_fail(err, EC_ENOMEM, "out of memory compiling headers");
    s->json_mode = json_mode;
    ec_status st;
    if (headers && hlen) {
        if ((st = tmpl_compile(TMPL_LEGACY, headers, hlen, &s->headers, err))) goto fail;
        if (!tmpl_is_single_var(s->headers)) {
            st = ec_fail(err, EC_EINVAL,
                         "kafka_headers: must be a single placeholder such as ${pub_props}");
            goto fail;
        }
    }
    if (next) {
        s->ext = calloc(next, sizeof *s->ext);
        if (!s->ext) {
            st = ec_fail(err, EC_ENOMEM, "out of memory compiling headers");
            goto fail;
        }
    }
    for (uint32_t i = 0; i < next; i++) {
        s->next = i + 1;
        if ((st = tmpl_compile(TMPL_LEGACY, ext[2 * i], ext_len[2 * i], &s->ext[i].key, err)))
            goto fail;
        if ((st = tmpl_compile(TMPL_LEGACY, ext[2 * i + 1], ext_len[2 * i + 1], &s->ext[i].val,
                               err)))
            goto fail;
        if (!tmpl_is_single_var(s->ext[i].val) && !tmpl_is_literal(s->ext[i].val)) {
            st = ec_fail(err, EC_EINVAL,
                         "kafka_ext_headers[%u].kafka_ext_header_value: must be a single "
                         "placeholder or plain text",
                         i + 1);
            goto fail;
        }
    }
    *out = s;
    return EC_OK;
fail:
    kh_free(s);
    return st;
}

void kh_free(kh_spec *s) {
    if (!s) return;
    tmpl_free(s->headers);
    for (uint32_t i = 0; i < s->next; i++) {
        tmpl_free(s->ext[i].key);
        tmpl_free(s->ext[i].val);
    }
    free(s->ext);
    free(s);
}

/* (key, raw value) before encoding */
typedef struct raw_pair {
    value k, v;
} raw_pair;

typedef struct rvec {
    arena *a;
    raw_pair *v;
    uint32_t n, cap;
} rvec;

static bool rv_push(rvec *r, value k, value v) {
    if (!ARENA_GROW(r->a, r->v, r->cap, r->n)) return false;
    r->v[r->n++] = (raw_pair){k, v};
    return true;
}

static int key_asc(const void *x, const void *y) {
    const vpair *a = *(const vpair *const *)x, *b = *(const vpair *const *)y;
    int aa = a->key.flags & VF_ATOM, ba = b->key.flags & VF_ATOM;
    if (aa != ba) return aa ? -1 : 1; /* Erlang term order: atoms before binaries */
    size_t n = a->key.len < b->key.len ? a->key.len : b->key.len;
    int c = memcmp(a->key.u.s, b->key.u.s, n);
    return c ? c : (a->key.len < b->key.len ? -1 : a->key.len > b->key.len);
}

/* a map: one pair per entry, in EMQX's iteration order (ascending for <= 32 keys) */
static ec_status from_map(rvec *r, const value *m, ec_error *err) {
    const vpair *order[32];
    if (m->len <= 32) {
        for (uint32_t i = 0; i < m->len; i++)
            order[i] = &m->u.pairs[i];
        qsort(order, m->len, sizeof *order, key_asc);
    }
    for (uint32_t i = 0; i < m->len; i++) {
        const vpair *p = m->len <= 32 ? order[i] : &m->u.pairs[i];
        if (!rv_push(r, p->key, p->val))
            return ec_fail(err, EC_ENOMEM, "out of memory rendering headers");
    }
    return EC_OK;
}

static ec_status from_list(rvec *r, const value *l, ec_error *err, unsigned depth) {
    if (depth > 32) return ec_fail(err, EC_EINVAL, "bad_kafka_header: nested too deep");
    for (uint32_t i = 0; i < l->len; i++) {
        const value *e = &l->u.items[i];
        if (e->type == VT_ARRAY) {
            ec_status st = from_list(r, e, err, depth + 1);
            if (st) return st;
            continue;
        }
        const value *k = e->type == VT_MAP ? V_MAP_GET(e, "key") : NULL;
        const value *v = e->type == VT_MAP ? V_MAP_GET(e, "value") : NULL;
        if (!k || !v) {
            ec_buf b;
            buf_init_arena(&b, r->a);
            json_encode(e, &b);
            return ec_fail(err, EC_EINVAL,
                           "bad_kafka_header: %.*s (an element must be {\"key\": K, \"value\": V})",
                           (int)(b.len > 80 ? 80 : b.len), b.p ? b.p : "");
        }
        if (!rv_push(r, *k, *v)) return ec_fail(err, EC_ENOMEM, "out of memory rendering headers");
    }
    return EC_OK;
}

static ec_status from_headers(const kh_spec *s, const value *ctx, rvec *r, ec_error *err) {
    value v;
    if (!tmpl_lookup_var(&s->headers->parts[0], ctx, TMPL_DECODE_EVERY, r->a, &v)) return EC_OK;
    if (v.type == VT_BIN) {
        value d;
        if (json_decode(r->a, v.u.s, v.len, NULL, &d, NULL) != EC_OK ||
            (d.type != VT_MAP && d.type != VT_ARRAY))
            return ec_fail(err, EC_EINVAL, "bad_kafka_headers: %.*s is not a JSON object or array",
                           (int)(v.len > 80 ? 80 : v.len), v.u.s);
        v = d;
    }
    if (v.type == VT_MAP) return from_map(r, &v, err);
    if (v.type == VT_ARRAY) return from_list(r, &v, err, 0);
    return ec_fail(err, EC_EINVAL, "bad_kafka_headers: a %s cannot be headers",
                   vtype_name((vtype)v.type));
}

/* ext header key: literal text plus placeholder values, which must be strings
 * (or true/false/null); returns false when a placeholder is missing (skip). */
static ec_status ext_key(const tmpl *t, const value *ctx, arena *a, value *out, bool *skip,
                         ec_error *err) {
    ec_buf b;
    buf_init_arena(&b, a);
    *skip = false;
    for (uint32_t i = 0; i < t->nparts; i++) {
        const tmpl_part *p = &t->parts[i];
        if (!p->is_var) {
            buf_append(&b, p->lit, p->len);
            continue;
        }
        value v;
        if (!tmpl_lookup_var(p, ctx, TMPL_DECODE_EVERY, a, &v)) {
            *skip = true;
            return EC_OK;
        }
        if (v.type == VT_BIN)
            buf_append(&b, v.u.s, v.len);
        else if (v.type == VT_BOOL || v.type == VT_NULL)
            text_append(&b, &v, TEXT_UNDEF_EMPTY);
        else
            return ec_fail(err, EC_EINVAL, "bad_kafka_ext_header_key: a %s in a header name",
                           vtype_name((vtype)v.type));
    }
    if (!buf_ok(&b)) return ec_fail(err, EC_ENOMEM, "out of memory rendering headers");
    *out = v_bin(b.p ? b.p : "", b.len);
    return EC_OK;
}

ec_status kh_render(const kh_spec *s, const value *ctx, arena *a, kh_pair **out, uint32_t *n,
                    ec_error *err) {
    rvec r = {.a = a};
    ec_status st;
    *out = NULL;
    *n = 0;
    if (s->headers && (st = from_headers(s, ctx, &r, err))) return st;
    for (uint32_t i = 0; i < s->next; i++) {
        value k, v;
        bool skip;
        if ((st = ext_key(s->ext[i].key, ctx, a, &k, &skip, err))) return st;
        if (skip) continue;
        const tmpl *vt = s->ext[i].val;
        if (tmpl_is_single_var(vt)) {
            if (!tmpl_lookup_var(&vt->parts[0], ctx, TMPL_DECODE_EVERY, a, &v)) continue;
        } else {
            v = vt->nparts ? v_bin(vt->parts[0].lit, vt->parts[0].len) : v_bin("", 0);
        }
        if (!rv_push(&r, k, v)) return ec_fail(err, EC_ENOMEM, "out of memory rendering headers");
    }
    if (!r.n) return EC_OK;
    kh_pair *pairs = arena_alloc(a, r.n * sizeof *pairs);
    if (!pairs) return ec_fail(err, EC_ENOMEM, "out of memory rendering headers");
    uint32_t k = 0;
    for (uint32_t i = 0; i < r.n; i++) {
        const value *rv = &r.v[i].v;
        ec_buf vb, kb;
        buf_init_arena(&kb, a);
        if (!text_append(&kb, &r.v[i].k, TEXT_UNDEF_EMPTY)) continue;
        if (s->json_mode) {
            buf_init_arena(&vb, a);
            if (!json_encode(rv, &vb)) continue;
        } else {
            if (rv->type != VT_BIN || ((rv->flags >> 4) & 7)) continue; /* none: strings only */
            vb = (ec_buf){.p = (char *)rv->u.s, .len = rv->len};
        }
        if (!buf_ok(&kb)) return ec_fail(err, EC_ENOMEM, "out of memory rendering headers");
        pairs[k++] =
            (kh_pair){kb.p ? kb.p : "", (uint32_t)kb.len, vb.p ? vb.p : "", (uint32_t)vb.len};
    }
    *out = pairs;
    *n = k;
    return EC_OK;
}
