/* koauth.c - OAUTHBEARER token stores shared by producer handles; see koauth.h. */
#include "koauth.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"

typedef struct handle_ref {
    void *h;
    const koauth_ops *ops;
} handle_ref;

struct koauth {
    struct koauth *next;
    uint64_t id;
    int refs;
    char *endpoint, *client_id, *client_secret, *scope;
    char *token, *principal; /* NULL until the first fetch succeeds */
    int64_t fetched_ms, expires_ms;
    bool fetching;
    int64_t fetch_started_ms;
    int64_t failed_ms; /* last failure; 0 = none since the last token */
    char *last_error;
    handle_ref *handles;
    size_t n_handles, cap_handles;
};

/* One lock for the registry and every store: refreshes are rare (once per
 * token lifetime per handle), so contention does not matter and no lock
 * order can go wrong. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static koauth *stores;
static uint64_t next_id = 1;
static koauth_request_fn requester;
static koauth_stats stats;
static int64_t (*clock_fn)(void);

static int64_t now_ms(void) {
    return clock_fn ? clock_fn() : ec_wall_ms();
}

void koauth_set_clock(int64_t (*fn)(void)) {
    clock_fn = fn;
}

static char *dup0(const char *s) {
    return strdup(s ? s : "");
}

static bool same(const char *a, const char *b) {
    return strcmp(a, b ? b : "") == 0;
}

static koauth_cfg cfg_of(const koauth *s) {
    return (koauth_cfg){s->endpoint, s->client_id, s->client_secret, s->scope};
}

/* lock held: the token still has life left for a new connection */
static bool usable(const koauth *s, int64_t now) {
    return s->token && s->expires_ms - now > 1000;
}

/* lock held: true when a fetch is in flight afterwards */
static bool request(koauth *s, int64_t now) {
    if (s->fetching && now - s->fetch_started_ms < KOAUTH_FETCH_TIMEOUT_MS) return true;
    koauth_cfg c = cfg_of(s);
    if (!requester || requester(s->id, &c) != 0) return false;
    s->fetching = true;
    s->fetch_started_ms = now;
    stats.requests++;
    return true;
}

void koauth_set_requester(koauth_request_fn fn) {
    pthread_mutex_lock(&lock);
    requester = fn;
    for (koauth *s = stores; s; s = s->next)
        s->fetching = false; /* whatever the previous host had in flight is lost */
    pthread_mutex_unlock(&lock);
}

void koauth_request_waiting(void) {
    pthread_mutex_lock(&lock);
    int64_t now = now_ms();
    for (koauth *s = stores; s; s = s->next)
        if (s->n_handles && !usable(s, now)) (void)request(s, now);
    pthread_mutex_unlock(&lock);
}

static void store_free(koauth *s) {
    free(s->endpoint);
    free(s->client_id);
    free(s->client_secret);
    free(s->scope);
    free(s->token);
    free(s->principal);
    free(s->last_error);
    free(s->handles);
    free(s);
}

koauth *koauth_acquire(const koauth_cfg *cfg) {
    pthread_mutex_lock(&lock);
    koauth *s;
    for (s = stores; s; s = s->next)
        if (same(s->endpoint, cfg->endpoint) && same(s->client_id, cfg->client_id) &&
            same(s->client_secret, cfg->client_secret) && same(s->scope, cfg->scope))
            break;
    if (s) {
        s->refs++;
    } else if ((s = calloc(1, sizeof *s))) {
        s->endpoint = dup0(cfg->endpoint);
        s->client_id = dup0(cfg->client_id);
        s->client_secret = dup0(cfg->client_secret);
        s->scope = dup0(cfg->scope);
        if (!s->endpoint || !s->client_id || !s->client_secret || !s->scope) {
            store_free(s);
            s = NULL;
        } else {
            s->id = next_id++;
            s->refs = 1;
            s->next = stores;
            stores = s;
            stats.stores++;
        }
    }
    pthread_mutex_unlock(&lock);
    return s;
}

