/* rng.h - a fast thread-local pseudo-random generator (xoshiro256**), seeded
 * once per thread from getrandom(). For random partitions and SQL random();
 * not for secrets (uuid_v4 uses OpenSSL). glibc 2.36's arc4random costs a
 * system call (~450 ns) per number, too slow for the per-message path. */
#ifndef EC_RNG_H
#define EC_RNG_H

#include <stdint.h>

uint64_t rng_next(void);
/* Uniform in [0, n), n > 0 (Lemire's multiply-shift, rejection for bias). */
uint32_t rng_below(uint32_t n);
/* Uniform double in [0, 1). */
double rng_unit(void);

#endif
