/* test_ramq.c - the RAM record FIFO of the memory buffer: order across
 * chunks, oversized records, loans keeping popped bytes valid, memory given
 * back, and what a record costs. */
#include <stdlib.h>

#include "../buffer/ramq.h"
#include "test.h"

/* record i: i % 300 bytes (i % 7 == 0: 100 KB), each byte (i + j) & 0xff */
static size_t rec_len(unsigned i) {
    return i % 7 == 0 ? 100000 : i % 300;
}

static bool push_rec(ramq *q, unsigned i) {
    size_t n = rec_len(i);
    uint8_t *p = ramq_push(q, n);
    if (!p) return false;
    for (size_t j = 0; j < n; j++)
        p[j] = (uint8_t)(i + j);
    return true;
}

static bool rec_is(const uint8_t *p, size_t n, unsigned i) {
    if (n != rec_len(i)) return false;
    for (size_t j = 0; j < n; j++)
        if (p[j] != (uint8_t)(i + j)) return false;
    return true;
}

TEST(ramq_fifo_across_chunks) {
    ramq q;
    ramq_init(&q, NULL);
    size_t len;
    CHECK(ramq_front(&q, &len) == NULL);
    unsigned next = 0, bad = 0;
    for (unsigned round = 0; round < 20; round++) { /* interleaved pushes and pops */
        for (unsigned i = 0; i < 500; i++)
            REQUIRE(push_rec(&q, round * 500 + i));
        for (unsigned i = 0; i < 300; i++) {
            const uint8_t *p = ramq_front(&q, &len);
            REQUIRE(p);
            bad += !rec_is(p, len, next++);
            ramq_pop(&q);
        }
    }
    CHECK_INT(q.n, 20 * 500 - 20 * 300);
    while (q.n) {
        const uint8_t *p = ramq_front(&q, &len);
        bad += !rec_is(p, len, next++);
        ramq_pop(&q);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(next, 10000);
    CHECK(ramq_front(&q, &len) == NULL);
    CHECK(q.mem <= RAMQ_CHUNK_MIN + 64); /* drained: one small chunk at most */
    ramq_free(&q);
    CHECK_INT(q.mem, 0);
}

/* pinned, then popped: the bytes stay readable after more pushes and pops,
 * until the last unpin gives the chunks back */
TEST(ramq_pins_keep_popped_bytes) {
    ramq q;
    ramq_init(&q, NULL);
    for (unsigned i = 1; i <= 400; i++)
        REQUIRE(push_rec(&q, i));
    const uint8_t *got[300];
    size_t lens[300];
    ramq_chunk *pins[300];
    for (unsigned i = 0; i < 300; i++) {
        got[i] = ramq_front(&q, &lens[i]);
        REQUIRE(got[i]);
        pins[i] = ramq_pin_front(&q);
        ramq_pop(&q);
    }
    for (unsigned i = 401; i <= 900; i++) /* more chunks, more pops, all while pinned */
        REQUIRE(push_rec(&q, i));
    size_t len;
    for (unsigned i = 0; i < 50; i++)
        ramq_pop(&q);
    uint64_t pinned_mem = q.mem;
    unsigned bad = 0;
    for (unsigned i = 0; i < 300; i++)
        bad += !rec_is(got[i], lens[i], i + 1);
    CHECK_INT(bad, 0);
    for (unsigned i = 0; i < 150; i++) /* half the pins: only chunks with none left go */
        ramq_unpin(pins[i]);
    for (unsigned i = 150; i < 300; i++)
        bad += !rec_is(got[i], lens[i], i + 1);
    CHECK_INT(bad, 0);
    for (unsigned i = 150; i < 300; i++)
        ramq_unpin(pins[i]);
    CHECK(q.mem < pinned_mem); /* the chunks read past went back */
    const uint8_t *p = ramq_front(&q, &len);
    CHECK(p && rec_is(p, len, 351));
    ramq_free(&q);
}

/* the queue emptied while its chunk was pinned, then a push needs a new
 * chunk: the old (read) chunk must not stay in front of it, and goes back
 * with its last pin */
TEST(ramq_emptied_while_pinned_then_new_chunk) {
    ramq q;
    ramq_init(&q, NULL);
    REQUIRE(push_rec(&q, 1)); /* 1 byte */
    size_t len;
    const uint8_t *held = ramq_front(&q, &len);
    ramq_chunk *c = ramq_pin_front(&q);
    ramq_pop(&q);
    CHECK_INT(q.n, 0);
    REQUIRE(push_rec(&q, 7)); /* 100 KB: a chunk of its own */
    REQUIRE(push_rec(&q, 8));
    const uint8_t *p = ramq_front(&q, &len);
    CHECK(p && rec_is(p, len, 7));
    CHECK(rec_is(held, 1, 1)); /* still readable: pinned */
    ramq_unpin(c);
    ramq_pop(&q);
    p = ramq_front(&q, &len);
    CHECK(p && rec_is(p, len, 8));
    ramq_pop(&q);
    CHECK_INT(q.n, 0);
    /* emptied while pinned, the next push fits the same chunk; the last
     * unpin of an empty queue's chunk resets it */
    REQUIRE(push_rec(&q, 2));
    c = ramq_pin_front(&q);
    ramq_pop(&q);
    REQUIRE(push_rec(&q, 3));
    p = ramq_front(&q, &len);
    CHECK(p && rec_is(p, len, 3));
    ramq_pop(&q);
    ramq_unpin(c);
    CHECK(q.mem <= RAMQ_CHUNK_MIN + 64);
    REQUIRE(push_rec(&q, 4));
    p = ramq_front(&q, &len);
    CHECK(p && rec_is(p, len, 4));
    ramq_free(&q);
}

/* what a buffered record costs: its bytes, a 1-byte length and the chunks'
 * slack; a 64 MB queue of 114-byte records stays within 2 % of the data */
TEST(ramq_memory_overhead) {
    ramq q;
    ramq_init(&q, NULL);
    uint64_t data = 0;
    while (data < (64u << 20)) {
        uint8_t *p = ramq_push(&q, 114);
        REQUIRE(p);
        memset(p, 'x', 114);
        data += 114;
    }
    CHECK(q.mem <= data + data / 50);
    CHECK(q.mem >= data);
    ramq_free(&q);
    CHECK(ramq_push(&q, (size_t)RAMQ_MAX_RECORD + 1) == NULL);
    ramq_free(&q);
}

TEST(ramq_varints) {
    uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
    uint8_t buf[16];
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        uint8_t *end = ramq_put_varint(buf, vals[i]);
        CHECK_INT(end - buf, ramq_varint_len(vals[i]));
        const uint8_t *p = buf;
        uint64_t v;
        CHECK(ramq_get_varint(&p, end, &v) && v == vals[i] && p == end);
        p = buf; /* cut short */
        if (end - buf > 1) CHECK(!ramq_get_varint(&p, end - 1, &v));
    }
}

