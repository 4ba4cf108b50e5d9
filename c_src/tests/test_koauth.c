/* test_koauth.c - OAUTHBEARER token stores: one store per credentials, one
 * fetch in flight per store, the token handed to every handle, refresh at
 * 80 % of the lifetime, failures handed out and retried no sooner than
 * KOAUTH_RETRY_MS, detached handles left alone. Fake handles and clock. */
#include <stdlib.h>

#include "../kafka/koauth.h"
#include "test.h"

typedef struct fake_handle {
    char token[64];
    int64_t expires;
    char failure[128];
    int n_tokens, n_failures;
    bool reject; /* set_token refuses (as librdkafka does for a bad token) */
} fake_handle;

static int fake_set_token(void *h, const char *token, int64_t expires_ms, const char *principal,
                          char *err, size_t n) {
    fake_handle *f = h;
    (void)principal;
    if (f->reject) {
        snprintf(err, n, "token rejected");
        return -1;
    }
    snprintf(f->token, sizeof f->token, "%s", token);
    f->expires = expires_ms;
    f->n_tokens++;
    return 0;
}

static void fake_set_failure(void *h, const char *reason) {
    fake_handle *f = h;
    snprintf(f->failure, sizeof f->failure, "%s", reason);
    f->n_failures++;
}

static const koauth_ops fake_ops = {fake_set_token, fake_set_failure};

static int64_t fake_now;
static int64_t fake_clock(void) {
    return fake_now;
}

static int n_requests;
static uint64_t last_request_id;
static char last_request_scope[64];
static int fake_request(uint64_t id, const koauth_cfg *cfg) {
    n_requests++;
    last_request_id = id;
    snprintf(last_request_scope, sizeof last_request_scope, "%s", cfg->scope);
    return 0;
}

static const koauth_cfg cfg_a = {"http://127.0.0.1:1/token", "client-a", "secret-a", "kafka"};

TEST(koauth_store_per_credentials) {
    koauth_stats before, after;
    koauth_stats_get(&before);
    koauth *a1 = koauth_acquire(&cfg_a), *a2 = koauth_acquire(&cfg_a);
    koauth_cfg other = cfg_a;
    other.client_secret = "secret-b";
    koauth *b = koauth_acquire(&other);
    REQUIRE(a1 && a2 && b);
    CHECK(a1 == a2);
    CHECK(a1 != b);
    CHECK(koauth_id(a1) != koauth_id(b));
    koauth_stats_get(&after);
    CHECK_INT(after.stores - before.stores, 2);
    koauth_release(a1);
    koauth_release(a2);
    koauth_release(b);
    koauth_stats_get(&after);
    CHECK_INT(after.stores, before.stores);
}

TEST(koauth_without_fetcher_fails_the_handle) {
    koauth_set_requester(NULL);
    koauth *s = koauth_acquire(&cfg_a);
    REQUIRE(s);
    fake_handle h = {0};
    koauth_serve(s, &h, &fake_ops);
    CHECK_INT(h.n_tokens, 0);
    CHECK_INT(h.n_failures, 1);
    CHECK(strstr(h.failure, "no OAuth token fetcher") != NULL);
    koauth_detach(s, &h);
    koauth_release(s);
}

