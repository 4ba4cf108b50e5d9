/* nif_source.c - the standalone-mode MQTT source (c_src/mqtt/msrc.c) bound
 * to a publish pipeline.
 *
 *   source_new(ConnConf, SourceConf, Node, Pipeline) -> {ok, Src} | {error, E}
 *   source_set_pipeline(Src, Pipeline)               -> ok
 *   source_stats(Src)                                -> #{received, connected, ...}
 *   source_stop(Src)                                 -> ok
 *
 * Every message the subscriber thread receives becomes the message.publish
 * column map an EMQX publish would produce (emqx-plugin.md §7.1) and runs
 * through the current pipeline on that thread: rules matched by FROM,
 * outputs rendered and enqueued. The broker gets the QoS 1 acknowledgement
 * after that, so what was acknowledged is in the action's buffer. */
#include <stdio.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/rng.h"
#include "../mqtt/msrc.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

static ErlNifResourceType *nif_source_type;

/* What the subscriber thread uses: outlives the resource until the thread
 * is joined (a dropped resource stops its thread on a detached thread). */
typedef struct source_ctx {
    ErlNifMutex *mu; /* guards pipeline */
    void *pipeline;  /* pipeline resource (kept) */
    arena a;         /* identity strings below */
    arena msg;       /* the subscriber thread's, reset after each message */
    value clientid, username, peerhost, peername, node;
} source_ctx;

typedef struct source_res {
    ErlNifMutex *mu; /* guards src */
    msrc *src;
    source_ctx *ctx;
} source_res;

static void ctx_free(source_ctx *c) {
    if (!c) return;
    if (c->pipeline) enif_release_resource(c->pipeline);
    if (c->mu) enif_mutex_destroy(c->mu);
    arena_free(&c->a);
    arena_free(&c->msg);
    enif_free(c);
}

typedef struct stop_job {
    msrc *src;
    source_ctx *ctx;
} stop_job;

static void *stop_detached(void *arg) {
    stop_job *j = arg;
    msrc_stop(j->src);
    ctx_free(j->ctx);
    enif_free(j);
    return NULL;
}

static void source_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    source_res *r = obj;
    stop_job *j = r->src ? enif_alloc(sizeof *j) : NULL;
    if (j) {
        j->src = r->src, j->ctx = r->ctx;
        nif_run_detached(stop_detached, j); /* joining blocks: not here */
    } else {
        if (r->src) msrc_stop(r->src); /* no memory for the job: block rather than leak */
        ctx_free(r->ctx);
    }
    if (r->mu) enif_mutex_destroy(r->mu);
    atomic_fetch_sub(&nif_live_resources, 1);
}

int nif_source_open_type(ErlNifEnv *env, ErlNifResourceFlags flags) {
    nif_source_type = enif_open_resource_type(env, NULL, "ec_source", source_dtor, flags, NULL);
    return nif_source_type ? 0 : -1;
}

/* on the subscriber thread */
static void on_msg(void *ud, const msrc_msg *m) {
    source_ctx *r = ud;
    enif_mutex_lock(r->mu);
    void *p = r->pipeline;
    if (p) enif_keep_resource(p);
    enif_mutex_unlock(r->mu);
    if (!p) return;
    arena *a = &r->msg; /* kept across messages: no allocation per message once warm */
    bool ok;
    value cols = v_map_new(a, 16, &ok), flags = v_map_new(a, 2, &ok);
    v_map_append(a, &flags, V_LIT("dup"), v_bool(false));
    v_map_append(a, &flags, V_LIT("retain"), v_bool(m->retain));
    char hex[33];
    snprintf(hex, sizeof hex, "%016llX%016llX", (unsigned long long)rng_next(),
             (unsigned long long)rng_next());
    int64_t now = ec_wall_ms();
    value attrs = v_map_new(a, 0, &ok);
#define COL(name, v) v_map_append(a, &cols, V_ATOM(name), (v))
    COL("id", v_bin(hex, 32));
    COL("clientid", r->clientid);
    COL("username", r->username);
    COL("payload", v_bin(m->payload, (size_t)m->payloadlen));
    COL("peerhost", r->peerhost);
    COL("peername", r->peername);
    COL("topic", v_bin(m->topic, strlen(m->topic)));
    COL("qos", v_int(m->qos));
    COL("flags", flags);
    COL("pub_props", msrc_pub_props(m, a));
    COL("publish_received_at", v_int(now));
    COL("client_attrs", attrs);
    COL("event", V_ATOM("message.publish"));
    COL("timestamp", v_int(now));
    COL("node", r->node);
#undef COL
    nif_pipeline_run(p, &cols, a, NULL);
    arena_reset(a);
    enif_release_resource(p);
}

static value dup_text(arena *a, const char *s) {
    return s ? v_bin_copy(a, s, strlen(s)) : v_undef();
}

/* Dirty I/O: starting the client resolves nothing yet, but creating the TLS
 * context reads certificate files. */
