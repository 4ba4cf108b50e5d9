/* nif_main.c - load/upgrade/unload and the one function table of the
 * emqx_confluent NIF library. Only c_src/nif/ includes erl_nif.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../kafka/kprod.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

#define EC_ATOM_DEF(name) ERL_NIF_TERM ATOM_##name;
EC_ATOM_LIST(EC_ATOM_DEF)
#undef EC_ATOM_DEF

void nif_atoms_init(ErlNifEnv *env) {
#define EC_ATOM_MAKE(name) ATOM_##name = enif_make_atom(env, #name);
    EC_ATOM_LIST(EC_ATOM_MAKE)
#undef EC_ATOM_MAKE
}

atomic_long nif_live_resources;

struct nif_reply {
    ErlNifPid to;
    ErlNifEnv *env; /* process-independent: owns ref until sent */
    ERL_NIF_TERM tag, ref;
};

nif_reply *nif_reply_new(ErlNifEnv *env, ERL_NIF_TERM tag, ERL_NIF_TERM *ref) {
    nif_reply *r = enif_alloc(sizeof *r);
    if (!r || !(r->env = enif_alloc_env())) {
        enif_free(r);
        return NULL;
    }
    *ref = enif_make_ref(env);
    r->ref = enif_make_copy(r->env, *ref);
    r->tag = tag; /* atoms need no copying */
    enif_self(env, &r->to);
    return r;
}

nif_reply *nif_reply_new_to(ErlNifEnv *env, const ErlNifPid *to, ERL_NIF_TERM tag,
                            ERL_NIF_TERM *ref) {
    nif_reply *r = nif_reply_new(env, tag, ref);
    if (r) r->to = *to;
    return r;
}

/* ---- delivery tokens ------------------------------------------------------
 * What a record carries to its delivery report: a reply owed to a process
 * (tag 0, a nif_reply), a rule whose actions.success / actions.failed count
 * the outcome (tag 1, the kept rule resource: no allocation on the publish
 * path), or both (tag 2). Allocations are 8-byte aligned: the low bits are free. */
#define TOK_MASK ((uintptr_t)3)
typedef struct tok_pair {
    nif_reply *reply;
    void *rule_res;
} tok_pair;

void *nif_token_rule(void *rule_res) {
    enif_keep_resource(rule_res);
    return (void *)((uintptr_t)rule_res | 1);
}

void *nif_token_pair(nif_reply *reply, void *rule_res) {
    tok_pair *p = enif_alloc(sizeof *p);
    if (!p) return NULL;
    enif_keep_resource(rule_res);
    p->reply = reply;
    p->rule_res = rule_res;
    return (void *)((uintptr_t)p | 2);
}

static void token_end(void *token, bool deliver, const char *error, int32_t partition,
                      int64_t offset) {
    uintptr_t t = (uintptr_t)token;
    void *ptr = (void *)(t & ~TOK_MASK);
    switch (t & TOK_MASK) {
    case 0:
        if (deliver)
            nif_reply_send(ptr, error, partition, offset);
        else
            nif_reply_free(ptr);
        break;
    case 1: nif_rule_count_delivery(ptr, deliver, error == NULL); break;
    default: {
        tok_pair *p = ptr;
        if (deliver)
            nif_reply_send(p->reply, error, partition, offset);
        else
            nif_reply_free(p->reply);
        nif_rule_count_delivery(p->rule_res, deliver, error == NULL);
        enif_free(p);
    }
    }
}

void nif_token_done(void *token, const char *error, int32_t partition, int64_t offset) {
    token_end(token, true, error, partition, offset);
}

void nif_token_cancel(void *token) {
    token_end(token, false, NULL, 0, 0);
}

/* ---- sending from C --------------------------------------------------------
 * enif_send wants the calling process's environment on ERTS threads and NULL
 * on threads of our own (erl_nif manual). Most replies come from our threads
 * (an action's pump, a producer's poll thread), but a record dropped while it
 * is enqueued is answered on the sending (scheduler) thread, and what is left
 * when an action or producer closes on a dirty scheduler as well: the NIFs
 * that can get there name their env with nif_caller_set. */
static _Thread_local ErlNifEnv *caller_env;

ErlNifEnv *nif_caller_set(ErlNifEnv *env) {
    ErlNifEnv *prev = caller_env;
    caller_env = env;
    return prev;
}

typedef struct late_send {
    ErlNifPid to;
    ErlNifEnv *env;
    ERL_NIF_TERM msg;
} late_send;

