/* nif_producer.c - the producer resource: a kprod owned by an Erlang process.
 *
 * Life cycle (explicit state machine; the destructor is only a safety net):
 *   open --producer_close/1--> closed   (flush + destroy on a dirty I/O scheduler)
 *   open --owner process dies--> closed (destroy on a detached C thread)
 *   open --resource garbage-collected--> destroyed on a detached C thread
 * A send after close answers {error, closed}. Sends hold a read lock, close
 * takes the write lock to detach the kprod, so no send races a destroy.
 *
 * Delivery reports go to the process that called producer_send/6 as
 *   {ec_delivery, Ref, ok, Partition, Offset} | {ec_delivery, Ref, {error, Msg}}
 * (protocol: c_src/nif/MESSAGES.md). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../kafka/kprod.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

#define PRODUCER_MAX_PROPS      128
#define PRODUCER_CLOSE_FLUSH_MS 5000
#define PRODUCER_MAX_HEADERS    256
#define KAFKA_TOPIC_MAX         249 /* Kafka's own limit on topic names */

ErlNifResourceType *nif_producer_type;

typedef struct producer_res {
    ErlNifRWLock *lock;
    kprod *p; /* NULL once closed */
    ErlNifPid owner;
    ErlNifMonitor mon;
} producer_res;

static void on_delivery(void *ctx, const kprod_report *r) {
    (void)ctx;
    nif_reply_send(r->opaque, r->err ? r->err->msg : NULL, r->partition, r->offset);
}

static void *destroy_thread(void *arg) {
    kprod_destroy(arg, PRODUCER_CLOSE_FLUSH_MS);
    return NULL;
}

/* Destroys p without blocking the calling (scheduler) thread. */
static void destroy_detached(kprod *p) {
    nif_run_detached(destroy_thread, p);
}

static kprod *detach(producer_res *r) {
    enif_rwlock_rwlock(r->lock);
    kprod *p = r->p;
    r->p = NULL;
    enif_rwlock_rwunlock(r->lock);
    return p;
}

static void producer_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    producer_res *r = obj;
    kprod *p = r->p; /* no other reference exists any more: no lock needed */
    if (p) destroy_detached(p);
    enif_rwlock_destroy(r->lock);
    atomic_fetch_sub(&nif_live_resources, 1);
}

static void producer_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon) {
    (void)env, (void)pid, (void)mon;
    kprod *p = detach(obj);
    if (p) destroy_detached(p);
}

int nif_producer_open_type(ErlNifEnv *env, ErlNifResourceFlags flags) {
    ErlNifResourceTypeInit init = {.dtor = producer_dtor, .stop = NULL, .down = producer_down};
    nif_producer_type = enif_open_resource_type_x(env, "ec_producer", &init, flags, NULL);
    return nif_producer_type ? 0 : -1;
}

/* producer_new(Props :: [{binary(), binary()}]) -> {ok, Res} | {error, Map}
 * Dirty I/O: rd_kafka_new resolves config files (CA bundles) and starts threads. */
ERL_NIF_TERM nif_producer_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    unsigned n;
    if (!enif_get_list_length(env, argv[0], &n) || n > PRODUCER_MAX_PROPS)
        return enif_make_badarg(env);
    const char *kv[2 * PRODUCER_MAX_PROPS];
    arena a;
    arena_init(&a, 4096);
    ERL_NIF_TERM head, tail = argv[0];
    unsigned i = 0;
    while (enif_get_list_cell(env, tail, &head, &tail)) {
        int arity;
        const ERL_NIF_TERM *tup;
        ErlNifBinary k, v;
        if (!enif_get_tuple(env, head, &arity, &tup) || arity != 2 ||
            !enif_inspect_iolist_as_binary(env, tup[0], &k) ||
            !enif_inspect_iolist_as_binary(env, tup[1], &v)) {
            arena_free(&a);
            return enif_make_badarg(env);
        }
        kv[2 * i] = arena_strndup(&a, (const char *)k.data, k.size);
        kv[2 * i + 1] = arena_strndup(&a, (const char *)v.data, v.size);
        if (!kv[2 * i] || !kv[2 * i + 1]) {
            arena_free(&a);
            return nif_error_term(env, &(ec_error){.code = EC_ENOMEM, .msg = "out of memory"});
        }
        i++;
    }
    producer_res *r = enif_alloc_resource(nif_producer_type, sizeof *r);
    memset(r, 0, sizeof *r);
    atomic_fetch_add(&nif_live_resources, 1);
    r->lock = enif_rwlock_create("ec_producer");
    enif_self(env, &r->owner);
    ec_error err;
    ERL_NIF_TERM ret;
    if (kprod_new(kv, n, &(kprod_hooks){.on_delivery = on_delivery}, &r->p, &err) != EC_OK) {
        r->p = NULL;
        ret = nif_error_term(env, &err);
    } else if (enif_monitor_process(env, r, &r->owner, &r->mon) != 0) {
        /* owner already gone: nobody could ever close it */
        kprod *p = detach(r);
        destroy_detached(p);
        ret = nif_error_term(env,
                             &(ec_error){.code = EC_ESTATE, .msg = "owner process is not alive"});
    } else {
        ret = enif_make_tuple2(env, ATOM_ok, enif_make_resource(env, r));
    }
    enif_release_resource(r);
    arena_free(&a);
    return ret;
}

