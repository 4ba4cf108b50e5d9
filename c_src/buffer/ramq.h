/* ramq.h - a FIFO of byte records in RAM: the storage of buffer.mode memory
 * and of hybrid's RAM part (sink-behaviour.md §6), one queue per
 * topic-partition.
 *
 * Records are laid end to end in chunks, each behind a 1-5 byte length, so
 * a buffered record costs its bytes and almost nothing else (no allocation
 * per record). Chunks grow from RAMQ_CHUNK_MIN to RAMQ_CHUNK_MAX bytes while
 * the queue grows (a record larger than that gets a chunk of its own) and go
 * back to the allocator once read past; an empty queue keeps at most one
 * small chunk.
 *
 * A pin keeps the bytes of a record valid after it was popped: a chunk read
 * past while pinned waits until its last pin goes, then goes back. The
 * producer action's pump pins each record it takes and lends its value to
 * librdkafka, unpinning it when the delivery report comes.
 *
 * Queues can share a pool of spare chunks (ramq_pool, at most its cap,
 * RAMQ_POOL_BYTES unless set): chunks given back go there first and new ones
 * come from it, so a queue that empties and fills again reuses its memory
 * instead of handing it to the allocator (which may give it back to the
 * system and fault it in again); ramq_pool_trim gives spare chunks back.
 *
 * Not thread-safe: the caller locks (queues sharing a pool under one lock).
 * No allocation happens outside ramq_push; ramq_pop and ramq_unpin only
 * free (ramq_unpin_to can leave that for after the lock). */
#ifndef EC_RAMQ_H
#define EC_RAMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAMQ_CHUNK_MIN  4096u
#define RAMQ_CHUNK_MAX  65536u
#define RAMQ_MAX_RECORD (1u << 30) /* larger pushes fail */
#define RAMQ_POOL_BYTES (1u << 20)
#define RAMQ_CLASSES    5 /* chunk sizes 4, 8, 16, 32, 64 KiB */

typedef struct ramq_chunk ramq_chunk;

typedef struct ramq_pool {
    ramq_chunk *free[RAMQ_CLASSES];
    uint64_t bytes; /* of the spare chunks */
    uint64_t cap;   /* at most this many (0: RAMQ_POOL_BYTES); the owner may set it */
} ramq_pool;

typedef struct ramq {
    ramq_pool *pool; /* NULL: none */
    ramq_chunk *head, *tail;
    ramq_chunk *spent; /* read past while pinned: freed by the last ramq_unpin */
    uint32_t rd;       /* read offset in head */
    uint64_t n;        /* records */
    uint64_t mem;      /* bytes of the chunks held (spent ones included) */
} ramq;

/* An empty queue taking spare chunks from pool (NULL: none). */
void ramq_init(ramq *q, ramq_pool *pool);
/* Frees a pool's chunks (no queue may use it any more). */
void ramq_pool_free(ramq_pool *pool);
/* Gives spare chunks back to the allocator until the pool holds at most
 * keep bytes (the largest go first); with gc set, onto the list *gc for
 * ramq_gc_free (after the lock) instead. */
void ramq_pool_trim(ramq_pool *pool, uint64_t keep, ramq_chunk **gc);

/* Appends a record of len bytes and returns where to write them (before the
 * queue is used again); NULL when out of memory or len > RAMQ_MAX_RECORD. */
uint8_t *ramq_push(ramq *q, size_t len);

/* The oldest record (NULL when empty), its length in *len. */
const uint8_t *ramq_front(const ramq *q, size_t *len);

/* Removes the oldest record (the queue must not be empty). */
void ramq_pop(ramq *q);

/* Pins the chunk of the oldest record (the queue must not be empty): its
 * bytes stay valid, popped or not, until the chunk is unpinned as often. */
ramq_chunk *ramq_pin_front(ramq *q);
/* One pin less on c (under the lock of the queue that holds it); a chunk
 * read past goes back with its last pin. */
void ramq_unpin(ramq_chunk *c);
/* The same, except that a chunk that would go back to the allocator (the
 * pool being full) is put on the list *gc instead, for ramq_gc_free after
 * the lock is let go: free() of many chunks can take milliseconds (the
 * allocator gives memory back to the system). */
void ramq_unpin_to(ramq_chunk *c, ramq_chunk **gc);
/* Frees the chunks of a list made by ramq_unpin_to (no lock needed). */
void ramq_gc_free(ramq_chunk *gc);

/* Gives every chunk back (no pin may be held); the queue is empty. */
void ramq_free(ramq *q);

/* varints, little-endian base 128, as the record forms inside use them */
size_t ramq_varint_len(uint64_t v);
uint8_t *ramq_put_varint(uint8_t *p, uint64_t v);
/* reads a varint at *p (below end); false when it is cut or too long */
bool ramq_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

#endif
