/* msrc.c - the MQTT source thread on libmosquitto (see msrc.h). */
#include "msrc.h"

#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/userprops.h"
#include "../kafka/kconf.h"

#define BACKOFF_MIN_S      1
#define BACKOFF_MAX_S      30
#define LOOP_MS            200 /* how long one turn of the loop waits for the socket: the stop latency */
#define CONNECT_TIMEOUT_MS 15000

struct msrc {
    msrc_conf c;
    arena a; /* owns the conf copy */
    struct mosquitto *mosq;
    msrc_cb cb;
    void *ud;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    _Atomic uint64_t received, connects, failures;
    atomic_bool connected;
    bool thread_started;
    char last_error[160]; /* under mu */
};

/* ---- configuration ---------------------------------------------------------- */

static ec_status bad(ec_error *err, const char *path, const char *why) {
    return ec_fail(err, EC_EINVAL, "%s: %s", path, why);
}

static const value *get(const value *m, const char *k) {
    return m && m->type == VT_MAP ? v_map_get(m, k, strlen(k)) : NULL;
}

static char *str_dup(arena *a, const value *v) {
    return v && v->type == VT_BIN ? arena_strndup(a, v->u.s, v->len) : NULL;
}

static bool is_str(const value *v, const char *lit) {
    size_t n = strlen(lit);
    return v && v->type == VT_BIN && v->len == n && !memcmp(v->u.s, lit, n);
}

static ec_status opt_bool(const value *m, const char *k, bool dflt, bool *out, const char *path,
                          ec_error *err) {
    const value *v = get(m, k);
    if (!v) {
        *out = dflt;
        return EC_OK;
    }
    if (v->type != VT_BOOL) return bad(err, path, "expected true or false");
    *out = v->u.b;
    return EC_OK;
}