TEST(koauth_fetch_share_refresh_fail_retry) {
    fake_now = 1000000;
    koauth_set_clock(fake_clock);
    n_requests = 0;
    koauth_set_requester(fake_request);
    koauth *s = koauth_acquire(&cfg_a);
    REQUIRE(s);
    fake_handle h1 = {0}, h2 = {0}, h3 = {0};
    /* two handles wait: one request */
    koauth_serve(s, &h1, &fake_ops);
    koauth_serve(s, &h2, &fake_ops);
    CHECK_INT(n_requests, 1);
    CHECK(last_request_id == koauth_id(s));
    CHECK_STR(last_request_scope, "kafka");
    CHECK_INT(h1.n_tokens + h1.n_failures, 0);
    /* the answer reaches both; lifetime 100 s */
    REQUIRE(koauth_token_set(koauth_id(s), "tok-1", fake_now + 100000, "client-a") == 0);
    CHECK_STR(h1.token, "tok-1");
    CHECK_STR(h2.token, "tok-1");
    CHECK_INT(h1.expires, fake_now + 100000);
    /* a new handle while the token is fresh: served at once, no request */
    fake_now += 10000;
    koauth_serve(s, &h3, &fake_ops);
    CHECK_STR(h3.token, "tok-1");
    CHECK_INT(n_requests, 1);
    /* 80 % into its life: still handed out, and a new one is asked for */
    fake_now += 71000;
    koauth_serve(s, &h1, &fake_ops);
    CHECK_INT(h1.n_tokens, 2);
    CHECK_INT(n_requests, 2);
    koauth_serve(s, &h2, &fake_ops); /* same store: no second request */
    CHECK_INT(n_requests, 2);
    /* the fetch fails: every handle hears it */
    REQUIRE(koauth_token_failed(koauth_id(s), "token endpoint answered HTTP 401") == 0);
    CHECK_INT(h1.n_failures, 1);
    CHECK_INT(h2.n_failures, 1);
    CHECK_INT(h3.n_failures, 1);
    CHECK_STR(h3.failure, "token endpoint answered HTTP 401");
    /* within the retry pause: no request, the old token still has life */
    fake_now += 1000;
    koauth_serve(s, &h1, &fake_ops);
    CHECK_INT(n_requests, 2);
    CHECK_INT(h1.n_tokens, 3);
    /* after it: asked again; h3 is gone and hears nothing more */
    koauth_detach(s, &h3);
    fake_now += KOAUTH_RETRY_MS;
    koauth_serve(s, &h1, &fake_ops);
    CHECK_INT(n_requests, 3);
    REQUIRE(koauth_token_set(koauth_id(s), "tok-2", fake_now + 100000, "client-a") == 0);
    CHECK_STR(h1.token, "tok-2");
    CHECK_STR(h2.token, "tok-2");
    CHECK_STR(h3.token, "tok-1");
    /* an expired token is not handed out; the failure reason is */
    fake_now += 200000;
    fake_handle h4 = {0};
    koauth_serve(s, &h4, &fake_ops);
    CHECK_INT(h4.n_tokens, 0);
    CHECK_INT(n_requests, 4);
    /* a lost request is asked again after KOAUTH_FETCH_TIMEOUT_MS */
    fake_now += KOAUTH_FETCH_TIMEOUT_MS + 1;
    koauth_serve(s, &h4, &fake_ops);
    CHECK_INT(n_requests, 5);
    /* a handle that refuses the token gets a failure instead */
    h4.reject = true;
    REQUIRE(koauth_token_set(koauth_id(s), "tok-3", fake_now + 100000, "client-a") == 0);
    CHECK_INT(h4.n_failures, 1);
    CHECK_STR(h4.failure, "token rejected");
    /* a released store ignores late answers */
    koauth_detach(s, &h1);
    koauth_detach(s, &h2);
    koauth_detach(s, &h4);
    uint64_t id = koauth_id(s);
    koauth_release(s);
    CHECK_INT(koauth_token_set(id, "late", fake_now + 1000, "p"), -1);
    CHECK_INT(koauth_token_failed(id, "late"), -1);
    koauth_set_requester(NULL);
    koauth_set_clock(NULL);
}

TEST(koauth_new_requester_asks_for_waiting_stores) {
    koauth_set_requester(NULL);
    koauth *s = koauth_acquire(&cfg_a);
    REQUIRE(s);
    fake_handle h = {0};
    koauth_serve(s, &h, &fake_ops); /* no fetcher: failure, nothing asked */
    n_requests = 0;
    koauth_set_requester(fake_request);
    koauth_request_waiting();
    CHECK_INT(n_requests, 1);
    REQUIRE(koauth_token_set(koauth_id(s), "tok", (int64_t)1 << 50, "p") == 0);
    CHECK_STR(h.token, "tok");
    koauth_detach(s, &h);
    koauth_release(s);
    koauth_set_requester(NULL);
}
