/* partition.c - partitioners; see partition.h. */
#include "partition.h"

#include <stdlib.h>

#include "../core/rng.h"

#define MIX(a, b, c)                                                                               \
    do {                                                                                           \
        a -= b, a -= c, a ^= (c >> 13);                                                            \
        b -= c, b -= a, b ^= (a << 8);                                                             \
        c -= a, c -= b, c ^= (b >> 13);                                                            \
        a -= b, a -= c, a ^= (c >> 12);                                                            \
        b -= c, b -= a, b ^= (a << 16);                                                            \
        c -= a, c -= b, c ^= (b >> 5);                                                             \
        a -= b, a -= c, a ^= (c >> 3);                                                             \
        b -= c, b -= a, b ^= (a << 10);                                                            \
        c -= a, c -= b, c ^= (b >> 15);                                                            \
    } while (0)

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t part_phash2(const void *key, size_t n) {
    const uint32_t SEED = 0x08D12E65u; /* Erlang's constant for binaries */
    const uint8_t *k = key;
    uint32_t h;
    if (n == 0) {
        h = SEED;
    } else {
        uint32_t a = 0x9E3779B9u, b = 0x9E3779B9u, c = SEED;
        size_t rem = n;
        while (rem >= 12) {
            a += le32(k);
            b += le32(k + 4);
            c += le32(k + 8);
            MIX(a, b, c);
            k += 12;
            rem -= 12;
        }
        c += (uint32_t)n;
        switch (rem) {                       /* every case falls through */
        case 11: c += (uint32_t)k[10] << 24; /* fallthrough */
        case 10: c += (uint32_t)k[9] << 16;  /* fallthrough */
        case 9: c += (uint32_t)k[8] << 8;    /* fallthrough */
        case 8: b += (uint32_t)k[7] << 24;   /* fallthrough */
        case 7: b += (uint32_t)k[6] << 16;   /* fallthrough */
        case 6: b += (uint32_t)k[5] << 8;    /* fallthrough */
        case 5: b += k[4];                   /* fallthrough */
        case 4: a += (uint32_t)k[3] << 24;   /* fallthrough */
        case 3: a += (uint32_t)k[2] << 16;   /* fallthrough */
        case 2: a += (uint32_t)k[1] << 8;    /* fallthrough */
        case 1: a += k[0];                   /* fallthrough */
        default: break;
        }
        MIX(a, b, c);
        h = c;
    }
    return h & 0x07FFFFFFu;
}

int32_t part_murmur2(const void *key, size_t len) {
    const uint8_t *d = key;
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        uint32_t k = le32(d + 4 * i);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    size_t t = len & ~(size_t)3;
    switch (len % 4) {
    case 3: h ^= (uint32_t)d[t + 2] << 16; /* fallthrough */
    case 2: h ^= (uint32_t)d[t + 1] << 8;  /* fallthrough */
    case 1: h ^= d[t]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t part_pick(part_strategy s, const void *key, size_t len, int32_t count) {
    switch (s) {
    case PART_KEY_DISPATCH: return (int32_t)(part_phash2(key, len) % (uint32_t)count);
    case PART_MURMUR2:
        return (int32_t)(((uint32_t)part_murmur2(key, len) & 0x7fffffffu) % (uint32_t)count);
    case PART_RANDOM: break;
    }
    return (int32_t)rng_below((uint32_t)count);
}