static bool get_opt_bin(ErlNifEnv *env, ERL_NIF_TERM t, ErlNifBinary *b, bool *present) {
    if (enif_is_identical(t, ATOM_undefined)) {
        *present = false;
        return true;
    }
    *present = true;
    return enif_inspect_iolist_as_binary(env, t, b);
}

/* producer_send(Res, Topic, Key, Value, Headers, TimestampMs) -> {ok, Ref} | {error, _}
 * Normal scheduler: rd_kafka_producev only enqueues (no BLOCK flag). */
ERL_NIF_TERM nif_producer_send(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    producer_res *r;
    ErlNifBinary topic, key, val;
    bool has_key, has_val;
    ErlNifSInt64 ts;
    unsigned nh;
    if (!enif_get_resource(env, argv[0], nif_producer_type, (void **)&r) ||
        !enif_inspect_iolist_as_binary(env, argv[1], &topic) || topic.size == 0 ||
        topic.size > KAFKA_TOPIC_MAX || !get_opt_bin(env, argv[2], &key, &has_key) ||
        !get_opt_bin(env, argv[3], &val, &has_val) || !enif_get_list_length(env, argv[4], &nh) ||
        nh > PRODUCER_MAX_HEADERS || !enif_get_int64(env, argv[5], &ts))
        return enif_make_badarg(env);
    char topic_z[KAFKA_TOPIC_MAX + 1];
    memcpy(topic_z, topic.data, topic.size);
    topic_z[topic.size] = '\0';
    kprod_header hdrs[PRODUCER_MAX_HEADERS];
    ERL_NIF_TERM head, tail = argv[4];
    for (unsigned i = 0; enif_get_list_cell(env, tail, &head, &tail); i++) {
        int arity;
        const ERL_NIF_TERM *tup;
        ErlNifBinary hk, hv;
        if (!enif_get_tuple(env, head, &arity, &tup) || arity != 2 ||
            !enif_inspect_binary(env, tup[0], &hk) || !enif_inspect_binary(env, tup[1], &hv))
            return enif_make_badarg(env);
        hdrs[i] = (kprod_header){(const char *)hk.data, hk.size, hv.data, hv.size};
    }
    ERL_NIF_TERM ref;
    nif_reply *d = nif_reply_new(env, ATOM_ec_delivery, &ref);
    if (!d) return nif_error_term(env, &(ec_error){.code = EC_ENOMEM, .msg = "out of memory"});
    kprod_record rec = {.topic = topic_z,
                        .partition = -1,
                        .key = has_key ? key.data : NULL,
                        .key_len = has_key ? key.size : 0,
                        .value = has_val ? val.data : NULL,
                        .value_len = has_val ? val.size : 0,
                        .headers = hdrs,
                        .n_headers = nh,
                        .timestamp_ms = ts,
                        .opaque = d};
    ec_error err;
    ec_status st;
    enif_rwlock_rlock(r->lock);
    st = r->p ? kprod_send(r->p, &rec, &err) : EC_ESTATE;
    enif_rwlock_runlock(r->lock);
    if (st == EC_OK) return enif_make_tuple2(env, ATOM_ok, ref);
    nif_reply_free(d);
    if (st == EC_ESTATE) return enif_make_tuple2(env, ATOM_error, ATOM_closed);
    return nif_error_term(env, &err);
}

/* producer_ping(Res, TimeoutMs) -> ok | {error, _}. Dirty I/O: waits for a broker. */
ERL_NIF_TERM nif_producer_ping(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    producer_res *r;
    int timeout;
    if (!enif_get_resource(env, argv[0], nif_producer_type, (void **)&r) ||
        !enif_get_int(env, argv[1], &timeout) || timeout < 0)
        return enif_make_badarg(env);
    ec_error err;
    ec_status st;
    enif_rwlock_rlock(r->lock); /* close waits for this read lock: bounded by timeout */
    st = r->p ? kprod_ping(r->p, timeout, &err) : EC_ESTATE;
    enif_rwlock_runlock(r->lock);
    if (st == EC_OK) return ATOM_ok;
    if (st == EC_ESTATE) return enif_make_tuple2(env, ATOM_error, ATOM_closed);
    return nif_error_term(env, &err);
}

/* producer_close(Res) -> ok. Dirty I/O: flushes outstanding records. */
ERL_NIF_TERM nif_producer_close(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    producer_res *r;
    if (!enif_get_resource(env, argv[0], nif_producer_type, (void **)&r))
        return enif_make_badarg(env);
    kprod *p = detach(r);
    if (p) {
        enif_demonitor_process(env, r, &r->mon);
        ErlNifEnv *prev = nif_caller_set(env); /* the last reports are served here */
        kprod_destroy(p, PRODUCER_CLOSE_FLUSH_MS);
        nif_caller_set(prev);
    }
    return ATOM_ok;
}
