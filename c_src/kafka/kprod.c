/* kprod.c - librdkafka producer with its own delivery-report thread; see kprod.h. */
#include "kprod.h"

#include "koauth.h"

#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kprod_topic {
    kprod_topic *next;
    rd_kafka_topic_t *rkt;
};

struct kprod {
    rd_kafka_t *rk;
    int ka_idle, ka_intvl, ka_cnt; /* TCP keep-alive; 0 = system defaults */
    kprod_hooks hooks;
    rd_kafka_queue_t *mainq; /* caller_polls with on_events: the queue watched */
    kprod_topic *topics;     /* handles made by kprod_topic_get */
    pthread_t poller;        /* unless hooks.caller_polls */
    atomic_bool stop;
    pthread_mutex_t log_lock;    /* last_error */
    pthread_mutex_t topics_lock; /* the topic handle list (never taken in librdkafka's callbacks) */
    char last_error[256];        /* newest librdkafka log line at level <= LOG_WARNING */
    koauth *oauth;               /* OAUTHBEARER token store, or NULL */
};

static atomic_long live_producers;

long kprod_live_count(void) {
    return atomic_load(&live_producers);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    kprod *p = opaque;
    if (!p->hooks.on_delivery) return;
    ec_error e;
    kprod_report r = {.opaque = m->_private,
                      .topic_opaque = m->rkt ? rd_kafka_topic_opaque(m->rkt) : NULL,
                      .partition = m->partition,
                      .offset = m->err ? -1 : m->offset,
                      .key_len = m->key ? m->key_len : 0,
                      .value_len = m->payload ? m->len : 0};
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
            ec_fail(&e, EC_EEXPIRED, "%s", KPROD_ERR_EXPIRED);
        else
            ec_fail(&e, EC_EKAFKA, "%s", rd_kafka_err2str(m->err));
        r.err = &e;
    }
    p->hooks.on_delivery(p->hooks.ctx, &r);
}

/* Errors librdkafka reports (served by poll): a failed or lost broker
 * connection is trouble for the owner; the text is kept for status reasons
 * (with an error callback set, librdkafka no longer logs them). */
static void error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque) {
    (void)rk;
    kprod *p = opaque;
    pthread_mutex_lock(&p->log_lock);
    snprintf(p->last_error, sizeof p->last_error, "%s: %s", rd_kafka_err2str(e), reason);
    pthread_mutex_unlock(&p->log_lock);
    if (e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
        e == RD_KAFKA_RESP_ERR__RESOLVE || e == RD_KAFKA_RESP_ERR__SSL ||
        e == RD_KAFKA_RESP_ERR__AUTHENTICATION)
        p->hooks.on_trouble(p->hooks.ctx);
}

/* caller_polls: the main queue got an event while empty (librdkafka thread,
 * queue lock held) */
static void events_cb(rd_kafka_t *rk, void *opaque) {
    (void)rk;
    kprod *p = opaque;
    p->hooks.on_events(p->hooks.ctx);
}

/* librdkafka must not print on EMQX's console: keep the newest warning or
 * error for status reasons (kprod_last_error) instead. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)fac;
    kprod *p = rd_kafka_opaque(rk);
    if (!p || level > 4 /* LOG_WARNING */) return;
    pthread_mutex_lock(&p->log_lock);
    snprintf(p->last_error, sizeof p->last_error, "%s", buf);
    pthread_mutex_unlock(&p->log_lock);
}

size_t kprod_last_error(kprod *p, char *buf, size_t n) {
    pthread_mutex_lock(&p->log_lock);
    size_t len = strlen(p->last_error);
    if (n) { /* truncation is intended */
        size_t k = len < n - 1 ? len : n - 1;
        memcpy(buf, p->last_error, k);
        buf[k] = '\0';
    }
    pthread_mutex_unlock(&p->log_lock);
    return len;
}

/* librdkafka's socket.keepalive.enable only switches keep-alive on; the
 * timing (EMQX's tcp_keepalive "Idle,Interval,Probes") is set here. */
static int socket_cb(int domain, int type, int protocol, void *opaque) {
    kprod *p = opaque;
    int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0 || !p || !p->ka_idle) return fd;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &p->ka_idle, sizeof p->ka_idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &p->ka_intvl, sizeof p->ka_intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &p->ka_cnt, sizeof p->ka_cnt);
    return fd;
}

