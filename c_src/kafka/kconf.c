/* kconf.c - configuration parsing and mapping; see kconf.h. */
#include "kconf.h"

#include "kprod.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- value formats ------------------------------------------------------ */

static bool as_text(const value *v, char *buf, size_t cap) {
    if (v->type != VT_BIN || v->len >= cap) return false;
    memcpy(buf, v->u.s, v->len);
    buf[v->len] = '\0';
    return true;
}

/* "<number><unit>"+ with units ms s m h d w f; result in ms (rounded up) */
static bool parse_duration(const char *s, double *ms_out) {
    double total = 0;
    const char *p = s;
    while (*p == ' ')
        p++;
    if (!*p) return false;
    bool any = false;
    while (*p) {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.') return false;
        double n = strtod(p, &end);
        if (end == p || n < 0) return false;
        p = end;
        double unit;
        if (!strncasecmp(p, "ms", 2))
            unit = 1, p += 2;
        else if (*p == 's' || *p == 'S')
            unit = 1000, p++;
        else if (*p == 'm' || *p == 'M')
            unit = 60000, p++;
        else if (*p == 'h' || *p == 'H')
            unit = 3600000, p++;
        else if (*p == 'd' || *p == 'D')
            unit = 86400000, p++;
        else if (*p == 'w' || *p == 'W')
            unit = 604800000, p++;
        else if (*p == 'f' || *p == 'F')
            unit = 1209600000, p++;
        else if (!*p && !any)
            unit = 1; /* a bare number string: ms */
        else
            return false;
        total += n * unit;
        any = true;
    }
    *ms_out = total;
    return true;
}

bool kconf_duration_ms(const value *v, uint64_t *ms) {
    if (v->type == VT_INT) {
        if (v->u.i < 0 || v->u.i > 4294967295LL) return false;
        *ms = (uint64_t)v->u.i;
        return true;
    }
    char buf[64];
    double d;
    if (!as_text(v, buf, sizeof buf) || !parse_duration(buf, &d)) return false;
    d = ceil(d);
    if (d > 4294967295.0) return false;
    *ms = (uint64_t)d;
    return true;
}

bool kconf_duration_s(const value *v, uint64_t *s) {
    if (v->type == VT_INT) {
        if (v->u.i < 0 || v->u.i > 4294967) return false;
        *s = (uint64_t)v->u.i;
        return true;
    }
    char buf[64];
    double d;
    if (!as_text(v, buf, sizeof buf)) return false;
    bool bare = true;
    for (const char *p = buf; *p; p++)
        bare &= isdigit((unsigned char)*p) != 0;
    if (bare && buf[0]) {
        *s = strtoull(buf, NULL, 10);
        return *s <= 4294967;
    }
    if (!parse_duration(buf, &d)) return false;
    d = ceil(d / 1000.0);
    if (d > 4294967) return false;
    *s = (uint64_t)d;
    return true;
}

bool kconf_bytesize(const value *v, uint64_t *bytes) {
    if (v->type == VT_INT) {
        if (v->u.i < 0) return false;
        *bytes = (uint64_t)v->u.i;
        return true;
    }
    char buf[64];
    if (!as_text(v, buf, sizeof buf)) return false;
    const char *p = buf;
    while (*p == ' ')
        p++;
    if (!isdigit((unsigned char)*p)) return false;
    char *end;
    unsigned long long n = strtoull(p, &end, 10);
    uint64_t mul;
    if (!*end || !strcmp(end, "b") || !strcmp(end, "B"))
        mul = 1;
    else if (!strcmp(end, "kb") || !strcmp(end, "KB"))
        mul = 1024;
    else if (!strcmp(end, "mb") || !strcmp(end, "MB"))
        mul = 1024 * 1024;
    else if (!strcmp(end, "gb") || !strcmp(end, "GB"))
        mul = 1024ULL * 1024 * 1024;
    else
        return false;
    if (n > UINT64_MAX / mul) return false;
    *bytes = n * mul;
    return true;
}

/* ---- helpers ------------------------------------------------------------ */

static ec_status bad(ec_error *err, const char *path, const char *why) {
    return ec_fail(err, EC_EINVAL, "%s: %s", path, why);
}

static const value *get(const value *m, const char *k) {
    return m && m->type == VT_MAP ? v_map_get(m, k, strlen(k)) : NULL;
}

