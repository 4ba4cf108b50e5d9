/* cases.h - runs the golden JSONL case files of test/cases/<dir>/ through a
 * request->answer function and checks each answer against its "expect". */
#ifndef EC_TEST_CASES_H
#define EC_TEST_CASES_H

#include <stddef.h>

#include "../core/arena.h"
#include "../core/buf.h"

typedef void (*case_answer_fn)(const char *req, size_t len, arena *a, ec_buf *out);

/* Returns the number of failed cases (printing each); *total gets the count. */
int cases_run_dir(const char *subdir, case_answer_fn fn, int *total);

#endif