static int oauth_set_token(void *h, const char *token, int64_t expires_ms, const char *principal,
                           char *err, size_t n) {
    return rd_kafka_oauthbearer_set_token(h, token, expires_ms, principal, NULL, 0, err, n) ? -1
                                                                                            : 0;
}

static void oauth_set_failure(void *h, const char *reason) {
    rd_kafka_oauthbearer_set_token_failure(h, reason);
}

static const koauth_ops oauth_ops = {oauth_set_token, oauth_set_failure};

/* librdkafka wants a token (start, and 80 % into the current one's life);
 * called on the poll thread. */
static void oauth_refresh_cb(rd_kafka_t *rk, const char *config, void *opaque) {
    (void)config;
    kprod *p = opaque;
    if (p && p->oauth) koauth_serve(p->oauth, rk, &oauth_ops);
}

/* our own properties (not librdkafka's): keep-alive timing and OAuth */
typedef struct own_props {
    int ka[3];
    koauth_cfg oauth;
} own_props;

static int own_prop(const char *k, const char *v, own_props *o, ec_error *err) {
    if (strcmp(k, KPROD_PROP_KEEPALIVE) == 0) {
        if (sscanf(v, "%d,%d,%d", &o->ka[0], &o->ka[1], &o->ka[2]) != 3 || o->ka[0] < 1 ||
            o->ka[1] < 1 || o->ka[2] < 1) {
            ec_fail(err, EC_EINVAL, "%s: expected Idle,Interval,Probes", KPROD_PROP_KEEPALIVE);
            return -1;
        }
    } else if (strcmp(k, KPROD_PROP_OAUTH_ENDPOINT) == 0) {
        o->oauth.endpoint = v;
    } else if (strcmp(k, KPROD_PROP_OAUTH_CLIENT_ID) == 0) {
        o->oauth.client_id = v;
    } else if (strcmp(k, KPROD_PROP_OAUTH_CLIENT_SECRET) == 0) {
        o->oauth.client_secret = v;
    } else if (strcmp(k, KPROD_PROP_OAUTH_SCOPE) == 0) {
        o->oauth.scope = v;
    } else {
        return 0;
    }
    return 1;
}