static void *late_send_main(void *arg) {
    late_send *l = arg;
    enif_send(NULL, &l->to, l->env, l->msg);
    enif_free_env(l->env);
    enif_free(l);
    return NULL;
}

int nif_send(const ErlNifPid *to, ErlNifEnv *msg_env, ERL_NIF_TERM msg) {
    if (enif_thread_type() == ERL_NIF_THR_UNDEFINED) return enif_send(NULL, to, msg_env, msg);
    if (caller_env) return enif_send(caller_env, to, msg_env, msg);
    /* an ERTS thread whose NIF did not name its env: a short thread of ours sends it */
    late_send *l = enif_alloc(sizeof *l);
    if (!l || !(l->env = enif_alloc_env())) {
        enif_free(l);
        return 0;
    }
    l->to = *to;
    l->msg = enif_make_copy(l->env, msg);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int ok = pthread_create(&t, &attr, late_send_main, l) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) {
        enif_free_env(l->env);
        enif_free(l);
    }
    return ok;
}

void nif_reply_send(nif_reply *r, const char *error, int32_t partition, int64_t offset) {
    ErlNifEnv *e = r->env;
    ERL_NIF_TERM msg =
        error ? enif_make_tuple3(
                    e, r->tag, r->ref,
                    enif_make_tuple2(e, ATOM_error, nif_make_binary(e, error, strlen(error))))
              : enif_make_tuple5(e, r->tag, r->ref, ATOM_ok, enif_make_int(e, partition),
                                 enif_make_int64(e, offset));
    nif_send(&r->to, e, msg);
    nif_reply_free(r);
}

void nif_reply_free(nif_reply *r) {
    enif_free_env(r->env);
    enif_free(r);
}

void nif_run_detached(void *(*fn)(void *), void *arg) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, fn, arg) != 0) fn(arg);
    pthread_attr_destroy(&attr);
}
static atomic_int n_loads, n_upgrades, n_unloads;

#define EC_NIF_VERSION "0.1.0"

static int on_load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info) {
    (void)info;
    nif_atoms_init(env);
    if (nif_producer_open_type(env, ERL_NIF_RT_CREATE) != 0) return 1;
    if (nif_rules_open_types(env, ERL_NIF_RT_CREATE) != 0) return 1;
    if (nif_action_open_types(env, ERL_NIF_RT_CREATE) != 0) return 1;
    if (nif_pipeline_open_type(env, ERL_NIF_RT_CREATE) != 0) return 1;
    if (nif_source_open_type(env, ERL_NIF_RT_CREATE) != 0) return 1;
    if (nif_oauth_init() != 0) return 1;
    atomic_fetch_add(&n_loads, 1);
    *priv = NULL;
    return 0;
}

/* A new module instance loading the same library (code upgrade): atoms are
 * global and stay valid; resource types are taken over by the new instance. */
static int on_upgrade(ErlNifEnv *env, void **priv, void **old_priv, ERL_NIF_TERM info) {
    (void)old_priv, (void)info;
    nif_atoms_init(env);
    if (nif_producer_open_type(env, ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER) != 0) return 1;
    if (nif_rules_open_types(env, ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER) != 0) return 1;
    if (nif_action_open_types(env, ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER) != 0) return 1;
    if (nif_pipeline_open_type(env, ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER) != 0) return 1;
    if (nif_source_open_type(env, ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER) != 0) return 1;
    if (nif_oauth_init() != 0) return 1;
    atomic_fetch_add(&n_upgrades, 1);
    *priv = NULL;
    return 0;
}

static void on_unload(ErlNifEnv *env, void *priv) {
    (void)env, (void)priv;
    atomic_fetch_add(&n_unloads, 1);
}

/* nif_info() -> #{version, loads, upgrades, unloads, live_producers, live_resources} */
static ERL_NIF_TERM nif_info(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc, (void)argv;
    ERL_NIF_TERM m = enif_make_new_map(env);
    ERL_NIF_TERM vsn;
    unsigned char *p = enif_make_new_binary(env, sizeof EC_NIF_VERSION - 1, &vsn);
    memcpy(p, EC_NIF_VERSION, sizeof EC_NIF_VERSION - 1);
    enif_make_map_put(env, m, ATOM_version, vsn, &m);
    enif_make_map_put(env, m, ATOM_loads, enif_make_int(env, atomic_load(&n_loads)), &m);
    enif_make_map_put(env, m, ATOM_upgrades, enif_make_int(env, atomic_load(&n_upgrades)), &m);
    enif_make_map_put(env, m, ATOM_unloads, enif_make_int(env, atomic_load(&n_unloads)), &m);
    enif_make_map_put(env, m, ATOM_live_producers, enif_make_long(env, kprod_live_count()), &m);
    enif_make_map_put(env, m, ATOM_live_resources,
                      enif_make_long(env, atomic_load(&nif_live_resources)), &m);
    return m;
}

