/* arena.h - bump allocator for per-message and per-compile data.
 *
 * An arena hands out memory from large chunks and frees it all at once
 * (arena_reset / arena_free). The hot path evaluates one message inside an
 * arena that is reset, not freed, between messages, so steady-state message
 * processing performs no malloc at all once the first chunk is warm.
 *
 * Allocation failure returns NULL (never aborts); callers propagate it as an
 * out-of-memory error. Not thread-safe: one arena per thread/evaluation. */
#ifndef EC_ARENA_H
#define EC_ARENA_H

#include <stddef.h>
#include <stdint.h>

typedef struct arena_chunk arena_chunk;

typedef struct arena {
    arena_chunk *head; /* chunk being filled; older chunks behind it */
    size_t chunk_size; /* default size of a new chunk */
    size_t total;      /* bytes held by all chunks (for stats and caps) */
    size_t limit;      /* 0 = unlimited; otherwise allocation fails past it */
} arena;

/* Prepares an empty arena; no memory is taken until the first allocation. */
void arena_init(arena *a, size_t chunk_size);
/* Returns n bytes aligned to 8, or NULL when out of memory or over the limit. */
void *arena_alloc(arena *a, size_t n);
/* Like arena_alloc, zero-filled. */
void *arena_calloc(arena *a, size_t n);
/* Copies n bytes into the arena (NUL-terminated for convenience). */
char *arena_strndup(arena *a, const char *s, size_t n);
/* Grows the most recent allocation in place when possible, else copies.
 * old may be NULL. Returns NULL on failure (old stays valid). */
void *arena_realloc(arena *a, void *old, size_t old_n, size_t new_n);
/* Growable arrays in an arena: returns v when it has room for element
 * number len (len < *cap), else a copy with twice the room (at least 8;
 * *cap updated; in place when v is the arena's latest allocation), or NULL
 * on out-of-memory (v and *cap unchanged). */
void *arena_grow(arena *a, void *v, uint32_t *cap, uint32_t len, size_t elem);
/* The same on an array lvalue v: true when there is room (v updated). */
#define ARENA_GROW(a, v, cap, len)                                                                 \
    __extension__({                                                                                \
        void *g_ = arena_grow((a), (v), &(cap), (len), sizeof *(v));                               \
        if (g_) (v) = g_;                                                                          \
        g_ != NULL;                                                                                \
    })

/* Forgets every allocation but keeps the first chunk for reuse. */
void arena_reset(arena *a);
/* Releases all memory. */
void arena_free(arena *a);

#endif
