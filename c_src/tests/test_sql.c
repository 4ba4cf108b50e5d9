/* test_sql.c - rule SQL: golden conformance cases, parser caps and errors,
 * the topic index. */
#include <stdlib.h>
#include <time.h>

#include "../core/json.h"
#include "../sql/sql_eval.h"
#include "../sql/sql_funcs.h"
#include "../sql/sql_lex.h"
#include "../sql/sql_parse.h"
#include "../sql/sql_rules.h"
#include "../tester/tester.h"
#include "cases.h"
#include "test.h"

TEST(sql_golden_cases) {
    int total;
    int failed = cases_run_dir("sql", tester_answer, &total);
    printf("    %d cases, %d failed\n", total, failed);
    CHECK(total > 100);
    CHECK_INT(failed, 0);
}

TEST(template_golden_cases) {
    int total;
    int failed = cases_run_dir("templates", tester_answer, &total);
    printf("    %d cases, %d failed\n", total, failed);
    CHECK(total > 50);
    CHECK_INT(failed, 0);
}

static ec_status parse(const char *sql, ec_error *err) {
    arena a;
    arena_init(&a, 4096);
    sql_stmt s;
    ec_status st = sql_parse(&a, sql, strlen(sql), &s, err);
    arena_free(&a);
    return st;
}

TEST(sql_depth_cap_at_limit) {
    /* SQL_MAX_DEPTH nested parentheses parse; one more is refused */
    char sql[2048];
    ec_error err;
    for (int depth = SQL_MAX_DEPTH - 2; depth <= SQL_MAX_DEPTH + 2; depth++) {
        size_t k = (size_t)sprintf(sql, "SELECT ");
        for (int i = 0; i < depth; i++)
            sql[k++] = '(';
        sql[k++] = '1';
        for (int i = 0; i < depth; i++)
            sql[k++] = ')';
        sprintf(sql + k, " as a FROM \"t\"");
        ec_status st = parse(sql, &err);
        if (depth <= SQL_MAX_DEPTH - 1) CHECK_INT(st, EC_OK);
        if (depth >= SQL_MAX_DEPTH + 1) {
            CHECK_INT(st, EC_EPARSE);
            CHECK(strstr(err.msg, "nested deeper") != NULL);
        }
    }
}

TEST(sql_length_cap_at_limit) {
    size_t n = SQL_MAX_BYTES;
    char *sql = malloc(n + 2);
    REQUIRE(sql);
    const char *head = "SELECT 1 as a FROM \"t\" WHERE 'x' = '";
    size_t hl = strlen(head);
    memcpy(sql, head, hl);
    memset(sql + hl, 'y', n - hl - 1);
    sql[n - 1] = '\'';
    sql[n] = '\0';
    ec_error err;
    arena a;
    arena_init(&a, 4096);
    sql_stmt s;
    CHECK_INT(sql_parse(&a, sql, n, &s, &err), EC_OK);
    sql[n] = ' ';
    sql[n + 1] = '\0';
    CHECK_INT(sql_parse(&a, sql, n + 1, &s, &err), EC_ELIMIT);
    arena_free(&a);
    free(sql);
}

TEST(sql_error_names_expected_token) {
    ec_error err;
    CHECK_INT(parse("SELECT a FROM", &err), EC_EPARSE);
    CHECK_STR(
        err.msg,
        "syntax error at line 1, column 14: unexpected end of input, expected a topic after FROM");
    CHECK_INT(parse("SELECT (a FROM \"t\"", &err), EC_EPARSE);
    CHECK(strstr(err.msg, "expected ')'") != NULL);
    CHECK_INT(err.line, 1);
    CHECK_INT(err.column, 11);
    CHECK_INT(parse("SELECT CASE WHEN a = 1 THEN 2 FROM \"t\"", &err), EC_EPARSE);
    CHECK(strstr(err.msg, "expected WHEN, ELSE or END") != NULL);
    CHECK_INT(parse("DELETE FROM t", &err), EC_EPARSE);
    CHECK(strstr(err.msg, "expected SELECT or FOREACH") != NULL);
}

TEST(sql_every_function_registered_once) {
    size_t n = sql_func_count();
    CHECK(n > 120);
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(sql_func_at(i - 1)->name, sql_func_at(i)->name) < 0);
    CHECK(sql_func_lookup("upper", 5) != NULL);
    CHECK(sql_func_lookup("uppe", 4) == NULL);
    CHECK(sql_func_lookup("UPPER", 5) == NULL);
}

