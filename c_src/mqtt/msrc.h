/* msrc.h - the standalone-mode MQTT source: a libmosquitto subscriber on its
 * own thread that hands every received message to a callback.
 *
 * Configuration is EMQX's MQTT connector + source shape (parsed by
 * msrc_conf_parse): server "host[:port]", proto_ver v3|v4|v5, clientid,
 * username/password, keepalive, connect_timeout (default 15 s; beyond EMQX),
 * clean_start, session_expiry_interval, ssl
 * {enable, verify, cacertfile, certfile, keyfile, server_name_indication};
 * parameters {topic (filter, "$share/group/..." for a shared subscription) or
 * topics [..], qos}. The thread connects, subscribes on every (re)connect,
 * and reconnects with exponential backoff (1 s doubling up to 30 s) forever.
 * Messages are acknowledged (QoS 1) after the callback returns. Only that
 * thread calls libmosquitto (a stop is a flag it looks at every 200 ms; it
 * sends the DISCONNECT itself). */
#ifndef EC_MSRC_H
#define EC_MSRC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../core/arena.h"
#include "../core/error.h"
#include "../core/value.h"

typedef struct msrc_conf {
    char *host;
    int port;
    int proto; /* 3, 4 or 5 */
    char *clientid;
    char *username, *password;
    int keepalive_s;
    int connect_timeout_ms; /* a TCP connect gives up after this (default 15 s) */
    bool clean_start;
    uint32_t session_expiry_s; /* MQTT 5 */
    bool tls, tls_verify;
    char *cafile, *certfile, *keyfile, *sni;
    char **topics;
    uint32_t ntopics;
    int qos;
} msrc_conf;

/* One received message; pointers valid during the callback only. */
typedef struct msrc_msg {
    const char *topic;
    const void *payload;
    int payloadlen;
    int qos;
    bool retain;
    const void *props; /* const mosquitto_property *, MQTT 5 only (may be NULL) */
} msrc_msg;

typedef void (*msrc_cb)(void *ud, const msrc_msg *m);

typedef struct msrc_stats {
    uint64_t received, connects, connect_failures;
    bool connected;
    char last_error[160];
} msrc_stats;

typedef struct msrc msrc;

/* conn: the connector object; params: the source's "parameters" object.
 * Strings are copied into a. Errors name the field. */
ec_status msrc_conf_parse(const value *conn, const value *params, arena *a, msrc_conf *out,
                          ec_error *err);

/* Starts the thread. The conf is copied. */
ec_status msrc_start(const msrc_conf *c, msrc_cb cb, void *ud, msrc **out, ec_error *err);
/* Has the thread disconnect, joins it and frees. Blocks up to 200 ms, or
 * while a TCP connect or TLS handshake under way lasts. */
void msrc_stop(msrc *s);
void msrc_get_stats(msrc *s, msrc_stats *out);

/* Adds the MQTT 5 properties of m as EMQX's printable pub_props map
 * (User-Property map, User-Property-Pairs, Content-Type, ...) */
value msrc_pub_props(const msrc_msg *m, arena *a);

/* Once per process (mosquitto_lib_init). */
void msrc_lib_init(void);

#endif
