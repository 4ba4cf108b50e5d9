/* bench_sink.c - producer action throughput (make bench).
 *
 * For each case, N records go (a) through the action: render key/value/
 * timestamp templates from a rule output, partition, buffer, produce, wait
 * for every ack (acks=all); and through raw librdkafka with the same
 * pre-rendered keys, same partitions, same producer properties, twice: (b)
 * every record lends librdkafka one payload buffer, which stays in the CPU's
 * caches, and (c) each record has a value of its own, read from 256 MiB of
 * distinct pre-rendered values written before the run, as a producer of
 * distinct records reads them (the action's records are distinct too: each
 * is copied into the action's buffer). The ratios a/b and a/c are the cost
 * of our layer; the three sides run 5 times in rotating order and the medians
 * are compared. BENCH_RAW_COPY=1: both raw sides have librdkafka copy each
 * value (RD_KAFKA_MSG_F_COPY), as a producer that does not keep its records
 * alive until their delivery reports must. Runs on librdkafka's mock cluster
 * and, when KAFKA_BOOTSTRAP is set, on that real broker (topic
 * KAFKA_BENCH_TOPIC with 3 partitions). */
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../c_src/core/json.h"
#include "../c_src/kafka/kaction.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Atomic long acked;
static void on_reply(void *ctx, void *token, const char *error, int32_t p, int64_t o) {
    (void)ctx, (void)token, (void)p, (void)o;
    if (error) fprintf(stderr, "delivery error: %s\n", error);
    atomic_fetch_add(&acked, 1);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk, (void)level, (void)fac, (void)buf;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk, (void)opaque;
    if (m->err) fprintf(stderr, "raw delivery error: %s\n", rd_kafka_err2str(m->err));
    atomic_fetch_add(&acked, 1);
}

typedef struct bench_case {
    const char *bootstrap; /* NULL: mock cluster */
    const char *topic;
    size_t value_len;
    const char *strategy;
    int n;
    const char *buffer_dir; /* disk mode in this directory; "-": memory mode with the same limit */
} bench_case;

static void conn_and_action(const bench_case *c, arena *a, kconf_connector *conn, kconf_action *act) {
    char conf[512];
    snprintf(conf, sizeof conf,
             "{\"type\":\"kafka_producer\",\"bootstrap_hosts\":\"%s\"}", c->bootstrap ? c->bootstrap : "127.0.0.1:1");
    value cv, av;
    ec_error err;
    if (json_decode(a, arena_strndup(a, conf, strlen(conf)), strlen(conf), NULL, &cv, &err) ||
        kconf_connector_parse(&cv, a, conn, &err)) {
        fprintf(stderr, "connector: %s\n", err.msg);
        exit(1);
    }
    if (!c->bootstrap) { /* librdkafka's built-in mock cluster replaces the bootstrap list */
        conn->props.kv[2 * conn->props.n] = "test.mock.num.brokers";
        conn->props.kv[2 * conn->props.n + 1] = "1";
        conn->props.n++;
    }
    char buf[300] = "";
    if (c->buffer_dir) /* the disk-vs-memory cases: a limit that drops nothing in either mode */
        snprintf(buf, sizeof buf, ",\"buffer\":{\"mode\":\"%s\",\"per_partition_limit\":\"2GB\"}}%s%s%s",
                 strcmp(c->buffer_dir, "-") ? "disk" : "memory", strcmp(c->buffer_dir, "-") ? ",\"buffer_dir\":\"" : "",
                 strcmp(c->buffer_dir, "-") ? c->buffer_dir : "", strcmp(c->buffer_dir, "-") ? "\"" : "");
    snprintf(conf, sizeof conf,
             "{\"parameters\":{\"topic\":\"%s\",\"partition_strategy\":\"%s\",\"required_acks\":\"all_isr\","
             "\"message\":{\"key\":\"${clientid}\",\"value\":\"${payload}\"}%s}",
             c->topic, c->strategy, c->buffer_dir ? buf : "}");
    if (json_decode(a, arena_strndup(a, conf, strlen(conf)), strlen(conf), NULL, &av, &err) ||
        kconf_action_parse(&av, false, a, act, &err)) {
        fprintf(stderr, "action: %s\n", err.msg);
        exit(1);
    }
}

