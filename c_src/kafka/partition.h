/* partition.h - choosing a partition for a record (sink-behaviour.md §4).
 *
 *   key_dispatch: EMQX/wolff's rule, phash2(key bytes) mod count, where phash2
 *                 is Erlang's erlang:phash2/1 of a binary (Bob Jenkins' hash,
 *                 27 bits). Keys land where EMQX would put them.
 *   murmur2:      beyond EMQX, Java's default partitioner
 *                 (toPositive(murmur2(key)) mod count), so keys land where a
 *                 Java producer would put them.
 *   random:       uniform in [0, count). */
#ifndef EC_PARTITION_H
#define EC_PARTITION_H

#include <stddef.h>
#include <stdint.h>

typedef enum part_strategy { PART_RANDOM, PART_KEY_DISPATCH, PART_MURMUR2 } part_strategy;

/* erlang:phash2/1 of the binary key[0..len). */
uint32_t part_phash2(const void *key, size_t len);
/* Kafka's Utils.murmur2 (signed 32-bit result, as Java returns it). */
int32_t part_murmur2(const void *key, size_t len);
/* The partition in [0, count) for a record with this key; count must be > 0. */
int32_t part_pick(part_strategy s, const void *key, size_t len, int32_t count);

#endif
