/* sql_parse.h - rule SQL text -> sql_stmt (spec/rule-sql.md §1-2).
 *
 * Errors name the line and column and what was expected:
 *   "syntax error at line 1, column 19: unexpected 'WHERE', expected a topic after FROM".
 * Caps: SQL_MAX_BYTES of text (sql_lex.h), SQL_MAX_DEPTH of nesting. */
#ifndef EC_SQL_PARSE_H
#define EC_SQL_PARSE_H

#include "../core/arena.h"
#include "../core/error.h"
#include "sql_ast.h"

#define SQL_MAX_DEPTH 64 /* nesting of expressions (parentheses, calls, CASE, lists) */

/* Parses sql into *out; every allocation goes to a (which must outlive it). */
ec_status sql_parse(arena *a, const char *sql, size_t len, sql_stmt *out, ec_error *err);

#endif