static double run_action(const bench_case *c, char **keys, const char *payload) {
    arena a;
    arena_init(&a, 8192);
    kconf_connector conn;
    kconf_action act;
    conn_and_action(c, &a, &conn, &act);
    kaction *k;
    ec_error err;
    if (kaction_new(&conn, &act, on_reply, NULL, &k, &err)) {
        fprintf(stderr, "kaction_new: %s\n", err.msg);
        exit(1);
    }
    /* warm up: metadata and connections */
    atomic_store(&acked, 0);
    arena ma;
    arena_init(&ma, 8192);
    bool ok;
    value out = v_map_new(&ma, 4, &ok);
    v_map_append(&ma, &out, V_LIT("clientid"), V_LIT("warm"));
    v_map_append(&ma, &out, V_LIT("payload"), v_bin(payload, c->value_len));
    v_map_append(&ma, &out, V_LIT("timestamp"), v_int(1700000000000));
    kaction_send(k, &out, (void *)1, &err);
    while (atomic_load(&acked) < 1) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&acked, 0);
    double t0 = now_s();
    for (int i = 0; i < c->n; i++) {
        out.u.pairs[0].val = v_bin(keys[i % 1000], strlen(keys[i % 1000]));
        if (kaction_send(k, &out, (void *)1, &err)) {
            fprintf(stderr, "send: %s\n", err.msg);
            exit(1);
        }
    }
    while (atomic_load(&acked) < c->n) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    double dt = now_s() - t0;
    kaction_destroy(k, 1000);
    arena_free(&ma);
    arena_free(&a);
    return c->n / dt;
}

/* pool NULL: every record lends librdkafka the one payload buffer (always
 * in cache); else record i's value is the (i mod pool_n)-th of pool_n
 * distinct pre-rendered values laid end to end, more than the caches hold */
static double run_raw(const bench_case *c, char **keys, const char *payload, const char *pool, size_t pool_n) {
    arena a;
    arena_init(&a, 8192);
    kconf_connector conn;
    kconf_action act;
    conn_and_action(c, &a, &conn, &act);
    kconf_props props;
    ec_error err;
    kconf_producer_props(&conn, &act, &a, &props, &err);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    for (size_t i = 0; i < props.n; i++)
        if (rd_kafka_conf_set(conf, props.kv[2 * i], props.kv[2 * i + 1], errstr, sizeof errstr)) {
            fprintf(stderr, "%s\n", errstr);
            exit(1);
        }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    part_strategy ps = strcmp(c->strategy, "key_dispatch") == 0 ? PART_KEY_DISPATCH : PART_RANDOM;
    /* the same pre-rendered records: key, value, the partition our action picks */
    atomic_store(&acked, 0);
    rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_VALUE((void *)payload, c->value_len), RD_KAFKA_V_END);
    while (atomic_load(&acked) < 1) rd_kafka_poll(rk, 1);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, c->topic, NULL);
    rd_kafka_metadata(rk, 0, rkt, &md, 5000);
    int32_t cnt = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    int flags = getenv("BENCH_RAW_COPY") ? RD_KAFKA_MSG_F_COPY : 0;
    atomic_store(&acked, 0);
    double t0 = now_s();
    for (int i = 0; i < c->n; i++) {
        const char *key = keys[i % 1000];
        size_t kl = strlen(key);
        int32_t p = part_pick(ps, key, kl, cnt);
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_PARTITION(p),
                                 RD_KAFKA_V_KEY((void *)key, kl),
                                 RD_KAFKA_V_VALUE(pool ? (void *)(pool + (size_t)(i % pool_n) * c->value_len)
                                                       : (void *)payload,
                                                  c->value_len),
                                 RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_TIMESTAMP(1700000000000), RD_KAFKA_V_END) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 1);
        rd_kafka_poll(rk, 0);
    }
    while (atomic_load(&acked) < c->n) rd_kafka_poll(rk, 1);
    double dt = now_s() - t0;
    rd_kafka_destroy(rk);
    arena_free(&a);
    return c->n / dt;
}

/* *pool, filled on first use (exits when out of memory) */
static const char *dist_pool(char **pool, size_t bytes) {
    if (!*pool) {
        if (!(*pool = malloc(bytes))) exit(1);
        for (size_t i = 0; i < bytes; i++) (*pool)[i] = (char)('a' + i % 26);
    }
    return *pool;
}

