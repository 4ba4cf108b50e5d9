/* test_json.c - value model, arena and JSON decode/encode (EMQX formatting). */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "../core/json.h"
#include "test.h"

/* decode then encode; returns a static copy of the output or the error text */
static char out_text[8192];
static const char *roundtrip(const char *in) {
    arena a;
    arena_init(&a, 1024);
    value v;
    ec_error err;
    if (json_decode(&a, in, strlen(in), NULL, &v, &err) != EC_OK) {
        snprintf(out_text, sizeof out_text, "ERROR: %s", err.msg);
    } else {
        ec_buf b;
        buf_init(&b);
        json_encode(&v, &b);
        snprintf(out_text, sizeof out_text, "%.*s", (int)b.len, b.p);
        buf_free(&b);
    }
    arena_free(&a);
    return out_text;
}

static const char *fmt(double d) {
    static char buf[JSON_DOUBLE_MAX_CHARS];
    json_fmt_double(d, buf);
    return buf;
}

TEST(json_float_format_emqx) {
    CHECK_STR(fmt(0.1 + 0.2), "0.30000000000000004");
    CHECK_STR(fmt(1500.0), "1500.0");
    CHECK_STR(fmt(1.0), "1.0");
    CHECK_STR(fmt(0.0), "0.0");
    CHECK_STR(fmt(-0.0), "0.0");
    CHECK_STR(fmt(-2.5), "-2.5");
    CHECK_STR(fmt(21.5), "21.5");
    CHECK_STR(fmt(0.1), "0.1");
    CHECK_STR(fmt(1e20), "100000000000000000000.0");
    CHECK_STR(fmt(1e21), "1e+21");
    CHECK_STR(fmt(1.5e300), "1.5e+300");
    CHECK_STR(fmt(1e-6), "0.000001");
    CHECK_STR(fmt(1.25e-6), "0.00000125");
    CHECK_STR(fmt(1e-7), "1e-7");
    CHECK_STR(fmt(1.5e-7), "1.5e-7");
    CHECK_STR(fmt(5e-324), "5e-324");
    CHECK_STR(fmt(DBL_MAX), "1.7976931348623157e+308");
    CHECK_STR(fmt(123456789012345678.0), "123456789012345680.0");
    CHECK_STR(fmt(3.14159), "3.14159");
    CHECK_STR(fmt(NAN), "null");
}

TEST(json_float_shortest_roundtrips) {
    /* every formatted double reads back bit-exactly */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = ((uint64_t)rand() << 33) ^ ((uint64_t)rand() << 11) ^ (uint64_t)rand();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d) || d == 0) continue;
        char buf[JSON_DOUBLE_MAX_CHARS];
        json_fmt_double(d, buf);
        if (strtod(buf, NULL) != d) {
            CHECK(!"double does not round-trip");
            fprintf(stderr, "    %.17g -> %s\n", d, buf);
            return;
        }
    }
}

TEST(json_int_format) {
    char buf[21];
    json_fmt_int(INT64_MIN, buf);
    CHECK_STR(buf, "-9223372036854775808");
    json_fmt_int(INT64_MAX, buf);
    CHECK_STR(buf, "9223372036854775807");
    json_fmt_int(0, buf);
    CHECK_STR(buf, "0");
}

TEST(json_roundtrip_scalars) {
    CHECK_STR(roundtrip("true"), "true");
    CHECK_STR(roundtrip(" false "), "false");
    CHECK_STR(roundtrip("null"), "null");
    CHECK_STR(roundtrip("-12"), "-12");
    CHECK_STR(roundtrip("9223372036854775807"), "9223372036854775807");
    CHECK_STR(roundtrip("-9223372036854775808"), "-9223372036854775808");
    /* beyond int64: nearest double (documented policy) */
    CHECK_STR(roundtrip("9223372036854775808"), "9223372036854776000.0");
    CHECK_STR(roundtrip("1.5e3"), "1500.0");
    CHECK_STR(roundtrip("2E-2"), "0.02");
    CHECK_STR(roundtrip("\"a\\u00e9\\ud83d\\ude00\\n\""), "\"a\xc3\xa9\xf0\x9f\x98\x80\\n\"");
    CHECK_STR(roundtrip("\"q\\\"s\\\\/\\/\""), "\"q\\\"s\\\\//\"");
    CHECK_STR(roundtrip("\"\\u0001\""), "\"\\u0001\"");
}

TEST(json_map_order_descending_like_emqx) {
    CHECK_STR(roundtrip("{\"a\":1,\"c\":{\"y\":[1,2],\"x\":null},\"b\":2.5}"),
              "{\"c\":{\"y\":[1,2],\"x\":null},\"b\":2.5,\"a\":1}");
    /* prefix sorts below the longer key */
    CHECK_STR(roundtrip("{\"ab\":1,\"a\":2,\"abc\":3}"), "{\"abc\":3,\"ab\":1,\"a\":2}");
    CHECK_STR(roundtrip("{}"), "{}");
    CHECK_STR(roundtrip("[]"), "[]");
}