ec_status msrc_conf_parse(const value *conn, const value *params, arena *a, msrc_conf *out,
                          ec_error *err) {
    ec_status st;
    memset(out, 0, sizeof *out);
    const value *server = get(conn, "server");
    if (!server || server->type != VT_BIN || !server->len)
        return bad(err, "server", "required: \"host[:port]\"");
    char *hp = str_dup(a, server);
    while (*hp == ' ')
        hp++;
    char *colon = strrchr(hp, ':');
    out->port = 1883;
    if (hp[0] == '[') { /* [ipv6]:port */
        char *end = strchr(hp, ']');
        if (!end) return bad(err, "server", "unterminated [IPv6 address]");
        *end = 0;
        colon = end[1] == ':' ? end + 1 : NULL;
        hp++;
    }
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (*e || p < 1 || p > 65535) return bad(err, "server", "port must be 1-65535");
        out->port = (int)p;
        *colon = 0;
    }
    if (!*hp) return bad(err, "server", "empty host");
    out->host = hp;
    const value *pv = get(conn, "proto_ver");
    if (!pv || is_str(pv, "v4"))
        out->proto = 4;
    else if (is_str(pv, "v5"))
        out->proto = 5;
    else if (is_str(pv, "v3"))
        out->proto = 3;
    else
        return bad(err, "proto_ver", "expected v3, v4 or v5");
    const value *cid = get(conn, "clientid");
    if (cid && (cid->type != VT_BIN || !cid->len || cid->len > 65535))
        return bad(err, "clientid", "expected a non-empty string");
    out->clientid = str_dup(a, cid);
    const value *u = get(conn, "username"), *pw = get(conn, "password");
    if (u && u->type != VT_BIN && u->type != VT_NULL)
        return bad(err, "username", "expected a string");
    if (pw && pw->type != VT_BIN && pw->type != VT_NULL)
        return bad(err, "password", "expected a string");
    out->username = u && u->len ? str_dup(a, u) : NULL;
    out->password = pw && pw->len ? str_dup(a, pw) : NULL;
    uint64_t ka = 160;
    const value *kv = get(conn, "keepalive");
    if (kv && (!kconf_duration_s(kv, &ka) || ka > 65535))
        return bad(err, "keepalive", "expected a duration up to 65535s, e.g. \"160s\"");
    out->keepalive_s = (int)(ka < 5 ? 5 : ka);
    uint64_t ct = CONNECT_TIMEOUT_MS;
    const value *ctv = get(conn, "connect_timeout");
    if (ctv && (!kconf_duration_ms(ctv, &ct) || ct < 100 || ct > 600000))
        return bad(err, "connect_timeout", "expected a duration from 100ms to 10m, e.g. \"15s\"");
    out->connect_timeout_ms = (int)ct;
    /* a persistent session by default: QoS 1 messages published while the
     * node is down wait on the broker (at-least-once across restarts) */
    if ((st = opt_bool(conn, "clean_start", false, &out->clean_start, "clean_start", err)))
        return st;
    uint64_t se = 7200;
    const value *sv = get(conn, "session_expiry_interval");
    if (sv && (!kconf_duration_s(sv, &se) || se > UINT32_MAX))
        return bad(err, "session_expiry_interval", "expected a duration, e.g. \"2h\"");
    out->session_expiry_s = (uint32_t)se;
    const value *ssl = get(conn, "ssl");
    if (ssl && ssl->type != VT_MAP) return bad(err, "ssl", "expected an object");
    if ((st = opt_bool(ssl, "enable", false, &out->tls, "ssl.enable", err))) return st;
    const value *vf = get(ssl, "verify");
    if (vf && !is_str(vf, "verify_peer") && !is_str(vf, "verify_none"))
        return bad(err, "ssl.verify", "expected verify_peer or verify_none");
    out->tls_verify = is_str(vf, "verify_peer");
    const char *files[] = {"cacertfile", "certfile", "keyfile"};
    char **dst[] = {&out->cafile, &out->certfile, &out->keyfile};
    for (int i = 0; i < 3; i++) {
        const value *f = get(ssl, files[i]);
        if (!f) continue;
        if (f->type != VT_BIN)
            return bad(err, "ssl", "cacertfile/certfile/keyfile: expected a path");
        *dst[i] = f->len ? str_dup(a, f) : NULL;
    }
    if (out->tls && !out->cafile)
        out->cafile = arena_strndup(a, "/etc/ssl/certs/ca-certificates.crt", 34);
    /* libmosquitto sends the server host as SNI; an explicit name is not
     * supported by it (documented) */
    const value *sni = get(ssl, "server_name_indication");
    if (sni && !is_str(sni, "auto") && !is_str(sni, "disable"))
        return bad(err, "ssl.server_name_indication", "only auto or disable are supported");
    /* parameters: topic or topics, qos */
    if (!params || params->type != VT_MAP) return bad(err, "parameters", "required: an object");
    const value *t = get(params, "topic"), *ts = get(params, "topics");
    uint32_t n = t ? 1 : 0;
    if (ts) {
        if (ts->type != VT_ARRAY || !ts->len)
            return bad(err, "parameters.topics", "expected a non-empty list of topic filters");
        n += ts->len;
    }
    if (!n) return bad(err, "parameters.topic", "required: a topic filter");
    out->topics = arena_alloc(a, sizeof(char *) * n);
    if (!out->topics) return ec_fail(err, EC_ENOMEM, "out of memory");
    const value *one[1] = {t};
    for (uint32_t i = 0; i < n; i++) {
        const value *f = (t && i == 0) ? one[0] : &ts->u.items[i - (t ? 1 : 0)];
        if (f->type != VT_BIN || !f->len ||
            mosquitto_sub_topic_check2(f->u.s, f->len) != MOSQ_ERR_SUCCESS)
            return bad(err, t && i == 0 ? "parameters.topic" : "parameters.topics",
                       "not a valid MQTT topic filter");
        out->topics[i] = str_dup(a, f);
    }
    out->ntopics = n;
    const value *q = get(params, "qos");
    out->qos = 1;
    if (q) {
        if (q->type != VT_INT || q->u.i < 0 || q->u.i > 2)
            return bad(err, "parameters.qos", "expected 0, 1 or 2");
        out->qos = (int)q->u.i;
    }
    return EC_OK;
}

