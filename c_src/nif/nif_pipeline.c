/* nif_pipeline.c - the message.publish path in one NIF call.
 *
 *   pipeline_new(RuleSet, [{RuleId, [Action]}]) -> {ok, Pipeline}
 *   pipeline_publish(Pipeline, Message, Node)   -> Enqueued :: integer()
 *
 * Message is EMQX's #message{} record (include/emqx_message.hrl). Its fields
 * become the message.publish column map (emqx-plugin.md §7.1) directly in
 * C, borrowing the payload and other binaries; the rules whose FROM matches
 * the topic run, and each output is rendered and enqueued on the rule's
 * actions (async). Normal scheduler: evaluation and enqueueing take
 * microseconds; a payload above 64 KiB moves the call to a dirty CPU
 * scheduler. Rule metrics count matched/passed/failed and actions.total /
 * actions.failed (an immediate render/enqueue failure). Atoms are made once
 * at load (nif_atoms.h), not per message. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/userprops.h"
#include "../kafka/kaction.h"
#include "../sql/sql_eval.h"
#include "../sql/sql_rules.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

#define PIPELINE_DIRTY_BYTES (64 * 1024)

ErlNifResourceType *nif_pipeline_type;

typedef struct pipeline_res {
    void *ruleset; /* ruleset resource (kept) */
    uint32_t nrules;
    void ***actions; /* per rule index: action resources (kept), NULL-terminated */
} pipeline_res;

static void pipeline_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    pipeline_res *p = obj;
    for (uint32_t i = 0; p->actions && i < p->nrules; i++) {
        for (void **a = p->actions[i]; a && *a; a++)
            enif_release_resource(*a);
        enif_free(p->actions[i]);
    }
    enif_free(p->actions);
    if (p->ruleset) enif_release_resource(p->ruleset);
    atomic_fetch_sub(&nif_live_resources, 1);
}

int nif_pipeline_open_type(ErlNifEnv *env, ErlNifResourceFlags flags) {
    nif_pipeline_type =
        enif_open_resource_type(env, NULL, "ec_pipeline", pipeline_dtor, flags, NULL);
    return nif_pipeline_type ? 0 : -1;
}

ERL_NIF_TERM nif_pipeline_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    void *rs;
    unsigned nb;
    if (!enif_get_resource(env, argv[0], nif_ruleset_type, &rs) ||
        !enif_get_list_length(env, argv[1], &nb))
        return enif_make_badarg(env);
    sql_rule **rules;
    size_t nrules;
    nif_ruleset_index(rs, &rules, &nrules);
    pipeline_res *p = enif_alloc_resource(nif_pipeline_type, sizeof *p);
    memset(p, 0, sizeof *p);
    atomic_fetch_add(&nif_live_resources, 1);
    enif_keep_resource(rs);
    p->ruleset = rs;
    p->nrules = (uint32_t)nrules;
    p->actions = enif_alloc(sizeof *p->actions * (nrules ? nrules : 1));
    memset(p->actions, 0, sizeof *p->actions * (nrules ? nrules : 1));
    ERL_NIF_TERM head, tail = argv[1];
    while (enif_get_list_cell(env, tail, &head, &tail)) {
        int arity;
        const ERL_NIF_TERM *tup;
        ErlNifBinary id;
        unsigned na;
        if (!enif_get_tuple(env, head, &arity, &tup) || arity != 2 ||
            !enif_inspect_binary(env, tup[0], &id) || !enif_get_list_length(env, tup[1], &na))
            goto bad;
        size_t ri = nrules;
        for (size_t i = 0; i < nrules; i++)
            if (rules[i]->id_len == id.size && !memcmp(rules[i]->id, id.data, id.size)) ri = i;
        if (ri == nrules || p->actions[ri]) goto bad; /* unknown or repeated rule id */
        p->actions[ri] = enif_alloc(sizeof(void *) * (na + 1));
        memset(p->actions[ri], 0, sizeof(void *) * (na + 1));
        ERL_NIF_TERM ah, at = tup[1];
        for (unsigned k = 0; enif_get_list_cell(env, at, &ah, &at); k++) {
            void *a;
            if (!enif_get_resource(env, ah, nif_action_type, &a)) goto bad;
            enif_keep_resource(a);
            p->actions[ri][k] = a;
        }
    }
    ERL_NIF_TERM t = enif_make_resource(env, p);
    enif_release_resource(p);
    return enif_make_tuple2(env, ATOM_ok, t);
