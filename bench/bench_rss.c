/* bench_rss.c - memory held by an action's buffer during a Kafka outage
 * (make bench; issue 5).
 *
 * librdkafka's mock cluster with one broker and a one-partition topic; an
 * action with per_partition_limit L; the broker goes down and records keep
 * coming at a steady rate for the outage (60 s by default) while the
 * process's resident set is sampled every 100 ms; then the broker comes back
 * and every record must end as success or dropped. Reported: the growth of
 * the resident set over the value before the outage, against L, at its peak
 * and after the first sixth of the outage (flat: the two are close), and the
 * bytes of segment files at the end of the outage. Runs for buffer.mode
 * memory, disk and hybrid, each in a process of its own (memory freed by one
 * run would otherwise hide the next one's growth).
 *
 * Environment: RSS_OUTAGE_S (60), RSS_RATE (records/s, 40000), RSS_LIMIT_MB
 * (L, 64), RSS_VALUE (bytes, 100), RSS_MODE (one mode only). */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../c_src/core/json.h"
#include "../c_src/kafka/kaction.h"

static _Atomic long replies;
static void on_reply(void *ctx, void *token, const char *error, int32_t p, int64_t o) {
    (void)ctx, (void)token, (void)error, (void)p, (void)o;
    atomic_fetch_add(&replies, 1);
}

static void quiet(const rd_kafka_t *rk, int l, const char *f, const char *b) {
    (void)rk, (void)l, (void)f, (void)b;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && atol(v) > 0 ? atol(v) : dflt;
}

/* bytes of the files under dir */
static double dir_mb(const char *dir) {
    if (!dir) return 0;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "du -sb %s 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    long long b = 0;
    if (p) {
        if (fscanf(p, "%lld", &b) != 1) b = 0;
        pclose(p);
    }
    return (double)b / (1 << 20);
}

static kaction *action(rd_kafka_mock_cluster_t *mc, const char *mode, long limit_mb,
                       const char *dir, arena *a) {
    char cj[512], aj[1024];
    snprintf(cj, sizeof cj,
             "{\"type\":\"kafka_producer\",\"bootstrap_hosts\":\"%s\",\"metadata_request_timeout\":"
             "\"1s\"}",
             rd_kafka_mock_cluster_bootstraps(mc));
    char buffer[300];
    if (dir)
        snprintf(buffer, sizeof buffer,
                 "\"buffer\":{\"mode\":\"%s\",\"per_partition_limit\":\"%ldMB\"}},"
                 "\"buffer_dir\":\"%s\"",
                 mode, limit_mb, dir);
    else
        snprintf(buffer, sizeof buffer,
                 "\"buffer\":{\"mode\":\"memory\",\"per_partition_limit\":\"%ldMB\","
                 "\"memory_overload_protection\":false}}",
                 limit_mb);
    snprintf(aj, sizeof aj,
             "{\"parameters\":{\"topic\":\"rss\",\"message\":{\"key\":\"${k}\",\"value\":\"${v}\"},%s}",
             buffer);
    value cv, av;
    kconf_connector c;
    kconf_action act;
    ec_error err;
    kaction *k;
    if (json_decode(a, arena_strndup(a, cj, strlen(cj)), strlen(cj), NULL, &cv, &err) ||
        kconf_connector_parse(&cv, a, &c, &err) ||
        json_decode(a, arena_strndup(a, aj, strlen(aj)), strlen(aj), NULL, &av, &err) ||
        kconf_action_parse(&av, false, a, &act, &err) ||
        kaction_new(&c, &act, on_reply, NULL, &k, &err)) {
        fprintf(stderr, "action: %s\n", err.msg);
        exit(1);
    }
    return k;
}

