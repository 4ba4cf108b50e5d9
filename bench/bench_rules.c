/* bench_rules.c - rule engine throughput on one core (make bench).
 *
 * Each case builds the column map of a publish the way the EMQX hook does
 * (in the per-message arena), finds the triggered rules through the index,
 * evaluates them and resets the arena: the whole per-message cost. The
 * baseline, measured in the same run, is a bare cJSON parse + free of the
 * same payload. Prints one line per case. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../c_src/sql/sql_eval.h"
#include "../c_src/sql/sql_rules.h"

static const char PAYLOAD[] = "{\"temp\":21.5,\"hum\":48,\"id\":\"sensor-000123\",\"loc\":{\"lat\":52.52,"
                              "\"lon\":13.405},\"ok\":true,\"ts\":1736512728667,\"fw\":\"1.4.2\"}";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void columns(arena *a, value *cols) {
    bool ok;
    *cols = v_map_new(a, 16, &ok);
    v_map_append(a, cols, V_ATOM("id"), V_LIT("0006120A8F6B4C3EF4430000A3D40002"));
    v_map_append(a, cols, V_ATOM("clientid"), V_LIT("vehicle-0042"));
    v_map_append(a, cols, V_ATOM("username"), V_LIT("fleet"));
    v_map_append(a, cols, V_ATOM("payload"), v_bin(PAYLOAD, sizeof PAYLOAD - 1));
    v_map_append(a, cols, V_ATOM("peerhost"), V_LIT("10.0.0.7"));
    v_map_append(a, cols, V_ATOM("topic"), V_LIT("t/vehicle/42"));
    v_map_append(a, cols, V_ATOM("qos"), v_int(1));
    v_map_append(a, cols, V_ATOM("event"), V_ATOM("message.publish"));
    v_map_append(a, cols, V_ATOM("timestamp"), v_int(1736512728667));
    v_map_append(a, cols, V_ATOM("node"), V_LIT("emqx@127.0.0.1"));
}

typedef struct bctx {
    rule_index *ix;
    sql_rule **rules;
    arena a;
    long matched;
} bctx;

static void one_message(bctx *b) {
    value cols, out;
    columns(&b->a, &cols);
    uint32_t idx[8];
    size_t n = rule_index_match_topic(b->ix, "t/vehicle/42", 12, idx, 8);
    sql_msg m;
    sql_msg_init(&m, &cols);
    ec_error err;
    for (size_t i = 0; i < n; i++) {
        const sql_rule *r = b->rules[idx[i]];
        if (sql_eval_stmt(&r->stmt, &m, r->id, r->id_len, &b->a, &out, &err) == SQL_MATCHED) b->matched++;
    }
    arena_reset(&b->a);
}

static double run(const char *name, sql_rule **rules, size_t nrules, long expect_matched_per_msg) {
    bctx b = {.rules = rules};
    ec_error err;
    if (rule_index_build(rules, nrules, &b.ix, &err) != EC_OK) exit(1);
    arena_init(&b.a, 16384);
    for (int i = 0; i < 10000; i++) one_message(&b); /* warm up */
    long iters = 0;
    b.matched = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 20000; i++) one_message(&b);
        iters += 20000;
    } while ((t = now_s()) - t0 < 2.0);
    double rate = (double)iters / (t - t0);
    printf("%-44s %12.0f msg/s  %8.1f ns/msg  (%ld rules)\n", name, rate, 1e9 / rate, (long)nrules);
    if (b.matched != iters * expect_matched_per_msg) {
        fprintf(stderr, "%s: matched %ld, expected %ld\n", name, b.matched, iters * expect_matched_per_msg);
        exit(1);
    }
    rule_index_free(b.ix);
    arena_free(&b.a);
    return rate;
}

static sql_rule *compile(const char *id, const char *sql) {
    sql_rule *r;
    ec_error err;
    if (sql_rule_compile(id, strlen(id), sql, strlen(sql), &r, &err) != EC_OK) {
        fprintf(stderr, "%s: %s\n", sql, err.msg);
        exit(1);
    }
    return r;
}

static double bare_cjson(void) {
    for (int i = 0; i < 10000; i++) cJSON_Delete(cJSON_ParseWithLength(PAYLOAD, sizeof PAYLOAD - 1));
    long iters = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 20000; i++) {
            cJSON *j = cJSON_ParseWithLength(PAYLOAD, sizeof PAYLOAD - 1);
            if (!j) exit(1);
            cJSON_Delete(j);
        }
        iters += 20000;
    } while ((t = now_s()) - t0 < 2.0);
    double rate = (double)iters / (t - t0);
    printf("%-44s %12.0f msg/s  %8.1f ns/msg\n", "baseline: bare cJSON parse+free of payload", rate, 1e9 / rate);
    return rate;
}

int main(void) {
    printf("payload: %zu bytes\n", sizeof PAYLOAD - 1);
    double cj = bare_cjson();
    sql_rule *star = compile("star", "SELECT * FROM \"t/#\"");
    double r_star = run("SELECT * FROM \"t/#\"", &star, 1, 1);
    sql_rule *json = compile("json", "SELECT payload.temp as t, clientid FROM \"t/#\" WHERE payload.temp > 20");
    double r_json = run("SELECT payload.temp ... WHERE payload.temp > 20", &json, 1, 1);
    sql_rule *fns = compile("fns",
                            "SELECT upper(clientid) as a, lower(username) as b, concat(topic, '/x') as c, "
                            "substr(clientid, 2, 4) as d, replace(topic, '/', '.') as e, "
                            "split(topic, '/') as f, trim(' x ') as g, strlen(clientid) as h, "
                            "format_date('millisecond', 'Z', '%Y-%m-%dT%H:%M:%S.%3N', timestamp) as i, "
                            "unix_ts_to_rfc3339(timestamp, 'millisecond') as j FROM \"t/#\"");
    run("ten string/time functions", &fns, 1, 1);
    enum { N = 1000 };
    sql_rule **many = malloc(sizeof *many * N);
    for (int i = 0; i < N - 1; i++) {
        char id[32], sql[160];
        snprintf(id, sizeof id, "r%d", i);
        snprintf(sql, sizeof sql,
                 "SELECT payload.temp as t FROM \"site/%d/+/temp\", \"fleet/%d/#\" WHERE payload.temp > 20", i, i);
        many[i] = compile(id, sql);
    }
    many[N - 1] = json;
    double r_many = run("1000 rules, one matches (the JSON rule)", many, N, 1);
    printf("\nratios: JSON rule cost / bare cJSON parse cost = %.2f (target <= 1.5)\n", cj / r_json);
    printf("        1000 rules cost / one rule cost        = %.2f (target < 2)\n", r_json / r_many);
    printf("        SELECT * rate = %.2f M/s (target >= 3)\n", r_star / 1e6);
    return 0;
}
