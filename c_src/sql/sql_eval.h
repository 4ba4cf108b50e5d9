/* sql_eval.h - evaluating a parsed rule statement against one column map
 * (spec/rule-sql.md §3-6).
 *
 * An evaluation runs inside a caller-provided arena that is reset after the
 * message; outputs live there and may borrow the column map's bytes (payload,
 * Erlang binaries), so they are valid until the caller resets the arena and
 * releases the input. The payload is JSON-decoded at most once per message
 * (sql_msg), the first time a path reaches into it. */
#ifndef EC_SQL_EVAL_H
#define EC_SQL_EVAL_H

#include <stdbool.h>

#include "../core/arena.h"
#include "../core/error.h"
#include "../core/value.h"
#include "sql_ast.h"

/* One message (or event) being evaluated by any number of rules. */
typedef struct sql_msg {
    const value *columns; /* VT_MAP of the columns (spec §4), without metadata */
    int payload_state;    /* 0 not decoded yet, 1 decoded, 2 not JSON */
    value payload_json;   /* the decoded payload when payload_state == 1 */
    char payload_err[128];
} sql_msg;

static inline void sql_msg_init(sql_msg *m, const value *columns) {
    m->columns = columns;
    m->payload_state = 0;
    m->payload_err[0] = '\0';
}

/* Outcome of one rule evaluation. */
typedef enum sql_outcome {
    SQL_MATCHED = 0, /* output produced (for FOREACH: a non-empty array of outputs) */
    SQL_NO_RESULT,   /* WHERE false, or FOREACH produced nothing (failed.no_result) */
    SQL_EXCEPTION,   /* a runtime error (failed.exception); err says which */
} sql_outcome;

/* Evaluates stmt for msg as rule rule_id. On SQL_MATCHED *out is the output
 * map (SELECT) or the array of output maps (FOREACH). now_ms is the trigger
 * time used by time functions. Never fails for anything but this one rule. */
sql_outcome sql_eval_stmt(const sql_stmt *stmt, sql_msg *msg, const char *rule_id,
                          size_t rule_id_len, arena *a, value *out, ec_error *err);

/* ---- for function implementations (sql_fn_*.c) ------------------------ */

typedef struct sql_eval sql_eval;
struct sql_eval {
    arena *a;
    sql_msg *msg;
    value metadata;        /* {"rule_id": R} */
    const value *selected; /* output map so far (SELECT/DO lookups), or the merged view */
    bool cond;             /* evaluating WHERE/INCASE: message functions give undefined */
    bool merged;           /* condition context: a selected key hides the column */
    ec_error *err;
};

arena *sql_eval_arena(sql_eval *ev);
/* Fails the evaluation with a printf-style message (returns EC_EINVAL). */
ec_status sql_fn_fail(sql_eval *ev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads a column (respecting the condition context rule for message functions). */
const value *sql_eval_column(sql_eval *ev, const char *name, size_t len);
/* The decoded payload (decodes once; error when not JSON). */
ec_status sql_eval_payload_json(sql_eval *ev, const value **out);

/* Value helpers shared by the evaluator and the functions. */
/* Erlang-style comparison (numbers by value, then atoms, maps, lists,
 * binaries). Returns <0, 0, >0. */
int sql_value_compare(const value *x, const value *y);
/* String -> number the way EMQX converts for comparison: integer syntax
 * first, then float syntax with a '.'. False when neither fits. */
bool sql_str_to_number(const char *s, size_t n, value *out);
/* Topic filter match (MQTT rules, `$` topics not matched by leading +/#). */
bool sql_topic_match(const char *topic, size_t tlen, const char *filter, size_t flen);

#endif
