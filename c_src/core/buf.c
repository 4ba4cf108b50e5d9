/* buf.c - growable byte buffer; see buf.h. */
#include "buf.h"

#include <stdlib.h>

void buf_init(ec_buf *b) {
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = false;
    b->a = NULL;
}

void buf_init_arena(ec_buf *b, arena *a) {
    buf_init(b);
    b->a = a;
}

void buf_free(ec_buf *b) {
    if (!b->a) free(b->p);
    buf_init(b);
}

bool buf_reserve(ec_buf *b, size_t n) {
    if (b->oom) return false;
    if (b->cap - b->len >= n) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > ((size_t)-1) / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = b->a ? arena_realloc(b->a, b->p, b->cap, cap) : realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void buf_append(ec_buf *b, const void *s, size_t n) {
    if (!n || !buf_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
