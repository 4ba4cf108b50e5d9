/* kconf.h - EMQX Kafka/Confluent connector and action configuration
 * (spec/confluent-connector-and-action.md), from the EMQX-shaped map to
 * librdkafka properties and the action's runtime parameters.
 *
 * The Erlang side validates and normalises configuration for the REST API;
 * this module reads the same shape so the C core can be driven (and tested)
 * on its own, and refuses what it cannot honour with the field path. */
#ifndef EC_KCONF_H
#define EC_KCONF_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/arena.h"
#include "../core/error.h"
#include "../core/value.h"
#include "partition.h"

/* EMQX value formats (§2). Each returns false for a malformed value. */
bool kconf_duration_ms(const value *v, uint64_t *ms); /* "5s", "1m30s", 5000 */
bool kconf_duration_s(const value *v, uint64_t *s);   /* "60s", 60 (seconds) */
bool kconf_bytesize(const value *v, uint64_t *bytes); /* "896KB", 1024 */

#define KCONF_MAX_PROPS 64

/* librdkafka properties: kv[2i] = kv[2i+1], strings in the arena. */
typedef struct kconf_props {
    const char *kv[2 * KCONF_MAX_PROPS];
    size_t n;
} kconf_props;

typedef enum kconf_ack { KACK_ALL = -1, KACK_NONE = 0, KACK_LEADER = 1 } kconf_ack;

/* The connector: where and how to connect. */
typedef struct kconf_connector {
    bool confluent; /* confluent_producer: SASL_SSL + PLAIN, TLS verify off */
    kconf_props props;
    uint64_t metadata_request_timeout_ms;
    uint64_t health_check_interval_ms;
    const char *health_check_topic; /* NULL: the probe topic */
} kconf_connector;

typedef enum { KCONF_BUF_MEMORY, KCONF_BUF_DISK, KCONF_BUF_HYBRID } kconf_buffer_mode;

typedef struct kconf_action {
    const char *topic; /* template text */
    const char *key, *val, *timestamp;
    const char *kafka_headers; /* NULL: none */
    const char **ext_headers;  /* [2 * n_ext] key, value templates */
    uint32_t n_ext;
    bool header_json;
    part_strategy strategy;
    kconf_ack acks;
    const char *compression; /* librdkafka codec name */
    uint32_t max_inflight;
    uint64_t max_batch_bytes;
    uint64_t max_linger_ms;
    uint64_t partition_count_refresh_s;
    int32_t partitions_limit; /* 0 = all partitions */
    bool sync;
    uint64_t sync_timeout_ms;
    uint64_t max_batch_age_ms; /* 0 = infinity: records never expire */
    int64_t max_retries;       /* -1 = infinity */
    uint64_t per_partition_limit;
    bool memory_overload_protection;
    kconf_buffer_mode buffer_mode;
    uint64_t segment_bytes;
    const char *buffer_dir; /* disk mode: the action's directory (set by the plugin, not EMQX) */
} kconf_action;

/* Parses a connector map (type confluent_producer or kafka_producer). */
ec_status kconf_connector_parse(const value *conf, arena *a, kconf_connector *out, ec_error *err);
/* Parses an action map; connector_type must match the action's type. */
ec_status kconf_action_parse(const value *conf, bool confluent, arena *a, kconf_action *out,
                             ec_error *err);
/* librdkafka properties of an action's producer: the connector's, plus the
 * action's producer settings. */
ec_status kconf_producer_props(const kconf_connector *c, const kconf_action *act, arena *a,
                               kconf_props *out, ec_error *err);

#endif
