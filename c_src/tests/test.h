/* test.h - a tiny unit-test harness for the C core (no VM needed).
 *
 *   TEST(json_roundtrip) { CHECK(x == 1); CHECK_STR(s, "a"); REQUIRE(p); }
 *
 * Tests register themselves at load time; test_main.c runs all of them, or
 * those named on the command line (exact name, or a prefix ending in '*').
 * CHECK records a failure and continues; REQUIRE records and returns. */
#ifndef EC_TEST_H
#define EC_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct test_case {
    const char *name;
    void (*fn)(void);
    struct test_case *next;
} test_case;

void test_register(test_case *tc);
void test_failed(const char *file, int line, const char *what);
bool test_current_failed(void);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    static test_case tc_##name = {#name, test_##name, NULL};                                       \
    __attribute__((constructor)) static void reg_##name(void) {                                    \
        test_register(&tc_##name);                                                                 \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) test_failed(__FILE__, __LINE__, "CHECK(" #cond ")");                          \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_failed(__FILE__, __LINE__, "REQUIRE(" #cond ")");                                 \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (!g_ || strcmp(g_, w_) != 0) {                                                          \
            char m_[2400];                                                                         \
            snprintf(m_, sizeof m_, "CHECK_STR(%.100s): got \"%.1100s\", want \"%.1100s\"", #got,  \
                     g_ ? g_ : "(null)", w_);                                                      \
            test_failed(__FILE__, __LINE__, m_);                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_) {                                                                            \
            char m_[256];                                                                          \
            snprintf(m_, sizeof m_, "CHECK_INT(%s): got %lld, want %lld", #got, g_, w_);           \
            test_failed(__FILE__, __LINE__, m_);                                                   \
        }                                                                                          \
    } while (0)

/* waiting and timing in tests */
static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline double now_s(void) { /* monotonic */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