/* ---- the thread ----------------------------------------------------------------- */

static void set_error(msrc *s, const char *fmt, const char *detail) {
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_error, sizeof s->last_error, fmt, detail);
    pthread_mutex_unlock(&s->mu);
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *p) {
    (void)flags, (void)p;
    msrc *s = ud;
    if (rc != 0) {
        set_error(s, "connection refused: %s",
                  s->c.proto == 5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc));
        return;
    }
    atomic_store(&s->connected, true);
    atomic_fetch_add(&s->connects, 1);
    for (uint32_t i = 0; i < s->c.ntopics; i++)
        mosquitto_subscribe_v5(m, NULL, s->c.topics[i], s->c.qos, 0, NULL);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *p) {
    (void)m, (void)p;
    msrc *s = ud;
    atomic_store(&s->connected, false);
    if (rc != 0) set_error(s, "disconnected: %s", mosquitto_strerror(rc));
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props) {
    (void)m;
    msrc *s = ud;
    atomic_fetch_add(&s->received, 1);
    msrc_msg mm = {.topic = msg->topic,
                   .payload = msg->payload,
                   .payloadlen = msg->payloadlen,
                   .qos = msg->qos,
                   .retain = msg->retain,
                   .props = props};
    s->cb(s->ud, &mm);
}

/* sleeps up to secs unless stopping; true when stopping */
static bool wait_or_stop(msrc *s, int secs) {
    struct timespec until = ec_deadline((int64_t)secs * 1000);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {
    }
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static bool is_stopping(msrc *s) {
    pthread_mutex_lock(&s->mu);
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* Whether the broker takes a TCP connection, tried without blocking first:
 * libmosquitto's connect blocks until the kernel gives up (about two
 * minutes where SYNs are dropped), and the source could not stop meanwhile.
 * 0: an address answered (the probe is closed at once, before any MQTT);
 * -1: the source stops; else an errno (ETIMEDOUT after connect_timeout). A
 * name that does not resolve gives 0: libmosquitto's connect says why. */
static int reach(msrc *s) {
    char port[8];
    snprintf(port, sizeof port, "%d", s->c.port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(s->c.host, port, &hints, &res) != 0) return 0;
    int64_t deadline = ec_mono_ms() + (int64_t)s->c.connect_timeout_ms;
    int err = ETIMEDOUT;
    for (struct addrinfo *ai = res; ai && err && err != -1; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            err = 0;
        } else if (errno != EINPROGRESS) {
            err = errno;
        } else {
            err = ETIMEDOUT;
            while (ec_mono_ms() < deadline) {
                if (is_stopping(s)) {
                    err = -1;
                    break;
                }
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                int n = poll(&p, 1, LOOP_MS);
                if (n > 0) {
                    socklen_t l = sizeof err;
                    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0) err = errno;
                    break;
                }
                if (n < 0 && errno != EINTR) {
                    err = errno;
                    break;
                }
            }
        }
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

/* The source's thread. It alone calls libmosquitto on s->mosq (libmosquitto
 * is not safe for a disconnect from another thread while this one
 * reconnects: the socket and its TLS state are freed under it), so it serves
 * the connection with mosquitto_loop turns of LOOP_MS and looks at the stop
 * flag between them; a stop sends DISCONNECT from here. Every connect,
 * reconnects included, goes through mosquitto_connect_bind_v5 so an MQTT 5
 * session keeps its Session Expiry Interval. After a connection that was up,
 * the next attempt comes after BACKOFF_MIN_S; failed attempts double it up
 * to BACKOFF_MAX_S. */
static void *run(void *arg) {
    msrc *s = arg;
    int backoff = BACKOFF_MIN_S;
    mosquitto_property *cprops = NULL;
    if (s->c.proto == 5 && !s->c.clean_start)
        mosquitto_property_add_int32(&cprops, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                     s->c.session_expiry_s);
    while (!is_stopping(s)) {
        int unreachable = reach(s);
        if (unreachable < 0) break; /* stopping */
        int rc = unreachable ? MOSQ_ERR_ERRNO
                             : mosquitto_connect_bind_v5(s->mosq, s->c.host, s->c.port,
                                                         s->c.keepalive_s, NULL, cprops);
        int eno = unreachable ? unreachable : errno; /* for MOSQ_ERR_ERRNO */
        if (rc == MOSQ_ERR_SUCCESS) {
            while ((rc = mosquitto_loop(s->mosq, LOOP_MS, 1)) == MOSQ_ERR_SUCCESS &&
                   !is_stopping(s)) {
            }
            bool was_up = atomic_exchange(&s->connected, false);
            if (is_stopping(s)) {
                if (rc == MOSQ_ERR_SUCCESS) mosquitto_disconnect(s->mosq); /* a clean end */
                break;
            }
            if (was_up)
                backoff = BACKOFF_MIN_S;
            else
                atomic_fetch_add(&s->failures, 1); /* refused, or lost before CONNACK */
            if (rc == MOSQ_ERR_ERRNO)
                set_error(s, "%s", strerror(errno)); /* from the loop */
            else if (rc != MOSQ_ERR_CONN_REFUSED)    /* on_connect said why */
                set_error(s, "%s", mosquitto_strerror(rc));
        } else {
            atomic_fetch_add(&s->failures, 1);
            set_error(s, "%s", rc == MOSQ_ERR_ERRNO ? strerror(eno) : mosquitto_strerror(rc));
        }
        if (wait_or_stop(s, backoff)) break;
        backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
    }
    mosquitto_property_free_all(&cprops);
    return NULL;
}

static void lib_init_once(void) {
    mosquitto_lib_init();
}

void msrc_lib_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, lib_init_once);
}