bad:
    enif_release_resource(p);
    return enif_make_badarg(env);
}

/* ---- #message{} -> columns ------------------------------------------------ */

static value atom_val(ErlNifEnv *env, ERL_NIF_TERM t, arena *a) {
    value v;
    return nif_term_to_value(env, t, a, &v, NULL) == EC_OK ? v : v_undef();
}

/* an inet IP tuple as text the way inet:ntoa/1 writes it ("10.0.0.7",
 * "::1"), with ":Port" appended when port >= 0 (emqx_utils:ntoa/1); undefined
 * when it is not an IP tuple */
static value ip_text(ErlNifEnv *env, ERL_NIF_TERM t, arena *a, int port) {
    int arity;
    const ERL_NIF_TERM *e;
    char buf[INET6_ADDRSTRLEN + 8];
    unsigned char addr[16];
    int family;
    if (!enif_get_tuple(env, t, &arity, &e) || (arity != 4 && arity != 8)) return v_undef();
    for (int i = 0; i < arity; i++) {
        int x;
        if (!enif_get_int(env, e[i], &x) || x < 0 || x > (arity == 4 ? 255 : 65535))
            return v_undef();
        if (arity == 4)
            addr[i] = (unsigned char)x;
        else
            addr[2 * i] = (unsigned char)(x >> 8), addr[2 * i + 1] = (unsigned char)x;
    }
    family = arity == 4 ? AF_INET : AF_INET6;
    if (!inet_ntop(family, addr, buf, sizeof buf - 8)) return v_undef();
    size_t k = strlen(buf);
    if (port >= 0) k += (size_t)snprintf(buf + k, sizeof buf - k, ":%d", port);
    return v_bin_copy(a, buf, k);
}

static ERL_NIF_TERM get_key(ErlNifEnv *env, ERL_NIF_TERM map, ERL_NIF_TERM atom, bool *found) {
    ERL_NIF_TERM v;
    *found = enif_is_map(env, map) && enif_get_map_value(env, map, atom, &v);
    return *found ? v : 0;
}

/* MQTT 5 properties made printable: User-Property list -> map (+ pairs) */
static value pub_props(ErlNifEnv *env, ERL_NIF_TERM props, arena *a) {
    bool ok;
    value out = v_map_new(a, 8, &ok);
    userprops up;
    userprops_init(&up, a);
    if (enif_is_map(env, props)) {
        ErlNifMapIterator it;
        enif_map_iterator_create(env, props, &it, ERL_NIF_MAP_ITERATOR_FIRST);
        ERL_NIF_TERM k, v;
        while (enif_map_iterator_get_pair(env, &it, &k, &v)) {
            value kv = atom_val(env, k, a);
            if (kv.type == VT_BIN && kv.len == 13 && !memcmp(kv.u.s, "User-Property", 13)) {
                ERL_NIF_TERM h, t = v;
                while (enif_get_list_cell(env, t, &h, &t)) {
                    int ar;
                    const ERL_NIF_TERM *pe;
                    ErlNifBinary pk, pv;
                    if (!enif_get_tuple(env, h, &ar, &pe) || ar != 2 ||
                        !enif_inspect_binary(env, pe[0], &pk) ||
                        !enif_inspect_binary(env, pe[1], &pv))
                        continue;
                    userprops_add(&up, a, v_bin((const char *)pk.data, pk.size),
                                  v_bin((const char *)pv.data, pv.size));
                }
            } else if (kv.type == VT_BIN &&
                       !enif_is_tuple(env, v)) { /* tuple-valued internals dropped */
                value vv;
                if (nif_term_to_value(env, v, a, &vv, NULL) == EC_OK) v_map_append(a, &out, kv, vv);
            }
            enif_map_iterator_next(env, &it);
        }
        enif_map_iterator_destroy(env, &it);
    }
    userprops_finish(&up, a, &out);
    return out;
}

