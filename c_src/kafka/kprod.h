/* kprod.h - a Kafka producer: one librdkafka handle plus the thread that
 * serves its delivery reports (or, with caller_polls, its owner serves them).
 *
 * The producer is configured with librdkafka properties (key/value strings);
 * mapping EMQX connector/action fields onto them is a separate concern.
 * kprod_send never blocks: it enqueues into librdkafka and returns; the
 * outcome arrives later through the delivery callback, called on the
 * producer's own poll thread (or, with caller_polls, in kprod_poll).
 *
 * @locality kprod_new, kprod_flush and kprod_destroy may block (network,
 * flush): call them from a dirty I/O scheduler or a C thread, never from a
 * normal scheduler or from the delivery callback. kprod_send is safe from any
 * thread; kprod_poll from one thread at a time. */
#ifndef EC_KPROD_H
#define EC_KPROD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"

typedef struct kprod kprod;

/* Outcome of one message, handed to the delivery callback once per message
 * that kprod_send accepted. A record that outlived message.timeout.ms fails
 * with code EC_EEXPIRED and the message KPROD_ERR_EXPIRED (EMQX's rule
 * result for it). */
#define KPROD_ERR_EXPIRED "request_expired"
typedef struct kprod_report {
    void *opaque;        /* the record's kprod_record.opaque */
    void *topic_opaque;  /* the opaque of its topic handle (kprod_topic_get), else NULL */
    const ec_error *err; /* NULL: acknowledged */
    int32_t partition;
    int64_t offset;            /* -1 on error */
    size_t key_len, value_len; /* as sent (0 for NULL) */
} kprod_report;
typedef void (*kprod_delivery_fn)(void *ctx, const kprod_report *r);

/* What the owner of a producer hears (every member may be NULL/false). */
typedef struct kprod_hooks {
    kprod_delivery_fn on_delivery;
    /* a broker connection failed or went down (transport, name resolution,
     * TLS, SASL; all brokers down); served like delivery reports */
    void (*on_trouble)(void *ctx);
    /* caller_polls: events wait for kprod_poll. Called from a librdkafka
     * thread with one of its queue locks held: it must not call librdkafka
     * and must not wait for a lock held across a librdkafka call. */
    void (*on_events)(void *ctx);
    void *ctx;
    /* no poll thread: the caller serves delivery reports and errors with
     * kprod_poll (and kprod_destroy serves the last ones) */
    bool caller_polls;
} kprod_hooks;

typedef struct kprod_header {
    const char *key;
    size_t key_len;
    const void *val;
    size_t val_len;
} kprod_header;

typedef struct kprod_topic kprod_topic;

typedef struct kprod_record {
    const char *topic; /* by name, unless th is set */
    kprod_topic *th;   /* a handle from kprod_topic_get (faster; carries its opaque) */
    int32_t partition; /* -1 = librdkafka's partitioner */
    const void *key;   /* NULL = Kafka NULL key */
    size_t key_len;
    const void *value; /* NULL = Kafka NULL value (tombstone) */
    size_t value_len;
    const kprod_header *headers;
    size_t n_headers;
    int64_t timestamp_ms; /* 0 = now */
    void *opaque;         /* handed back to the delivery callback */
    bool borrow_value;    /* value bytes stay valid until the delivery callback: no copy
                             (the key and headers are always copied) */
} kprod_record;

/* A property of ours among the librdkafka ones: "Idle,Interval,Probes" in
 * seconds for TCP keep-alive (EMQX socket_opts.tcp_keepalive). */
#define KPROD_PROP_KEEPALIVE "ec.tcp.keepalive"
/* Ours too: SASL/OAUTHBEARER tokens from a client-credentials grant (see
 * koauth.h); the endpoint property switches it on. */
#define KPROD_PROP_OAUTH_ENDPOINT      "ec.oauth.endpoint"
#define KPROD_PROP_OAUTH_CLIENT_ID     "ec.oauth.client_id"
#define KPROD_PROP_OAUTH_CLIENT_SECRET "ec.oauth.client_secret"
#define KPROD_PROP_OAUTH_SCOPE         "ec.oauth.scope"

/* Creates a producer from n librdkafka properties kv[2i] = kv[2i+1], with
 * hooks (NULL: none; copied). Validates the properties (an unknown key or
 * bad value is EC_EINVAL naming it). Does not wait for the cluster. Unless
 * hooks->caller_polls, a thread of its own serves delivery reports. */
ec_status kprod_new(const char *const *kv, size_t n, const kprod_hooks *hooks, kprod **out,
                    ec_error *err);

/* caller_polls: serves the delivery reports and errors waiting (never
 * blocks); callbacks run on the calling thread. */
void kprod_poll(kprod *p);

/* The handle of topic name, made on first use and kept until kprod_destroy;
 * delivery reports of records sent with it carry opaque (fixed by the first
 * call). NULL when out of memory, or when the topic was used by name first
 * (librdkafka then keeps its old configuration): make handles before any
 * other use of the topic on p. */
kprod_topic *kprod_topic_get(kprod *p, const char *name, void *opaque);

/* Enqueues one record (payloads are copied by librdkafka). On error the
 * delivery callback will not be called for this record; the code says what
 * to do with it: EC_ELIMIT librdkafka's queue is full (try again later),
 * EC_ESTATE librdkafka does not know the topic or partition now (try again
 * after metadata), anything else is permanent for this record (the message
 * starts with "message_too_large" for a record above message.max.bytes). */
ec_status kprod_send(kprod *p, const kprod_record *rec, ec_error *err);

/* Waits up to timeout_ms for every enqueued record to be delivered or fail.
 * Returns the number still outstanding (0 = all done). */
int kprod_flush(kprod *p, int timeout_ms);

/* Asks the cluster for metadata (blocks up to timeout_ms): EC_OK when a
 * broker answered. Used by health checks and start-up. */
ec_status kprod_ping(kprod *p, int timeout_ms, ec_error *err);

/* Flushes up to flush_timeout_ms, stops the poll thread, destroys the
 * handle and frees p. Records still outstanding get a delivery callback
 * with an error before this returns. */
void kprod_destroy(kprod *p, int flush_timeout_ms);

/* Copies the newest warning/error librdkafka logged (truncated to n) into
 * buf and returns its full length; 0 when none. librdkafka never prints. */
size_t kprod_last_error(kprod *p, char *buf, size_t n);

/* Number of partitions of topic (blocks up to timeout_ms for metadata):
 * > 0 the count, 0 when Kafka says the topic does not exist, < 0 on error. */
int32_t kprod_partition_count(kprod *p, const char *topic, int timeout_ms, ec_error *err);

/* Number of producers alive in the process (created, not yet destroyed). */
long kprod_live_count(void);

#endif