ec_status msrc_start(const msrc_conf *c, msrc_cb cb, void *ud, msrc **out, ec_error *err) {
    msrc_lib_init();
    msrc *s = calloc(1, sizeof *s);
    if (!s) return ec_fail(err, EC_ENOMEM, "out of memory");
    arena_init(&s->a, 1024);
    s->c = *c;
    /* copy the strings the thread keeps */
#define DUP(f) s->c.f = c->f ? arena_strndup(&s->a, c->f, strlen(c->f)) : NULL
    DUP(host);
    DUP(clientid);
    DUP(username);
    DUP(password);
    DUP(cafile);
    DUP(certfile);
    DUP(keyfile);
    DUP(sni);
#undef DUP
    if (s->c.connect_timeout_ms <= 0) s->c.connect_timeout_ms = CONNECT_TIMEOUT_MS;
    s->c.topics = arena_alloc(&s->a, sizeof(char *) * (c->ntopics ? c->ntopics : 1));
    for (uint32_t i = 0; i < c->ntopics; i++)
        s->c.topics[i] = arena_strndup(&s->a, c->topics[i], strlen(c->topics[i]));
    s->cb = cb;
    s->ud = ud;
    pthread_mutex_init(&s->mu, NULL);
    ec_cond_init(&s->cv);
    s->mosq = mosquitto_new(s->c.clientid, s->c.clean_start, s);
    if (!s->mosq) {
        msrc_stop(s);
        return ec_fail(err, EC_EINVAL,
                       "clientid: libmosquitto refused it (a persistent session needs one)");
    }
    int proto = s->c.proto == 5   ? MQTT_PROTOCOL_V5
                : s->c.proto == 3 ? MQTT_PROTOCOL_V31
                                  : MQTT_PROTOCOL_V311;
    mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, proto);
    mosquitto_connect_v5_callback_set(s->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(s->mosq, on_disconnect);
    mosquitto_message_v5_callback_set(s->mosq, on_message);
    if (s->c.username && mosquitto_username_pw_set(s->mosq, s->c.username, s->c.password)) {
        msrc_stop(s);
        return ec_fail(err, EC_EINVAL, "username: refused by libmosquitto");
    }
    if (s->c.tls) {
        int rc = mosquitto_tls_set(s->mosq, s->c.cafile, NULL, s->c.certfile, s->c.keyfile, NULL);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_tls_opts_set(s->mosq, s->c.tls_verify ? 1 : 0, NULL, NULL);
        if (rc == MOSQ_ERR_SUCCESS && !s->c.tls_verify)
            rc = mosquitto_tls_insecure_set(s->mosq, true);
        if (rc != MOSQ_ERR_SUCCESS) {
            ec_fail(err, EC_EINVAL, "ssl: %s", mosquitto_strerror(rc));
            msrc_stop(s);
            return EC_EINVAL;
        }
    }
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        mosquitto_destroy(s->mosq);
        s->mosq = NULL;
        msrc_stop(s);
        return ec_fail(err, EC_ENOMEM, "cannot start the MQTT source thread");
    }
    s->thread_started = true;
    *out = s;
    return EC_OK;
}