static void run(const char *mode, const char *dir, long outage_s, long rate, long limit_mb,
                long vlen) {
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet);
    rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
    rd_kafka_mock_topic_create(mc, "rss", 1, 1);
    arena a;
    arena_init(&a, 8192);
    kaction *k = action(mc, mode, limit_mb, dir, &a);

    arena ma;
    arena_init(&ma, 8192);
    bool ok;
    value out = v_map_new(&ma, 2, &ok);
    char key[32], *val = malloc((size_t)vlen);
    memset(val, 'v', (size_t)vlen);
    v_map_append(&ma, &out, V_LIT("k"), V_LIT("warm"));
    v_map_append(&ma, &out, V_LIT("v"), v_bin(val, (size_t)vlen));
    ec_error err;
    atomic_store(&replies, 0);
    kaction_send(k, &out, (void *)1, &err);
    while (atomic_load(&replies) < 1)
        sleep_s(0.001);
    sleep_s(0.5);
    long rss0 = rss_bytes(), peak = rss0, early = -1;

    rd_kafka_mock_broker_set_down(mc, 1);
    double t0 = now_s(), next_sample = t0;
    long sent = 0;
    while (now_s() - t0 < (double)outage_s) {
        long due = (long)((now_s() - t0) * (double)rate);
        for (; sent < due; sent++) {
            snprintf(key, sizeof key, "device-%ld", sent % 1000);
            out.u.pairs[0].val = v_bin(key, strlen(key));
            kaction_send(k, &out, (void *)1, &err);
        }
        if (now_s() >= next_sample) {
            long r = rss_bytes();
            if (r > peak) peak = r;
            if (early < 0 && now_s() - t0 >= (double)outage_s / 6) early = peak;
            next_sample += 0.1;
        }
        sleep_s(0.002);
    }
    kaction_metrics m;
    kaction_get_metrics(k, &m);
    long queued = m.queuing_bytes;
    double disk_mb = dir_mb(dir);
    rd_kafka_mock_broker_set_up(mc, 1);
    double t1 = now_s();
    while (atomic_load(&replies) < sent + 1 && now_s() - t1 < 120)
        sleep_s(0.01);
    kaction_get_metrics(k, &m);
    double growth = (double)(peak - rss0) / (1 << 20);
    printf("%-7s %9ld %9llu %9llu %8.1f %8.1f %9.1f %9.1f %6.0f%% %8.1f\n", mode, sent,
           (unsigned long long)m.success - 1, (unsigned long long)m.dropped,
           (double)queued / (1 << 20), (double)limit_mb, (double)(early - rss0) / (1 << 20),
           growth, 100 * growth / (double)limit_mb, disk_mb);
    if ((long)(m.success + m.dropped + m.failed) != sent + 1)
        fprintf(stderr, "  %s: %ld records unaccounted for\n", mode,
                sent + 1 - (long)(m.success + m.dropped + m.failed));
    fflush(stdout);
    kaction_destroy(k, 1000);
    arena_free(&ma);
    arena_free(&a);
    free(val);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
}

int main(void) {
    long outage = env_long("RSS_OUTAGE_S", 60), rate = env_long("RSS_RATE", 40000),
         limit = env_long("RSS_LIMIT_MB", 64), vlen = env_long("RSS_VALUE", 100);
    printf("buffer RSS during a %ld s outage: %ld records/s of %ld B, per_partition_limit %ld MB, "
           "1 partition (mock cluster)\n",
           outage, rate, vlen, limit);
    printf("%-7s %9s %9s %9s %8s %8s %9s %9s %7s %8s\n", "mode", "offered", "success", "dropped",
           "queued", "L MB", "RSS+ 1/6", "RSS+ MB", "RSS+/L", "disk MB");
    fflush(stdout);
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ec-bench-rss-%d", (int)getpid());
    const char *modes[] = {"memory", "disk", "hybrid"};
    const char *only = getenv("RSS_MODE"); /* memory | disk | hybrid: that mode alone */
    for (int i = 0; i < 3; i++) {
        if (only && strcmp(only, modes[i]) != 0) continue;
        pid_t pid = fork();
        if (pid == 0) {
            run(modes[i], i ? dir : NULL, outage, rate, limit, vlen);
            _exit(0);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0) return 1;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