static const char *str_dup(arena *a, const value *v) {
    return v && v->type == VT_BIN ? arena_strndup(a, v->u.s, v->len) : NULL;
}

static bool is_str(const value *v, const char *lit) {
    size_t n = strlen(lit);
    return v && v->type == VT_BIN && v->len == n && !memcmp(v->u.s, lit, n);
}

static bool add(kconf_props *p, arena *a, const char *k, const char *v) {
    if (p->n >= KCONF_MAX_PROPS) return false;
    p->kv[2 * p->n] = arena_strndup(a, k, strlen(k));
    p->kv[2 * p->n + 1] = arena_strndup(a, v, strlen(v));
    if (!p->kv[2 * p->n] || !p->kv[2 * p->n + 1]) return false;
    p->n++;
    return true;
}

static bool add_u(kconf_props *p, arena *a, const char *k, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return add(p, a, k, buf);
}

/* optional duration field with default; path for errors */
static ec_status dur_ms(const value *m, const char *k, uint64_t def, uint64_t *out,
                        const char *path, ec_error *err) {
    const value *v = get(m, k);
    *out = def;
    if (v && !kconf_duration_ms(v, out))
        return bad(err, path, "expected a duration such as \"5s\" or \"500ms\"");
    return EC_OK;
}

static ec_status size_b(const value *m, const char *k, uint64_t def, uint64_t *out,
                        const char *path, ec_error *err) {
    const value *v = get(m, k);
    *out = def;
    if (v && !kconf_bytesize(v, out))
        return bad(err, path, "expected a size such as \"1MB\" or \"896KB\"");
    return EC_OK;
}

/* "h1:9092, h2" -> "h1:9092,h2:9092" */
static ec_status hosts(const value *v, arena *a, const char **out, ec_error *err) {
    if (!v || v->type != VT_BIN || v->len == 0)
        return bad(err, "bootstrap_hosts", "required: a comma-separated host[:port] list");
    char *o = arena_alloc(a, (size_t)v->len * 2 + 16);
    if (!o) return ec_fail(err, EC_ENOMEM, "out of memory");
    size_t k = 0, i = 0;
    int count = 0;
    while (i < v->len) {
        while (i < v->len && (v->u.s[i] == ' ' || v->u.s[i] == ','))
            i++;
        size_t b = i;
        while (i < v->len && v->u.s[i] != ',')
            i++;
        size_t e = i;
        while (e > b && v->u.s[e - 1] == ' ')
            e--;
        if (e == b) continue;
        const char *h = v->u.s + b;
        size_t hl = e - b;
        for (size_t j = 0; j < hl; j++)
            if (h[j] == ' ') return bad(err, "bootstrap_hosts", "a host name contains a space");
        bool bracket = h[0] == '[';
        const char *colon = bracket ? memchr(h, ']', hl) : memchr(h, ':', hl);
        bool has_port = bracket ? (colon && colon + 1 < h + hl && colon[1] == ':') : colon != NULL;
        if (!bracket && colon && memchr(colon + 1, ':', hl - (size_t)(colon - h) - 1))
            has_port = false; /* bare IPv6 */
        if (count++) o[k++] = ',';
        memcpy(o + k, h, hl);
        k += hl;
        if (!has_port) {
            memcpy(o + k, ":9092", 5);
            k += 5;
        }
    }
    if (!count) return bad(err, "bootstrap_hosts", "no host given");
    o[k] = '\0';
    *out = o;
    return EC_OK;
}

