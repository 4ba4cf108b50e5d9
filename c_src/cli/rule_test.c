/* rule_test.c - priv/bin/rule-test: the SQL and template tester (design.md §3.2).
 *
 * Reads JSON lines on stdin and writes exactly one JSON line per input line,
 * in order; exits 0 when stdin ends. A bad line yields {"error": ...}.
 * The answers come from c_src/tester/ (tester_answer), which the NIF uses too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/buf.h"
#include "../tester/tester.h"

#define RULE_TEST_MAX_LINE ((size_t)16 << 20)

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    arena a;
    arena_init(&a, 64 * 1024);
    ec_buf out;
    buf_init(&out);
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len > RULE_TEST_MAX_LINE) {
            buf_clear(&out);
            buf_puts(&out, "{\"error\":\"request line too long\"}");
        } else {
            tester_answer(line, len, &a, &out);
        }
        buf_putc(&out, '\n');
        fwrite(out.p, 1, out.len, stdout);
        fflush(stdout);
        arena_reset(&a);
    }
    free(line);
    buf_free(&out);
    arena_free(&a);
    return 0;
}