/* false when the term is not a #message{} record */
static bool message_columns(ErlNifEnv *env, ERL_NIF_TERM msg, ERL_NIF_TERM node, arena *a,
                            value *cols) {
    int arity;
    const ERL_NIF_TERM *f;
    if (!enif_get_tuple(env, msg, &arity, &f) || arity != 10 ||
        !enif_is_identical(f[0], ATOM_message))
        return false;
    ErlNifBinary id, topic, payload, nodeb;
    int qos;
    ErlNifSInt64 ts;
    if (!enif_inspect_binary(env, f[1], &id) || !enif_get_int(env, f[2], &qos) ||
        !enif_inspect_binary(env, f[6], &topic) ||
        !enif_inspect_iolist_as_binary(env, f[7], &payload) || !enif_get_int64(env, f[8], &ts) ||
        !enif_inspect_binary(env, node, &nodeb))
        return false;
    bool ok;
    *cols = v_map_new(a, 16, &ok);
    static const char hx[] = "0123456789ABCDEF";
    char *hex = arena_alloc(a, id.size * 2 + 1);
    for (size_t i = 0; i < id.size; i++) {
        hex[2 * i] = hx[id.data[i] >> 4];
        hex[2 * i + 1] = hx[id.data[i] & 15];
    }
    ERL_NIF_TERM hdrs = f[5];
    bool found;
    ERL_NIF_TERM t;
    value username = v_undef(), peerhost = v_undef(), peername = v_undef(), attrs, props;
    if ((t = get_key(env, hdrs, ATOM_username, &found)), found) username = atom_val(env, t, a);
    if ((t = get_key(env, hdrs, ATOM_peerhost, &found)), found) peerhost = ip_text(env, t, a, -1);
    if ((t = get_key(env, hdrs, ATOM_peername, &found)), found) {
        int ar, port;
        const ERL_NIF_TERM *pe;
        if (enif_get_tuple(env, t, &ar, &pe) && ar == 2 && enif_get_int(env, pe[1], &port))
            peername = ip_text(env, pe[0], a, port);
    }
    t = get_key(env, hdrs, ATOM_client_attrs, &found);
    attrs = found ? atom_val(env, t, a) : v_map_new(a, 0, &ok);
    t = get_key(env, hdrs, ATOM_properties, &found);
    props = pub_props(env, found ? t : enif_make_new_map(env), a);
    value flags = atom_val(env, f[4], a);
#define COL(name, v) v_map_append(a, cols, V_ATOM(name), (v))
    COL("id", v_bin(hex, id.size * 2));
    COL("clientid", atom_val(env, f[3], a));
    COL("username", username);
    COL("payload", v_bin((const char *)payload.data, payload.size));
    COL("peerhost", peerhost);
    COL("peername", peername);
    COL("topic", v_bin((const char *)topic.data, topic.size));
    COL("qos", v_int(qos));
    COL("flags", flags);
    COL("pub_props", props);
    COL("publish_received_at", v_int(ts));
    COL("client_attrs", attrs);
    COL("event", V_ATOM("message.publish"));
    COL("timestamp", v_int(ec_wall_ms()));
    COL("node", v_bin((const char *)nodeb.data, nodeb.size));
#undef COL
    return true;
}

/* Evaluates the rules whose FROM matches cols and enqueues every output on
 * the rule's actions; returns how many records were enqueued. Each record
 * carries a token that counts its outcome in the rule's actions.success /
 * actions.failed. With w, records of sync actions also owe w->to a reply
 * ({ec_action_reply, Ref, ...}); w->list collects [{Ref, TimeoutMs}]. Used by
 * the publish NIF and by the MQTT source thread (w = NULL; any thread). */