static ec_status ssl_opts(const value *ssl, bool confluent, arena *a, kconf_props *p, bool *enabled,
                          ec_error *err) {
    const value *en = get(ssl, "enable");
    *enabled = confluent || (en && en->type == VT_BOOL && en->u.b);
    if (en && en->type != VT_BOOL) return bad(err, "ssl.enable", "expected true or false");
    if (!*enabled) return EC_OK;
    const value *verify = get(ssl, "verify");
    bool verify_peer = !confluent && is_str(verify, "verify_peer");
    if (verify && !is_str(verify, "verify_peer") && !is_str(verify, "verify_none"))
        return bad(err, "ssl.verify", "expected verify_peer or verify_none");
    if (!add(p, a, "enable.ssl.certificate.verification", verify_peer ? "true" : "false") ||
        !add(p, a, "ssl.endpoint.identification.algorithm", verify_peer ? "https" : "none"))
        return ec_fail(err, EC_ENOMEM, "out of memory");
    static const struct {
        const char *field, *path_prop, *pem_prop;
    } files[] = {{"cacertfile", "ssl.ca.location", "ssl.ca.pem"},
                 {"certfile", "ssl.certificate.location", "ssl.certificate.pem"},
                 {"keyfile", "ssl.key.location", "ssl.key.pem"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const value *f = get(ssl, files[i].field);
        if (!f || (f->type == VT_BIN && f->len == 0)) continue;
        if (f->type != VT_BIN) return bad(err, files[i].field, "expected a file path or PEM text");
        const char *s = str_dup(a, f);
        bool pem = strstr(s, "-----BEGIN") != NULL;
        if (!add(p, a, pem ? files[i].pem_prop : files[i].path_prop, s))
            return ec_fail(err, EC_ENOMEM, "out of memory");
    }
    const value *pw = get(ssl, "password");
    if (pw && pw->type == VT_BIN && pw->len && !add(p, a, "ssl.key.password", str_dup(a, pw)))
        return ec_fail(err, EC_ENOMEM, "out of memory");
    const value *sni = get(ssl, "server_name_indication");
    if (sni && !is_str(sni, "auto"))
        return bad(err, "ssl.server_name_indication",
                   "only \"auto\" is supported (librdkafka sends each broker's host name)");
    return EC_OK;
}

/* OAuth 2.0 client credentials (EMQX 6's field names): the token comes
 * from endpoint_uri; see koauth.h for how it reaches librdkafka. */
static ec_status oauth_opts(const value *auth, arena *a, kconf_props *p, ec_error *err) {
    const value *gt = get(auth, "grant_type");
    if (gt && !is_str(gt, "client_credentials"))
        return bad(err, "authentication.grant_type", "only client_credentials is supported");
    const value *ep = get(auth, "endpoint_uri"), *id = get(auth, "client_id"),
                *sec = get(auth, "client_secret"), *scope = get(auth, "scope");
    if (!ep || ep->type != VT_BIN || !ep->len)
        return bad(err, "authentication.endpoint_uri", "required");
    const char *url = str_dup(a, ep);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return bad(err, "authentication.endpoint_uri", "expected an http:// or https:// URL");
    if (!id || id->type != VT_BIN || !id->len)
        return bad(err, "authentication.client_id", "required");
    if (!sec || sec->type != VT_BIN || !sec->len)
        return bad(err, "authentication.client_secret", "required");
    if (scope && scope->type != VT_BIN)
        return bad(err, "authentication.scope", "expected a string");
    if (!add(p, a, "sasl.mechanisms", "OAUTHBEARER") ||
        !add(p, a, KPROD_PROP_OAUTH_ENDPOINT, url) ||
        !add(p, a, KPROD_PROP_OAUTH_CLIENT_ID, str_dup(a, id)) ||
        !add(p, a, KPROD_PROP_OAUTH_CLIENT_SECRET, str_dup(a, sec)) ||
        (scope && scope->len && !add(p, a, KPROD_PROP_OAUTH_SCOPE, str_dup(a, scope))))
        return ec_fail(err, EC_ENOMEM, "out of memory");
    return EC_OK;
}

ec_status kconf_connector_parse(const value *conf, arena *a, kconf_connector *out, ec_error *err) {
    memset(out, 0, sizeof *out);
    if (!conf || conf->type != VT_MAP) return bad(err, "connector", "expected an object");
    const value *type = get(conf, "type");
    if (type && !is_str(type, "confluent_producer") && !is_str(type, "kafka_producer"))
        return bad(err, "type", "expected confluent_producer or kafka_producer");
    out->confluent = is_str(type, "confluent_producer");
    kconf_props *p = &out->props;
    const char *bs = NULL;
    ec_status st;
    if ((st = hosts(get(conf, "bootstrap_hosts"), a, &bs, err))) return st;
    if (!add(p, a, "bootstrap.servers", bs)) return ec_fail(err, EC_ENOMEM, "out of memory");
    /* authentication */
    const value *auth = get(conf, "authentication");
    const char *mech = NULL;
    if (out->confluent) {
        if (!auth || auth->type != VT_MAP)
            return bad(err, "authentication",
                       "required: {\"username\": API key, \"password\": API secret}");
        const value *m = get(auth, "mechanism");
        if (m && !is_str(m, "plain"))
            return bad(err, "authentication.mechanism", "Confluent uses plain");
        mech = "PLAIN";
    } else if (auth && auth->type == VT_MAP) {
        const value *m = get(auth, "mechanism");
        if (get(auth, "kerberos_principal")) {
            const value *pr = get(auth, "kerberos_principal"),
                        *kt = get(auth, "kerberos_keytab_file");
            if (!pr || pr->type != VT_BIN || !kt || kt->type != VT_BIN)
                return bad(err, "authentication",
                           "kerberos needs kerberos_principal and kerberos_keytab_file");
            if (!add(p, a, "sasl.mechanisms", "GSSAPI") ||
                !add(p, a, "sasl.kerberos.principal", str_dup(a, pr)) ||
                !add(p, a, "sasl.kerberos.keytab", str_dup(a, kt)))
                return ec_fail(err, EC_ENOMEM, "out of memory");
            mech = "GSSAPI";
        } else if (is_str(m, "oauth") || is_str(m, "oauthbearer")) {
            if ((st = oauth_opts(auth, a, p, err))) return st;
            mech = "OAUTHBEARER";
        } else if (is_str(m, "plain"))
            mech = "PLAIN";
        else if (is_str(m, "scram_sha_256"))
            mech = "SCRAM-SHA-256";
        else if (is_str(m, "scram_sha_512"))
            mech = "SCRAM-SHA-512";
        else
            return bad(err, "authentication.mechanism",
                       "expected plain, scram_sha_256, scram_sha_512 or oauth");
    } else if (auth && is_str(auth, "msk_iam")) {
        return bad(err, "authentication", "msk_iam is not supported by this plugin");
    } else if (auth && !is_str(auth, "none")) {
        return bad(err, "authentication", "expected \"none\" or an object");
    }
    if (mech && strcmp(mech, "GSSAPI") != 0 && strcmp(mech, "OAUTHBEARER") != 0) {
        const value *u = get(auth, "username"), *pw = get(auth, "password");
        if (!u || u->type != VT_BIN || !u->len)
            return bad(err, "authentication.username", "required");
        if (!pw || pw->type != VT_BIN || !pw->len)
            return bad(err, "authentication.password", "required");
        if (!add(p, a, "sasl.mechanisms", mech) || !add(p, a, "sasl.username", str_dup(a, u)) ||
            !add(p, a, "sasl.password", str_dup(a, pw)))
            return ec_fail(err, EC_ENOMEM, "out of memory");
    }
    bool tls;
    if ((st = ssl_opts(get(conf, "ssl"), out->confluent, a, p, &tls, err))) return st;
    const char *proto = mech ? (tls ? "SASL_SSL" : "SASL_PLAINTEXT") : (tls ? "SSL" : "PLAINTEXT");
    if (!add(p, a, "security.protocol", proto)) return ec_fail(err, EC_ENOMEM, "out of memory");
    /* timeouts */
    uint64_t connect, min_refresh, mrt;
    if ((st = dur_ms(conf, "connect_timeout", 5000, &connect, "connect_timeout", err)) ||
        (st = dur_ms(conf, "min_metadata_refresh_interval", 3000, &min_refresh,
                     "min_metadata_refresh_interval", err)) ||
        (st =
             dur_ms(conf, "metadata_request_timeout", 5000, &mrt, "metadata_request_timeout", err)))
        return st;
    out->metadata_request_timeout_ms = mrt;
    uint64_t req_timeout = mrt * 2 > 30000 ? mrt * 2 : 30000;
    if (!add_u(p, a, "socket.connection.setup.timeout.ms", connect < 1000 ? 1000 : connect) ||
        !add_u(p, a, "topic.metadata.refresh.fast.interval.ms",
               min_refresh < 1 ? 1 : min_refresh) ||
        !add_u(p, a, "socket.timeout.ms", req_timeout))
        return ec_fail(err, EC_ENOMEM, "out of memory");
    /* socket options */
    const value *so = get(conf, "socket_opts");
    uint64_t sndbuf, recbuf;
    if ((st = size_b(so, "sndbuf", 1 << 20, &sndbuf, "socket_opts.sndbuf", err)) ||
        (st = size_b(so, "recbuf", 1 << 20, &recbuf, "socket_opts.recbuf", err)))
        return st;
    if (sndbuf > 100000000 || recbuf > 100000000)
        return bad(err, "socket_opts", "buffers above 100000000 bytes are not supported");
    const value *nd = get(so, "nodelay");
    if (nd && nd->type != VT_BOOL) return bad(err, "socket_opts.nodelay", "expected true or false");
    /* librdkafka 2.0.2 leaves Nagle on: set it explicitly */
    if (!add_u(p, a, "socket.send.buffer.bytes", sndbuf) ||
        !add_u(p, a, "socket.receive.buffer.bytes", recbuf) ||
        !add(p, a, "socket.nagle.disable", !nd || nd->u.b ? "true" : "false"))
        return ec_fail(err, EC_ENOMEM, "out of memory");
    const value *ka = get(so, "tcp_keepalive");
    if (ka && !is_str(ka, "none")) {
        char buf[64];
        int idle, intv, probes;
        char extra;
        if (!as_text(ka, buf, sizeof buf) ||
            sscanf(buf, "%d,%d,%d%c", &idle, &intv, &probes, &extra) != 3 || idle < 1 ||
            idle > 72000 || intv < 1 || intv > 750 || probes < 1 || probes > 90)
            return bad(err, "socket_opts.tcp_keepalive",
                       "expected \"none\" or \"Idle,Interval,Probes\" (1-72000, 1-750, 1-90)");
        /* timing applied by kprod's socket callback (librdkafka only switches it on) */
        char ka_val[48];
        snprintf(ka_val, sizeof ka_val, "%d,%d,%d", idle, intv, probes);
        if (!add(p, a, "socket.keepalive.enable", "true") ||
            !add(p, a, KPROD_PROP_KEEPALIVE, ka_val))
            return ec_fail(err, EC_ENOMEM, "out of memory");
    }
    /* EMQX 5.10.2+ allow_auto_topic_creation, default false; librdkafka
     * producers would otherwise ask brokers to create unknown topics */
    const value *aat = get(conf, "allow_auto_topic_creation");
    if (aat && aat->type != VT_BOOL)
        return bad(err, "allow_auto_topic_creation", "expected true or false");
    if (!add(p, a, "allow.auto.create.topics", aat && aat->u.b ? "true" : "false"))
        return ec_fail(err, EC_ENOMEM, "out of memory");
    const value *ro = get(conf, "resource_opts");
    if ((st = dur_ms(ro, "health_check_interval", 15000, &out->health_check_interval_ms,
                     "resource_opts.health_check_interval", err)))
        return st;
    if (out->health_check_interval_ms < 1 || out->health_check_interval_ms > 3600000)
        return bad(err, "resource_opts.health_check_interval", "out of range (1ms to 3600000ms)");
    out->health_check_topic = str_dup(a, get(conf, "health_check_topic"));
    return EC_OK;
}

ec_status kconf_action_parse(const value *conf, bool confluent, arena *a, kconf_action *out,
                             ec_error *err) {
    memset(out, 0, sizeof *out);
    if (!conf || conf->type != VT_MAP) return bad(err, "action", "expected an object");
    const value *pr = get(conf, "parameters");
    if (!pr) pr = get(conf, "kafka"); /* the 5.0.2-5.3.0 name */
    if (!pr || pr->type != VT_MAP) return bad(err, "parameters", "required: an object");
    const value *topic = get(pr, "topic");
    if (!topic || topic->type != VT_BIN || !topic->len)
        return bad(err, "parameters.topic", "required");
    out->topic = str_dup(a, topic);
    const value *msg = get(pr, "message");
    if (msg && msg->type != VT_MAP) return bad(err, "parameters.message", "expected an object");
    const value *k = get(msg, "key"), *v = get(msg, "value"), *ts = get(msg, "timestamp");
    if ((k && k->type != VT_BIN) || (v && v->type != VT_BIN) || (ts && ts->type != VT_BIN))
        return bad(err, "parameters.message", "key, value and timestamp must be template strings");
    if (confluent && ts)
        return bad(err, "parameters.message.timestamp", "unknown field for confluent_producer");
    out->key = k ? str_dup(a, k) : "${.clientid}";
    out->val = v ? str_dup(a, v) : "${.}";
    out->timestamp = ts ? str_dup(a, ts) : "${.timestamp}";
    const value *ps = get(pr, "partition_strategy");
    if (!ps || is_str(ps, "random"))
        out->strategy = PART_RANDOM;
    else if (is_str(ps, "key_dispatch"))
        out->strategy = PART_KEY_DISPATCH;
    else if (is_str(ps, "murmur2"))
        out->strategy = PART_MURMUR2;
    else
        return bad(err, "parameters.partition_strategy",
                   "expected random, key_dispatch or murmur2");
    if (out->strategy != PART_RANDOM && !*out->key)
        return bad(err, "parameters.message.key",
                   "Message key cannot be empty when `key_dispatch` strategy is used");
    const value *acks = get(pr, "required_acks");
    if (!acks || is_str(acks, "all_isr"))
        out->acks = KACK_ALL;
    else if (is_str(acks, "leader_only"))
        out->acks = KACK_LEADER;
    else if (is_str(acks, "none"))
        out->acks = KACK_NONE;
    else
        return bad(err, "parameters.required_acks", "expected all_isr, leader_only or none");
    const value *comp = get(pr, "compression");
    if (!comp || is_str(comp, "no_compression"))
        out->compression = "none";
    else if (is_str(comp, "snappy"))
        out->compression = "snappy";
    else if (is_str(comp, "gzip"))
        out->compression = "gzip";
    else if (is_str(comp, "lz4"))
        out->compression = "lz4";
    else if (is_str(comp, "zstd"))
        out->compression = "zstd";
    else
        return bad(err, "parameters.compression",
                   "expected no_compression, snappy, gzip, lz4 or zstd");
    const value *mi = get(pr, "max_inflight");
    out->max_inflight = 10;
    if (mi) {
        if (mi->type != VT_INT || mi->u.i < 1 || mi->u.i > 1000000)
            return bad(err, "parameters.max_inflight", "expected a positive integer");
        out->max_inflight = (uint32_t)mi->u.i;
    }
    ec_status st;
    uint64_t linger_bytes;
    if ((st = size_b(pr, "max_batch_bytes", 896 * 1024, &out->max_batch_bytes,
                     "parameters.max_batch_bytes", err)) ||
        (st = dur_ms(pr, "max_linger_time", 0, &out->max_linger_ms, "parameters.max_linger_time",
                     err)) ||
        (st = size_b(pr, "max_linger_bytes", 10 << 20, &linger_bytes, "parameters.max_linger_bytes",
                     err)) ||
        (st = dur_ms(pr, "sync_query_timeout", 5000, &out->sync_timeout_ms,
                     "parameters.sync_query_timeout", err)))
        return st;
    if (out->max_batch_bytes < 1 || out->max_batch_bytes > 1000000000)
        return bad(err, "parameters.max_batch_bytes", "out of range");
    /* staleness and retry bounds (EMQX 6 / master; both "infinity" by default) */
    const value *age = get(pr, "max_batch_age");
    out->max_batch_age_ms = 0;
    if (age && !is_str(age, "infinity") &&
        (!kconf_duration_ms(age, &out->max_batch_age_ms) || out->max_batch_age_ms == 0 ||
         out->max_batch_age_ms > INT32_MAX))
        return bad(err, "parameters.max_batch_age",
                   "expected \"infinity\" or a positive duration such as \"30s\"");
    const value *mr = get(pr, "max_retries");
    out->max_retries = -1;
    if (mr && !is_str(mr, "infinity")) {
        if (mr->type != VT_INT || mr->u.i < 0 || mr->u.i > INT32_MAX)
            return bad(err, "parameters.max_retries",
                       "expected \"infinity\" or a non-negative integer");
        out->max_retries = mr->u.i;
    }
    const value *pcr = get(pr, "partition_count_refresh_interval");
    out->partition_count_refresh_s = 60;
    if (pcr && !kconf_duration_s(pcr, &out->partition_count_refresh_s))
        return bad(err, "parameters.partition_count_refresh_interval",
                   "expected a duration such as \"60s\"");
    const value *pl = get(pr, "partitions_limit");
    if (pl && !is_str(pl, "all_partitions")) {
        if (pl->type != VT_INT || pl->u.i < 1 || pl->u.i > INT32_MAX)
            return bad(err, "parameters.partitions_limit",
                       "expected \"all_partitions\" or a positive integer");
        out->partitions_limit = (int32_t)pl->u.i;
    }
    const value *qm = get(pr, "query_mode");
    if (qm && !is_str(qm, "async") && !is_str(qm, "sync"))
        return bad(err, "parameters.query_mode", "expected async or sync");
    out->sync = is_str(qm, "sync");
    const value *hd = get(pr, "kafka_headers");
    if (hd && hd->type != VT_BIN)
        return bad(err, "parameters.kafka_headers",
                   "expected a single placeholder such as ${pub_props}");
    out->kafka_headers = hd && hd->len ? str_dup(a, hd) : NULL;
    const value *em = get(pr, "kafka_header_value_encode_mode");
    if (em && !is_str(em, "none") && !is_str(em, "json"))
        return bad(err, "parameters.kafka_header_value_encode_mode", "expected none or json");
    out->header_json = is_str(em, "json");
    const value *ext = get(pr, "kafka_ext_headers");
    if (ext && ext->type != VT_ARRAY)
        return bad(err, "parameters.kafka_ext_headers", "expected a list");
    if (ext && ext->len) {
        out->ext_headers = arena_alloc(a, sizeof(char *) * 2 * ext->len);
        if (!out->ext_headers) return ec_fail(err, EC_ENOMEM, "out of memory");
        for (uint32_t i = 0; i < ext->len; i++) {
            const value *hk = get(&ext->u.items[i], "kafka_ext_header_key");
            const value *hv = get(&ext->u.items[i], "kafka_ext_header_value");
            if (!hk || hk->type != VT_BIN || !hv || hv->type != VT_BIN) {
                char path[96];
                snprintf(path, sizeof path, "parameters.kafka_ext_headers[%u]", i + 1);
                return bad(err, path,
                           "needs kafka_ext_header_key and kafka_ext_header_value strings");
            }
            out->ext_headers[2 * i] = str_dup(a, hk);
            out->ext_headers[2 * i + 1] = str_dup(a, hv);
        }
        out->n_ext = ext->len;
    }
    const value *buf = get(pr, "buffer");
    const value *mode = get(buf, "mode");
    if (mode && is_str(mode, "disk") && strstr(out->topic, "${"))
        return bad(err, "parameters.buffer.mode",
                   "disk-mode buffering is disallowed when using dynamic topics");
    if (!mode || is_str(mode, "memory"))
        out->buffer_mode = KCONF_BUF_MEMORY;
    else if (is_str(mode, "disk"))
        out->buffer_mode = KCONF_BUF_DISK;
    else if (is_str(mode, "hybrid"))
        out->buffer_mode = KCONF_BUF_HYBRID;
    else
        return bad(err, "parameters.buffer.mode", "expected memory, disk or hybrid");
    if ((st = size_b(buf, "segment_bytes", 10ULL << 20, &out->segment_bytes,
                     "parameters.buffer.segment_bytes", err)))
        return st;
    const value *bd = get(conf, "buffer_dir");
    out->buffer_dir = bd && bd->type == VT_BIN && bd->len ? str_dup(a, bd) : NULL;
    if ((st = size_b(buf, "per_partition_limit", 256ULL << 20, &out->per_partition_limit,
                     "parameters.buffer.per_partition_limit", err)))
        return st;
    const value *mop = get(buf, "memory_overload_protection");
    out->memory_overload_protection = !mop || (mop->type == VT_BOOL && mop->u.b);
    return EC_OK;
}

ec_status kconf_producer_props(const kconf_connector *c, const kconf_action *act, arena *a,
                               kconf_props *out, ec_error *err) {
    *out = c->props;
    char acks[8];
    snprintf(acks, sizeof acks, "%d", (int)act->acks);
    /* by default messages never expire and retries are unlimited (EMQX 5.x);
     * max_batch_age / max_retries bound them (EMQX master); the plugin's own
     * buffer in front of librdkafka decides what else is dropped */
    if (!add(out, a, "acks", acks) || !add(out, a, "compression.codec", act->compression) ||
        !add_u(out, a, "batch.size", act->max_batch_bytes) ||
        !add_u(out, a, "max.in.flight.requests.per.connection", act->max_inflight) ||
        !add_u(out, a, "linger.ms", act->max_linger_ms) ||
        !add_u(out, a, "message.timeout.ms", act->max_batch_age_ms) || /* 0 = never */
        !add_u(out, a, "message.send.max.retries",
               act->max_retries < 0 ? INT32_MAX : (uint64_t)act->max_retries) ||
        !add_u(out, a, "topic.metadata.refresh.interval.ms",
               act->partition_count_refresh_s ? act->partition_count_refresh_s * 1000 : 3600000) ||
        !add(out, a, "queue.buffering.max.messages", "10000000") ||
        !add(out, a, "queue.buffering.max.kbytes", "2097151"))
        return ec_fail(err, EC_ENOMEM, "out of memory");
    return EC_OK;
}
