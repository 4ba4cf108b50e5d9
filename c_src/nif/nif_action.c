/* nif_action.c - connectors and producer actions through the NIF.
 *
 *   connector_new(Conf)              -> {ok, Conn} | {error, #{message}}   (dirty I/O)
 *   connector_health(Conn)           -> ok | {error, #{message}}           (dirty I/O)
 *   action_new(ConnConf, ActionConf) -> {ok, Action} | {error, #{message}} (dirty I/O)
 *   action_send(Action, Output, Reply) -> ok | {ok, Ref} | {error, #{message}}
 *   action_metrics(Action) / action_metrics_reset(Action)
 *   action_health(Action)            -> ok | {error, #{message}}           (dirty I/O)
 *   action_destroy(Action)           -> ok (flush up to 5 s)               (dirty I/O)
 *
 * With Reply = true, the caller gets exactly one
 *   {ec_action_reply, Ref, ok, Partition, Offset} | {ec_action_reply, Ref, {error, Reason}}
 * (c_src/nif/MESSAGES.md). */
#include <pthread.h>
#include <string.h>

#include "../kafka/kaction.h"
#include "../kafka/kprod.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

ErlNifResourceType *nif_action_type, *nif_connector_type;

typedef struct action_res {
    ErlNifRWLock *lock;
    kaction *k; /* NULL once destroyed */
} action_res;

typedef struct connector_res {
    ErlNifRWLock *lock;
    kprod *probe;
    int timeout_ms;
    char *health_topic;
} connector_res;

static void on_reply(void *ctx, void *token, const char *error, int32_t partition, int64_t offset) {
    (void)ctx;
    nif_token_done(token, error, partition, offset);
}

static void *destroy_action_thread(void *arg) {
    kaction_destroy(arg, 5000);
    return NULL;
}

static void action_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    action_res *a = obj;
    if (a->k) nif_run_detached(destroy_action_thread, a->k); /* never closed: off the scheduler */
    enif_rwlock_destroy(a->lock);
    atomic_fetch_sub(&nif_live_resources, 1);
}

static void *destroy_probe_thread(void *arg) {
    kprod_destroy(arg, 0);
    return NULL;
}

static void connector_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    connector_res *c = obj;
    if (c->probe) nif_run_detached(destroy_probe_thread, c->probe);
    enif_free(c->health_topic);
    enif_rwlock_destroy(c->lock);
    atomic_fetch_sub(&nif_live_resources, 1);
}

int nif_action_open_types(ErlNifEnv *env, ErlNifResourceFlags flags) {
    nif_action_type = enif_open_resource_type(env, NULL, "ec_action", action_dtor, flags, NULL);
    nif_connector_type =
        enif_open_resource_type(env, NULL, "ec_connector", connector_dtor, flags, NULL);
    return nif_action_type && nif_connector_type ? 0 : -1;
}

static ERL_NIF_TERM parse_connector(ErlNifEnv *env, ERL_NIF_TERM t, arena *a, kconf_connector *c) {
    value v;
    ec_error err;
    if (nif_term_to_value(env, t, a, &v, &err) != EC_OK ||
        kconf_connector_parse(&v, a, c, &err) != EC_OK)
        return nif_error_term(env, &err);
    return 0;
}

/* Dirty I/O: creates a librdkafka handle (threads, CA files). */
ERL_NIF_TERM nif_connector_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    if (!enif_is_map(env, argv[0])) return enif_make_badarg(env);
    arena a;
    arena_init(&a, 4096);
    kconf_connector c;
    ERL_NIF_TERM e = parse_connector(env, argv[0], &a, &c);
    if (e) {
        arena_free(&a);
        return e;
    }
    ec_error err;
    kprod *probe;
    if (kprod_new(c.props.kv, c.props.n, NULL, &probe, &err) != EC_OK) {
        arena_free(&a);
        return nif_error_term(env, &err);
    }
    connector_res *r = enif_alloc_resource(nif_connector_type, sizeof *r);
    memset(r, 0, sizeof *r);
    atomic_fetch_add(&nif_live_resources, 1);
    r->lock = enif_rwlock_create("ec_connector");
    r->probe = probe;
    r->timeout_ms = (int)c.metadata_request_timeout_ms;
    if (c.health_check_topic) {
        size_t n = strlen(c.health_check_topic);
        r->health_topic = enif_alloc(n + 1);
        memcpy(r->health_topic, c.health_check_topic, n + 1);
    }
    arena_free(&a);
    ERL_NIF_TERM t = enif_make_resource(env, r);
    enif_release_resource(r);
    return enif_make_tuple2(env, ATOM_ok, t);
}

