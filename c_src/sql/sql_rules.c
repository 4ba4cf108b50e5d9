/* sql_rules.c - rule compilation, event names, and the topic-filter trie. */
#include "sql_rules.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sql_eval.h"
#include "sql_parse.h"

ec_status sql_rule_compile(const char *id, size_t id_len, const char *sql, size_t len,
                           sql_rule **out, ec_error *err) {
    sql_rule *r = calloc(1, sizeof *r);
    if (!r) return ec_fail(err, EC_ENOMEM, "out of memory compiling rule");
    arena_init(&r->a, 4096);
    r->id = arena_strndup(&r->a, id, id_len);
    r->sql = arena_strndup(&r->a, sql, len);
    r->id_len = id_len;
    if (!r->id || !r->sql) {
        sql_rule_free(r);
        return ec_fail(err, EC_ENOMEM, "out of memory compiling rule");
    }
    ec_status st = sql_parse(&r->a, r->sql, len, &r->stmt, err);
    if (st) {
        sql_rule_free(r);
        return st;
    }
    *out = r;
    return EC_OK;
}

void sql_rule_free(sql_rule *r) {
    if (!r) return;
    arena_free(&r->a);
    free(r);
}

int sql_rule_eval(sql_rule *r, sql_msg *msg, arena *a, value *out, ec_error *err) {
    sql_rule_metrics *m = &r->metrics;
    atomic_fetch_add_explicit(&m->matched, 1, memory_order_relaxed);
    sql_outcome o = sql_eval_stmt(&r->stmt, msg, r->id, r->id_len, a, out, err);
    if (o == SQL_MATCHED) {
        atomic_fetch_add_explicit(&m->passed, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&m->failed, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(o == SQL_NO_RESULT ? &m->failed_no_result : &m->failed_exception,
                                  1, memory_order_relaxed);
    }
    return (int)o;
}

void sql_rule_metrics_reset(sql_rule *r) {
    _Atomic uint64_t *c[] = {&r->metrics.matched,          &r->metrics.passed,
                             &r->metrics.failed,           &r->metrics.failed_exception,
                             &r->metrics.failed_no_result, &r->metrics.actions_total,
                             &r->metrics.actions_success,  &r->metrics.actions_failed};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        atomic_store(c[i], 0);
}

static const sql_event_def events[] = {
    {"client.connected", "$events/client/connected", "$events/client_connected"},
    {"client.disconnected", "$events/client/disconnected", "$events/client_disconnected"},
    {"client.connack", "$events/client/connack", "$events/client_connack"},
    {"client.check_authz_complete", "$events/auth/check_authz_complete",
     "$events/client_check_authz_complete"},
    {"client.check_authn_complete", "$events/auth/check_authn_complete",
     "$events/client_check_authn_complete"},
    {"session.subscribed", "$events/session/subscribed", "$events/session_subscribed"},
    {"session.unsubscribed", "$events/session/unsubscribed", "$events/session_unsubscribed"},
    {"message.delivered", "$events/message/delivered", "$events/message_delivered"},
    {"message.acked", "$events/message/acked", "$events/message_acked"},
    {"message.dropped", "$events/message/dropped", "$events/message_dropped"},
    {"delivery.dropped", "$events/message/delivery_dropped", "$events/delivery_dropped"},
    {"message.transformation_failed", "$events/message_transformation/failed",
     "$events/message_transformation_failed"},
    {"schema.validation_failed", "$events/schema_validation/failed",
     "$events/schema_validation_failed"},
    {"alarm.activated", "$events/sys/alarm_activated", NULL},
    {"alarm.deactivated", "$events/sys/alarm_deactivated", NULL},
};

const sql_event_def *sql_event_by_name(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (strlen(events[i].name) == len && memcmp(events[i].name, name, len) == 0)
            return &events[i];
    return NULL;
}

bool sql_rule_wants_event(const sql_rule *r, const sql_event_def *ev) {
    for (uint32_t i = 0; i < r->stmt.nfrom; i++) {
        const sql_from *f = &r->stmt.from[i];
        if (!f->is_event) continue;
        if (sql_topic_match(ev->topic, strlen(ev->topic), f->topic, f->len)) return true;
        if (ev->legacy && sql_topic_match(ev->legacy, strlen(ev->legacy), f->topic, f->len))
            return true;
    }
    return false;
}

bool sql_rule_wants_topic(const sql_rule *r, const char *topic, size_t len) {
    for (uint32_t i = 0; i < r->stmt.nfrom; i++) {
        const sql_from *f = &r->stmt.from[i];
        if (!f->is_event && sql_topic_match(topic, len, f->topic, f->len)) return true;
    }
    return false;
}

/* ---- the trie ---------------------------------------------------------- */

typedef struct tnode tnode;
typedef struct tedge {
    const char *level;
    uint32_t len;
    tnode *child;
} tedge;

struct tnode {
    tedge *edges; /* exact levels, sorted for binary search once built */
    uint32_t nedges, capedges;
    tnode *plus;          /* '+' */
    uint32_t *hash_rules; /* rules whose filter ends with '#' here */
    uint32_t nhash, caphash;
    uint32_t *rules; /* rules whose filter ends exactly here */
    uint32_t nrules, caprules;
};

struct rule_index {
    arena a;
    tnode *root;
    uint32_t *event_rules; /* rules with at least one $events/ FROM */
    uint32_t nevent;
    sql_rule *const *rules;
    size_t nrules;
};

static bool push_u32(arena *a, uint32_t **v, uint32_t *n, uint32_t *cap, uint32_t x) {
    if (*n && (*v)[*n - 1] == x) return true; /* same rule twice on one node */
    if (!ARENA_GROW(a, *v, *cap, *n)) return false;
    (*v)[(*n)++] = x;
    return true;
}

static tnode *edge_child(arena *a, tnode *n, const char *level, uint32_t len) {
    for (uint32_t i = 0; i < n->nedges; i++)
        if (n->edges[i].len == len && memcmp(n->edges[i].level, level, len) == 0)
            return n->edges[i].child;
    if (!ARENA_GROW(a, n->edges, n->capedges, n->nedges)) return NULL;
    tnode *c = arena_calloc(a, sizeof *c);
    if (!c) return NULL;
    n->edges[n->nedges++] = (tedge){level, len, c};
    return c;
}

static bool insert(rule_index *ix, const char *f, size_t flen, uint32_t rule) {
    tnode *n = ix->root;
    size_t i = 0;
    for (;;) {
        size_t e = i;
        while (e < flen && f[e] != '/')
            e++;
        const char *lvl = f + i;
        size_t ll = e - i;
        if (ll == 1 && lvl[0] == '#')
            return push_u32(&ix->a, &n->hash_rules, &n->nhash, &n->caphash, rule);
        if (ll == 1 && lvl[0] == '+') {
            if (!n->plus && !(n->plus = arena_calloc(&ix->a, sizeof *n->plus))) return false;
            n = n->plus;
        } else if (!(n = edge_child(&ix->a, n, lvl, (uint32_t)ll))) {
            return false;
        }
        if (e >= flen) return push_u32(&ix->a, &n->rules, &n->nrules, &n->caprules, rule);
        i = e + 1;
    }
}

static int edge_cmp(const void *x, const void *y) {
    const tedge *a = x, *b = y;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->level, b->level, n);
    return c ? c : (a->len < b->len ? -1 : a->len > b->len);
}

