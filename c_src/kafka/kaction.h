/* kaction.h - a Kafka/Confluent producer action (sink-behaviour.md §1-10).
 *
 * kaction_send renders one rule output into a record (topic, key, value,
 * timestamp, headers), picks its partition (key_dispatch / murmur2 / random,
 * computed here so placement matches EMQX exactly) and appends it to that
 * topic-partition's FIFO buffer, in RAM a compact ring (a record costs
 * about its bytes, no allocation per record). The action's pump thread is
 * the only one that talks to librdkafka for sending: it hands buffered
 * records over (librdkafka copies them) while fewer than max_inflight x
 * max_batch_bytes of estimated bytes are outstanding per partition, and
 * serves the delivery reports itself. A partition whose records in flight
 * get no answer (a broker connection failed, or a second of silence plus
 * twice max_linger_time) gets no more until an answer comes, so during an
 * outage records wait in the buffer, as in EMQX. When a buffer holds more
 * than per_partition_limit estimated bytes, the oldest records are dropped
 * (dropped.queue_full). Records whose topic's partition count is not known
 * yet (Kafka unreachable) wait in a per-topic queue and get their partition
 * once metadata arrives. buffer.mode disk keeps every queue in segment files
 * (one directory per partition, replayed at start), hybrid spills a
 * partition's queue to them past segment_bytes; the pump does that file I/O.
 *
 * Outcomes: every record that reached a buffer ends in exactly one of
 * success, failed or dropped.*; when a token was given, the reply function is
 * called once with it (NULL error = acknowledged), from a C thread (the
 * pump), or from the sending thread for records it dropped. Tokens are
 * opaque; one whose bit 2 is set costs a copy at hand-off (that bit tells
 * the action's own records apart in librdkafka's reports).
 *
 * @locality kaction_send: any thread, never blocks (a short lock, no
 * librdkafka call, no file I/O). kaction_new, kaction_health and
 * kaction_destroy block (network): dirty I/O or a C thread. */
#ifndef EC_KACTION_H
#define EC_KACTION_H

#include <stdatomic.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/value.h"
#include "kconf.h"

typedef struct kaction kaction;

typedef void (*kaction_reply_fn)(void *ctx, void *token, const char *error, int32_t partition,
                                 int64_t offset);

/* Counters of sink-behaviour.md §10.1 (queuing, queuing_bytes, inflight are gauges). */
typedef struct kaction_metrics {
    uint64_t matched, success, failed, dropped, dropped_queue_full, dropped_resource_stopped,
        dropped_resource_not_found, dropped_expired, dropped_other, retried, late_reply, received;
    int64_t queuing, queuing_bytes, inflight;
    uint64_t replayed, skipped_bytes; /* disk mode, at start: records read back, bytes cut off */
} kaction_metrics;

ec_status kaction_new(const kconf_connector *conn, const kconf_action *act, kaction_reply_fn reply,
                      void *reply_ctx, kaction **out, ec_error *err);

/* Everything kaction_new checks (templates, headers) without creating a
 * producer: for validating configuration before it is saved. */
ec_status kaction_check(const kconf_action *act, ec_error *err);

/* Renders and enqueues one record. EC_OK: accepted (the outcome comes later);
 * otherwise the record failed now (render/header/topic error: counted failed,
 * no reply). */
ec_status kaction_send(kaction *k, const value *ctx, void *token, ec_error *err);

void kaction_get_metrics(kaction *k, kaction_metrics *m);
void kaction_reset_metrics(kaction *k);

/* Action health: the fixed topic exists with partitions (or, for a dynamic
 * topic, a broker answers). Blocks up to the metadata request timeout. */
ec_status kaction_health(kaction *k, ec_error *err);

/* Tests only: from the next metadata refresh on, every topic has n
 * partitions (0: unknown topic, -1: Kafka unreachable); INT32_MIN asks Kafka
 * again. */
void kaction_test_partition_count(kaction *k, int32_t n);

/* Tests only: whether the pump is asleep with no work it knows of (nothing
 * staged for the disk, no metadata answer to apply): what it had to write,
 * drop or hand over is done. */
bool kaction_test_idle(kaction *k);

/* Whether the action waits for acks (query_mode sync) and for how long. */
bool kaction_is_sync(const kaction *k, uint64_t *timeout_ms);

/* Flushes (up to flush_ms), stops the pump, fails what is left, frees. */
void kaction_destroy(kaction *k, int flush_ms);

/* Estimated v2 record size (sink-behaviour.md §5). */
uint64_t kaction_estimate_size(size_t key_len, size_t val_len, const size_t *hdr_lens,
                               uint32_t n_hdr);

#endif
