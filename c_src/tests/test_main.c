/* test_main.c - runs the registered C unit tests.
 *
 * Usage: c_tests [-l] [NAME | PREFIX* ...]
 *   -l      list test names and exit
 *   NAME    run only that test; PREFIX* runs every test whose name starts so.
 * Prints one line per failing check, "ok"/"FAIL" per test, and finally
 * "c_tests: N passed, N failed". Exit status 1 when any test failed. */
#include <stdlib.h>

#include "test.h"

static test_case *head, **tail = &head;
static bool cur_failed;

void test_register(test_case *tc) {
    *tail = tc; /* keep definition order */
    tail = &tc->next;
}

void test_failed(const char *file, int line, const char *what) {
    cur_failed = true;
    fprintf(stderr, "    %s:%d: %s\n", file, line, what);
}

bool test_current_failed(void) {
    return cur_failed;
}

static bool selected(const char *name, int argc, char **argv) {
    if (argc == 0) return true;
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (n && argv[i][n - 1] == '*') {
            if (strncmp(name, argv[i], n - 1) == 0) return true;
        } else if (strcmp(name, argv[i]) == 0) {
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv) {
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "-l") == 0) {
        for (test_case *t = head; t; t = t->next)
            printf("%s\n", t->name);
        return 0;
    }
    int passed = 0, failed = 0;
    for (test_case *t = head; t; t = t->next) {
        if (!selected(t->name, argc - first, argv + first)) continue;
        cur_failed = false;
        t->fn();
        if (cur_failed) {
            failed++;
            printf("FAIL %s\n", t->name);
        } else {
            passed++;
            printf("ok   %s\n", t->name);
        }
        fflush(stdout);
    }
    if (passed + failed == 0 && argc > first) {
        fprintf(stderr, "no test matches the given names (try -l)\n");
        return 2;
    }
    printf("c_tests: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