static void sort_edges(tnode *n) {
    if (!n) return;
    if (n->nedges > 1) qsort(n->edges, n->nedges, sizeof *n->edges, edge_cmp);
    for (uint32_t i = 0; i < n->nedges; i++)
        sort_edges(n->edges[i].child);
    sort_edges(n->plus);
}

ec_status rule_index_build(sql_rule *const *rules, size_t n, rule_index **out, ec_error *err) {
    rule_index *ix = calloc(1, sizeof *ix);
    if (!ix) return ec_fail(err, EC_ENOMEM, "out of memory building the rule index");
    arena_init(&ix->a, 16384);
    ix->rules = rules;
    ix->nrules = n;
    ix->root = arena_calloc(&ix->a, sizeof *ix->root);
    uint32_t capev = 0;
    bool ok = ix->root != NULL;
    for (size_t r = 0; r < n && ok; r++) {
        bool any_event = false;
        for (uint32_t i = 0; i < rules[r]->stmt.nfrom && ok; i++) {
            const sql_from *f = &rules[r]->stmt.from[i];
            if (f->is_event)
                any_event = true;
            else
                ok = insert(ix, f->topic, f->len, (uint32_t)r);
        }
        if (ok && any_event)
            ok = push_u32(&ix->a, &ix->event_rules, &ix->nevent, &capev, (uint32_t)r);
    }
    if (!ok) {
        rule_index_free(ix);
        return ec_fail(err, EC_ENOMEM, "out of memory building the rule index");
    }
    sort_edges(ix->root);
    *out = ix;
    return EC_OK;
}

