/* sql_rules.h - compiled rules and the rule index (spec/rule-sql.md §4.3, §5.1).
 *
 * A sql_rule is one compiled statement with its id; immutable once built, so
 * any number of threads evaluate it at once. A rule_index is an immutable
 * snapshot of a set of rules: a trie of the FROM topic filters, so a message
 * reaches only the rules whose FROM can match its topic (cost by topic depth,
 * not by rule count), plus the list of event rules. Changing the rules means
 * building a new index and swapping it in (the NIF does that). */
#ifndef EC_SQL_RULES_H
#define EC_SQL_RULES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/arena.h"
#include "../core/error.h"
#include "sql_ast.h"

/* EMQX's rule metrics (rule-sql.md §5.11); actions.* are counted by the sink. */
typedef struct sql_rule_metrics {
    _Atomic uint64_t matched; /* every evaluation */
    _Atomic uint64_t passed;
    _Atomic uint64_t failed; /* = exception + no_result */
    _Atomic uint64_t failed_exception;
    _Atomic uint64_t failed_no_result;
    _Atomic uint64_t actions_total;
    _Atomic uint64_t actions_success;
    _Atomic uint64_t actions_failed;
} sql_rule_metrics;

typedef struct sql_rule {
    arena a; /* owns everything below */
    char *id;
    size_t id_len;
    sql_stmt stmt;
    char *sql; /* the original text */
    sql_rule_metrics metrics;
} sql_rule;

/* Compiles sql for rule id. The text and id are copied. */
ec_status sql_rule_compile(const char *id, size_t id_len, const char *sql, size_t len,
                           sql_rule **out, ec_error *err);
void sql_rule_free(sql_rule *r);

struct sql_msg;
/* Evaluates r for msg (sql_eval_stmt) and counts the outcome in r->metrics. */
int sql_rule_eval(sql_rule *r, struct sql_msg *msg, arena *a, value *out, ec_error *err);
/* Zeroes every counter. */
void sql_rule_metrics_reset(sql_rule *r);

/* The event triggered by a FROM topic of "$events/..." (legacy or 5.10 name). */
typedef struct sql_event_def {
    const char *name;   /* client.connected */
    const char *topic;  /* $events/client/connected (5.10) */
    const char *legacy; /* $events/client_connected, or NULL */
} sql_event_def;

/* The event named name (e.g. "client.connected"), or NULL. */
const sql_event_def *sql_event_by_name(const char *name, size_t len);
/* True when one of the rule's FROM entries selects this event. */
bool sql_rule_wants_event(const sql_rule *r, const sql_event_def *ev);
/* True when one of the rule's FROM entries (not $events/) matches topic. */
bool sql_rule_wants_topic(const sql_rule *r, const char *topic, size_t len);

typedef struct rule_index rule_index;

/* Builds an index over rules[0..n) (borrowed: they must outlive the index). */
ec_status rule_index_build(sql_rule *const *rules, size_t n, rule_index **out, ec_error *err);
void rule_index_free(rule_index *ix);

/* Indexes (positions in the rules array given to build) of the rules that a
 * publish on topic triggers, ascending, each once. Returns the count; fills
 * at most cap entries of out (a count above cap means: call again bigger). */
size_t rule_index_match_topic(const rule_index *ix, const char *topic, size_t len, uint32_t *out,
                              size_t cap);
/* The same for an event. */
size_t rule_index_match_event(const rule_index *ix, const sql_event_def *ev, uint32_t *out,
                              size_t cap);

/* The rules that a column map triggers: as an event when its `event` is not
 * message.publish (an unknown event triggers nothing), else by its `topic`.
 * Indexes ascending into *out, allocated in a (per message); returns the
 * count, or (size_t)-1 when out of memory. */
size_t rule_index_match_columns(const rule_index *ix, const value *cols, arena *a, uint32_t **out);

#endif