/* queues sharing a pool: chunks given back wait there (up to the pool's
 * size) and the next pushes take them again */
TEST(ramq_pool_reuses_chunks) {
    ramq_pool pool;
    memset(&pool, 0, sizeof pool);
    ramq a, b;
    ramq_init(&a, &pool);
    ramq_init(&b, &pool);
    for (unsigned i = 0; i < 2000; i++) /* ~600 KB: chunks up to 64 KiB */
        REQUIRE(push_rec(&a, i % 7 ? i : 1));
    while (a.n)
        ramq_pop(&a);
    uint64_t spare = pool.bytes;
    CHECK(spare > 0 && spare <= RAMQ_POOL_BYTES);
    CHECK(a.mem <= RAMQ_CHUNK_MIN + 64);
    for (unsigned i = 0; i < 2000; i++) /* another queue takes them */
        REQUIRE(push_rec(&b, i % 7 ? i : 1));
    CHECK(pool.bytes < spare);
    size_t len;
    unsigned bad = 0;
    for (unsigned i = 0; i < 2000; i++) {
        const uint8_t *p = ramq_front(&b, &len);
        bad += !(p && rec_is(p, len, i % 7 ? i : 1));
        ramq_pop(&b);
    }
    CHECK_INT(bad, 0);
    ramq_free(&a);
    ramq_free(&b);
    CHECK(pool.bytes <= RAMQ_POOL_BYTES);
    ramq_pool_free(&pool);
    CHECK_INT(pool.bytes, 0);
}

/* a pool's cap bounds what it keeps; trimming gives chunks back, largest
 * first, down to what is asked */
TEST(ramq_pool_cap_and_trim) {
    ramq_pool pool;
    memset(&pool, 0, sizeof pool);
    pool.cap = 8u << 20;
    ramq q;
    ramq_init(&q, &pool);
    for (unsigned i = 0; i < 12000; i++) /* 299-byte records, ~3.6 MB: more than RAMQ_POOL_BYTES */
        REQUIRE(push_rec(&q, 299));
    while (q.n)
        ramq_pop(&q);
    CHECK(pool.bytes > RAMQ_POOL_BYTES && pool.bytes <= pool.cap);
    ramq_pool_trim(&pool, RAMQ_POOL_BYTES, NULL);
    CHECK(pool.bytes <= RAMQ_POOL_BYTES && pool.bytes > RAMQ_POOL_BYTES - RAMQ_CHUNK_MAX);
    CHECK_INT(pool.cap, 8u << 20); /* kept */
    ramq_pool_trim(&pool, 0, NULL);
    CHECK_INT(pool.bytes, 0);
    for (int c = 0; c < RAMQ_CLASSES; c++)
        CHECK(pool.free[c] == NULL);
    for (unsigned i = 0; i < 100; i++) /* still usable */
        REQUIRE(push_rec(&q, 299));
    ramq_free(&q);
    ramq_pool_free(&pool);
    CHECK_INT(pool.bytes, 0);
}

/* ramq_unpin_to: a chunk read past goes with its last pin, to the pool while
 * it has room and otherwise onto the caller's list (still allocated, off the
 * queue's memory), which ramq_gc_free frees (ASan: no leak, no double free) */
TEST(ramq_unpin_to_defers_frees) {
    ramq_pool pool;
    memset(&pool, 0, sizeof pool);
    pool.cap = RAMQ_CHUNK_MAX; /* room for one full-size chunk */
    ramq q;
    ramq_init(&q, &pool);
    enum { N = 3000 }; /* 299-byte records, ~0.9 MB: many 64-KiB chunks */
    static ramq_chunk *pins[N];
    for (unsigned i = 0; i < N; i++)
        REQUIRE(push_rec(&q, 299));
    for (unsigned i = 0; i < N; i++) {
        pins[i] = ramq_pin_front(&q);
        ramq_pop(&q);
    }
    uint64_t pinned_mem = q.mem;
    ramq_chunk *gc = NULL;
    for (unsigned i = 0; i < N; i++)
        ramq_unpin_to(pins[i], &gc);
    CHECK(q.mem < pinned_mem / 8); /* every chunk read past left the queue's count */
    CHECK(pool.bytes > 0 && pool.bytes <= pool.cap);
    CHECK(gc != NULL); /* the pool took what fits, the rest waits on the list */
    ramq_gc_free(gc);
    ramq_free(&q);
    ramq_pool_free(&pool);
}