void rule_index_free(rule_index *ix) {
    if (!ix) return;
    arena_free(&ix->a);
    free(ix);
}

typedef struct collector {
    uint32_t *out;
    size_t cap, n;
} collector;

static void add_all(collector *c, const uint32_t *v, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (c->n < c->cap) c->out[c->n] = v[i];
        c->n++;
    }
}

static const tnode *find_edge(const tnode *n, const char *lvl, size_t len) {
    uint32_t lo = 0, hi = n->nedges;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const tedge *e = &n->edges[mid];
        uint32_t m = e->len < len ? e->len : (uint32_t)len;
        int c = memcmp(e->level, lvl, m);
        if (!c) c = e->len < len ? -1 : e->len > len;
        if (!c) return e->child;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* t[i..] remains to be matched at node n; first: at the topic's first level */
static void walk(const tnode *n, const char *t, size_t tlen, size_t i, bool first, collector *c) {
    bool dollar = first && tlen > 0 && t[0] == '$';
    if (!dollar) add_all(c, n->hash_rules, n->nhash); /* '#' matches the rest (and the parent) */
    if (i > tlen) {                                   /* all levels consumed */
        add_all(c, n->rules, n->nrules);
        return;
    }
    size_t e = i;
    while (e < tlen && t[e] != '/')
        e++;
    const tnode *next = find_edge(n, t + i, e - i);
    if (next) walk(next, t, tlen, e + 1, false, c);
    if (n->plus && !dollar) walk(n->plus, t, tlen, e + 1, false, c);
}

static int u32_cmp(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static size_t finish(collector *c) {
    if (c->n > c->cap) return c->n; /* caller retries with room */
    if (c->n > 1) {
        qsort(c->out, c->n, sizeof *c->out, u32_cmp);
        size_t k = 1;
        for (size_t i = 1; i < c->n; i++)
            if (c->out[i] != c->out[k - 1]) c->out[k++] = c->out[i];
        c->n = k;
    }
    return c->n;
}

size_t rule_index_match_topic(const rule_index *ix, const char *topic, size_t len, uint32_t *out,
                              size_t cap) {
    collector c = {out, cap, 0};
    walk(ix->root, topic, len, 0, true, &c);
    return finish(&c);
}

size_t rule_index_match_event(const rule_index *ix, const sql_event_def *ev, uint32_t *out,
                              size_t cap) {
    collector c = {out, cap, 0};
    for (uint32_t i = 0; i < ix->nevent; i++)
        if (sql_rule_wants_event(ix->rules[ix->event_rules[i]], ev))
            add_all(&c, &ix->event_rules[i], 1);
    return finish(&c);
}

size_t rule_index_match_columns(const rule_index *ix, const value *cols, arena *a, uint32_t **out) {
    const value *event = V_MAP_GET(cols, "event");
    const sql_event_def *ed = NULL;
    if (event && event->type == VT_BIN &&
        !(event->len == 15 && memcmp(event->u.s, "message.publish", 15) == 0)) {
        ed = sql_event_by_name(event->u.s, event->len);
        if (!ed) return 0;
    }
    const value *topic = V_MAP_GET(cols, "topic");
    if (!ed && (!topic || topic->type != VT_BIN)) return 0;
    size_t cap = 16, n;
    for (;;) {
        uint32_t *idx = arena_alloc(a, sizeof *idx * cap);
        if (!idx) return (size_t)-1;
        n = ed ? rule_index_match_event(ix, ed, idx, cap)
               : rule_index_match_topic(ix, topic->u.s, topic->len, idx, cap);
        if (n <= cap) {
            *out = idx;
            return n;
        }
        cap = n; /* more matched than fit: once more with room for all */
    }
}