ERL_NIF_TERM nif_source_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    void *pipeline;
    ErlNifBinary node;
    if (!enif_is_map(env, argv[0]) || !enif_is_map(env, argv[1]) ||
        !enif_inspect_binary(env, argv[2], &node) ||
        !enif_get_resource(env, argv[3], nif_pipeline_type, &pipeline))
        return enif_make_badarg(env);
    arena tmp;
    arena_init(&tmp, 4096);
    value conn, src;
    ec_error err;
    msrc_conf c;
    if (nif_term_to_value(env, argv[0], &tmp, &conn, &err) != EC_OK ||
        nif_term_to_value(env, argv[1], &tmp, &src, &err) != EC_OK ||
        msrc_conf_parse(&conn, V_MAP_GET(&src, "parameters"), &tmp, &c, &err) != EC_OK) {
        arena_free(&tmp);
        return nif_error_term(env, &err);
    }
    source_ctx *cx = enif_alloc(sizeof *cx);
    source_res *r = enif_alloc_resource(nif_source_type, sizeof *r);
    memset(r, 0, sizeof *r);
    atomic_fetch_add(&nif_live_resources, 1);
    r->mu = enif_mutex_create("ec_source");
    if (!cx) {
        arena_free(&tmp);
        enif_release_resource(r);
        return nif_error_term(env, &(ec_error){.code = EC_ENOMEM, .msg = "out of memory"});
    }
    memset(cx, 0, sizeof *cx);
    r->ctx = cx;
    arena_init(&cx->a, 512);
    arena_init(&cx->msg, 8192);
    cx->mu = enif_mutex_create("ec_source_ctx");
    enif_keep_resource(pipeline);
    cx->pipeline = pipeline;
    cx->clientid = dup_text(&cx->a, c.clientid);
    cx->username = dup_text(&cx->a, c.username);
    cx->peerhost = dup_text(&cx->a, c.host);
    char pn[300];
    snprintf(pn, sizeof pn, "%s:%d", c.host, c.port);
    cx->peername = dup_text(&cx->a, pn);
    cx->node = v_bin_copy(&cx->a, (const char *)node.data, node.size);
    msrc *s;
    if (msrc_start(&c, on_msg, cx, &s, &err) != EC_OK) {
        arena_free(&tmp);
        enif_release_resource(r);
        return nif_error_term(env, &err);
    }
    r->src = s;
    arena_free(&tmp);
    ERL_NIF_TERM t = enif_make_resource(env, r);
    enif_release_resource(r);
    return enif_make_tuple2(env, ATOM_ok, t);
}

ERL_NIF_TERM nif_source_set_pipeline(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    source_res *r;
    void *p;
    if (!enif_get_resource(env, argv[0], nif_source_type, (void **)&r) ||
        !enif_get_resource(env, argv[1], nif_pipeline_type, &p))
        return enif_make_badarg(env);
    enif_keep_resource(p);
    enif_mutex_lock(r->ctx->mu);
    void *old = r->ctx->pipeline;
    r->ctx->pipeline = p;
    enif_mutex_unlock(r->ctx->mu);
    if (old) enif_release_resource(old);
    return ATOM_ok;
}

ERL_NIF_TERM nif_source_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    source_res *r;
    if (!enif_get_resource(env, argv[0], nif_source_type, (void **)&r))
        return enif_make_badarg(env);
    msrc_stats st;
    memset(&st, 0, sizeof st);
    enif_mutex_lock(r->mu);
    if (r->src) msrc_get_stats(r->src, &st);
    enif_mutex_unlock(r->mu);
    ERL_NIF_TERM m = enif_make_new_map(env), err;
    size_t n = strlen(st.last_error);
    memcpy(enif_make_new_binary(env, n, &err), st.last_error, n);
    enif_make_map_put(env, m, enif_make_atom(env, "received"), enif_make_uint64(env, st.received),
                      &m);
    enif_make_map_put(env, m, enif_make_atom(env, "connects"), enif_make_uint64(env, st.connects),
                      &m);
    enif_make_map_put(env, m, enif_make_atom(env, "connect_failures"),
                      enif_make_uint64(env, st.connect_failures), &m);
    enif_make_map_put(env, m, enif_make_atom(env, "connected"),
                      st.connected ? ATOM_true : ATOM_false, &m);
    enif_make_map_put(env, m, enif_make_atom(env, "last_error"), err, &m);
    return m;
}

/* Dirty I/O: disconnects and joins the subscriber thread. */
ERL_NIF_TERM nif_source_stop(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    source_res *r;
    if (!enif_get_resource(env, argv[0], nif_source_type, (void **)&r))
        return enif_make_badarg(env);
    enif_mutex_lock(r->mu);
    msrc *s = r->src;
    r->src = NULL;
    enif_mutex_unlock(r->mu);
    if (s) msrc_stop(s);
    return ATOM_ok;
}

/* source_check(ConnConf, SourceConf) -> ok | {error, E}: what source_new
 * would refuse in the configuration, without connecting. */
ERL_NIF_TERM nif_source_check(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    if (!enif_is_map(env, argv[0]) || !enif_is_map(env, argv[1])) return enif_make_badarg(env);
    arena tmp;
    arena_init(&tmp, 4096);
    value conn, src;
    ec_error err;
    msrc_conf c;
    ERL_NIF_TERM ret = ATOM_ok;
    if (nif_term_to_value(env, argv[0], &tmp, &conn, &err) != EC_OK ||
        nif_term_to_value(env, argv[1], &tmp, &src, &err) != EC_OK ||
        msrc_conf_parse(&conn, V_MAP_GET(&src, "parameters"), &tmp, &c, &err) != EC_OK)
        ret = nif_error_term(env, &err);
    arena_free(&tmp);
    return ret;
}