/* The one function table. Every dirty flag carries its reason. */
static ErlNifFunc nif_funcs[] = {
    {"nif_info", 0, nif_info, 0},
    /* decode reschedules itself to dirty CPU for large inputs (nif_json.c) */
    {"json_decode", 1, nif_json_decode, 0},
    /* term size unknown before walking it; not on the message path */
    {"json_encode", 1, nif_json_encode, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    /* rd_kafka_new reads CA/cert files and starts threads */
    {"producer_new", 1, nif_producer_new, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* enqueue only, never blocks: normal scheduler */
    {"producer_send", 6, nif_producer_send, 0},
    /* waits on the network for a metadata answer */
    {"producer_ping", 2, nif_producer_ping, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* flushes outstanding records, joins the poll thread */
    {"producer_close", 1, nif_producer_close, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* bounded by SQL_MAX_BYTES: well under 1 ms */
    {"rule_compile", 2, nif_rule_compile, 0},
    /* linear in the FROM filters of the set */
    {"ruleset_new", 1, nif_ruleset_new, 0},
    /* per message: microseconds; reschedules itself to dirty CPU for big payloads */
    {"ruleset_eval", 2, nif_ruleset_eval, 0},
    /* reads/zeroes atomic counters */
    {"rule_metrics", 1, nif_rule_metrics, 0},
    {"rule_metrics_reset", 1, nif_rule_metrics_reset, 0},
    {"rule_from", 1, nif_rule_from, 0},
    /* creating librdkafka handles reads CA files and starts threads */
    {"connector_new", 1, nif_connector_new, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* waits on the network for metadata */
    {"connector_health", 1, nif_connector_health, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"action_new", 2, nif_action_new, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* render + enqueue: microseconds, never blocks */
    {"action_send", 3, nif_action_send, 0},
    /* reads/zeroes atomic counters */
    {"action_metrics", 1, nif_action_metrics, 0},
    {"action_metrics_reset", 1, nif_action_metrics_reset, 0},
    /* waits on the network for metadata */
    {"action_health", 1, nif_action_health, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* drains buffers, flushes, joins threads */
    {"action_destroy", 1, nif_action_destroy, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* binds rules to actions: linear in their number */
    {"pipeline_new", 2, nif_pipeline_new, 0},
    /* per message: microseconds; reschedules itself to dirty CPU for big payloads */
    {"pipeline_publish", 3, nif_pipeline_publish, 0},
    {"pipeline_publish", 4, nif_pipeline_publish, 0},
    /* a small event column map: bounded work */
    {"pipeline_event", 2, nif_pipeline_event, 0},
    /* parses configuration and compiles templates; no I/O */
    {"config_check", 2, nif_config_check, 0},
    /* starts a thread, may read certificate files */
    {"source_new", 4, nif_source_new, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"source_set_pipeline", 2, nif_source_set_pipeline, 0},
    {"source_stats", 1, nif_source_stats, 0},
    /* parses configuration only */
    {"source_check", 2, nif_source_check, 0},
    /* joins the subscriber thread */
    {"source_stop", 1, nif_source_stop, ERL_NIF_DIRTY_JOB_IO_BOUND},
    /* parses a few bytes */
    {"duration_ms", 1, nif_duration_ms, 0},
    /* OAUTHBEARER tokens: a mutex and a few pointers; oauth_token hands the
     * token to each librdkafka handle of the store (an enqueue each) */
    {"oauth_owner", 1, nif_oauth_owner, 0},
    {"oauth_token", 2, nif_oauth_token, 0},
    {"oauth_stats", 0, nif_oauth_stats, 0},
    /* a test request may run any function on any payload */
    {"rule_test", 1, nif_rule_test, ERL_NIF_DIRTY_JOB_CPU_BOUND},
};

ERL_NIF_INIT(emqx_confluent_nif, nif_funcs, on_load, NULL, on_upgrade, on_unload)
