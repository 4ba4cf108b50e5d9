/* sql_tester.h - one request line of the rule tester (design.md §3.2) in,
 * one JSON answer line out. Used by priv/bin/rule-test and by the NIF behind
 * POST /api/v5/rule_test, so both answer identically. */
#ifndef EC_SQL_TESTER_H
#define EC_SQL_TESTER_H

#include <stddef.h>

#include "../core/arena.h"
#include "../core/buf.h"

/* Answers the request in line[0..len) into out (cleared first; no newline).
 * Always produces an answer ({"error": ...} for bad input). */
void sql_tester_answer(const char *line, size_t len, arena *a, ec_buf *out);

#endif
