/* tmpl_tester.c - template requests of the rule tester; see tmpl_tester.h.
 * Modes: kafka (key/value: lenient legacy engine), kafka_topic (strict, JSON
 * decoded once), kafka_timestamp (integer ms, now when not an integer),
 * kafka_headers (kafka_headers template + ext headers + encode mode), and
 * template (generic emqx_template: missing renders as "undefined"). */
#include "tmpl_tester.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../core/json.h"
#include "../tester/tester.h"
#include "kheaders.h"
#include "tmpl.h"

static void answer_string(ec_buf *out, const char *s, size_t n) {
    buf_clear(out);
    buf_puts(out, "{\"rendered\":");
    json_encode_string(s, n, out);
    buf_putc(out, '}');
}

static void answer_headers(const value *req, const value *tv, arena *a, ec_buf *out) {
    const value *mode = V_MAP_GET(req, "encode_mode"), *ext = V_MAP_GET(req, "ext_headers");
    bool json_mode = false;
    if (mode) {
        if (mode->type == VT_BIN && mode->len == 4 && !memcmp(mode->u.s, "json", 4))
            json_mode = true;
        else if (!(mode->type == VT_BIN && mode->len == 4 && !memcmp(mode->u.s, "none", 4))) {
            tester_error(out, "encode_mode must be \"none\" or \"json\"");
            return;
        }
    }
    uint32_t next = 0;
    const char *kv[64];
    size_t kvl[64];
    if (ext) {
        if (ext->type != VT_ARRAY || ext->len > 32) {
            tester_error(out, "ext_headers must be a list of at most 32 [key, value] pairs");
            return;
        }
        for (uint32_t i = 0; i < ext->len; i++) {
            const value *p = &ext->u.items[i];
            if (p->type != VT_ARRAY || p->len != 2 || p->u.items[0].type != VT_BIN ||
                p->u.items[1].type != VT_BIN) {
                tester_error(out, "each ext header must be a [key, value] pair of strings");
                return;
            }
            kv[2 * next] = p->u.items[0].u.s;
            kvl[2 * next] = p->u.items[0].len;
            kv[2 * next + 1] = p->u.items[1].u.s;
            kvl[2 * next + 1] = p->u.items[1].len;
            next++;
        }
    }
    kh_spec *spec;
    ec_error err;
    if (kh_compile(tv->u.s, tv->len, kv, kvl, next, json_mode, &spec, &err) != EC_OK) {
        tester_error(out, err.msg);
        return;
    }
    const value *data = V_MAP_GET(req, "data");
    value empty = {.type = VT_MAP};
    kh_pair *pairs;
    uint32_t n;
    if (kh_render(spec, data ? data : &empty, a, &pairs, &n, &err) != EC_OK) {
        tester_error(out, err.msg);
    } else {
        buf_clear(out);
        buf_puts(out, "{\"rendered\":[");
        for (uint32_t i = 0; i < n; i++) {
            if (i) buf_putc(out, ',');
            buf_putc(out, '[');
            json_encode_string(pairs[i].k, pairs[i].klen, out);
            buf_putc(out, ',');
            json_encode_string(pairs[i].v, pairs[i].vlen, out);
            buf_putc(out, ']');
        }
        buf_puts(out, "]}");
    }
    kh_free(spec);
}

void tmpl_tester_request(const value *req, arena *a, ec_buf *out) {
    const value *tv = V_MAP_GET(req, "template"), *mv = V_MAP_GET(req, "mode"),
                *data = V_MAP_GET(req, "data");
    if (tv->type != VT_BIN) {
        tester_error(out, "\"template\" must be a string");
        return;
    }
    if (data && data->type != VT_MAP) {
        tester_error(out, "\"data\" must be an object");
        return;
    }
    value empty = {.type = VT_MAP};
    const value *ctx = data ? data : &empty;
    const char *mode = "kafka";
    size_t ml = 5;
    if (mv) {
        if (mv->type != VT_BIN) {
            tester_error(out, "\"mode\" must be a string");
            return;
        }
        mode = mv->u.s;
        ml = mv->len;
    }
#define MODE_IS(lit) (ml == sizeof(lit) - 1 && memcmp(mode, lit, ml) == 0)
    if (MODE_IS("kafka_headers")) {
        answer_headers(req, tv, a, out);
        return;
    }
    bool legacy = MODE_IS("kafka") || MODE_IS("kafka_timestamp");
    if (!legacy && !MODE_IS("kafka_topic") && !MODE_IS("template")) {
        tester_error(out,
                     "mode must be kafka, kafka_topic, kafka_timestamp, kafka_headers or template");
        return;
    }
    tmpl *t;
    ec_error err;
    if (tmpl_compile(legacy ? TMPL_LEGACY : TMPL_NEW, tv->u.s, tv->len, &t, &err) != EC_OK) {
        tester_error(out, err.msg);
        return;
    }
    ec_buf b;
    buf_init_arena(&b, a);
    if (MODE_IS("kafka_timestamp")) {
        char num[32];
        int k = snprintf(num, sizeof num, "{\"rendered\":%lld}",
                         (long long)tmpl_render_timestamp(t, ctx, a));
        buf_clear(out);
        buf_append(out, num, (size_t)k);
    } else if (MODE_IS("kafka_topic")) {
        if (tmpl_render_strict(t, ctx, TMPL_DECODE_ONCE, a, &b, &err) != EC_OK)
            tester_error(out, err.msg);
        else
            answer_string(out, b.p ? b.p : "", b.len);
    } else if (MODE_IS("kafka")) { /* exactly as the producer renders key and value */
        const char *p;
        size_t n;
        if (!tmpl_render_bytes(t, ctx, a, &b, &p, &n))
            tester_error(out, "out of memory rendering the template");
        else
            answer_string(out, p, n);
    } else {
        if (!tmpl_render(t, ctx, TMPL_PLAIN, true, a, &b))
            tester_error(out, "out of memory rendering the template");
        else
            answer_string(out, b.p ? b.p : "", b.len);
    }
#undef MODE_IS
    tmpl_free(t);
}
