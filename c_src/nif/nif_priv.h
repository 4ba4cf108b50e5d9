/* nif_priv.h - declarations shared by the NIF glue files (not by the core). */
#ifndef EC_NIF_PRIV_H
#define EC_NIF_PRIV_H

#include <erl_nif.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../core/error.h"

/* Resource types, opened in load (CREATE) and taken over in upgrade. */
extern ErlNifResourceType *nif_producer_type;

/* Runs fn(arg) on a new detached thread (for blocking destruction started
 * from a scheduler: destructors, down callbacks); runs it inline if no thread
 * can be made. */
void nif_run_detached(void *(*fn)(void *), void *arg);

struct rule_index;
struct sql_rule;
struct value;
extern ErlNifResourceType *nif_ruleset_type, *nif_action_type;
/* The index and rules of a ruleset resource (valid while it is alive). */
struct rule_index *nif_ruleset_index(void *ruleset, struct sql_rule ***rules, size_t *n);
/* Renders and enqueues v on an action resource (async); EC_ESTATE once destroyed. */
ec_status nif_action_send_value(void *res, const struct value *v, void *token, ec_error *err);
/* Whether the action is query_mode sync, and its sync_query_timeout. */
bool nif_action_sync(void *res, uint64_t *timeout_ms);

/* A reply owed to an Erlang process for one record, sent from a C thread:
 *   {Tag, Ref, ok, Partition, Offset} | {Tag, Ref, {error, Text}}
 * (c_src/nif/MESSAGES.md). nif_reply_new makes the reference (*ref, for the
 * caller's return value) and remembers the calling process; exactly one of
 * nif_reply_send / nif_reply_free ends it. */
typedef struct nif_reply nif_reply;
/* enif_send from any thread (our own, or an ERTS thread inside a NIF that
 * named its env with nif_caller_set); msg is built in the process-independent
 * msg_env, which the caller still owns and frees. Returns enif_send's result. */
int nif_send(const ErlNifPid *to, ErlNifEnv *msg_env, ERL_NIF_TERM msg);
/* Names the env of the NIF call running on this thread (NULL: none) for
 * nif_send; returns the previous one, to be put back before returning. */
ErlNifEnv *nif_caller_set(ErlNifEnv *env);
nif_reply *nif_reply_new(ErlNifEnv *env, ERL_NIF_TERM tag, ERL_NIF_TERM *ref);
void nif_reply_send(nif_reply *r, const char *error, int32_t partition, int64_t offset);
void nif_reply_free(nif_reply *r);
/* The same for a given process instead of the caller. */
nif_reply *nif_reply_new_to(ErlNifEnv *env, const ErlNifPid *to, ERL_NIF_TERM tag,
                            ERL_NIF_TERM *ref);

/* Delivery tokens (nif_main.c): what a record carries to its outcome. A
 * plain nif_reply * is a token; nif_token_rule makes one that counts the
 * outcome in a rule's actions.success / actions.failed (keeps the rule
 * resource until then); nif_token_pair does both. Every token ends in exactly
 * one nif_token_done (the outcome) or nif_token_cancel (never enqueued). */
void *nif_token_rule(void *rule_res);
void *nif_token_pair(nif_reply *reply, void *rule_res);
void nif_token_done(void *token, const char *error, int32_t partition, int64_t offset);
void nif_token_cancel(void *token);
/* nif_rules.c: counts one delivery outcome (when counted) and releases the rule. */
void nif_rule_count_delivery(void *rule_res, bool counted, bool ok);
/* The rule resources of a ruleset, in index order. */
void **nif_ruleset_holders(void *ruleset);

/* Resources of our types currently alive (allocated, destructor not run). */
extern atomic_long nif_live_resources;

int nif_producer_open_type(ErlNifEnv *env, ErlNifResourceFlags flags);
int nif_rules_open_types(ErlNifEnv *env, ErlNifResourceFlags flags);
int nif_action_open_types(ErlNifEnv *env, ErlNifResourceFlags flags);
int nif_pipeline_open_type(ErlNifEnv *env, ErlNifResourceFlags flags);
ERL_NIF_TERM nif_pipeline_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_pipeline_publish(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_pipeline_event(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
extern ErlNifResourceType *nif_pipeline_type;
struct arena;
/* Sync replies a pipeline run owes (nif_pipeline.c). */
typedef struct nif_waits {
    ErlNifEnv *env;
    ErlNifPid to;
    ERL_NIF_TERM list; /* [{Ref, TimeoutMs}] */
} nif_waits;
/* Runs a pipeline resource on a column map (any thread; w NULL off a NIF
 * call); records enqueued. */
int nif_pipeline_run(void *pipeline, struct value *cols, struct arena *a, nif_waits *w);

int nif_source_open_type(ErlNifEnv *env, ErlNifResourceFlags flags);
/* OAUTHBEARER token requests to Erlang (nif_oauth.c) */
int nif_oauth_init(void);
ERL_NIF_TERM nif_oauth_owner(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_oauth_token(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_oauth_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_source_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_source_set_pipeline(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_source_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_source_stop(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_source_check(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

ERL_NIF_TERM nif_connector_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_connector_health(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_action_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_action_send(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_action_metrics(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_action_metrics_reset(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_action_health(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_action_destroy(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_duration_ms(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_config_check(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

ERL_NIF_TERM nif_rule_compile(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_ruleset_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_ruleset_eval(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_rule_test(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_rule_metrics(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_rule_metrics_reset(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_rule_from(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

ERL_NIF_TERM nif_producer_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_producer_send(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_producer_ping(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_producer_close(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

ERL_NIF_TERM nif_json_decode(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM nif_json_encode(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

#endif
