/* clock.h - the wall clock in milliseconds since the epoch: message
 * timestamps, token expiry, and the age of buffered records (which the disk
 * buffer keeps across restarts, so a monotonic clock would not do). */
#ifndef EC_CLOCK_H
#define EC_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t ec_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
