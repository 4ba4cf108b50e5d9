/* rng.c - xoshiro256** per thread; see rng.h. */
#include "rng.h"

#include <stdbool.h>
#include <sys/random.h>
#include <time.h>

static _Thread_local uint64_t s[4];
static _Thread_local bool seeded;

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static void seed(void) {
    if (getrandom(s, sizeof s, 0) != (ssize_t)sizeof s) { /* fall back on the clock */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&ts;
        for (int i = 0; i < 4; i++) { /* splitmix64 */
            z += 0x9E3779B97F4A7C15ULL;
            uint64_t x = z;
            x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
            x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
            s[i] = x ^ (x >> 31);
        }
    }
    if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
    seeded = true;
}

uint64_t rng_next(void) {
    if (!seeded) seed();
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

uint32_t rng_below(uint32_t n) {
    uint64_t m = (uint64_t)(uint32_t)(rng_next() >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(rng_next() >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double rng_unit(void) {
    return (double)(rng_next() >> 11) * 0x1.0p-53;
}