static bool topic_match(const char *t, const char *f) {
    return sql_topic_match(t, strlen(t), f, strlen(f));
}

TEST(sql_topic_match_rules) {
    CHECK(topic_match("t/a", "t/#"));
    CHECK(topic_match("t", "t/#"));
    CHECK(topic_match("t/a/b", "t/#"));
    CHECK(topic_match("t//z", "t/+/z"));
    CHECK(!topic_match("t/a/b", "t/+"));
    CHECK(topic_match("t/a", "+/+"));
    CHECK(!topic_match("$SYS/x", "#"));
    CHECK(!topic_match("$SYS/x", "+/x"));
    CHECK(topic_match("$SYS/x", "$SYS/+"));
    CHECK(!topic_match("t/a", "t/a/b"));
    CHECK(!topic_match("T/a", "t/a"));
    CHECK(topic_match("/a", "/a"));
    CHECK(topic_match("/a", "+/a"));
    CHECK(topic_match("a/", "a/+"));
    CHECK(!topic_match("a", "a/+"));
}

TEST(sql_index_matches_like_scan) {
    /* the trie must select exactly the rules a scan of FROM filters selects */
    static const char *filters[] = {"t/#", "t/+",   "t/a",    "+/a",   "#",    "t/+/c",
                                    "x/y", "t/a/#", "$SYS/#", "+/+/+", "t//c", "t/a/b"};
    static const char *topics[] = {"t",   "t/a",    "t/b", "t/a/c", "t/a/b",
                                   "x/y", "$SYS/a", "",    "t//c",  "a/a"};
    enum { NF = sizeof filters / sizeof filters[0], NT = sizeof topics / sizeof topics[0] };
    sql_rule *rules[NF + 1];
    ec_error err;
    for (int i = 0; i < NF; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT 1 as a FROM \"%s\"", filters[i]);
        REQUIRE(sql_rule_compile("r", 1, sql, strlen(sql), &rules[i], &err) == EC_OK);
    }
    /* a rule with two filters that both match: reported once */
    const char *two = "SELECT 1 as a FROM \"t/a\", \"t/#\"";
    REQUIRE(sql_rule_compile("r2", 2, two, strlen(two), &rules[NF], &err) == EC_OK);
    rule_index *ix;
    REQUIRE(rule_index_build(rules, NF + 1, &ix, &err) == EC_OK);
    for (int t = 0; t < NT; t++) {
        uint32_t got[32];
        size_t n = rule_index_match_topic(ix, topics[t], strlen(topics[t]), got, 32);
        size_t k = 0;
        for (int r = 0; r <= NF; r++) {
            bool want = sql_rule_wants_topic(rules[r], topics[t], strlen(topics[t]));
            bool have = k < n && got[k] == (uint32_t)r;
            if (have) k++;
            if (want != have) {
                fprintf(stderr, "    topic '%s' rule %d: scan %d, index %d\n", topics[t], r, want,
                        have);
                CHECK(want == have);
            }
        }
        CHECK_INT(k, n);
    }
    rule_index_free(ix);
    for (int i = 0; i <= NF; i++)
        sql_rule_free(rules[i]);
}

TEST(sql_payload_decoded_once_per_message) {
    /* two rules reading the payload share one decode */
    ec_error err;
    sql_rule *r1, *r2;
    const char *s1 = "SELECT payload.a as a FROM \"t\"", *s2 = "SELECT payload.b as b FROM \"t\"";
    REQUIRE(sql_rule_compile("1", 1, s1, strlen(s1), &r1, &err) == EC_OK);
    REQUIRE(sql_rule_compile("2", 1, s2, strlen(s2), &r2, &err) == EC_OK);
    arena a;
    arena_init(&a, 4096);
    const char *ctx = "{\"topic\":\"t\",\"payload\":\"{\\\"a\\\":1,\\\"b\\\":2}\"}";
    value cols, out;
    REQUIRE(json_decode(&a, ctx, strlen(ctx), NULL, &cols, NULL) == EC_OK);
    sql_msg m;
    sql_msg_init(&m, &cols);
    CHECK_INT(m.payload_state, 0);
    CHECK_INT(sql_eval_stmt(&r1->stmt, &m, "1", 1, &a, &out, &err), SQL_MATCHED);
    CHECK_INT(m.payload_state, 1);
    const value *decoded = &m.payload_json;
    const vpair *pairs = decoded->u.pairs;
    CHECK_INT(sql_eval_stmt(&r2->stmt, &m, "2", 1, &a, &out, &err), SQL_MATCHED);
    CHECK(m.payload_json.u.pairs == pairs); /* not decoded again */
    CHECK_INT(V_MAP_GET(&out, "b")->u.i, 2);
    arena_free(&a);
    sql_rule_free(r1);
    sql_rule_free(r2);
}

