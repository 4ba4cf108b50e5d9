/* kheaders.h - Kafka record headers from a rule output (sink-behaviour.md §3):
 * `kafka_headers` (one placeholder: a map, a [{key, value}] list, or JSON
 * text of either), then `kafka_ext_headers` in order, then the value encode
 * mode (none: keep string values only; json: JSON-encode every value). */
#ifndef EC_KHEADERS_H
#define EC_KHEADERS_H

#include <stdbool.h>
#include <stdint.h>

#include "tmpl.h"

typedef struct kh_ext {
    tmpl *key; /* any template */
    tmpl *val; /* a single placeholder or plain text */
} kh_ext;

typedef struct kh_spec {
    tmpl *headers; /* NULL: no kafka_headers */
    kh_ext *ext;
    uint32_t next;
    bool json_mode;
} kh_spec;

typedef struct kh_pair {
    const char *k;
    uint32_t klen;
    const char *v;
    uint32_t vlen;
} kh_pair;

/* headers: the kafka_headers template or NULL/"" for none (it must be a single
 * placeholder); ext: next pairs (key template, value template) flattened as
 * ext[2i], ext[2i+1] with lengths ext_len[2i], ext_len[2i+1]. Errors name the
 * offending field (kafka_headers, kafka_ext_headers[i].kafka_ext_header_value). */
ec_status kh_compile(const char *headers, size_t hlen, const char *const *ext,
                     const size_t *ext_len, uint32_t next, bool json_mode, kh_spec **out,
                     ec_error *err);
void kh_free(kh_spec *s);

/* Renders the header list for ctx into the arena. A bad header source is an
 * error (bad_kafka_header / bad_kafka_headers): the message fails. */
ec_status kh_render(const kh_spec *s, const value *ctx, arena *a, kh_pair **out, uint32_t *n,
                    ec_error *err);

#endif
