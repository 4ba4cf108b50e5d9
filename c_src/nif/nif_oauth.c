/* nif_oauth.c - the Erlang half of OAUTHBEARER tokens (c_src/kafka/koauth.h):
 * one Erlang process (emqx_confluent_oauth) receives fetch requests and
 * answers with the token or the failure. */
#include <string.h>

#include "../kafka/koauth.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

static ErlNifMutex *owner_lock;
static ErlNifPid owner;
static bool have_owner;

static ERL_NIF_TERM bin(ErlNifEnv *env, const char *s) {
    return nif_make_binary(env, s ? s : "", s ? strlen(s) : 0);
}

/* koauth's requester: called from whatever serves a producer's events (a
 * poll thread, an action's pump, a closing producer's last poll on a dirty
 * scheduler) or the re-request thread below: nif_send picks the env. */
static int send_request(uint64_t id, const koauth_cfg *cfg) {
    enif_mutex_lock(owner_lock);
    int rc = -1;
    if (have_owner) {
        ErlNifEnv *e = enif_alloc_env();
        ERL_NIF_TERM m = enif_make_new_map(e);
        enif_make_map_put(e, m, enif_make_atom(e, "endpoint_uri"), bin(e, cfg->endpoint), &m);
        enif_make_map_put(e, m, enif_make_atom(e, "client_id"), bin(e, cfg->client_id), &m);
        enif_make_map_put(e, m, enif_make_atom(e, "client_secret"), bin(e, cfg->client_secret), &m);
        enif_make_map_put(e, m, enif_make_atom(e, "scope"), bin(e, cfg->scope), &m);
        ERL_NIF_TERM msg =
            enif_make_tuple3(e, enif_make_atom(e, "ec_oauth_fetch"), enif_make_uint64(e, id), m);
        rc = nif_send(&owner, e, msg) ? 0 : -1;
        enif_free_env(e);
    }
    enif_mutex_unlock(owner_lock);
    return rc;
}

static void *request_waiting(void *arg) {
    (void)arg;
    koauth_request_waiting();
    return NULL;
}

int nif_oauth_init(void) {
    if (!owner_lock) owner_lock = enif_mutex_create("ec_oauth_owner");
    return owner_lock ? 0 : -1;
}

/* oauth_owner(Pid | undefined) -> ok. The process that fetches tokens;
 * stores already waiting are asked again (from a thread: enif_send). */
ERL_NIF_TERM nif_oauth_owner(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifPid pid;
    bool set = enif_get_local_pid(env, argv[0], &pid);
    if (!set && !enif_is_identical(argv[0], ATOM_undefined)) return enif_make_badarg(env);
    enif_mutex_lock(owner_lock);
    have_owner = set;
    if (set) owner = pid;
    enif_mutex_unlock(owner_lock);
    koauth_set_requester(set ? send_request : NULL);
    if (set) nif_run_detached(request_waiting, NULL);
    return ATOM_ok;
}

static bool get_str(ErlNifEnv *env, ERL_NIF_TERM t, char *buf, size_t n) {
    ErlNifBinary b;
    if (!enif_inspect_iolist_as_binary(env, t, &b) || b.size >= n || memchr(b.data, 0, b.size))
        return false;
    memcpy(buf, b.data, b.size);
    buf[b.size] = '\0';
    return true;
}

/* oauth_token(Id, {ok, Token, ExpiresAtMs, Principal} | {error, Reason}) ->
 * ok | {error, unknown_store}. Hands the answer to every handle of the store. */
ERL_NIF_TERM nif_oauth_token(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifUInt64 id;
    int arity;
    const ERL_NIF_TERM *el;
    if (!enif_get_uint64(env, argv[0], &id) || !enif_get_tuple(env, argv[1], &arity, &el))
        return enif_make_badarg(env);
    int rc;
    if (arity == 4 && enif_is_identical(el[0], ATOM_ok)) {
        static const size_t max_token = 16384;
        char *token = enif_alloc(max_token), principal[512];
        ErlNifSInt64 expires;
        if (!token || !get_str(env, el[1], token, max_token) ||
            !enif_get_int64(env, el[2], &expires) ||
            !get_str(env, el[3], principal, sizeof principal)) {
            enif_free(token);
            return enif_make_badarg(env);
        }
        rc = koauth_token_set(id, token, expires, principal);
        enif_free(token);
    } else if (arity == 2 && enif_is_identical(el[0], ATOM_error)) {
        char reason[512];
        if (!get_str(env, el[1], reason, sizeof reason)) return enif_make_badarg(env);
        rc = koauth_token_failed(id, reason);
    } else {
        return enif_make_badarg(env);
    }
    return rc == 0 ? ATOM_ok
                   : enif_make_tuple2(env, ATOM_error, enif_make_atom(env, "unknown_store"));
}

/* oauth_stats() -> #{requests, tokens, failures, stores} */
ERL_NIF_TERM nif_oauth_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc, (void)argv;
    koauth_stats s;
    koauth_stats_get(&s);
    ERL_NIF_TERM m = enif_make_new_map(env);
    enif_make_map_put(env, m, enif_make_atom(env, "requests"), enif_make_uint64(env, s.requests),
                      &m);
    enif_make_map_put(env, m, enif_make_atom(env, "tokens"), enif_make_uint64(env, s.tokens), &m);
    enif_make_map_put(env, m, enif_make_atom(env, "failures"), enif_make_uint64(env, s.failures),
                      &m);
    enif_make_map_put(env, m, enif_make_atom(env, "stores"), enif_make_long(env, s.stores), &m);
    return m;
}