static const char *answer(const char *req, arena *a, ec_buf *out) {
    buf_clear(out);
    tester_answer(req, strlen(req), a, out);
    buf_putc(out, '\0');
    return out->p;
}

TEST(sql_rfc3339_uses_host_offset) {
    arena a;
    arena_init(&a, 4096);
    ec_buf out;
    buf_init(&out);
    const char *req = "{\"sql\":\"SELECT unix_ts_to_rfc3339(1708671600) as a, "
                      "unix_ts_to_rfc3339(1708671600766, 'millisecond') as b FROM \\\"t\\\"\","
                      "\"context\":{\"topic\":\"t\"}}";
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;
    setenv("TZ", "UTC0", 1);
    tzset();
    CHECK_STR(answer(req, &a, &out),
              "{\"matched\":true,\"output\":{\"b\":\"2024-02-23T07:00:00.766+00:00\","
              "\"a\":\"2024-02-23T07:00:00+00:00\"}}");
    setenv("TZ", "CST-8", 1); /* POSIX zone string: UTC+8, no tzdata needed */
    tzset();
    CHECK_STR(answer(req, &a, &out),
              "{\"matched\":true,\"output\":{\"b\":\"2024-02-23T15:00:00.766+08:00\","
              "\"a\":\"2024-02-23T15:00:00+08:00\"}}");
    if (saved)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
    buf_free(&out);
    arena_free(&a);
}

TEST(sql_index_match_columns_topic_and_event) {
    /* 40 rules on the topic (more than the first 16-slot try), 1 event rule */
    enum { N = 41 };
    sql_rule *rules[N];
    ec_error err;
    for (int i = 0; i < N - 1; i++) {
        const char *sql =
            i % 2 ? "SELECT 1 as a FROM \"t/#\"" : "SELECT 1 as a FROM \"t/+\", \"x\"";
        REQUIRE(sql_rule_compile("r", 1, sql, strlen(sql), &rules[i], &err) == EC_OK);
    }
    const char *ev = "SELECT 1 as a FROM \"$events/client/+\"";
    REQUIRE(sql_rule_compile("e", 1, ev, strlen(ev), &rules[N - 1], &err) == EC_OK);
    rule_index *ix;
    REQUIRE(rule_index_build(rules, N, &ix, &err) == EC_OK);
    arena a;
    arena_init(&a, 256);
    value cols;
    uint32_t *idx;
    const char *pub = "{\"topic\":\"t/1\",\"event\":\"message.publish\"}";
    REQUIRE(json_decode(&a, pub, strlen(pub), NULL, &cols, NULL) == EC_OK);
    CHECK_INT(rule_index_match_columns(ix, &cols, &a, &idx), N - 1);
    for (int i = 0; i < N - 1; i++)
        CHECK_INT(idx[i], i);
    const char *conn = "{\"event\":\"client.connected\",\"clientid\":\"c\"}";
    REQUIRE(json_decode(&a, conn, strlen(conn), NULL, &cols, NULL) == EC_OK);
    REQUIRE(rule_index_match_columns(ix, &cols, &a, &idx) == 1);
    CHECK_INT(idx[0], N - 1);
    const char *unknown = "{\"event\":\"no.such\",\"topic\":\"t/1\"}";
    REQUIRE(json_decode(&a, unknown, strlen(unknown), NULL, &cols, NULL) == EC_OK);
    CHECK_INT(rule_index_match_columns(ix, &cols, &a, &idx), 0);
    arena_free(&a);
    rule_index_free(ix);
    for (int i = 0; i < N; i++)
        sql_rule_free(rules[i]);
}