void koauth_release(koauth *s) {
    if (!s) return;
    pthread_mutex_lock(&lock);
    bool last = --s->refs == 0;
    if (last) {
        for (koauth **pp = &stores; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        stats.stores--;
    }
    pthread_mutex_unlock(&lock);
    if (last) store_free(s);
}

uint64_t koauth_id(const koauth *s) {
    return s->id;
}

/* lock held */
static void hand_token(koauth *s, const handle_ref *r) {
    char err[256];
    if (r->ops->set_token(r->h, s->token, s->expires_ms, s->principal, err, sizeof err) != 0)
        r->ops->set_failure(r->h, err);
}

void koauth_serve(koauth *s, void *h, const koauth_ops *ops) {
    pthread_mutex_lock(&lock);
    handle_ref *r = NULL;
    for (size_t i = 0; i < s->n_handles; i++)
        if (s->handles[i].h == h) r = &s->handles[i];
    if (!r) {
        if (s->n_handles == s->cap_handles) {
            size_t cap = s->cap_handles ? 2 * s->cap_handles : 4;
            handle_ref *n = realloc(s->handles, cap * sizeof *n);
            if (!n) {
                pthread_mutex_unlock(&lock);
                ops->set_failure(h, "out of memory registering for OAUTHBEARER tokens");
                return;
            }
            s->handles = n;
            s->cap_handles = cap;
        }
        r = &s->handles[s->n_handles++];
        r->h = h;
    }
    r->ops = ops;
    int64_t now = now_ms();
    if (usable(s, now)) hand_token(s, r);
    bool stale = !s->token || now >= s->fetched_ms + (s->expires_ms - s->fetched_ms) * 4 / 5;
    if (stale) {
        if (s->failed_ms && now - s->failed_ms < KOAUTH_RETRY_MS) {
            if (!usable(s, now)) ops->set_failure(h, s->last_error ? s->last_error : "no token");
        } else if (!request(s, now) && !usable(s, now)) {
            ops->set_failure(h, "no OAuth token fetcher is running (plugin not started)");
        }
    }
    pthread_mutex_unlock(&lock);
}

void koauth_detach(koauth *s, void *h) {
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < s->n_handles; i++)
        if (s->handles[i].h == h) {
            s->handles[i] = s->handles[--s->n_handles];
            break;
        }
    pthread_mutex_unlock(&lock);
}

/* lock held */
static koauth *find(uint64_t id) {
    for (koauth *s = stores; s; s = s->next)
        if (s->id == id) return s;
    return NULL;
}

int koauth_token_set(uint64_t id, const char *token, int64_t expires_ms, const char *principal) {
    pthread_mutex_lock(&lock);
    koauth *s = find(id);
    char *t = s ? strdup(token) : NULL, *p = s ? strdup(principal) : NULL;
    if (!s || !t || !p) {
        free(t);
        free(p);
        pthread_mutex_unlock(&lock);
        return -1;
    }
    free(s->token);
    free(s->principal);
    s->token = t;
    s->principal = p;
    s->fetched_ms = now_ms();
    s->expires_ms = expires_ms;
    s->fetching = false;
    s->failed_ms = 0;
    stats.tokens++;
    for (size_t i = 0; i < s->n_handles; i++)
        hand_token(s, &s->handles[i]);
    pthread_mutex_unlock(&lock);
    return 0;
}

int koauth_token_failed(uint64_t id, const char *reason) {
    pthread_mutex_lock(&lock);
    koauth *s = find(id);
    if (!s) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    char *e = strdup(reason && *reason ? reason : "token fetch failed");
    if (e) {
        free(s->last_error);
        s->last_error = e;
    }
    s->fetching = false;
    s->failed_ms = now_ms();
    stats.failures++;
    /* every handle hears it: librdkafka keeps a token with life left and
     * asks again in 10 s */
    const char *msg = s->last_error ? s->last_error : "token fetch failed";
    for (size_t i = 0; i < s->n_handles; i++)
        s->handles[i].ops->set_failure(s->handles[i].h, msg);
    pthread_mutex_unlock(&lock);
    return 0;
}

void koauth_stats_get(koauth_stats *out) {
    pthread_mutex_lock(&lock);
    *out = stats;
    pthread_mutex_unlock(&lock);
}
