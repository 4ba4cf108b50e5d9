/* bench_mqtt.c - sustained MQTT throughput and publish-to-arrival latency.
 *
 *   bench_mqtt mqtt  HOST PORT N SIZE RATE            publisher -> mosquitto -> subscriber
 *   bench_mqtt kafka HOST PORT N SIZE RATE BOOTSTRAP TOPIC
 *                                                publisher -> mosquitto -> emqx_confluent
 *                                                (MQTT source, rule, action) -> Kafka -> consumer
 *
 * One libmosquitto publisher sends N QoS 1 messages of SIZE bytes, as fast as
 * the broker takes them (RATE 0; max_inflight 1000) or paced at RATE msg/s
 * (latency without queueing), each carrying its send time and
 * sequence number; the receiving side (an MQTT subscriber, or a librdkafka
 * consumer reading the topic the node produces to) records arrival times.
 * Prints msg/s (first send to last arrival) and p50/p99/max latency. The
 * mqtt mode is the ceiling of the MQTT side for the kafka mode. */
#include <librdkafka/rdkafka.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t *lat; /* per sequence number: arrival - send, ns (0 = not yet) */
static atomic_long received;
static long total;
static int64_t first_send, last_arrival;

static void record(const char *p, size_t len) {
    char buf[64];
    size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    long long ts, seq;
    if (sscanf(buf, "{\"ts\":%lld,\"seq\":%lld", &ts, &seq) != 2 || seq < 0 || seq >= total) return;
    int64_t t = now_ns();
    if (lat[seq]) return; /* a duplicate */
    lat[seq] = t - ts;
    last_arrival = t;
    atomic_fetch_add(&received, 1);
}

static void on_sub_msg(struct mosquitto *m, void *ud, const struct mosquitto_message *msg) {
    (void)m, (void)ud;
    record(msg->payload, (size_t)msg->payloadlen);
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static struct mosquitto *connect_client(const char *id, const char *host, int port) {
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_max_inflight_messages_set(m, 1000);
    if (mosquitto_connect(m, host, port, 60) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench_mqtt: cannot connect %s:%d\n", host, port);
        exit(1);
    }
    mosquitto_loop_start(m);
    return m;
}

/* the Kafka side: a consumer from the end of the topic */
static atomic_bool stop_consumer;
static void *consume(void *arg) {
    rd_kafka_t *rk = arg;
    while (!atomic_load(&stop_consumer)) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
        if (!msg) continue;
        if (!msg->err) record(msg->payload, msg->len);
        rd_kafka_message_destroy(msg);
    }
    return NULL;
}

static rd_kafka_t *consumer(const char *bootstrap, const char *topic) {
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char group[64];
    snprintf(group, sizeof group, "bench-%d", (int)getpid());
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err) ||
        rd_kafka_conf_set(c, "group.id", group, err, sizeof err) ||
        rd_kafka_conf_set(c, "auto.offset.reset", "earliest", err, sizeof err) ||
        rd_kafka_conf_set(c, "fetch.wait.max.ms", "5", err, sizeof err)) {
        fprintf(stderr, "bench_mqtt: %s\n", err);
        exit(1);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "bench_mqtt: %s\n", err);
        exit(1);
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    /* the topic is new for the run: from the beginning; wait for the
     * assignment so the first records do not wait for the group join */
    for (int i = 0; i < 200; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (m) rd_kafka_message_destroy(m);
        rd_kafka_topic_partition_list_t *a = NULL;
        if (!rd_kafka_assignment(rk, &a) && a && a->cnt > 0) {
            rd_kafka_topic_partition_list_destroy(a);
            break;
        }
        if (a) rd_kafka_topic_partition_list_destroy(a);
    }
    return rk;
}

int main(int argc, char **argv) {
    if (argc < 7 || (strcmp(argv[1], "mqtt") && strcmp(argv[1], "kafka")) ||
        (!strcmp(argv[1], "kafka") && argc < 9)) {
        fprintf(stderr, "usage: bench_mqtt mqtt|kafka HOST PORT N SIZE RATE [BOOTSTRAP TOPIC]\n");
        return 2;
    }
    bool to_kafka = !strcmp(argv[1], "kafka");
    const char *host = argv[2];
    int port = atoi(argv[3]);
    total = atol(argv[4]);
    int size = atoi(argv[5]);
    long rate = atol(argv[6]);
    if (size < 64) size = 64;
    lat = calloc((size_t)total, sizeof *lat);
    mosquitto_lib_init();
    struct mosquitto *sub = NULL;
    rd_kafka_t *rk = NULL;
    pthread_t ct;
    const char *topic_prefix = to_kafka ? "bench/k" : "benchm/k";
    if (to_kafka) {
        rk = consumer(argv[7], argv[8]);
        pthread_create(&ct, NULL, consume, rk);
    } else {
        sub = connect_client("bench-sub", host, port);
        mosquitto_message_callback_set(sub, on_sub_msg);
        mosquitto_subscribe(sub, NULL, "benchm/#", 1);
        usleep(300 * 1000);
    }
    struct mosquitto *pub = connect_client("bench-pub", host, port);
    char *payload = malloc((size_t)size + 1);
    char topic[64];
    first_send = now_ns();
    for (long i = 0; i < total; i++) {
        if (rate > 0) { /* paced: wait for this message's slot */
            int64_t slot = first_send + (int64_t)(i * (1e9 / (double)rate));
            while (now_ns() < slot) {
                int64_t d = slot - now_ns();
                if (d > 200000) usleep((useconds_t)(d / 2000));
            }
        }
        int n = snprintf(payload, (size_t)size + 1, "{\"ts\":%lld,\"seq\":%ld,\"pad\":\"",
                         (long long)now_ns(), i);
        memset(payload + n, 'x', (size_t)(size - n - 2));
        memcpy(payload + size - 2, "\"}", 2);
        snprintf(topic, sizeof topic, "%s%ld", topic_prefix, i % 16);
        int rc;
        while ((rc = mosquitto_publish(pub, NULL, topic, size, payload, 1, false)) ==
               MOSQ_ERR_OVERSIZE_PACKET)
            ;
        if (rc != MOSQ_ERR_SUCCESS) usleep(100); /* outgoing queue full: let the loop drain */
    }
    int64_t deadline = now_ns() + 60LL * 1000000000;
    while (atomic_load(&received) < total && now_ns() < deadline)
        usleep(1000);
    long got = atomic_load(&received);
    if (to_kafka) {
        atomic_store(&stop_consumer, true);
        pthread_join(ct, NULL);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    int64_t *v = malloc(sizeof *v * (size_t)(got ? got : 1));
    long k = 0;
    for (long i = 0; i < total; i++)
        if (lat[i]) v[k++] = lat[i];
    qsort(v, (size_t)k, sizeof *v, cmp64);
    double secs = (double)(last_arrival - first_send) / 1e9;
    printf("%-6s N=%ld size=%dB rate=%s received=%ld  %.0f msg/s  latency p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
           to_kafka ? "kafka" : "mqtt", total, size, rate ? argv[6] : "max", got, got / (secs > 0 ? secs : 1),
           k ? v[k / 2] / 1e6 : 0, k ? v[(k * 99) / 100] / 1e6 : 0, k ? v[k - 1] / 1e6 : 0);
    mosquitto_disconnect(pub);
    mosquitto_loop_stop(pub, false);
    if (sub) {
        mosquitto_disconnect(sub);
        mosquitto_loop_stop(sub, false);
    }
    return got == total ? 0 : 1;
}