TEST(json_atom_keys_after_string_keys) {
    /* EMQX column maps use atom keys: they sort below binary keys, so in
     * descending order string keys come first (spec sink-behaviour §2.3). */
    arena a;
    arena_init(&a, 0);
    bool ok;
    value m = v_map_new(&a, 4, &ok);
    REQUIRE(ok);
    v_map_append(&a, &m, V_ATOM("clientid"), V_LIT("c1"));
    v_map_append(&a, &m, V_ATOM("client_attrs"), v_map_new(&a, 0, &ok));
    v_map_append(&a, &m, V_LIT("zzz"), v_int(1));
    v_map_append(&a, &m, V_ATOM("username"), v_undef());
    ec_buf b;
    buf_init(&b);
    REQUIRE(json_encode(&m, &b));
    buf_putc(&b, 0);
    CHECK_STR(b.p,
              "{\"zzz\":1,\"username\":\"undefined\",\"clientid\":\"c1\",\"client_attrs\":{}}");
    buf_free(&b);
    arena_free(&a);
}

TEST(json_large_map_keeps_insertion_order) {
    char in[1024], want[1024];
    size_t k = 0, w = 0;
    k += (size_t)sprintf(in + k, "{");
    w += (size_t)sprintf(want + w, "{");
    for (int i = 0; i < 40; i++) {
        k += (size_t)sprintf(in + k, "%s\"k%02d\":%d", i ? "," : "", i, i);
        w += (size_t)sprintf(want + w, "%s\"k%02d\":%d", i ? "," : "", i, i);
    }
    sprintf(in + k, "}");
    sprintf(want + w, "}");
    CHECK_STR(roundtrip(in), want);
}

TEST(json_duplicate_keys_last_wins) {
    CHECK_STR(roundtrip("{\"a\":1,\"b\":2,\"a\":3}"), "{\"b\":2,\"a\":3}");
    /* the large-object path (sorted detection) */
    char in[1024];
    size_t k = (size_t)sprintf(in, "{");
    for (int i = 0; i < 20; i++)
        k += (size_t)sprintf(in + k, "\"k%02d\":%d,", i, i);
    sprintf(in + k, "\"k05\":99}");
    const char *out = roundtrip(in);
    CHECK(strstr(out, "\"k05\":99") != NULL);
    CHECK(strstr(out, "\"k05\":5") == NULL);
}

TEST(json_errors_have_position) {
    arena a;
    arena_init(&a, 0);
    value v;
    ec_error err;
    const char *in = "{\"a\":\n  }";
    CHECK_INT(json_decode(&a, in, strlen(in), NULL, &v, &err), EC_EPARSE);
    CHECK_INT(err.pos, 8);
    CHECK_INT(err.line, 2);
    CHECK_INT(err.column, 3);
    CHECK(strstr(err.msg, "expected a JSON value") != NULL);
    CHECK_INT(json_decode(&a, "[1,2", 4, NULL, &v, &err), EC_EPARSE);
    CHECK(strstr(err.msg, "end of JSON input") != NULL);
    CHECK_INT(json_decode(&a, "hello", 5, NULL, &v, &err), EC_EPARSE);
    CHECK_INT(json_decode(&a, "1 2", 3, NULL, &v, &err), EC_EPARSE);
    CHECK_INT(json_decode(&a, "01", 2, NULL, &v, &err), EC_EPARSE);
    CHECK_INT(json_decode(&a, "1.", 2, NULL, &v, &err), EC_EPARSE);
    CHECK_INT(json_decode(&a, "\"\xff\"", 3, NULL, &v, &err), EC_EPARSE);
    CHECK(strstr(err.msg, "UTF-8") != NULL);
    CHECK_INT(json_decode(&a, "\"\\ud800\"", 8, NULL, &v, &err), EC_EPARSE);
    CHECK_INT(json_decode(&a, "\"a\nb\"", 5, NULL, &v, &err), EC_EPARSE);
    CHECK_INT(json_decode(&a, "1e999", 5, NULL, &v, &err), EC_EPARSE);
    CHECK_INT(json_decode(&a, "", 0, NULL, &v, &err), EC_EPARSE);
    arena_free(&a);
}

TEST(json_depth_cap_at_limit) {
    arena a;
    arena_init(&a, 0);
    size_t n = JSON_MAX_DEPTH;
    char *in = malloc(2 * n + 2);
    REQUIRE(in);
    memset(in, '[', n);
    memset(in + n, ']', n);
    value v;
    ec_error err;
    CHECK_INT(json_decode(&a, in, 2 * n, NULL, &v, &err), EC_OK);
    memset(in, '[', n + 1);
    memset(in + n + 1, ']', n + 1);
    CHECK_INT(json_decode(&a, in, 2 * n + 2, NULL, &v, &err), EC_ELIMIT);
    CHECK(strstr(err.msg, "deeper than 512") != NULL);
    /* a caller-chosen smaller cap */
    json_limits lim = {.max_depth = 2};
    CHECK_INT(json_decode(&a, "[[1]]", 5, &lim, &v, &err), EC_OK);
    CHECK_INT(json_decode(&a, "[[[1]]]", 7, &lim, &v, &err), EC_ELIMIT);
    free(in);
    arena_free(&a);
}

