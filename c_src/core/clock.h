/* clock.h - milliseconds. The wall clock (since the epoch) for message
 * timestamps, token expiry and the age of buffered records (the disk buffer
 * keeps those across restarts); the monotonic clock for intervals and
 * deadlines, which a step of the wall clock (NTP, a resumed VM) must not
 * stretch or cut short. */
#ifndef EC_CLOCK_H
#define EC_CLOCK_H

#include <pthread.h>
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

/* a condition variable whose timed waits take monotonic deadlines
 * (ec_deadline): a wall-clock step does not lengthen them */
static inline int ec_cond_init(pthread_cond_t *cv) {
    pthread_condattr_t a;
    int r = pthread_condattr_init(&a);
    if (r) return r;
    r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (!r) r = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return r;
}

/* the monotonic time ms from now, for the waits of ec_cond_init's */
static inline struct timespec ec_deadline(int64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    return ts;
}

#endif