static void *poll_main(void *arg) {
    kprod *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

ec_status kprod_new(const char *const *kv, size_t n, const kprod_hooks *hooks, kprod **out,
                    ec_error *err) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) return ec_fail(err, EC_ENOMEM, "out of memory creating Kafka configuration");
    own_props own = {{0, 0, 0}, {NULL, NULL, NULL, NULL}};
    for (size_t i = 0; i < n; i++) {
        int r = own_prop(kv[2 * i], kv[2 * i + 1], &own, err);
        if (r < 0) {
            rd_kafka_conf_destroy(conf);
            return EC_EINVAL;
        }
        if (r > 0) continue;
        if (rd_kafka_conf_set(conf, kv[2 * i], kv[2 * i + 1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return ec_fail(err, EC_EINVAL, "Kafka property %s: %s", kv[2 * i], errstr);
        }
    }
    kprod *p = calloc(1, sizeof *p);
    if (!p) {
        rd_kafka_conf_destroy(conf);
        return ec_fail(err, EC_ENOMEM, "out of memory creating producer");
    }
    if (hooks) p->hooks = *hooks;
    p->ka_idle = own.ka[0];
    p->ka_intvl = own.ka[1];
    p->ka_cnt = own.ka[2];
    if (own.ka[0]) rd_kafka_conf_set_socket_cb(conf, socket_cb);
    if (own.oauth.endpoint) {
        if (!own.oauth.client_id || !own.oauth.client_secret ||
            !(p->oauth = koauth_acquire(&own.oauth))) {
            rd_kafka_conf_destroy(conf);
            free(p);
            return ec_fail(err, EC_EINVAL, "OAuth: client id and secret required");
        }
        rd_kafka_conf_set_oauthbearer_token_refresh_cb(conf, oauth_refresh_cb);
    }
    pthread_mutex_init(&p->log_lock, NULL);
    pthread_mutex_init(&p->topics_lock, NULL);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    if (p->hooks.on_trouble) rd_kafka_conf_set_error_cb(conf, error_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p->rk) { /* conf is still ours on failure */
        rd_kafka_conf_destroy(conf);
        pthread_mutex_destroy(&p->log_lock);
        pthread_mutex_destroy(&p->topics_lock);
        koauth_release(p->oauth);
        free(p);
        return ec_fail(err, EC_EINVAL, "cannot create Kafka producer: %s", errstr);
    }
    atomic_init(&p->stop, false);
    if (p->hooks.caller_polls && p->hooks.on_events) {
        p->mainq = rd_kafka_queue_get_main(p->rk);
        rd_kafka_queue_cb_event_enable(p->mainq, events_cb, p);
    }
    if (!p->hooks.caller_polls && pthread_create(&p->poller, NULL, poll_main, p) != 0) {
        if (p->oauth) koauth_detach(p->oauth, p->rk);
        rd_kafka_destroy(p->rk);
        pthread_mutex_destroy(&p->log_lock);
        pthread_mutex_destroy(&p->topics_lock);
        koauth_release(p->oauth);
        free(p);
        return ec_fail(err, EC_ENOMEM, "cannot start the producer poll thread");
    }
    atomic_fetch_add(&live_producers, 1);
    *out = p;
    return EC_OK;
}

void kprod_poll(kprod *p) {
    rd_kafka_poll(p->rk, 0);
}

kprod_topic *kprod_topic_get(kprod *p, const char *name, void *opaque) {
    pthread_mutex_lock(&p->topics_lock);
    kprod_topic *t = p->topics;
    while (t && strcmp(rd_kafka_topic_name(t->rkt), name) != 0)
        t = t->next;
    if (t) {
        pthread_mutex_unlock(&p->topics_lock);
        return t;
    }
    rd_kafka_topic_conf_t *tc = rd_kafka_default_topic_conf_dup(p->rk); /* acks, codec, ... */
    t = calloc(1, sizeof *t);
    if (!t || !tc) {
        free(t);
        if (tc) rd_kafka_topic_conf_destroy(tc);
        pthread_mutex_unlock(&p->topics_lock);
        return NULL;
    }
    rd_kafka_topic_conf_set_opaque(tc, opaque);
    t->rkt = rd_kafka_topic_new(p->rk, name, tc); /* takes tc, also on failure */
    /* a topic librdkafka already had (used by name before) keeps its old
     * configuration, opaque included: no handle then */
    if (t->rkt && rd_kafka_topic_opaque(t->rkt) != opaque) {
        rd_kafka_topic_destroy(t->rkt);
        t->rkt = NULL;
    }
    if (!t->rkt) {
        free(t);
        pthread_mutex_unlock(&p->topics_lock);
        return NULL;
    }
    t->next = p->topics;
    p->topics = t;
    pthread_mutex_unlock(&p->topics_lock);
    return t;
}

ec_status kprod_send(kprod *p, const kprod_record *rec, ec_error *err) {
    rd_kafka_headers_t *hdrs = NULL;
    if (rec->n_headers) {
        hdrs = rd_kafka_headers_new(rec->n_headers);
        for (size_t i = 0; i < rec->n_headers; i++) {
            const kprod_header *h = &rec->headers[i];
            rd_kafka_header_add(hdrs, h->key, (ssize_t)h->key_len, h->val, (ssize_t)h->val_len);
        }
    }
    rd_kafka_resp_err_t e =
        rec->th ? rd_kafka_producev(
                      p->rk, RD_KAFKA_V_RKT(rec->th->rkt), RD_KAFKA_V_PARTITION(rec->partition),
                      RD_KAFKA_V_MSGFLAGS(rec->borrow_value ? 0 : RD_KAFKA_MSG_F_COPY),
                      RD_KAFKA_V_KEY((void *)rec->key, rec->key ? rec->key_len : 0),
                      RD_KAFKA_V_VALUE((void *)rec->value, rec->value ? rec->value_len : 0),
                      RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms), RD_KAFKA_V_HEADERS(hdrs),
                      RD_KAFKA_V_OPAQUE(rec->opaque), RD_KAFKA_V_END)
                : rd_kafka_producev(
                      p->rk, RD_KAFKA_V_TOPIC(rec->topic), RD_KAFKA_V_PARTITION(rec->partition),
                      RD_KAFKA_V_MSGFLAGS(rec->borrow_value ? 0 : RD_KAFKA_MSG_F_COPY),
                      RD_KAFKA_V_KEY((void *)rec->key, rec->key ? rec->key_len : 0),
                      RD_KAFKA_V_VALUE((void *)rec->value, rec->value ? rec->value_len : 0),
                      RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms), RD_KAFKA_V_HEADERS(hdrs),
                      RD_KAFKA_V_OPAQUE(rec->opaque), RD_KAFKA_V_END);
    if (e) {
        if (hdrs) rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
        if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            return ec_fail(err, EC_EKAFKA, "message_too_large: %s", rd_kafka_err2str(e));
        ec_status code =
            e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? EC_ELIMIT
            : e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION
                ? EC_ESTATE
                : EC_EKAFKA;
        return ec_fail(err, code, "cannot enqueue record for %s: %s",
                       rec->th ? rd_kafka_topic_name(rec->th->rkt) : rec->topic,
                       rd_kafka_err2str(e));
    }
    return EC_OK;
}

