/* buf.h - a growable byte buffer for encoders and renderers.
 *
 * Two kinds: heap buffers (buf_init) meant to be kept and reused (buf_clear)
 * so steady-state encoding does not allocate; and arena buffers
 * (buf_init_arena) whose bytes live in an arena and grow in place while they
 * are the arena's latest allocation, so a result built there needs no copy.
 * A failed growth sets `oom` and later appends become no-ops, so a caller
 * checks once at the end (buf_ok). */
#ifndef EC_BUF_H
#define EC_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "arena.h"

typedef struct ec_buf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
    arena *a; /* NULL: heap buffer */
} ec_buf;

void buf_init(ec_buf *b);
/* A buffer whose storage is taken from arena a (buf_free is a no-op). */
void buf_init_arena(ec_buf *b, arena *a);
void buf_free(ec_buf *b);
/* Makes room for n more bytes; false (and oom set) on failure. */
bool buf_reserve(ec_buf *b, size_t n);
void buf_append(ec_buf *b, const void *s, size_t n);
static inline void buf_clear(ec_buf *b) {
    b->len = 0;
    b->oom = false;
}
static inline bool buf_ok(const ec_buf *b) {
    return !b->oom;
}
static inline void buf_putc(ec_buf *b, char c) {
    if (b->len < b->cap || buf_reserve(b, 1)) b->p[b->len++] = c;
}
static inline void buf_puts(ec_buf *b, const char *s) {
    buf_append(b, s, strlen(s));
}

#endif