void msrc_stop(msrc *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started) pthread_join(s->thread, NULL); /* it disconnects */
    if (s->mosq) mosquitto_destroy(s->mosq);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    arena_free(&s->a);
    free(s);
}

void msrc_get_stats(msrc *s, msrc_stats *out) {
    out->received = atomic_load(&s->received);
    out->connects = atomic_load(&s->connects);
    out->connect_failures = atomic_load(&s->failures);
    out->connected = atomic_load(&s->connected);
    pthread_mutex_lock(&s->mu);
    memcpy(out->last_error, s->last_error, sizeof out->last_error);
    pthread_mutex_unlock(&s->mu);
}

/* ---- MQTT 5 properties -> pub_props ------------------------------------------------ */

value msrc_pub_props(const msrc_msg *m, arena *a) {
    bool ok;
    value out = v_map_new(a, 4, &ok);
    userprops up;
    userprops_init(&up, a);
    for (const mosquitto_property *p = m->props; p; p = mosquitto_property_next(p)) {
        int id = mosquitto_property_identifier(p);
        char *k = NULL, *v = NULL;
        uint8_t b;
        uint32_t i32;
        uint16_t len;
        void *bin = NULL;
        switch (id) {
        case MQTT_PROP_USER_PROPERTY:
            if (mosquitto_property_read_string_pair(p, id, &k, &v, false))
                userprops_add(&up, a, v_bin_copy(a, k, strlen(k)), v_bin_copy(a, v, strlen(v)));
            break;
        case MQTT_PROP_CONTENT_TYPE:
        case MQTT_PROP_RESPONSE_TOPIC:
            if (mosquitto_property_read_string(p, id, &v, false))
                v_map_append(a, &out,
                             id == MQTT_PROP_CONTENT_TYPE ? V_LIT("Content-Type")
                                                          : V_LIT("Response-Topic"),
                             v_bin_copy(a, v, strlen(v)));
            break;
        case MQTT_PROP_CORRELATION_DATA:
            if (mosquitto_property_read_binary(p, id, &bin, &len, false))
                v_map_append(a, &out, V_LIT("Correlation-Data"), v_bin_copy(a, bin, len));
            break;
        case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
            if (mosquitto_property_read_byte(p, id, &b, false))
                v_map_append(a, &out, V_LIT("Payload-Format-Indicator"), v_int(b));
            break;
        case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
            if (mosquitto_property_read_int32(p, id, &i32, false))
                v_map_append(a, &out, V_LIT("Message-Expiry-Interval"), v_int(i32));
            break;
        default: break;
        }
        free(k);
        free(v);
        free(bin);
    }
    userprops_finish(&up, a, &out);
    return out;
}