int kprod_flush(kprod *p, int timeout_ms) {
    rd_kafka_flush(p->rk, timeout_ms);
    return rd_kafka_outq_len(p->rk);
}

ec_status kprod_ping(kprod *p, int timeout_ms, ec_error *err) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
    if (e) {
        char last[200];
        if (kprod_last_error(p, last, sizeof last))
            return ec_fail(err, EC_EKAFKA, "metadata request failed: %s; last error: %s",
                           rd_kafka_err2str(e), last);
        return ec_fail(err, EC_EKAFKA, "metadata request failed: %s", rd_kafka_err2str(e));
    }
    int brokers = md->broker_cnt;
    rd_kafka_metadata_destroy(md);
    if (brokers <= 0) return ec_fail(err, EC_EKAFKA, "metadata lists no broker");
    return EC_OK;
}

int32_t kprod_partition_count(kprod *p, const char *topic, int timeout_ms, ec_error *err) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
    if (!rkt) {
        ec_fail(err, EC_EKAFKA, "cannot use topic %s", topic);
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(p->rk, 0, rkt, &md, timeout_ms);
    int32_t n = -1;
    if (e) {
        char last[160];
        if (kprod_last_error(p, last, sizeof last))
            ec_fail(err, EC_EKAFKA, "metadata for %s: %s; last error: %s", topic,
                    rd_kafka_err2str(e), last);
        else
            ec_fail(err, EC_EKAFKA, "metadata for %s: %s", topic, rd_kafka_err2str(e));
    } else if (md->topic_cnt == 1) {
        const rd_kafka_metadata_topic_t *t = &md->topics[0];
        if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            n = 0;
            ec_fail(err, EC_EKAFKA, "Unknown topic or partition: %s", topic);
        } else if (t->err) {
            ec_fail(err, EC_EKAFKA, "metadata for %s: %s", topic, rd_kafka_err2str(t->err));
        } else {
            n = t->partition_cnt;
        }
    } else {
        ec_fail(err, EC_EKAFKA, "metadata for %s: no topic in the answer", topic);
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

void kprod_destroy(kprod *p, int flush_timeout_ms) {
    if (!p) return;
    if (flush_timeout_ms > 0) rd_kafka_flush(p->rk, flush_timeout_ms);
    atomic_store(&p->stop, true);
    if (!p->hooks.caller_polls) pthread_join(p->poller, NULL);
    /* fail whatever is still queued so every opaque gets its callback */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    for (int i = 0; i < 200 && rd_kafka_outq_len(p->rk) > 0; i++)
        rd_kafka_poll(p->rk, 10);
    if (p->oauth) koauth_detach(p->oauth, p->rk); /* no token is handed to a dead handle */
    for (kprod_topic *t = p->topics, *n; t; t = n) {
        n = t->next;
        rd_kafka_topic_destroy(t->rkt);
        free(t);
    }
    if (p->mainq) {
        rd_kafka_queue_cb_event_enable(p->mainq, NULL, NULL);
        rd_kafka_queue_destroy(p->mainq);
    }
    rd_kafka_destroy(p->rk);
    pthread_mutex_destroy(&p->log_lock);
    pthread_mutex_destroy(&p->topics_lock);
    koauth_release(p->oauth);
    free(p);
    atomic_fetch_sub(&live_producers, 1);
}