static int dcmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double median_n(double *v, int n) { /* sorts v */
    qsort(v, (size_t)n, sizeof *v, dcmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(void) {
    char *keys[1000];
    for (int i = 0; i < 1000; i++) {
        keys[i] = malloc(24);
        snprintf(keys[i], 24, "vehicle-%04d", i);
    }
    char *payload = malloc(1024);
    memset(payload, 'x', 1024);
    const char *real = getenv("KAFKA_BOOTSTRAP");
    const char *real_topic = getenv("KAFKA_BENCH_TOPIC");
    int n = getenv("BENCH_RECORDS") ? atoi(getenv("BENCH_RECORDS")) : 100000;
    printf("%d records per run, medians of 5 runs\n", n);
    /* the distinct values of the second baseline: 256 MiB, written before its
     * first run (not at all when no raw-dist side runs) */
    const size_t pool_bytes = 256u << 20;
    char *pool = NULL;
    printf("%-8s %-13s %6s %12s %12s %12s %7s %7s\n", "cluster", "strategy", "value", "action r/s", "raw r/s",
           "raw-dist r/s", "a/raw", "a/dist");
    for (int where = 0; where < 2 && !getenv("BENCH_DISK_ONLY"); where++) {
        if (where == 1 && !real) break;
        for (int s = 0; s < 2; s++)
            for (int v = 0; v < 2; v++) {
                bench_case c = {where ? real : NULL, where ? real_topic : "bench-mock", v ? 1024 : 100,
                                s ? "key_dispatch" : "random", n, NULL};
                char tag[32]; /* BENCH_ONLY=random:100 runs one case (profiling) */
                snprintf(tag, sizeof tag, "%s:%zu", c.strategy, c.value_len);
                if (getenv("BENCH_ONLY") && strcmp(getenv("BENCH_ONLY"), tag) != 0) continue;
                size_t pool_n = pool_bytes / c.value_len;
                /* 5 rounds, the order of the three sides rotating; medians of each */
                double res[3][5] = {{0}};
                const char *side = getenv("BENCH_SIDE"); /* action | raw | raw-dist: profile one side */
                static const char *const names[3] = {"action", "raw", "raw-dist"};
                for (int rnd = 0; rnd < 5; rnd++)
                    for (int j = 0; j < 3; j++) {
                        int w = (rnd + j) % 3;
                        if (side && strcmp(side, names[w]) != 0) continue;
                        res[w][rnd] = w == 0   ? run_action(&c, keys, payload)
                                      : w == 1 ? run_raw(&c, keys, payload, NULL, 0)
                                               : run_raw(&c, keys, payload, dist_pool(&pool, pool_bytes), pool_n);
                    }
                double act = median_n(res[0], 5), raw = median_n(res[1], 5), dist = median_n(res[2], 5);
                if (side) { /* profiling one side: no comparison to print */
                    int w = strcmp(side, "action") == 0 ? 0 : strcmp(side, "raw") == 0 ? 1 : 2;
                    printf("%-8s %-13s %6zu %s %.0f r/s\n", where ? "real" : "mock", c.strategy, c.value_len, side,
                           median_n(res[w], 5));
                    continue;
                }
                printf("%-8s %-13s %6zu %12.0f %12.0f %12.0f %6.0f%% %6.0f%%\n", where ? "real" : "mock", c.strategy,
                       c.value_len, act, raw, dist, 100 * act / raw, 100 * act / dist);
                fflush(stdout);
            }
    }
    if (getenv("BENCH_ONLY")) return 0;
    /* buffer.mode disk vs memory (same action otherwise), fsync batched every 200 ms */
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ec-bench-disk-%d", (int)getpid());
    printf("\nbuffer.mode disk vs memory (%s broker, key_dispatch)\n", real ? "real" : "mock");
    /* Rounds alternate the order of the two modes; the ratio is the median of
     * each round's disk / memory (a round's two runs are seconds apart, so a
     * drift of the machine's speed cancels out), with the rounds' range */
    const char *nr = getenv("BENCH_DISK_ROUNDS");
    int rounds = nr && atoi(nr) > 0 && atoi(nr) <= 25 ? atoi(nr) : 7;
    printf("%6s %12s %12s %7s  %s\n", "value", "memory r/s", "disk r/s", "ratio", "rounds");
    for (int v = 0; v < 2; v++) {
        const char *only = getenv("BENCH_DISK_VALUE"); /* 100 | 1024: one size (profiling) */
        if (only && atoi(only) != (v ? 1024 : 100)) continue;
        bench_case mem = {real ? real : NULL, real ? real_topic : "bench-mock", v ? 1024 : 100, "key_dispatch", n,
                          "-"};
        bench_case disk = mem;
        disk.buffer_dir = dir;
        double ms[25], ds[25], rs[25];
        for (int rnd = 0; rnd < rounds; rnd++) {
            char cmd[128];
            snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
            if (system(cmd) != 0) return 1;
            const char *side = getenv("BENCH_SIDE"); /* disk | memory: profile one side */
            if (side) {
                ds[rnd] = strcmp(side, "memory") ? run_action(&disk, keys, payload) : 1;
                ms[rnd] = strcmp(side, "memory") ? 1 : run_action(&mem, keys, payload);
            } else if (rnd % 2) {
                ds[rnd] = run_action(&disk, keys, payload);
                ms[rnd] = run_action(&mem, keys, payload);
            } else {
                ms[rnd] = run_action(&mem, keys, payload);
                ds[rnd] = run_action(&disk, keys, payload);
            }
        }
        for (int rnd = 0; rnd < rounds; rnd++)
            rs[rnd] = ds[rnd] / ms[rnd];
        double r = median_n(rs, rounds), m = median_n(ms, rounds), d = median_n(ds, rounds);
        printf("%6zu %12.0f %12.0f %6.0f%%  %.0f-%.0f%%\n", mem.value_len, m, d, 100 * r, 100 * rs[0],
               100 * rs[rounds - 1]);
        fflush(stdout);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
