/* clock.h - milliseconds. The wall clock (since the epoch) for message
 * timestamps, token expiry and the age of buffered records (the disk buffer
 * keeps those across restarts); the monotonic clock for intervals and
 * deadlines, which a step of the wall clock (NTP, a resumed VM) must not
 * stretch or cut short. */
#ifndef EC_CLOCK_H
#define EC_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t ec_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t ec_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