int nif_pipeline_run(void *pipeline, value *cols, arena *a, nif_waits *w) {
    pipeline_res *p = pipeline;
    sql_rule **rules;
    size_t nrules;
    rule_index *ix = nif_ruleset_index(p->ruleset, &rules, &nrules);
    void **holders = nif_ruleset_holders(p->ruleset);
    uint32_t *idx;
    size_t n = rule_index_match_columns(ix, cols, a, &idx);
    if (n == (size_t)-1) n = 0; /* out of memory: nothing evaluated (rare; arena limit) */
    sql_msg msg;
    sql_msg_init(&msg, cols);
    int enqueued = 0;
    for (size_t i = 0; i < n; i++) {
        sql_rule *r = rules[idx[i]];
        value out;
        ec_error err;
        if ((sql_outcome)sql_rule_eval(r, &msg, a, &out, &err) != SQL_MATCHED) continue;
        void **acts = p->actions[idx[i]];
        uint32_t nout = out.type == VT_ARRAY ? out.len : 1;
        for (uint32_t o = 0; o < nout; o++) {
            const value *one = out.type == VT_ARRAY ? &out.u.items[o] : &out;
            for (void **ap = acts; ap && *ap; ap++) {
                atomic_fetch_add(&r->metrics.actions_total, 1);
                uint64_t tmo;
                ERL_NIF_TERM ref = 0;
                nif_reply *rq = NULL;
                if (w && nif_action_sync(*ap, &tmo))
                    rq = nif_reply_new_to(w->env, &w->to, ATOM_ec_action_reply, &ref);
                void *tok =
                    rq ? nif_token_pair(rq, holders[idx[i]]) : nif_token_rule(holders[idx[i]]);
                if (!tok) { /* no memory for the pair: count without a reply */
                    if (rq) nif_reply_free(rq);
                    rq = NULL;
                    tok = nif_token_rule(holders[idx[i]]);
                }
                if (nif_action_send_value(*ap, one, tok, &err) == EC_OK) {
                    enqueued++;
                    if (rq)
                        w->list = enif_make_list_cell(
                            w->env, enif_make_tuple2(w->env, ref, enif_make_uint64(w->env, tmo)),
                            w->list);
                } else {
                    nif_token_cancel(tok);
                    atomic_fetch_add(&r->metrics.actions_failed, 1);
                }
            }
        }
    }
    return enqueued;
}

static ERL_NIF_TERM publish_now(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    pipeline_res *p;
    if (!enif_get_resource(env, argv[0], nif_pipeline_type, (void **)&p))
        return enif_make_badarg(env);
    nif_waits w = {.env = env, .list = enif_make_list(env, 0)};
    bool replies = argc == 4 && enif_get_local_pid(env, argv[3], &w.to);
    if (argc == 4 && !replies && !enif_is_identical(argv[3], ATOM_undefined))
        return enif_make_badarg(env);
    arena a;
    arena_init(&a, 16384);
    value cols;
    if (!message_columns(env, argv[1], argv[2], &a, &cols)) {
        arena_free(&a);
        return enif_make_badarg(env);
    }
    ErlNifEnv *prev = nif_caller_set(env); /* records dropped now are answered from here */
    int enqueued = nif_pipeline_run(p, &cols, &a, replies ? &w : NULL);
    nif_caller_set(prev);
    arena_free(&a);
    if (replies && !enif_is_empty_list(env, w.list))
        return enif_make_tuple2(env, enif_make_int(env, enqueued), w.list);
    return enif_make_int(env, enqueued);
}

/* pipeline_event(Pipeline, Columns) -> Enqueued: an event's column map (atom
 * keys, `event` naming it) through the rules whose FROM names that event.
 * Normal scheduler: event maps are small. */
ERL_NIF_TERM nif_pipeline_event(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    pipeline_res *p;
    if (!enif_get_resource(env, argv[0], nif_pipeline_type, (void **)&p) ||
        !enif_is_map(env, argv[1]))
        return enif_make_badarg(env);
    arena a;
    arena_init(&a, 8192);
    value cols;
    if (nif_term_to_value(env, argv[1], &a, &cols, NULL) != EC_OK || cols.type != VT_MAP) {
        arena_free(&a);
        return enif_make_badarg(env);
    }
    ErlNifEnv *prev = nif_caller_set(env);
    int enqueued = nif_pipeline_run(p, &cols, &a, NULL);
    nif_caller_set(prev);
    arena_free(&a);
    return enif_make_int(env, enqueued);
}

ERL_NIF_TERM nif_pipeline_publish(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    int arity;
    const ERL_NIF_TERM *f;
    ErlNifBinary pb;
    if (enif_get_tuple(env, argv[1], &arity, &f) && arity == 10 &&
        enif_inspect_binary(env, f[7], &pb) && pb.size > PIPELINE_DIRTY_BYTES)
        return enif_schedule_nif(env, "pipeline_publish_dirty", ERL_NIF_DIRTY_JOB_CPU_BOUND,
                                 publish_now, argc, argv);
    return publish_now(env, argc, argv);
}