/* Dirty I/O: a metadata request (health_check_topic, or any broker answer). */
ERL_NIF_TERM nif_connector_health(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    connector_res *r;
    if (!enif_get_resource(env, argv[0], nif_connector_type, (void **)&r))
        return enif_make_badarg(env);
    ec_error err;
    ec_status st;
    if (r->health_topic) {
        int32_t n = kprod_partition_count(r->probe, r->health_topic, r->timeout_ms, &err);
        st = n > 0 ? EC_OK : EC_EKAFKA;
    } else {
        st = kprod_ping(r->probe, r->timeout_ms, &err);
    }
    return st == EC_OK ? ATOM_ok : nif_error_term(env, &err);
}

/* Dirty I/O: compiles templates, creates the producer and its pump thread. */
ERL_NIF_TERM nif_action_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    if (!enif_is_map(env, argv[0]) || !enif_is_map(env, argv[1])) return enif_make_badarg(env);
    arena a;
    arena_init(&a, 8192);
    kconf_connector c;
    kconf_action act;
    ec_error err;
    value av;
    ERL_NIF_TERM e = parse_connector(env, argv[0], &a, &c);
    if (e) {
        arena_free(&a);
        return e;
    }
    kaction *k;
    if (nif_term_to_value(env, argv[1], &a, &av, &err) != EC_OK ||
        kconf_action_parse(&av, c.confluent, &a, &act, &err) != EC_OK ||
        kaction_new(&c, &act, on_reply, NULL, &k, &err) != EC_OK) {
        arena_free(&a);
        return nif_error_term(env, &err);
    }
    arena_free(&a);
    action_res *r = enif_alloc_resource(nif_action_type, sizeof *r);
    atomic_fetch_add(&nif_live_resources, 1);
    r->lock = enif_rwlock_create("ec_action");
    r->k = k;
    ERL_NIF_TERM t = enif_make_resource(env, r);
    enif_release_resource(r);
    return enif_make_tuple2(env, ATOM_ok, t);
}

/* Normal scheduler: render + enqueue, microseconds; never blocks. */
ERL_NIF_TERM nif_action_send(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    action_res *r;
    if (!enif_get_resource(env, argv[0], nif_action_type, (void **)&r) ||
        !enif_is_map(env, argv[1]))
        return enif_make_badarg(env);
    bool want_reply = enif_is_identical(argv[2], ATOM_true);
    arena a;
    arena_init(&a, 8192);
    value ctx;
    ec_error err;
    ERL_NIF_TERM ret;
    if (nif_term_to_value(env, argv[1], &a, &ctx, &err) != EC_OK) {
        arena_free(&a);
        return nif_error_term(env, &err);
    }
    nif_reply *rq = NULL;
    ERL_NIF_TERM ref = 0;
    if (want_reply && !(rq = nif_reply_new(env, ATOM_ec_action_reply, &ref))) {
        arena_free(&a);
        return nif_error_term(env, &(ec_error){.code = EC_ENOMEM, .msg = "out of memory"});
    }
    ErlNifEnv *prev = nif_caller_set(env); /* records dropped now are answered from here */
    enif_rwlock_rlock(r->lock);
    ec_status st =
        r->k ? kaction_send(r->k, &ctx, rq, &err) : ec_fail(&err, EC_ESTATE, "resource_stopped");
    enif_rwlock_runlock(r->lock);
    nif_caller_set(prev);
    if (st == EC_OK) {
        ret = want_reply ? enif_make_tuple2(env, ATOM_ok, ref) : ATOM_ok;
    } else {
        if (rq) nif_reply_free(rq);
        ret = nif_error_term(env, &err);
    }
    arena_free(&a);
    return ret;
}

