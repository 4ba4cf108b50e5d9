/* koauth.h - SASL/OAUTHBEARER tokens from an OAuth 2.0 client-credentials
 * grant, shared by every producer handle of the same credentials.
 *
 * Debian's librdkafka is built without its own OIDC client, so tokens come
 * from the host: when a handle needs one (librdkafka's refresh callback, at
 * start and at 80 % of the token's lifetime) the store asks the host's
 * requester to fetch it (the plugin does an HTTP POST from Erlang) and the
 * answer is handed to every handle of the store at once. One store exists
 * per distinct (endpoint, client id, secret, scope); handles of a connector's
 * probe, of its actions and of REST probes share it, so one fetch serves all.
 *
 * A fetch failure is handed to every handle (librdkafka keeps a token that
 * still has life left and asks again in 10 s); a new request is not made
 * sooner than KOAUTH_RETRY_MS after a failure.
 *
 * @locality all functions may be called from any thread; none blocks on the
 * network. The requester is called with the store lock held: it must only
 * queue the request (enif_send), never call back into this module. */
#ifndef EC_KOAUTH_H
#define EC_KOAUTH_H

#include <stddef.h>
#include <stdint.h>

#define KOAUTH_RETRY_MS 5000
/* a fetch that got no answer (the host lost it) is asked again after this */
#define KOAUTH_FETCH_TIMEOUT_MS 60000

typedef struct koauth koauth;

typedef struct koauth_cfg {
    const char *endpoint; /* token endpoint URL */
    const char *client_id;
    const char *client_secret;
    const char *scope; /* NULL or "": not sent */
} koauth_cfg;

/* How a store hands tokens to one handle (librdkafka in kprod.c; fakes in
 * the unit tests). set_token returns 0 or -1 with err filled. */
typedef struct koauth_ops {
    int (*set_token)(void *h, const char *token, int64_t expires_ms, const char *principal,
                     char *err, size_t n);
    void (*set_failure)(void *h, const char *reason);
} koauth_ops;

/* Asks the host to fetch a token for store id; the host answers with
 * koauth_token_set or koauth_token_failed. Returns 0 when queued. */
typedef int (*koauth_request_fn)(uint64_t id, const koauth_cfg *cfg);

/* Installs (or with NULL removes) the host's requester; fetches the
 * previous one had in flight are forgotten. */
void koauth_set_requester(koauth_request_fn fn);
/* Asks again for every store whose handles wait for a token (after a new
 * requester was installed). Calls the requester: not from a scheduler. */
void koauth_request_waiting(void);

/* Finds or creates the store for cfg (strings are copied) and takes a
 * reference. NULL when out of memory. */
koauth *koauth_acquire(const koauth_cfg *cfg);
void koauth_release(koauth *s);
uint64_t koauth_id(const koauth *s);

/* A handle needs a token (librdkafka's refresh callback): registers h with
 * the store, hands it the current token when it has life left, and asks for
 * a new one when none is valid or the current one is past 80 % of its life. */
void koauth_serve(koauth *s, void *h, const koauth_ops *ops);
/* Forgets h (before the handle is destroyed). */
void koauth_detach(koauth *s, void *h);

/* The host's answers. expires_ms is wall-clock milliseconds since the
 * epoch. Return -1 when no store has that id (it was released meanwhile). */
int koauth_token_set(uint64_t id, const char *token, int64_t expires_ms, const char *principal);
int koauth_token_failed(uint64_t id, const char *reason);

/* Counters for tests and status: fetch requests made, tokens received,
 * failures received, live stores. */
typedef struct koauth_stats {
    uint64_t requests, tokens, failures;
    long stores;
} koauth_stats;
void koauth_stats_get(koauth_stats *out);

/* Test hook: replaces the wall clock (NULL restores it). */
void koauth_set_clock(int64_t (*now_ms)(void));

#endif