TEST(json_size_cap_at_limit) {
    arena a;
    arena_init(&a, 0);
    value v;
    ec_error err;
    json_limits lim = {.max_bytes = 7};
    CHECK_INT(json_decode(&a, "\"12345\"", 7, &lim, &v, &err), EC_OK);
    CHECK_INT(json_decode(&a, "\"123456\"", 8, &lim, &v, &err), EC_ELIMIT);
    arena_free(&a);
}

TEST(json_strings_borrow_input) {
    arena a;
    arena_init(&a, 0);
    const char *in = "{\"msg\":\"Hello Confluent\"}";
    value v;
    REQUIRE(json_decode(&a, in, strlen(in), NULL, &v, NULL) == EC_OK);
    const value *m = V_MAP_GET(&v, "msg");
    REQUIRE(m && m->type == VT_BIN);
    CHECK(m->u.s == in + 8); /* zero copy */
    CHECK_INT(m->len, 15);
    arena_free(&a);
}

TEST(json_encode_repairs_invalid_utf8) {
    ec_buf b;
    buf_init(&b);
    json_encode_string("a\xff"
                       "b\xc3",
                       4, &b);
    buf_putc(&b, 0);
    CHECK_STR(b.p, "\"a\xEF\xBF\xBD"
                   "b\xEF\xBF\xBD\"");
    buf_free(&b);
}

TEST(json_encode_undefined_and_nesting) {
    arena a;
    arena_init(&a, 0);
    bool ok;
    value arr = v_array_new(&a, 0, &ok);
    v_array_push(&a, &arr, v_undef());
    v_array_push(&a, &arr, v_float(0.1 + 0.2));
    v_array_push(&a, &arr, v_bool(false));
    ec_buf b;
    buf_init(&b);
    REQUIRE(json_encode(&arr, &b));
    buf_putc(&b, 0);
    CHECK_STR(b.p, "[\"undefined\",0.30000000000000004,false]");
    buf_free(&b);
    arena_free(&a);
}

TEST(value_map_put_replaces_and_equal) {
    arena a;
    arena_init(&a, 64);
    bool ok;
    value m = v_map_new(&a, 1, &ok);
    for (int i = 0; i < 100; i++) {
        char *k = arena_alloc(&a, 8);
        int n = sprintf(k, "k%d", i % 10);
        REQUIRE(v_map_put(&a, &m, k, (size_t)n, v_int(i)));
    }
    CHECK_INT(m.len, 10);
    const value *v = V_MAP_GET(&m, "k3");
    REQUIRE(v);
    CHECK_INT(v->u.i, 93);
    value c;
    REQUIRE(v_deep_copy(&a, &m, &c));
    CHECK(v_equal(&m, &c));
    c.u.pairs[0].val = v_float(90.0);
    CHECK(!v_equal(&m, &c)); /* 90 and 90.0 differ exactly */
    arena_free(&a);
}

TEST(arena_reset_reuses_and_adapts) {
    arena a;
    arena_init(&a, 256);
    for (int i = 0; i < 100; i++)
        REQUIRE(arena_alloc(&a, 100));
    size_t big = a.total;
    arena_reset(&a);
    CHECK(a.chunk_size >= big); /* next round fits in one chunk */
    void *first = arena_alloc(&a, 100);
    for (int i = 0; i < 99; i++)
        REQUIRE(arena_alloc(&a, 100));
    arena_reset(&a);
    CHECK(arena_alloc(&a, 100) == first); /* warm: same chunk, no malloc */
    arena_free(&a);
}

TEST(arena_limit_fails_cleanly) {
    arena a;
    arena_init(&a, 1024);
    a.limit = 4096;
    int got = 0;
    while (arena_alloc(&a, 512))
        got++;
    CHECK(got >= 4 && got <= 8);
    CHECK(a.total <= 4096);
    /* JSON decode reports ENOMEM instead of crashing */
    arena_reset(&a);
    a.limit = 1024;
    char in[4096];
    size_t k = (size_t)sprintf(in, "[");
    for (int i = 0; i < 500; i++)
        k += (size_t)sprintf(in + k, "%s%d", i ? "," : "", i);
    sprintf(in + k, "]");
    value v;
    ec_error err;
    CHECK_INT(json_decode(&a, in, strlen(in), NULL, &v, &err), EC_ENOMEM);
    arena_free(&a);
}

TEST(arena_realloc_grows_in_place) {
    arena a;
    arena_init(&a, 4096);
    char *p = arena_alloc(&a, 16);
    memcpy(p, "0123456789abcdef", 16);
    char *q = arena_realloc(&a, p, 16, 64);
    CHECK(q == p);
    arena_alloc(&a, 8);
    char *r = arena_realloc(&a, q, 64, 128);
    CHECK(r != q);
    CHECK(memcmp(r, "0123456789abcdef", 16) == 0);
    arena_free(&a);
}