ERL_NIF_TERM nif_action_metrics(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    action_res *r;
    if (!enif_get_resource(env, argv[0], nif_action_type, (void **)&r))
        return enif_make_badarg(env);
    kaction_metrics m;
    memset(&m, 0, sizeof m);
    enif_rwlock_rlock(r->lock);
    if (r->k) kaction_get_metrics(r->k, &m);
    enif_rwlock_runlock(r->lock);
    struct {
        const char *name;
        int64_t v;
    } rows[] = {{"matched", (int64_t)m.matched},
                {"success", (int64_t)m.success},
                {"failed", (int64_t)m.failed},
                {"dropped", (int64_t)m.dropped},
                {"dropped.queue_full", (int64_t)m.dropped_queue_full},
                {"dropped.resource_stopped", (int64_t)m.dropped_resource_stopped},
                {"dropped.resource_not_found", (int64_t)m.dropped_resource_not_found},
                {"dropped.expired", (int64_t)m.dropped_expired},
                {"dropped.other", (int64_t)m.dropped_other},
                {"retried", (int64_t)m.retried}, /* 0, as EMQX e5.10.4 reports for Kafka */
                {"retried.success", 0},
                {"retried.failed", 0},
                {"buffer.replayed", (int64_t)m.replayed},
                {"buffer.skipped_bytes", (int64_t)m.skipped_bytes},
                {"late_reply", (int64_t)m.late_reply},
                {"received", (int64_t)m.received},
                {"queuing", m.queuing},
                {"queuing_bytes", m.queuing_bytes},
                {"inflight", m.inflight}};
    ERL_NIF_TERM map = enif_make_new_map(env);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        enif_make_map_put(env, map, enif_make_atom(env, rows[i].name),
                          enif_make_int64(env, rows[i].v), &map);
    return map;
}

ERL_NIF_TERM nif_action_metrics_reset(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    action_res *r;
    if (!enif_get_resource(env, argv[0], nif_action_type, (void **)&r))
        return enif_make_badarg(env);
    enif_rwlock_rlock(r->lock);
    if (r->k) kaction_reset_metrics(r->k);
    enif_rwlock_runlock(r->lock);
    return ATOM_ok;
}

ERL_NIF_TERM nif_action_health(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    action_res *r;
    if (!enif_get_resource(env, argv[0], nif_action_type, (void **)&r))
        return enif_make_badarg(env);
    ec_error err;
    enif_rwlock_rlock(r->lock);
    ec_status st = r->k ? kaction_health(r->k, &err) : ec_fail(&err, EC_ESTATE, "Not installed");
    enif_rwlock_runlock(r->lock);
    return st == EC_OK ? ATOM_ok : nif_error_term(env, &err);
}

ERL_NIF_TERM nif_action_destroy(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    action_res *r;
    if (!enif_get_resource(env, argv[0], nif_action_type, (void **)&r))
        return enif_make_badarg(env);
    enif_rwlock_rwlock(r->lock);
    kaction *k = r->k;
    r->k = NULL;
    enif_rwlock_rwunlock(r->lock);
    ErlNifEnv *prev = nif_caller_set(env); /* what is left is answered from here */
    if (k) kaction_destroy(k, 5000);
    nif_caller_set(prev);
    return ATOM_ok;
}

/* duration_ms(Term) -> {ok, Ms} | error. Normal scheduler: a few bytes. */
ERL_NIF_TERM nif_duration_ms(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    arena a;
    arena_init(&a, 256);
    value v;
    uint64_t ms;
    ERL_NIF_TERM ret = ATOM_error;
    if (nif_term_to_value(env, argv[0], &a, &v, NULL) == EC_OK && kconf_duration_ms(&v, &ms))
        ret = enif_make_tuple2(env, ATOM_ok, enif_make_uint64(env, ms));
    arena_free(&a);
    return ret;
}

ec_status nif_action_send_value(void *res, const value *v, void *token, ec_error *err) {
    action_res *r = res;
    enif_rwlock_rlock(r->lock);
    ec_status st =
        r->k ? kaction_send(r->k, v, token, err) : ec_fail(err, EC_ESTATE, "resource_stopped");
    enif_rwlock_runlock(r->lock);
    return st;
}

bool nif_action_sync(void *res, uint64_t *timeout_ms) {
    action_res *r = res;
    enif_rwlock_rlock(r->lock);
    bool sync = r->k && kaction_is_sync(r->k, timeout_ms);
    enif_rwlock_runlock(r->lock);
    return sync;
}

/* config_check(ConnectorConf, ActionConf | undefined) -> ok | {error, #{message}}:
 * everything connector_new/action_new would refuse, without creating any
 * producer. Normal scheduler: parsing and template compilation only. */
ERL_NIF_TERM nif_config_check(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    if (!enif_is_map(env, argv[0])) return enif_make_badarg(env);
    arena a;
    arena_init(&a, 8192);
    kconf_connector c;
    ERL_NIF_TERM e = parse_connector(env, argv[0], &a, &c);
    if (!e && enif_is_map(env, argv[1])) {
        value av;
        kconf_action act;
        ec_error err;
        if (nif_term_to_value(env, argv[1], &a, &av, &err) != EC_OK ||
            kconf_action_parse(&av, c.confluent, &a, &act, &err) != EC_OK ||
            kaction_check(&act, &err) != EC_OK)
            e = nif_error_term(env, &err);
    }
    arena_free(&a);
    return e ? e : ATOM_ok;
}
