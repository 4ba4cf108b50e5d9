/* crc32c.c - CRC-32C; see crc32c.h. */
#include "crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define POLY 0x82F63B78u /* 0x1EDC6F41 reflected */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t crc32c_sw(uint32_t crc, const void *p, size_t n) {
    pthread_once(&table_once, table_init);
    const uint8_t *b = p;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)b & 7)) {
        c = (c >> 8) ^ table[0][(c ^ *b++) & 0xff];
        n--;
    }
    for (; n >= 8; n -= 8, b += 8) { /* slice-by-8, little-endian words */
        uint32_t lo = c ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                           (uint32_t)b[3] << 24);
        uint32_t hi =
            (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
            table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
            table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    }
    while (n--)
        c = (c >> 8) ^ table[0][(c ^ *b++) & 0xff];
    return ~c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>
#include <wmmintrin.h>

/* The instruction takes 3 cycles and depends on the previous result, so one
 * stream runs at a third of its throughput: long buffers go as three
 * streams of L bytes at once, joined by shifting the first two over the
 * bytes after them (c * x^(8m) mod P: a carry-less multiply by
 * x^(8m - 33) mod P, reduced by the instruction itself). */
static const size_t stride[3] = {512, 128, 32};
static uint32_t kshift[3][2]; /* per stride L: x^(8*2L - 33), x^(8L - 33) mod P, reflected */
static pthread_once_t kshift_once = PTHREAD_ONCE_INIT;

static uint32_t xpow_mod(size_t e) { /* x^e mod P, reflected */
    uint32_t v = 0x80000000u;        /* x^0 */
    while (e--)
        v = v & 1 ? (v >> 1) ^ POLY : v >> 1;
    return v;
}

static void kshift_init(void) {
    for (int i = 0; i < 3; i++) {
        kshift[i][0] = xpow_mod(8 * 2 * stride[i] - 33);
        kshift[i][1] = xpow_mod(8 * stride[i] - 33);
    }
}

__attribute__((target("sse4.2,pclmul"))) static uint64_t crc_3way(uint64_t c, const uint8_t *b,
                                                                  size_t l, const uint32_t *k) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < l; i += 8) {
        uint64_t w0, w1, w2;
        memcpy(&w0, b + i, 8);
        memcpy(&w1, b + l + i, 8);
        memcpy(&w2, b + 2 * l + i, 8);
        c = _mm_crc32_u64(c, w0);
        c1 = _mm_crc32_u64(c1, w1);
        c2 = _mm_crc32_u64(c2, w2);
    }
    __m128i a =
        _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)(uint32_t)c), _mm_cvtsi32_si128((int)k[0]), 0);
    __m128i d =
        _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)(uint32_t)c1), _mm_cvtsi32_si128((int)k[1]), 0);
    return _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(_mm_xor_si128(a, d))) ^ c2;
}

static int have_clmul(void);

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t c = ~crc;
    while (n && ((uintptr_t)b & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *b++);
        n--;
    }
    if (n >= 3 * stride[2] && have_clmul()) {
        pthread_once(&kshift_once, kshift_init);
        for (int i = 0; i < 3; i++)
            for (; n >= 3 * stride[i]; n -= 3 * stride[i], b += 3 * stride[i])
                c = crc_3way(c, b, stride[i], kshift[i]);
    }
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        c = _mm_crc32_u64(c, w);
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *b++);
    return ~(uint32_t)c;
}

static int have_hw(void) {
    static _Atomic int have = -1; /* every thread computes the same */
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (h < 0) {
        h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        atomic_store_explicit(&have, h, memory_order_relaxed);
    }
    return h;
}

static int have_clmul(void) {
    static _Atomic int have = -1;
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (h < 0) {
        h = __builtin_cpu_supports("pclmul") ? 1 : 0;
        atomic_store_explicit(&have, h, memory_order_relaxed);
    }
    return h;
}
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>

static uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n) {
    const uint8_t *b = p;
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        c = __crc32cd(c, w);
    }
    while (n--)
        c = __crc32cb(c, *b++);
    return ~c;
}

static int have_hw(void) {
    return 1;
}
#else
static uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n) {
    return crc32c_sw(crc, p, n);
}

static int have_hw(void) {
    return 0;
}
#endif

uint32_t crc32c(uint32_t crc, const void *p, size_t n) {
    return have_hw() ? crc32c_hw(crc, p, n) : crc32c_sw(crc, p, n);
}
