/* rule_test.c - priv/bin/rule-test: the SQL and template tester (design.md §3.2).
 *
 * Reads JSON lines on stdin and writes exactly one JSON line per input line,
 * in order; exits 0 when stdin ends. A bad line yields {"error": ...}.
 * The rule engine and template renderer are wired in by their own modules;
 * until they exist, a well-formed request answers with an error saying so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"

#define RULE_TEST_MAX_LINE ((size_t)16 << 20)

static void reply_error(ec_buf *out, const char *msg) {
    buf_clear(out);
    buf_puts(out, "{\"error\":");
    json_encode_string(msg, strlen(msg), out);
    buf_puts(out, "}\n");
    fwrite(out->p, 1, out->len, stdout);
}

static void handle_line(arena *a, const char *line, size_t len, ec_buf *out) {
    value req;
    ec_error err;
    if (json_decode(a, line, len, NULL, &req, &err) != EC_OK) {
        char msg[EC_ERRMSG_MAX + 32];
        snprintf(msg, sizeof msg, "invalid JSON request: %s", err.msg);
        reply_error(out, msg);
        return;
    }
    if (req.type != VT_MAP) {
        reply_error(out, "a request must be a JSON object with \"sql\" or \"template\"");
        return;
    }
    if (V_MAP_GET(&req, "sql")) {
        reply_error(out, "rule SQL evaluation is not available in this build");
    } else if (V_MAP_GET(&req, "template")) {
        reply_error(out, "template rendering is not available in this build");
    } else {
        reply_error(out, "a request must have \"sql\" or \"template\"");
    }
}

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
        if (len > RULE_TEST_MAX_LINE)
            reply_error(&out, "request line too long");
        else
            handle_line(&a, line, len, &out);
        fflush(stdout);
        arena_reset(&a);
    }
    free(line);
    buf_free(&out);
    arena_free(&a);
    return 0;
}
