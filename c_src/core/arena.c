/* arena.c - bump allocator; see arena.h. */
#include "arena.h"

#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    arena_chunk *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    max_align_t data[];
};

#define ARENA_ALIGN 8u
#define ALIGN_UP(n) (((n) + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1))

void arena_init(arena *a, size_t chunk_size) {
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 8192;
    a->total = 0;
    a->limit = 0;
}

static arena_chunk *chunk_new(arena *a, size_t need) {
    size_t size = need > a->chunk_size ? need : a->chunk_size;
    if (a->limit && a->total + size > a->limit) return NULL;
    arena_chunk *c = malloc(sizeof(arena_chunk) + size);
    if (!c) return NULL;
    c->size = size;
    c->used = 0;
    c->next = a->head;
    a->head = c;
    a->total += size;
    return c;
}

void *arena_alloc(arena *a, size_t n) {
    n = ALIGN_UP(n ? n : 1);
    arena_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        c = chunk_new(a, n);
        if (!c) return NULL;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void *arena_calloc(arena *a, size_t n) {
    void *p = arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void *arena_realloc(arena *a, void *old, size_t old_n, size_t new_n) {
    if (!old) return arena_alloc(a, new_n);
    if (new_n <= old_n) return old;
    arena_chunk *c = a->head;
    size_t old_al = ALIGN_UP(old_n), new_al = ALIGN_UP(new_n);
    /* the last allocation of the current chunk can grow in place */
    if (c && (char *)old + old_al == (char *)c->data + c->used &&
        c->used - old_al + new_al <= c->size) {
        c->used = c->used - old_al + new_al;
        return old;
    }
    void *p = arena_alloc(a, new_n);
    if (!p) return NULL;
    memcpy(p, old, old_n);
    return p;
}

void *arena_grow(arena *a, void *v, uint32_t *cap, uint32_t len, size_t elem) {
    if (len < *cap) return v;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    if (ncap <= *cap) return NULL; /* overflow */
    void *nv = arena_realloc(a, v, (size_t)*cap * elem, (size_t)ncap * elem);
    if (nv) *cap = ncap;
    return nv;
}

/* Largest chunk arena_reset will adopt as the new default size. */
#define ARENA_ADAPT_MAX ((size_t)1 << 20)

void arena_reset(arena *a) {
    arena_chunk *c = a->head;
    if (!c) return;
    if (!c->next && c->size == a->chunk_size) { /* the common case: one warm chunk */
        c->used = 0;
        return;
    }
    /* Several chunks were needed: free them and make the next chunk big enough
     * for the whole load, so the steady state is again a single reused chunk. */
    size_t total = a->total;
    arena_free(a);
    if (total > a->chunk_size) a->chunk_size = total < ARENA_ADAPT_MAX ? total : ARENA_ADAPT_MAX;
}

void arena_free(arena *a) {
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}
