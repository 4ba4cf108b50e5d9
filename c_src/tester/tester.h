/* tester.h - the rule-test request protocol (design.md §3.2): one JSON request
 * line in, one JSON answer line out. Used by priv/bin/rule-test, by the NIF
 * behind POST /api/v5/rule_test and by the golden tests, so all answer alike. */
#ifndef EC_TESTER_H
#define EC_TESTER_H

#include <stddef.h>

#include "../core/arena.h"
#include "../core/buf.h"

/* Answers the request in line[0..len) into out (cleared first; no newline).
 * Always produces an answer ({"error": ...} for bad input). */
void tester_answer(const char *line, size_t len, arena *a, ec_buf *out);

/* Writes {"error": msg} into out (cleared first). */
void tester_error(ec_buf *out, const char *msg);

#endif
