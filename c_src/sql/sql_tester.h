/* sql_tester.h - the SQL half of the rule tester (design.md §3.2): a decoded
 * {"sql", "context", "rule_id"} request in, the JSON answer out. */
#ifndef EC_SQL_TESTER_H
#define EC_SQL_TESTER_H

#include <stddef.h>

#include "../core/arena.h"
#include "../core/buf.h"

#include "../core/value.h"

/* Answers req (a map holding "sql") into out (cleared first). */
void sql_tester_request(const value *req, arena *a, ec_buf *out);

#endif
