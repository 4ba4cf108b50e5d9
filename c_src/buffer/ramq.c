/* ramq.c - the RAM record FIFO; see ramq.h. */
#include "ramq.h"

#include <stdlib.h>
#include <string.h>

struct ramq_chunk {
    ramq_chunk *next, *prev; /* the queue's chunks, or (prev too) its spent list */
    ramq *owner;
    uint32_t size; /* bytes of data[] */
    uint32_t used; /* write offset */
    uint32_t pins;
    bool spent; /* read past, kept for its pins */
    uint8_t data[];
};

void ramq_init(ramq *q, ramq_pool *pool) {
    memset(q, 0, sizeof *q);
    q->pool = pool;
}

/* the pool's size class of a chunk of size bytes, or -1 */
static int chunk_class(size_t size) {
    for (int c = 0; c < RAMQ_CLASSES; c++)
        if (size == (size_t)RAMQ_CHUNK_MIN << c) return c;
    return -1;
}

void ramq_pool_free(ramq_pool *pool) {
    for (int c = 0; c < RAMQ_CLASSES; c++)
        for (ramq_chunk *k = pool->free[c], *n; k; k = n) {
            n = k->next;
            free(k);
        }
    memset(pool->free, 0, sizeof pool->free);
    pool->bytes = 0;
}

/* c to the allocator, or onto the list *gc (when gc is set) for ramq_gc_free */
static void give_back(ramq_chunk *c, ramq_chunk **gc) {
    if (gc) {
        c->next = *gc;
        *gc = c;
    } else {
        free(c);
    }
}

void ramq_pool_trim(ramq_pool *pool, uint64_t keep, ramq_chunk **gc) {
    for (int c = RAMQ_CLASSES - 1; c >= 0 && pool->bytes > keep; c--)
        while (pool->free[c] && pool->bytes > keep) {
            ramq_chunk *k = pool->free[c];
            pool->free[c] = k->next;
            pool->bytes -= k->size;
            give_back(k, gc);
        }
}

size_t ramq_varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80)
        v >>= 7, n++;
    return n;
}

uint8_t *ramq_put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

bool ramq_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* c back to the pool, or to the allocator (onto *gc when gc is set) */
static void chunk_free_to(ramq *q, ramq_chunk *c, ramq_chunk **gc) {
    q->mem -= sizeof *c + c->size;
    int cl = chunk_class(c->size);
    ramq_pool *pool = q->pool;
    if (pool && cl >= 0 && pool->bytes + c->size <= (pool->cap ? pool->cap : RAMQ_POOL_BYTES)) {
        c->next = pool->free[cl];
        pool->free[cl] = c;
        pool->bytes += c->size;
    } else {
        give_back(c, gc);
    }
}

static void chunk_free(ramq *q, ramq_chunk *c) {
    chunk_free_to(q, c, NULL);
}

static ramq_chunk *chunk_new(ramq *q, size_t size) {
    int cl = chunk_class(size);
    ramq_pool *pool = q->pool;
    ramq_chunk *c;
    if (pool && cl >= 0 && (c = pool->free[cl])) {
        pool->free[cl] = c->next;
        pool->bytes -= c->size;
    } else if (!(c = malloc(sizeof *c + size))) {
        return NULL;
    }
    c->next = c->prev = NULL;
    c->owner = q;
    c->size = (uint32_t)size;
    c->used = 0;
    c->pins = 0;
    c->spent = false;
    q->mem += sizeof *c + size;
    return c;
}

/* c leaves the queue's chunks: freed, or kept on the spent list while pinned */
static void chunk_retire(ramq *q, ramq_chunk *c) {
    if (!c->pins) {
        chunk_free(q, c);
        return;
    }
    c->spent = true;
    c->prev = NULL;
    c->next = q->spent;
    if (q->spent) q->spent->prev = c;
    q->spent = c;
}

uint8_t *ramq_push(ramq *q, size_t len) {
    if (len > RAMQ_MAX_RECORD) return NULL;
    size_t need = ramq_varint_len(len) + len;
    ramq_chunk *t = q->tail;
    if (!t || t->size - t->used < need) {
        /* the next chunk: twice the tail's size while the queue grows */
        size_t size = t ? 2 * (size_t)t->size : RAMQ_CHUNK_MIN;
        if (size > RAMQ_CHUNK_MAX) size = RAMQ_CHUNK_MAX;
        if (size < need) size = need;
        ramq_chunk *c = chunk_new(q, size);
        if (!c) return NULL;
        if (t && q->n == 0) { /* t: the only chunk, read to its end (kept by a pin) */
            chunk_retire(q, t);
            t = NULL;
        }
        if (t)
            t->next = c;
        else
            q->head = c, q->rd = 0;
        q->tail = t = c;
    }
    uint8_t *p = ramq_put_varint(t->data + t->used, len);
    t->used += (uint32_t)need;
    q->n++;
    return p;
}

const uint8_t *ramq_front(const ramq *q, size_t *len) {
    if (!q->n) return NULL;
    const ramq_chunk *h = q->head;
    const uint8_t *p = h->data + q->rd, *end = h->data + h->used;
    uint64_t v = 0;
    ramq_get_varint(&p, end, &v); /* written by ramq_push: always whole */
    *len = (size_t)v;
    return p;
}

/* the head chunk is read to its end: it goes (or waits for its pins) */
static void retire_head(ramq *q) {
    ramq_chunk *h = q->head;
    if (h == q->tail) {      /* the queue is empty: keep one small chunk */
        if (h->pins) return; /* its bytes are lent out: pushes go after them */
        if (h->size > RAMQ_CHUNK_MIN) {
            chunk_free(q, h);
            q->head = q->tail = NULL;
        } else {
            h->used = 0;
        }
        q->rd = 0;
        return;
    }
    q->head = h->next;
    q->rd = 0;
    chunk_retire(q, h);
}

void ramq_pop(ramq *q) {
    size_t len;
    const uint8_t *p = ramq_front(q, &len);
    if (!p) return;
    q->rd = (uint32_t)(p + len - q->head->data);
    q->n--;
    if (q->rd == q->head->used) retire_head(q);
}

ramq_chunk *ramq_pin_front(ramq *q) {
    q->head->pins++;
    return q->head;
}

void ramq_unpin_to(ramq_chunk *c, ramq_chunk **gc) {
    ramq *q = c->owner;
    if (--c->pins) return;
    if (c->spent) {
        if (c->prev)
            c->prev->next = c->next;
        else
            q->spent = c->next;
        if (c->next) c->next->prev = c->prev;
        chunk_free_to(q, c, gc);
    } else if (c == q->head && c == q->tail && !q->n) {
        retire_head(q); /* the queue emptied while c was pinned */
    }
}

void ramq_unpin(ramq_chunk *c) {
    ramq_unpin_to(c, NULL);
}

void ramq_gc_free(ramq_chunk *gc) {
    for (ramq_chunk *n; gc; gc = n) {
        n = gc->next;
        free(gc);
    }
}

void ramq_free(ramq *q) {
    for (ramq_chunk *c = q->head, *n; c; c = n) {
        n = c->next;
        chunk_free(q, c);
    }
    for (ramq_chunk *c = q->spent, *n; c; c = n) {
        n = c->next;
        chunk_free(q, c);
    }
    ramq_init(q, q->pool);
}
