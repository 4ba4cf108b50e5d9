/* test_clock.c - timed waits on the monotonic clock: the condition variable
 * and the deadline agree on the clock (a wait on a wall-clock condition with
 * a monotonic deadline would end at once, the deadline lying far in its
 * past), and a deadline is that far ahead. */
#include <errno.h>

#include "../core/clock.h"
#include "test.h"

TEST(clock_cond_wait_takes_monotonic_deadline) {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    CHECK_INT(ec_cond_init(&cv), 0);
    pthread_mutex_lock(&mu);
    int64_t t0 = ec_mono_ms();
    struct timespec until = ec_deadline(120);
    int r = 0;
    while (r == 0) /* (a spurious wake-up waits again) */
        r = pthread_cond_timedwait(&cv, &mu, &until);
    int64_t waited = ec_mono_ms() - t0;
    pthread_mutex_unlock(&mu);
    CHECK_INT(r, ETIMEDOUT);
    CHECK(waited >= 119);
    CHECK(waited < 5000);
    pthread_cond_destroy(&cv);
}

TEST(clock_deadline_carries_milliseconds) {
    struct timespec a = ec_deadline(0), b = ec_deadline(1999);
    int64_t ms = (int64_t)(b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    CHECK(ms >= 1999 && ms < 2100);
    CHECK(b.tv_nsec >= 0 && b.tv_nsec < 1000000000L);
}
