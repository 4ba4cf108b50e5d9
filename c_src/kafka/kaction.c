/* kaction.c - the producer action runtime; see kaction.h.
 *
 * Locking: one mutex per action guards the topic list and every queue; it is
 * held only for list operations (never across librdkafka network calls). The
 * pump thread takes records from the queues and hands them to librdkafka;
 * librdkafka's poll thread (kprod) delivers reports to on_delivery. */
#include "kaction.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../buffer/segq.h"
#include "../sink/kheaders.h"
#include "../sink/tmpl.h"
#include "kprod.h"

#define KACTION_MAX_TOPICS     10000 /* distinct dynamic topics per action */
#define UNKNOWN_TOPIC_RETRY_MS 30000 /* EMQX caches "unknown topic" for 30 s */
#define UNRESOLVED_RETRY_MS    1000  /* metadata retry while Kafka is unreachable */
#define PUMP_IDLE_WAIT_MS      100
#define PUMP_BATCH             512 /* records handed to librdkafka per lock release */
#define DISK_FSYNC_MS          200 /* disk mode: appends made durable at least this often */
#define DQ_NONE                UINT64_MAX
#define STAGE_MAX              (16u << 20) /* staged bytes per queue before drops, at least */
#define CACHE_MAX              (8u << 20)  /* bytes of written records kept in RAM per action */

typedef struct ktopic ktopic;

enum { META_IDLE, META_ASKED, META_DONE };

typedef struct kqueue kqueue;

typedef struct krec {
    struct krec *next;
    ktopic *topic;
    kqueue *q; /* the partition queue whose window the record is in flight in */
    void *token;
    int32_t partition;
    uint32_t est;
    int64_t ts;
    int64_t born_ms; /* max_batch_age set: when the record was buffered (else 0) */
    char *key, *val;
    uint32_t klen, vlen, nh;
    kprod_header *hdrs;
    uint64_t dq_id; /* disk mode: the record's id in the segment queue (DQ_NONE: none) */
    bool replayed;  /* read back from disk at start: no `success` (sink-behaviour.md §6.1) */
    char data[];
} krec;

typedef struct tokrun { /* n records from id `first` on carry the same token */
    uint64_t first, n;
    void *token;
} tokrun;

/* Buffered records of one partition (or of a topic whose partition count is
 * not known yet) and its in-flight window. Under k->mu: the RAM list, the
 * staged list and `bytes`. In disk and hybrid mode records reach the disk
 * part through the staged list: senders never do file I/O; the pump appends
 * them. The disk part (dq, dq_n, peek, toks) is the pump's alone, except
 * acknowledgements (k->dmu). Order: RAM list, then disk (peek first), then
 * staged. The window counters are atomics: delivery reports release them
 * without the lock; they only grow under it. A kqueue never moves or goes
 * away before the action (records in flight point at it). */
struct kqueue {
    krec *head, *tail;
    uint64_t bytes;     /* estimated bytes buffered (RAM, disk and staged) */
    uint64_t ram_bytes; /* of head..tail */
    krec *stage, *stage_tail;
    uint64_t stage_bytes;
    bool spilled;  /* hybrid: the disk part is in use, so new records go after it */
    int32_t index; /* partition; -1: the topic's pending queue */
    segq *dq;
    uint64_t dq_n;       /* records on disk not handed out (peek not counted) */
    uint64_t replay_end; /* ids below it were read back at start */
    krec *peek;          /* the oldest record on disk, read ahead */
    krec *ch, *ct;       /* cached: RAM copies of the next records on disk to read, */
    uint64_t cfirst, cn; /* ids cfirst.. (no reading back, no decoding) */
    tokrun *toks;        /* tokens of records on disk, by id */
    size_t tok_head, tok_n, tok_cap;
    /* written by the delivery thread too: a cache line of its own */
    _Alignas(64) _Atomic uint64_t inflight_bytes;
    _Atomic uint32_t inflight;
};

struct ktopic {
    ktopic *next;
    char *name;
    size_t name_len;
    int32_t count;           /* partitions in use: -1 unknown yet, 0 unknown topic */
    int64_t next_refresh_ms; /* when to ask metadata again */
    int meta;                /* (k->mu) META_IDLE, META_ASKED (the metadata thread's), META_DONE */
    int32_t meta_n;          /* META_DONE: the answer */
    kqueue pending;          /* records waiting for the partition count */
    kqueue **parts;
    int32_t cap;
};

/* Grouped by the thread that writes them, one cache line per group, so the
 * senders and librdkafka's delivery thread do not bounce each other's lines. */
typedef struct kmetrics {
    _Alignas(64) _Atomic uint64_t matched, failed, dropped, dropped_queue_full,
        dropped_resource_stopped, dropped_expired;
    _Atomic int64_t queuing, queuing_bytes;
    _Alignas(64) _Atomic int64_t inflight;
    _Alignas(64) _Atomic uint64_t success;
} kmetrics;

struct kaction {
    kprod *p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t pump, meta;
    pthread_cond_t meta_cv; /* wakes the metadata thread */
    bool meta_started;
    bool stop;
    _Atomic bool pump_idle; /* the pump sleeps on cv: only then is a wake-up needed */
    ktopic *topics;
    uint32_t ntopics;
    tmpl *topic_t, *key_t, *val_t, *ts_t;
    kh_spec *hdrs;
    bool fixed_topic;
    ktopic *fixed; /* the fixed topic's entry (set at start, never freed before the action) */
    part_strategy strategy;
    int32_t partitions_limit;
    uint64_t per_partition_limit, window, refresh_ms, sync_timeout_ms;
    int64_t max_age_ms; /* max_batch_age; 0 = records never expire */
    bool sync;
    bool overload_protection; /* memory_overload_protection (memory buffer) */
    _Atomic bool high_mem;    /* host above the memory high watermark (sampled by the pump) */
    int64_t next_mem_check_ms;
    int metadata_timeout_ms;
    kmetrics m;
    kaction_reply_fn reply;
    void *reply_ctx;
    kconf_buffer_mode mode; /* hybrid without a directory: memory */
    char *dir;              /* disk and hybrid: the action's buffer directory */
    uint64_t seg_bytes;     /* segment_bytes; hybrid: the RAM part's size */
    pthread_mutex_t dmu;    /* guards every queue's dq (the pump and acknowledgements) */
    uint8_t *enc;           /* a record's disk form (the pump's) */
    size_t enc_cap;
    uint64_t cache_bytes; /* of every queue's cached records (the pump's) */
    _Atomic bool closing; /* destroy: purged/stopped records stay on disk */
    uint64_t replayed, skipped_bytes;
    _Atomic int32_t forced_count; /* tests: what metadata answers (INT32_MIN: ask Kafka) */
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t vlen_zz(int64_t n) { /* bytes of the zig-zag varint of n */
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    uint32_t b = 1;
    while (z >= 0x80)
        z >>= 7, b++;
    return b;
}

uint64_t kaction_estimate_size(size_t key_len, size_t val_len, const size_t *hdr_lens,
                               uint32_t n_hdr) {
    uint64_t h = vlen_zz(n_hdr);
    for (uint32_t i = 0; i < 2 * n_hdr; i++)
        h += vlen_zz((int64_t)hdr_lens[i]) + hdr_lens[i];
    uint64_t f = h + 7 + vlen_zz((int64_t)key_len) + key_len + vlen_zz((int64_t)val_len) + val_len;
    return f + vlen_zz((int64_t)(h + f));
}

static void finish(kaction *k, krec *r, const char *error, int32_t partition, int64_t offset) {
    /* on disk: the record's fate is final unless the action is closing with
     * it unsent (then it is replayed at the next start) */
    if (r->dq_id != DQ_NONE && !(atomic_load(&k->closing) && error)) {
        ec_error err;
        pthread_mutex_lock(&k->dmu);
        segq_ack(r->q->dq, r->dq_id, &err);
        pthread_mutex_unlock(&k->dmu);
    }
    if (r->token && k->reply) k->reply(k->reply_ctx, r->token, error, partition, offset);
    free(r);
}

/* -- records on disk: key, value, headers, timestamp (and when it was
 * buffered, for max_batch_age), integers little-endian:
 *   u32 key_len, u32 value_len, u32 n_headers (bit 31: born follows; bit 30:
 *   replayed),
 *   i64 timestamp, [i64 born_ms], key, value, {u32 klen, u32 vlen, k, v}* -- */

#define REC_BORN     0x80000000u
#define REC_REPLAYED 0x40000000u /* read back after a restart: no `success` */

static void wr32(uint8_t **p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        *(*p)++ = (uint8_t)(v >> (8 * i));
}

static uint32_t rd32(const uint8_t **p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t) * (*p)++ << (8 * i);
    return v;
}

static void wr64(uint8_t **p, int64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p, (uint32_t)((uint64_t)v >> 32));
}

static int64_t rd64(const uint8_t **p) {
    uint64_t v = rd32(p);
    return (int64_t)(v | (uint64_t)rd32(p) << 32);
}

/* r in its disk form, in the action's buffer (the pump's, or destroy's once
 * the pump stopped; no allocation per record) */
static const uint8_t *encode(kaction *k, const krec *r, uint32_t *len) {
    size_t n = 20 + (r->born_ms ? 8 : 0) + r->klen + r->vlen;
    for (uint32_t i = 0; i < r->nh; i++)
        n += 8 + r->hdrs[i].key_len + r->hdrs[i].val_len;
    if (n > SEGQ_MAX_RECORD) return NULL;
    if (n > k->enc_cap) {
        uint8_t *nb = realloc(k->enc, n);
        if (!nb) return NULL;
        k->enc = nb;
        k->enc_cap = n;
    }
    uint8_t *p = k->enc;
    wr32(&p, r->klen);
    wr32(&p, r->vlen);
    wr32(&p, r->nh | (r->born_ms ? REC_BORN : 0) | (r->replayed ? REC_REPLAYED : 0));
    wr64(&p, r->ts);
    if (r->born_ms) wr64(&p, r->born_ms);
    memcpy(p, r->key, r->klen), p += r->klen;
    memcpy(p, r->val, r->vlen), p += r->vlen;
    for (uint32_t i = 0; i < r->nh; i++) {
        wr32(&p, (uint32_t)r->hdrs[i].key_len);
        wr32(&p, (uint32_t)r->hdrs[i].val_len);
        memcpy(p, r->hdrs[i].key, r->hdrs[i].key_len), p += r->hdrs[i].key_len;
        memcpy(p, r->hdrs[i].val, r->hdrs[i].val_len), p += r->hdrs[i].val_len;
    }
    *len = (uint32_t)n;
    return k->enc;
}

/* A record's disk form, checked: its parts point into the bytes. */
typedef struct drec {
    const uint8_t *key, *val, *hdrs; /* hdrs: the encoded header list */
    uint32_t klen, vlen, nh, hbytes;
    int64_t ts, born_ms;
    uint32_t est;
    bool replayed;
} drec;

static bool decode(const uint8_t *b, uint32_t n, drec *d) {
    const uint8_t *p = b, *end = b + n;
    if (n < 20) return false;
    d->klen = rd32(&p);
    d->vlen = rd32(&p);
    uint32_t nh = rd32(&p);
    d->ts = rd64(&p);
    d->born_ms = 0;
    if (nh & REC_BORN) {
        if (end - p < 8) return false;
        d->born_ms = rd64(&p);
    }
    d->replayed = nh & REC_REPLAYED;
    d->nh = nh & ~(REC_BORN | REC_REPLAYED);
    if (d->nh > 256 || (uint64_t)d->klen + d->vlen > (uint64_t)(end - p)) return false;
    d->key = p;
    d->val = p + d->klen;
    p += d->klen + d->vlen;
    d->hdrs = p;
    size_t hl[2 * 256];
    for (uint32_t i = 0; i < d->nh; i++) {
        if (end - p < 8) return false;
        uint32_t kl = rd32(&p), vl = rd32(&p);
        if ((uint64_t)kl + vl > (uint64_t)(end - p)) return false;
        p += kl + vl;
        hl[2 * i] = kl;
        hl[2 * i + 1] = vl;
    }
    d->hbytes = (uint32_t)(p - d->hdrs);
    d->est = (uint32_t)kaction_estimate_size(d->klen, d->vlen, hl, d->nh);
    return true;
}

/* a record read back from disk (NULL: out of memory) */
static krec *unpersist(const drec *d) {
    size_t hdata = d->hbytes - 8 * (size_t)d->nh;
    krec *r = malloc(sizeof *r + d->nh * sizeof(kprod_header) + d->klen + d->vlen + hdata);
    if (!r) return NULL;
    char *o = r->data;
    r->hdrs = (kprod_header *)o;
    o += d->nh * sizeof(kprod_header);
    r->key = o;
    memcpy(o, d->key, d->klen), o += d->klen;
    r->val = o;
    memcpy(o, d->val, d->vlen), o += d->vlen;
    const uint8_t *p = d->hdrs;
    for (uint32_t i = 0; i < d->nh; i++) {
        uint32_t kl = rd32(&p), vl = rd32(&p);
        r->hdrs[i].key = o;
        r->hdrs[i].key_len = kl;
        memcpy(o, p, kl), o += kl, p += kl;
        r->hdrs[i].val = o;
        r->hdrs[i].val_len = vl;
        memcpy(o, p, vl), o += vl, p += vl;
    }
    r->klen = d->klen;
    r->vlen = d->vlen;
    r->nh = d->nh;
    r->ts = d->ts;
    r->born_ms = d->born_ms;
    r->est = d->est;
    r->token = NULL;
    r->replayed = d->replayed;
    r->dq_id = DQ_NONE;
    return r;
}

/* -- queues (caller holds k->mu) -- */

static void q_push(kqueue *q, krec *r) {
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->bytes += r->est;
    q->ram_bytes += r->est;
}

static krec *q_pop(kqueue *q) {
    krec *r = q->head;
    if (!r) return NULL;
    q->head = r->next;
    if (!q->head) q->tail = NULL;
    q->bytes -= r->est;
    q->ram_bytes -= r->est;
    return r;
}

/* Takes q's oldest record out of the buffer for good (dropped, expired,
 * failed) onto the chain *out, to be answered outside the lock. */
static void q_take(kaction *k, kqueue *q, krec **out) {
    krec *r = q_pop(q);
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, r->est);
    r->next = *out;
    *out = r;
}

/* Answers a chain of records taken out of the buffers (no lock held), each
 * counted in c1 and, when not NULL, c2. */
static void answer_all(kaction *k, krec *list, const char *why, _Atomic uint64_t *c1,
                       _Atomic uint64_t *c2) {
    while (list) {
        krec *n = list->next;
        atomic_fetch_add(c1, 1);
        if (c2) atomic_fetch_add(c2, 1);
        finish(k, list, why, -1, -1);
        list = n;
    }
}

/* Evicts from the head (oldest first) after `appended` bytes were added
 * (sink-behaviour.md §6.2-6.3). Normally: while the removed bytes stay within
 * the excess over per_partition_limit, at least one record. Under memory
 * pressure (memory_overload_protection and the host above its watermark):
 * at least min(appended, bytes above the reserve max_inflight x
 * max_batch_bytes), rounded up to whole records, if that is more. Evicted
 * records are chained onto *dropped to be answered outside the lock. */
static void enforce_limit(kaction *k, kqueue *q, uint64_t appended, krec **dropped) {
    uint64_t excess = q->bytes > k->per_partition_limit ? q->bytes - k->per_partition_limit : 0;
    uint64_t pressure = 0;
    if (k->overload_protection && atomic_load(&k->high_mem) && q->bytes > k->window) {
        pressure = q->bytes - k->window;
        if (appended < pressure) pressure = appended;
    }
    if (!excess && !pressure) return;
    bool at_least = pressure > excess; /* the high-memory rule removes at least that much */
    uint64_t target = at_least ? pressure : excess, removed = 0;
    do {
        removed += q->head->est;
        q_take(k, q, dropped);
    } while (q->head && (at_least ? removed < target : removed + q->head->est <= target));
}

/* Host memory in use, percent (Linux /proc/meminfo); -1 when unknown. */
static int mem_used_pct(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[128];
    long long total = -1, avail = -1;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "MemTotal: %lld kB", &total);
        sscanf(line, "MemAvailable: %lld kB", &avail);
    }
    fclose(f);
    if (total <= 0 || avail < 0) return -1;
    return (int)(100 - avail * 100 / total);
}

/* EMQX's sysmon.os.sysmem_high_watermark (70 %); EC_SYSMEM_HIGH_WATERMARK overrides. */
static int high_watermark_pct(void) {
    const char *e = getenv("EC_SYSMEM_HIGH_WATERMARK");
    int v = e ? atoi(e) : 70;
    return v > 0 && v <= 100 ? v : 70;
}

/* Answers records evicted by the buffer limit (outside the lock). */
static void answer_dropped(kaction *k, krec *list) {
    answer_all(k, list, "buffer_overflow", &k->m.dropped, &k->m.dropped_queue_full);
}

static int32_t pick(kaction *k, const krec *r, int32_t count) {
    return part_pick(k->strategy, r->key, r->klen, count);
}

/* zeroed memory aligned for the cache-line-aligned members (free() frees it) */
static void *zalloc64(size_t n) {
    n = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

static bool grow_parts(ktopic *t, int32_t count) {
    if (count <= t->cap) return true;
    kqueue **np = realloc(t->parts, sizeof *np * (size_t)count);
    if (!np) return false;
    t->parts = np;
    for (; t->cap < count; t->cap++) {
        if (!(np[t->cap] = zalloc64(sizeof **np))) return false;
        np[t->cap]->index = t->cap;
    }
    return true;
}

/* room in q's window for est more bytes (max_inflight x max_batch_bytes;
 * one record always fits an empty window) */
static bool window_room(const kaction *k, kqueue *q, uint32_t est) {
    return atomic_load(&q->inflight) == 0 || atomic_load(&q->inflight_bytes) + est <= k->window;
}

static void window_take(kqueue *q, krec *r) {
    r->q = q;
    atomic_fetch_add(&q->inflight, 1);
    atomic_fetch_add(&q->inflight_bytes, r->est);
}

static void window_give(krec *r) {
    atomic_fetch_sub(&r->q->inflight_bytes, r->est);
    atomic_fetch_sub(&r->q->inflight, 1);
}

/* wakes the pump when it sleeps (caller holds k->mu) */
static void wake_pump(kaction *k) {
    if (atomic_load(&k->pump_idle)) {
        atomic_store(&k->pump_idle, false);
        pthread_cond_signal(&k->cv);
    }
}

static ktopic *topic_get(kaction *k, const char *name, size_t len) {
    for (ktopic *t = k->topics; t; t = t->next)
        if (t->name_len == len && memcmp(t->name, name, len) == 0) return t;
    if (k->ntopics >= KACTION_MAX_TOPICS) return NULL;
    ktopic *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strndup(name, len))) {
        free(t);
        return NULL;
    }
    t->name_len = len;
    t->count = -1;
    t->pending.index = -1;
    t->next = k->topics;
    k->topics = t;
    k->ntopics++;
    return t;
}

/* -- the disk part of a queue (disk and hybrid mode) -- */

static void stage_push(kqueue *q, krec *r) {
    r->next = NULL;
    if (q->stage_tail)
        q->stage_tail->next = r;
    else
        q->stage = r;
    q->stage_tail = r;
    q->bytes += r->est;
    q->stage_bytes += r->est;
}

/* Whether a new record for q goes through the disk part (k->mu held): always
 * in disk mode; in hybrid mode once the RAM part holds segment_bytes, and
 * then until the disk part is empty again (so order holds), and while the
 * topic's pending queue still has records to place. */
static bool to_disk(const kaction *k, const ktopic *t, const kqueue *q, uint32_t est) {
    if (k->mode == KCONF_BUF_DISK) return true;
    if (k->mode != KCONF_BUF_HYBRID) return false;
    return q->spilled || q->stage || q->ram_bytes + est > k->seg_bytes ||
           (q != &t->pending && t->pending.bytes);
}

/* the token of the record `id` of q's disk part (NULL: none, e.g. replayed);
 * ids are taken in order, each once */
static void *tok_take(kqueue *q, uint64_t id) {
    while (q->tok_n) {
        tokrun *h = &q->toks[q->tok_head];
        if (id < h->first) return NULL;
        if (id - h->first >= h->n) { /* behind us (cannot happen: ids come in order) */
            q->tok_head++, q->tok_n--;
            continue;
        }
        void *tok = h->token;
        h->n -= id - h->first + 1;
        h->first = id + 1;
        if (!h->n) q->tok_head++, q->tok_n--;
        if (!q->tok_n) q->tok_head = 0;
        return tok;
    }
    return NULL;
}

/* room for one more token run (so tok_put cannot fail) */
static bool tok_reserve(kqueue *q) {
    if (q->tok_head + q->tok_n == q->tok_cap) {
        if (q->tok_head) { /* slide down */
            memmove(q->toks, q->toks + q->tok_head, q->tok_n * sizeof *q->toks);
            q->tok_head = 0;
        }
        if (q->tok_n == q->tok_cap) {
            size_t cap = q->tok_cap ? 2 * q->tok_cap : 16;
            tokrun *n = realloc(q->toks, cap * sizeof *n);
            if (!n) return false;
            q->toks = n;
            q->tok_cap = cap;
        }
    }
    return true;
}

/* remembers the token of the record `id` just written to q's disk part
 * (after tok_reserve) */
static void tok_put(kqueue *q, uint64_t id, void *token) {
    if (!token) return;
    if (q->tok_n) {
        tokrun *t = &q->toks[q->tok_head + q->tok_n - 1];
        if (t->token == token && t->first + t->n == id) { /* same rule: one run */
            t->n++;
            return;
        }
    }
    q->toks[q->tok_head + q->tok_n++] = (tokrun){id, 1, token};
}

/* -- sending -- */

static ec_status hand_off(kaction *k, krec *r, ec_error *err);

static _Thread_local arena scratch;
static _Thread_local bool scratch_ready;

ec_status kaction_send(kaction *k, const value *ctx, void *token, ec_error *err) {
    atomic_fetch_add(&k->m.matched, 1);
    if (!scratch_ready) {
        arena_init(&scratch, 16384);
        scratch_ready = true;
    }
    arena *a = &scratch;
    ec_status st = EC_OK;
    ec_buf tb, kb, vb;
    buf_init_arena(&tb, a);
    buf_init_arena(&kb, a);
    buf_init_arena(&vb, a);
    kh_pair *hp = NULL;
    uint32_t nh = 0;
    if (!k->fixed_topic &&
        (st = tmpl_render_strict(k->topic_t, ctx, TMPL_DECODE_ONCE, a, &tb, err)))
        goto failed;
    if (!tmpl_render(k->key_t, ctx, TMPL_DECODE_EVERY, false, a, &kb) ||
        !tmpl_render(k->val_t, ctx, TMPL_DECODE_EVERY, false, a, &vb)) {
        st = ec_fail(err, EC_ENOMEM, "out of memory rendering the record");
        goto failed;
    }
    int64_t ts = tmpl_render_timestamp(k->ts_t, ctx, a);
    if (k->hdrs && (st = kh_render(k->hdrs, ctx, a, &hp, &nh, err))) goto failed;
    if (!k->fixed_topic && (tb.len == 0 || tb.len > 249)) {
        st = ec_fail(err, EC_EINVAL, "bad_topic: the topic renders to %zu bytes", tb.len);
        goto failed;
    }
    size_t hbytes = 0, hl[2 * 256];
    if (nh > 256) nh = 256;
    for (uint32_t i = 0; i < nh; i++) {
        hl[2 * i] = hp[i].klen;
        hl[2 * i + 1] = hp[i].vlen;
        hbytes += hp[i].klen + hp[i].vlen;
    }
    krec *r = malloc(sizeof *r + kb.len + vb.len + hbytes + nh * sizeof(kprod_header));
    if (!r) {
        st = ec_fail(err, EC_ENOMEM, "out of memory buffering the record");
        goto failed;
    }
    char *d = r->data;
    r->hdrs = (kprod_header *)d;
    d += nh * sizeof(kprod_header);
    r->key = d;
    if (kb.len) memcpy(d, kb.p, kb.len);
    d += kb.len;
    r->val = d;
    if (vb.len) memcpy(d, vb.p, vb.len);
    d += vb.len;
    for (uint32_t i = 0; i < nh; i++) {
        memcpy(d, hp[i].k, hp[i].klen);
        r->hdrs[i].key = d;
        r->hdrs[i].key_len = hp[i].klen;
        d += hp[i].klen;
        memcpy(d, hp[i].v, hp[i].vlen);
        r->hdrs[i].val = d;
        r->hdrs[i].val_len = hp[i].vlen;
        d += hp[i].vlen;
    }
    r->klen = (uint32_t)kb.len;
    r->vlen = (uint32_t)vb.len;
    r->nh = nh;
    r->ts = ts;
    r->token = token;
    r->est = (uint32_t)kaction_estimate_size(kb.len, vb.len, hl, nh);
    r->dq_id = DQ_NONE;
    r->replayed = false;
    r->born_ms = k->max_age_ms ? now_ms() : 0;
    krec *dropped = NULL;
    pthread_mutex_lock(&k->mu);
    ktopic *t = k->fixed_topic ? k->fixed : topic_get(k, tb.p, tb.len);
    if (!t) {
        pthread_mutex_unlock(&k->mu);
        r->token = NULL;
        finish(k, r, "too many topics", -1, -1); /* off the disk again */
        st = ec_fail(err, EC_ELIMIT, "too many distinct topics for one action (%d)",
                     KACTION_MAX_TOPICS);
        goto failed;
    }
    if (t->count == 0 && now_ms() < t->next_refresh_ms) { /* known unknown topic (cached) */
        pthread_mutex_unlock(&k->mu);
        r->token = NULL;
        finish(k, r, "unknown topic", -1, -1);
        st = ec_fail(err, EC_EINVAL, "resolved_to_unknown_topic: %s", t->name);
        goto failed;
    }
    r->topic = t;
    kqueue *q;
    if (t->count > 0) {
        r->partition = pick(k, r, t->count);
        q = t->parts[r->partition];
    } else {
        r->partition = -1;
        q = &t->pending;
    }
    if (to_disk(k, t, q, r->est)) { /* the pump writes it */
        q->spilled = true;
        stage_push(q, r);
        atomic_fetch_add(&k->m.queuing, 1);
        atomic_fetch_add(&k->m.queuing_bytes, r->est);
        /* senders outrunning the disk writer: RAM stays bounded, the oldest
         * records not written yet go (the older ones on disk cannot be
         * reached from here) */
        uint64_t cap = k->per_partition_limit > STAGE_MAX ? k->per_partition_limit : STAGE_MAX;
        while (q->stage_bytes > cap && q->stage != r) {
            krec *o = q->stage;
            q->stage = o->next;
            q->stage_bytes -= o->est;
            q->bytes -= o->est;
            atomic_fetch_sub(&k->m.queuing, 1);
            atomic_fetch_sub(&k->m.queuing_bytes, o->est);
            o->next = dropped;
            dropped = o;
        }
        wake_pump(k);
        pthread_mutex_unlock(&k->mu);
        answer_dropped(k, dropped);
        arena_reset(a);
        return EC_OK;
    }
    if (t->count > 0 && !q->head && window_room(k, q, r->est)) {
        /* fast path: nothing buffered ahead of it and room in the window:
         * hand it to librdkafka from this thread (non-blocking) */
        window_take(q, r);
        pthread_mutex_unlock(&k->mu);
        ec_error herr;
        if (hand_off(k, r, &herr) == EC_OK) {
            arena_reset(a);
            return EC_OK;
        }
        /* refused: buffer it after all; the pump retries it or fails it */
        pthread_mutex_lock(&k->mu);
        window_give(r);
    }
    q_push(q, r);
    atomic_fetch_add(&k->m.queuing, 1);
    atomic_fetch_add(&k->m.queuing_bytes, r->est);
    enforce_limit(k, q, r->est, &dropped);
    wake_pump(k);
    pthread_mutex_unlock(&k->mu);
    answer_dropped(k, dropped);
    arena_reset(a);
    return EC_OK;
failed:
    atomic_fetch_add(&k->m.failed, 1);
    arena_reset(a);
    return st;
}

/* Hands one record to librdkafka (no lock held). Not EC_OK: librdkafka did
 * not take it (kprod_send's codes say whether for now or for good); the
 * caller keeps the record. */
static ec_status hand_off(kaction *k, krec *r, ec_error *err) {
    kprod_record rec = {.topic = r->topic->name,
                        .partition = r->partition,
                        .key = r->klen ? r->key : NULL, /* empty -> Kafka NULL */
                        .key_len = r->klen,
                        .value = r->vlen ? r->val : NULL,
                        .value_len = r->vlen,
                        .headers = r->hdrs,
                        .n_headers = r->nh,
                        .timestamp_ms = r->ts,
                        .opaque = r,
                        .borrow_value = true};
    ec_status st = kprod_send(k->p, &rec, err);
    if (st == EC_OK) atomic_fetch_add(&k->m.inflight, 1);
    return st;
}

/* -- delivery reports (librdkafka poll thread) -- */

static void on_delivery(void *ctx, void *opaque, const ec_error *err, int32_t partition,
                        int64_t offset) {
    kaction *k = ctx;
    krec *r = opaque;
    /* no lock: the window shrinks atomically; the pump is woken only when it
     * sleeps while records wait (it re-checks the windows after announcing
     * its sleep, so one of the two always sees the other) */
    window_give(r);
    if (atomic_load(&k->pump_idle) && atomic_load(&k->m.queuing) > 0) {
        pthread_mutex_lock(&k->mu);
        wake_pump(k);
        pthread_mutex_unlock(&k->mu);
    }
    atomic_fetch_sub(&k->m.inflight, 1);
    if (err && err->code == EC_EEXPIRED) { /* max_batch_age inside librdkafka */
        atomic_fetch_add(&k->m.dropped, 1);
        atomic_fetch_add(&k->m.dropped_expired, 1);
    } else if (err && !atomic_load(&k->closing))
        atomic_fetch_add(&k->m.failed, 1);
    else if (!err && !r->replayed)
        atomic_fetch_add(&k->m.success, 1);
    finish(k, r, err ? err->msg : NULL, partition, offset);
}

/* -- the pump -- */

/* -- the pump's disk work (k->dmu held; k->mu taken for the shared parts) -- */

/* opens q's disk part on first use: the pending queue in the action's
 * directory itself, partition i in p<i>/ */
static ec_status dq_open(kaction *k, kqueue *q, ec_error *err) {
    if (q->dq) return EC_OK;
    char path[4096];
    if (q->index < 0)
        snprintf(path, sizeof path, "%s", k->dir);
    else
        snprintf(path, sizeof path, "%s/p%d", k->dir, q->index);
    segq_report rep;
    ec_status st = segq_open(path, k->seg_bytes, DISK_FSYNC_MS, &q->dq, &rep, err);
    q->replay_end = 0;
    if (st == EC_OK && rep.pending) { /* only at start (kaction_new) can it hold records */
        segq_close(q->dq);
        q->dq = NULL;
        return ec_fail(err, EC_ESTATE, "%s holds records not read at start", path);
    }
    return st;
}

/* the oldest record of q's disk part, read ahead into q->peek (NULL: none,
 * or an I/O error, tried again at the next turn); a record that cannot be
 * read back fails */
static krec *dq_load(kaction *k, ktopic *t, kqueue *q) {
    while (!q->peek && q->dq_n) {
        const void *d;
        uint32_t n;
        uint64_t id;
        ec_error err;
        int got = segq_next(q->dq, &d, &n, &id, &err);
        if (got != 1) {
            if (got < 0) fprintf(stderr, "emqx_confluent: disk buffer: %s\n", err.msg);
            return NULL;
        }
        q->dq_n--;
        if (q->cn && id == q->cfirst) { /* its RAM copy */
            krec *r = q->ch;
            q->ch = r->next;
            q->cfirst++;
            if (!--q->cn) q->ct = NULL;
            k->cache_bytes -= r->est;
            q->peek = r;
            break;
        }
        void *tok = tok_take(q, id);
        drec dr;
        bool ok = decode(d, n, &dr);
        krec *r = ok ? unpersist(&dr) : NULL;
        if (!r) { /* taken out of the buffer as failed */
            segq_ack(q->dq, id, &err);
            pthread_mutex_lock(&k->mu);
            q->bytes -= ok ? dr.est : 0;
            pthread_mutex_unlock(&k->mu);
            atomic_fetch_sub(&k->m.queuing, 1);
            atomic_fetch_sub(&k->m.queuing_bytes, ok ? dr.est : 0);
            atomic_fetch_add(&k->m.failed, 1);
            if (tok && k->reply) k->reply(k->reply_ctx, tok, "unreadable_disk_record", -1, -1);
            continue;
        }
        r->dq_id = id;
        r->token = tok;
        r->replayed = r->replayed || id < q->replay_end;
        r->q = q;
        r->topic = t;
        r->partition = q->index;
        if (!r->born_ms && k->max_age_ms) r->born_ms = now_ms(); /* written without one */
        q->peek = r;
    }
    return q->peek;
}

/* q's read-ahead disk record taken out of the buffer for good */
static krec *take_peek(kaction *k, kqueue *q) {
    krec *r = q->peek;
    q->peek = NULL;
    pthread_mutex_lock(&k->mu);
    q->bytes -= r->est;
    pthread_mutex_unlock(&k->mu);
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, r->est);
    return r;
}

/* the oldest buffered record of q (RAM list, then disk), taken out of the
 * buffer for good; NULL when q holds none */
static krec *take_head(kaction *k, ktopic *t, kqueue *q) {
    pthread_mutex_lock(&k->mu);
    krec *r = q->head ? q_pop(q) : NULL;
    pthread_mutex_unlock(&k->mu);
    if (r) {
        atomic_fetch_sub(&k->m.queuing, 1);
        atomic_fetch_sub(&k->m.queuing_bytes, r->est);
        return r;
    }
    return dq_load(k, t, q) ? take_peek(k, q) : NULL;
}

/* the estimate of q's oldest buffered record (0: none) */
static uint32_t head_est(kaction *k, ktopic *t, kqueue *q) {
    pthread_mutex_lock(&k->mu);
    uint32_t e = q->head ? q->head->est : 0;
    pthread_mutex_unlock(&k->mu);
    if (!e && dq_load(k, t, q)) e = q->peek->est;
    return e;
}

/* per_partition_limit after a record was added with `cur` bytes buffered
 * (sink-behaviour.md §6.2, as enforce_limit does for RAM) */
static void disk_limit(kaction *k, ktopic *t, kqueue *q, uint64_t *cur, krec **dropped) {
    if (*cur <= k->per_partition_limit) return;
    uint64_t excess = *cur - k->per_partition_limit, removed = 0;
    for (;;) {
        krec *r = take_head(k, t, q); /* at least one */
        if (!r) return;
        removed += r->est;
        *cur -= r->est;
        if (r->dq_id != DQ_NONE) { /* acknowledged now: merges into one entry */
            ec_error err;
            segq_ack(q->dq, r->dq_id, &err);
            r->dq_id = DQ_NONE;
        }
        r->next = *dropped;
        *dropped = r;
        uint32_t e = head_est(k, t, q);
        if (!e || removed + e > excess) return;
    }
}

/* the outcomes of one turn of disk work, answered without locks */
typedef struct dq_out {
    krec *dropped, *expired, *lost, *failed;
    char failed_why[EC_ERRMSG_MAX];
} dq_out;

/* whether q's partition can be sent to now */
static bool usable(const ktopic *t, const kqueue *q) {
    return q->index >= 0 && t->count > 0 && q->index < t->count;
}

/* Writes r (staged for q, or moved there from the pending queue) to q's disk
 * part, or hands it out at once when nothing is ahead of it and the window
 * has room (into batch). *cur: q's buffered bytes before r. */
static void dq_write(kaction *k, ktopic *t, kqueue *q, krec *r, uint64_t *cur, krec **batch,
                     int *nb, dq_out *out) {
    ec_error err;
    uint32_t n;
    const uint8_t *b = encode(k, r, &n);
    ec_status st = b ? dq_open(k, q, &err) : ec_fail(&err, EC_ENOMEM, "out of memory");
    pthread_mutex_lock(&k->mu);
    bool ahead = q->head != NULL;
    pthread_mutex_unlock(&k->mu);
    bool direct = !st && !ahead && !q->peek && !q->dq_n && usable(t, q) && *nb < PUMP_BATCH &&
                  window_room(k, q, r->est);
    uint64_t id = 0;
    if (!st && !direct && !tok_reserve(q)) st = ec_fail(&err, EC_ENOMEM, "out of memory");
    if (!st)
        st = direct ? segq_append_out(q->dq, b, n, &id, &err) : segq_append(q->dq, b, n, &id, &err);
    if (st) { /* a full disk: this record fails */
        pthread_mutex_lock(&k->mu);
        q->bytes -= r->est;
        pthread_mutex_unlock(&k->mu);
        atomic_fetch_sub(&k->m.queuing, 1);
        atomic_fetch_sub(&k->m.queuing_bytes, r->est);
        snprintf(out->failed_why, sizeof out->failed_why, "disk_buffer_error: %s", err.msg);
        r->next = out->failed;
        out->failed = r;
        return;
    }
    if (direct) {
        r->dq_id = id;
        r->q = q;
        window_take(q, r);
        batch[(*nb)++] = r;
        pthread_mutex_lock(&k->mu);
        q->bytes -= r->est;
        pthread_mutex_unlock(&k->mu);
        return;
    }
    /* kept in RAM too while it is the next to read (nothing unread on disk
     * before it but cached records) and the cache has room: read back
     * without reading or decoding */
    bool next = q->cn ? q->cfirst + q->cn == id && q->dq_n == q->cn : !q->dq_n;
    q->dq_n++;
    *cur += r->est;
    if (next && k->cache_bytes + r->est <= CACHE_MAX) {
        r->dq_id = id;
        r->q = q;
        r->next = NULL;
        if (q->cn++)
            q->ct->next = r;
        else
            q->ch = r, q->cfirst = id;
        q->ct = r;
        k->cache_bytes += r->est;
    } else {
        tok_put(q, id, r->token);
        free(r);
    }
    disk_limit(k, t, q, cur, &out->dropped);
}

/* One turn of disk work for q: staged records written (the pending queue's
 * moved to their partitions once the count is known), stale ones expired,
 * a lost partition emptied, and records read back into batch while the
 * window has room. */
static void dq_turn(kaction *k, ktopic *t, kqueue *q, int64_t now, krec **batch, int *nb,
                    dq_out *out) {
    pthread_mutex_lock(&k->mu);
    krec *staged = q->stage;
    q->stage = q->stage_tail = NULL;
    uint64_t cur = q->bytes - q->stage_bytes;
    q->stage_bytes = 0;
    pthread_mutex_unlock(&k->mu);
    if (q->index < 0 && t->count > 0) { /* pending: every record to its partition, in order */
        krec *r;
        while ((r = dq_load(k, t, q)) || (r = staged)) {
            if (r == q->peek)
                q->peek = NULL;
            else
                staged = r->next;
            int32_t p = pick(k, r, t->count);
            kqueue *pq = t->parts[p];
            pthread_mutex_lock(&k->mu);
            q->bytes -= r->est;
            pq->bytes += r->est;
            pq->spilled = true;
            uint64_t pcur = pq->bytes - pq->stage_bytes - r->est;
            pthread_mutex_unlock(&k->mu);
            uint64_t old = r->dq_id;
            r->dq_id = DQ_NONE;
            r->partition = p;
            dq_write(k, t, pq, r, &pcur, batch, nb, out); /* before it leaves pending */
            if (old != DQ_NONE) {
                ec_error err;
                segq_ack(q->dq, old, &err);
            }
        }
        pthread_mutex_lock(&k->mu);
        if (!q->stage) q->spilled = false;
        pthread_mutex_unlock(&k->mu);
        return;
    }
    while (staged) {
        krec *r = staged;
        staged = r->next;
        dq_write(k, t, q, r, &cur, batch, nb, out);
    }
    if (q->index >= 0 && t->count > 0 && q->index >= t->count) { /* the partition is gone */
        krec *r;
        while ((r = take_head(k, t, q))) {
            r->next = out->lost;
            out->lost = r;
        }
    }
    if (k->max_age_ms) {
        krec *r;
        while ((r = dq_load(k, t, q)) && now - r->born_ms > k->max_age_ms) {
            r = take_peek(k, q);
            r->next = out->expired;
            out->expired = r;
        }
    }
    pthread_mutex_lock(&k->mu);
    bool ram = q->head != NULL;
    pthread_mutex_unlock(&k->mu);
    krec *r;
    while (!ram && usable(t, q) && *nb < PUMP_BATCH && (r = dq_load(k, t, q)) &&
           window_room(k, q, r->est)) {
        q->peek = NULL;
        window_take(q, r);
        batch[(*nb)++] = r;
        pthread_mutex_lock(&k->mu);
        q->bytes -= r->est;
        pthread_mutex_unlock(&k->mu);
    }
    pthread_mutex_lock(&k->mu);
    if (!q->peek && !q->dq_n && !q->stage) q->spilled = false;
    pthread_mutex_unlock(&k->mu);
}

/* whether q has disk work: staged records, or records on disk */
static bool has_disk_work(const kqueue *q) {
    return q->stage || q->peek || q->dq_n;
}

/* fail every record of q (caller holds the lock; answers after unlocking) */
static void drain_all(kaction *k, kqueue *q, krec **out) {
    while (q->head)
        q_take(k, q, out);
}

/* The metadata thread: asks Kafka for the partition count of each topic
 * the pump marked META_ASKED (a request blocks up to the metadata timeout
 * while Kafka is unreachable; the pump goes on meanwhile, writing and
 * sending) and leaves the answer for the pump to apply. */
static void *meta_main(void *arg) {
    kaction *k = arg;
    pthread_setname_np(pthread_self(), "ec_meta");
    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        ktopic *t = k->topics;
        while (t && t->meta != META_ASKED)
            t = t->next;
        if (!t) {
            pthread_cond_wait(&k->meta_cv, &k->mu);
            continue;
        }
        pthread_mutex_unlock(&k->mu);
        ec_error err;
        int32_t n = atomic_load(&k->forced_count);
        if (n == INT32_MIN) n = kprod_partition_count(k->p, t->name, k->metadata_timeout_ms, &err);
        pthread_mutex_lock(&k->mu);
        t->meta_n = n;
        t->meta = META_DONE;
        wake_pump(k);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* applies the partition count n of t (the metadata thread's answer); called
 * by the pump without the lock */
static void refresh_topic(kaction *k, ktopic *t, int32_t n) {
    if (n > 0 && k->partitions_limit > 0 && n > k->partitions_limit) n = k->partitions_limit;
    krec *failed = NULL, *lost = NULL, *dropped = NULL;
    pthread_mutex_lock(&k->mu);
    int64_t now = now_ms();
    if (n < 0) { /* Kafka unreachable: keep buffering, ask again soon */
        t->next_refresh_ms = now + UNRESOLVED_RETRY_MS;
    } else if (n == 0 && t == k->fixed && t->count > 0) {
        /* the fixed topic reported unknown after it was known: metadata can
         * give false negatives and a re-created topic comes back, so (as
         * EMQX keeps its producers) keep buffering and ask again soon */
        t->next_refresh_ms = now + UNRESOLVED_RETRY_MS;
    } else if (n == 0) {
        t->count = 0;
        t->next_refresh_ms = now + UNKNOWN_TOPIC_RETRY_MS;
        drain_all(k, &t->pending, &failed);
        for (int32_t i = 0; i < t->cap; i++)
            drain_all(k, t->parts[i], &failed);
    } else if (grow_parts(t, n)) {
        for (int32_t i = n; i < t->cap; i++) /* their disk parts: dq_turn */
            drain_all(k, t->parts[i], &lost);
        t->count = n;
        t->next_refresh_ms = k->refresh_ms ? now + (int64_t)k->refresh_ms : INT64_MAX;
        krec *r;
        while ((r = q_pop(&t->pending))) { /* partitions for what waited */
            r->partition = pick(k, r, n);
            q_push(t->parts[r->partition], r);
            enforce_limit(k, t->parts[r->partition], r->est, &dropped);
        }
    }
    pthread_mutex_unlock(&k->mu);
    char why[300];
    snprintf(why, sizeof why, "resolved_to_unknown_topic: %s", t->name);
    answer_all(k, failed, why, &k->m.failed, NULL);
    answer_all(k, lost, "partition_lost", &k->m.failed, NULL);
    answer_dropped(k, dropped);
}

/* max_batch_age: takes records buffered longer than that from the heads of
 * q (oldest first) onto *out (k->mu held) */
static void expire_queue(kaction *k, kqueue *q, int64_t now, krec **out) {
    while (q->head && now - q->head->born_ms > k->max_age_ms)
        q_take(k, q, out);
}

/* whether the pump has work now (k->mu held): a partition with buffered
 * records and window room, or records staged for the disk */
static bool sendable(kaction *k) {
    for (ktopic *t = k->topics; t; t = t->next) {
        if (t->pending.stage) return true;
        for (int32_t p = 0; p < t->cap; p++) {
            kqueue *q = t->parts[p];
            if (q->stage) return true;
            if (p >= t->count) continue;
            uint32_t e = q->head ? q->head->est : q->peek ? q->peek->est : q->dq_n ? 1 : 0;
            if (e && window_room(k, q, e)) return true;
        }
    }
    return false;
}

/* Hands a batch taken into the windows to librdkafka (no lock held). What
 * librdkafka refuses for now (its queue is full; its metadata lacks the topic
 * or partition) goes to keep[] in batch order, and with it every later record
 * of the same partition, so order holds; what it refuses for good fails here.
 * Returns how many were kept; *behind: a topic to ask metadata for soon. */
static int hand_off_batch(kaction *k, krec **batch, int nb, krec **keep, ktopic **behind) {
    kqueue *blocked[8]; /* partitions with a refused record in this batch */
    int nk = 0, nblocked = 0;
    bool full = false; /* everything else waits too */
    for (int i = 0; i < nb; i++) {
        krec *r = batch[i];
        bool held = full;
        for (int j = 0; j < nblocked && !held; j++)
            held = blocked[j] == r->q;
        ec_error herr;
        uint32_t est = r->est; /* once handed off, r may be delivered and freed at once */
        ec_status st = held ? EC_ELIMIT : hand_off(k, r, &herr);
        if (st == EC_ELIMIT || st == EC_ESTATE) {
            keep[nk++] = r;
            if (held) continue;
            if (st == EC_ESTATE) *behind = r->topic;
            if (st == EC_ESTATE && nblocked < 8)
                blocked[nblocked++] = r->q; /* other partitions go on */
            else
                full = true;
            continue;
        }
        atomic_fetch_sub(&k->m.queuing, 1);
        atomic_fetch_sub(&k->m.queuing_bytes, est);
        if (st != EC_OK) { /* refused for good (e.g. message_too_large) */
            window_give(r);
            atomic_fetch_add(&k->m.failed, 1);
            finish(k, r, herr.msg, -1, -1);
        }
    }
    return nk;
}

/* The pump's disk work for every queue (no lock held): see dq_turn; and
 * in disk mode what was written made durable every DISK_FSYNC_MS. */
static void disk_work(kaction *k, int64_t now, krec **batch, int *nb) {
    dq_out out = {0};
    pthread_mutex_lock(&k->mu);
    ktopic *topics = k->topics; /* entries are only added in front, freed by destroy */
    pthread_mutex_unlock(&k->mu);
    pthread_mutex_lock(&k->dmu);
    for (ktopic *t = topics; t; t = t->next) {
        /* the pending queue first: its records go ahead of their partitions' */
        for (int32_t p = -1; p < t->cap; p++) {
            kqueue *q = p < 0 ? &t->pending : t->parts[p];
            pthread_mutex_lock(&k->mu);
            bool work = has_disk_work(q);
            pthread_mutex_unlock(&k->mu);
            if (work) dq_turn(k, t, q, now, batch, nb, &out);
            if (k->mode == KCONF_BUF_DISK && q->dq) {
                ec_error err;
                if (segq_maybe_sync(q->dq, (uint64_t)now, &err))
                    fprintf(stderr, "emqx_confluent: disk buffer: %s\n", err.msg);
            }
        }
    }
    pthread_mutex_unlock(&k->dmu);
    answer_dropped(k, out.dropped);
    answer_all(k, out.expired, KPROD_ERR_EXPIRED, &k->m.dropped, &k->m.dropped_expired);
    answer_all(k, out.lost, "partition_lost", &k->m.failed, NULL);
    answer_all(k, out.failed, out.failed_why, &k->m.failed, NULL);
}

static void *pump_main(void *arg) {
    kaction *k = arg;
    pthread_setname_np(pthread_self(), "ec_pump");
    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        int64_t now = now_ms();
        if (k->overload_protection && now >= k->next_mem_check_ms) {
            int used = mem_used_pct();
            atomic_store(&k->high_mem, used >= 0 && used >= high_watermark_pct());
            k->next_mem_check_ms = now + 1000;
        }
        if (k->max_age_ms) { /* stale records leave the buffer (EMQX: dropped.expired) */
            krec *expired = NULL;
            for (ktopic *t = k->topics; t; t = t->next) {
                expire_queue(k, &t->pending, now, &expired);
                for (int32_t p = 0; p < t->cap; p++)
                    expire_queue(k, t->parts[p], now, &expired);
            }
            if (expired) {
                pthread_mutex_unlock(&k->mu);
                answer_all(k, expired, KPROD_ERR_EXPIRED, &k->m.dropped, &k->m.dropped_expired);
                pthread_mutex_lock(&k->mu);
            }
        }
        /* metadata first (without the lock) */
        for (ktopic *t = k->topics; t && !k->stop; t = t->next) {
            if (t->meta == META_DONE) {
                t->meta = META_IDLE;
                pthread_mutex_unlock(&k->mu);
                refresh_topic(k, t, t->meta_n);
                pthread_mutex_lock(&k->mu);
                continue;
            }
            bool due = t->meta == META_IDLE && now >= t->next_refresh_ms &&
                       (t->count != 0 || t->pending.bytes || k->fixed_topic);
            if (!due) continue;
            t->meta = META_ASKED;
            pthread_cond_signal(&k->meta_cv);
        }
        /* take a batch within each partition's window under the lock, hand it
         * to librdkafka without the lock (senders are never held up by it) */
        krec *batch[PUMP_BATCH];
        int nb = 0;
        for (ktopic *t = k->topics; t && nb < PUMP_BATCH; t = t->next) {
            for (int32_t p = 0; p < t->count && p < t->cap && nb < PUMP_BATCH; p++) {
                kqueue *q = t->parts[p];
                while (q->head && nb < PUMP_BATCH && window_room(k, q, q->head->est)) {
                    krec *r = q_pop(q);
                    window_take(q, r);
                    batch[nb++] = r;
                }
            }
        }
        if (k->dir) { /* disk work without k->mu (senders are never held up by file I/O) */
            pthread_mutex_unlock(&k->mu);
            disk_work(k, now, batch, &nb);
            pthread_mutex_lock(&k->mu);
        }
        bool stalled = false; /* librdkafka refused records for now: wait before retrying */
        if (nb) {
            pthread_mutex_unlock(&k->mu);
            krec *keep[PUMP_BATCH];
            ktopic *behind = NULL;
            int nk = hand_off_batch(k, batch, nb, keep, &behind);
            pthread_mutex_lock(&k->mu);
            if (behind && behind->next_refresh_ms > now + UNRESOLVED_RETRY_MS)
                behind->next_refresh_ms = now + UNRESOLVED_RETRY_MS; /* a shrink shows soon */
            for (int i = nk - 1; i >= 0; i--) { /* back to the heads, in order */
                krec *r = keep[i];
                kqueue *q = r->q;
                window_give(r);
                r->next = q->head;
                q->head = r;
                if (!q->tail) q->tail = r;
                q->bytes += r->est;
                q->ram_bytes += r->est;
            }
            if (!nk) continue; /* more may be waiting: no sleep */
            stalled = true;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += PUMP_IDLE_WAIT_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        atomic_store(&k->pump_idle, true);
        if (!stalled && sendable(k)) { /* a delivery made room before it saw pump_idle */
            atomic_store(&k->pump_idle, false);
            continue;
        }
        pthread_cond_timedwait(&k->cv, &k->mu, &until);
        atomic_store(&k->pump_idle, false);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* -- life cycle -- */

static void free_templates(kaction *k) {
    tmpl_free(k->topic_t);
    tmpl_free(k->key_t);
    tmpl_free(k->val_t);
    tmpl_free(k->ts_t);
    kh_free(k->hdrs);
}

/* Compiles the action's templates into k; on failure k holds what compiled. */
static ec_status compile_templates(kaction *k, const kconf_action *act, ec_error *err) {
    ec_status st;
    if ((st = tmpl_compile(TMPL_NEW, act->topic, strlen(act->topic), &k->topic_t, err)) ||
        (st = tmpl_compile(TMPL_LEGACY, act->key, strlen(act->key), &k->key_t, err)) ||
        (st = tmpl_compile(TMPL_LEGACY, act->val, strlen(act->val), &k->val_t, err)) ||
        (st = tmpl_compile(TMPL_LEGACY, act->timestamp, strlen(act->timestamp), &k->ts_t, err)))
        return st;
    if (!act->kafka_headers && !act->n_ext) return EC_OK;
    size_t lens[2 * 64];
    if (act->n_ext > 64)
        return ec_fail(err, EC_ELIMIT, "parameters.kafka_ext_headers: at most 64 headers");
    for (uint32_t i = 0; i < 2 * act->n_ext; i++)
        lens[i] = strlen(act->ext_headers[i]);
    st = kh_compile(act->kafka_headers, act->kafka_headers ? strlen(act->kafka_headers) : 0,
                    act->ext_headers, lens, act->n_ext, act->header_json, &k->hdrs, err);
    if (st && err) { /* the field path within the action */
        char msg[EC_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "parameters.%s", err->msg);
        memcpy(err->msg, msg, sizeof msg);
    }
    return st;
}

ec_status kaction_check(const kconf_action *act, ec_error *err) {
    kaction k;
    memset(&k, 0, sizeof k);
    ec_status st = compile_templates(&k, act, err);
    free_templates(&k);
    return st;
}

/* -- disk buffer at start -- */

typedef struct scan_sum {
    uint64_t n, est;
} scan_sum;

static void scan_one(void *ctx, const void *data, uint32_t len) {
    scan_sum *s = ctx;
    drec d;
    s->n++;
    if (decode(data, len, &d)) s->est += d.est;
}

/* opens the queue of dir (partition `index`, -1: pending) with what it holds */
static ec_status replay_queue(kaction *k, kqueue *q, const char *dir, ec_error *err) {
    segq_report rep;
    ec_status st = segq_open(dir, k->seg_bytes, DISK_FSYNC_MS, &q->dq, &rep, err);
    if (st) return st;
    if (rep.skipped_bytes || rep.commit_unreadable)
        fprintf(stderr,
                "emqx_confluent: disk buffer %s: %llu bytes of torn or corrupt records skipped in "
                "%u segment(s)%s\n",
                dir, (unsigned long long)rep.skipped_bytes, rep.bad_segments,
                rep.commit_unreadable ? "; commit marker unreadable, replaying everything" : "");
    scan_sum sum = {0, 0};
    if (segq_scan(q->dq, scan_one, &sum, err) < 0) return EC_EINVAL;
    q->dq_n = q->replay_end = sum.n;
    q->bytes += sum.est;
    atomic_fetch_add(&k->m.queuing, (int64_t)sum.n);
    atomic_fetch_add(&k->m.queuing_bytes, (int64_t)sum.est);
    k->replayed += sum.n;
    k->skipped_bytes += rep.skipped_bytes;
    return EC_OK;
}

/* Disk mode at start: the topic's pending queue (the directory itself) and
 * every partition queue (p<N>/) are opened; what they hold is sent again
 * once the partition count is known (records of partitions that no longer
 * exist fail as partition_lost). */
static ec_status replay_all(kaction *k, ktopic *t, ec_error *err) {
    if (mkdir(k->dir, 0700) != 0 && errno != EEXIST)
        return ec_fail(err, EC_EINVAL, "cannot create %s: %s", k->dir, strerror(errno));
    ec_status st = replay_queue(k, &t->pending, k->dir, err);
    DIR *d = opendir(k->dir);
    if (!d) return st ? st : ec_fail(err, EC_EINVAL, "cannot list %s: %s", k->dir, strerror(errno));
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        char *end;
        long n = e->d_name[0] == 'p' ? strtol(e->d_name + 1, &end, 10) : -1;
        if (n < 0 || n >= 1000000 || end == e->d_name + 1 || *end) continue;
        if (!grow_parts(t, (int32_t)n + 1)) {
            st = ec_fail(err, EC_ENOMEM, "out of memory");
            break;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", k->dir, e->d_name);
        st = replay_queue(k, t->parts[n], path, err);
    }
    closedir(d);
    return st;
}

/* removes the segment files and markers of a buffer directory (hybrid mode
 * starts empty) */
static void wipe_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strcmp(e->d_name, "commit") && (n < 4 || strcmp(e->d_name + n - 4, ".seg"))) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static ec_status wipe_buffer(const char *dir, ec_error *err) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ec_fail(err, EC_EINVAL, "cannot create %s: %s", dir, strerror(errno));
    wipe_files(dir);
    DIR *d = opendir(dir);
    if (!d) return EC_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] != 'p') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        wipe_files(path);
    }
    closedir(d);
    return EC_OK;
}

/* stops the metadata thread (waits for a request under way) */
static void stop_meta(kaction *k) {
    if (!k->meta_started) return;
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->meta_cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->meta, NULL);
    k->meta_started = false;
}

/* frees an action whose pump is not running (or stopped): topics, queues,
 * disk parts (closed: what is on them stays), templates */
static void free_action(kaction *k) {
    for (ktopic *t = k->topics; t;) {
        for (int32_t i = -1; i < t->cap; i++) {
            kqueue *q = i < 0 ? &t->pending : t->parts[i];
            segq_close(q->dq);
            free(q->peek);
            for (krec *r = q->ch, *n; r; r = n)
                n = r->next, free(r);
            free(q->toks);
            if (i >= 0) free(q);
        }
        ktopic *n = t->next;
        free(t->parts);
        free(t->name);
        free(t);
        t = n;
    }
    free_templates(k);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    pthread_cond_destroy(&k->meta_cv);
    pthread_mutex_destroy(&k->dmu);
    free(k->dir);
    free(k->enc);
    free(k);
}

ec_status kaction_new(const kconf_connector *conn, const kconf_action *act, kaction_reply_fn reply,
                      void *reply_ctx, kaction **out, ec_error *err) {
    kaction *k = zalloc64(sizeof *k);
    if (!k) return ec_fail(err, EC_ENOMEM, "out of memory creating the action");
    ec_status st;
    if ((st = compile_templates(k, act, err))) {
        free_templates(k);
        free(k);
        return st;
    }
    k->fixed_topic = tmpl_is_literal(k->topic_t);
    k->strategy = act->strategy;
    k->partitions_limit = act->partitions_limit;
    k->per_partition_limit = act->per_partition_limit;
    k->window = (uint64_t)act->max_inflight * act->max_batch_bytes;
    k->max_age_ms = (int64_t)act->max_batch_age_ms;
    k->refresh_ms = act->partition_count_refresh_s * 1000;
    atomic_init(&k->forced_count, INT32_MIN);
    k->sync = act->sync;
    /* EMQX applies it to the memory buffer only */
    k->overload_protection =
        act->memory_overload_protection && act->buffer_mode == KCONF_BUF_MEMORY;
    k->sync_timeout_ms = act->sync_timeout_ms;
    k->metadata_timeout_ms = (int)conn->metadata_request_timeout_ms;
    k->reply = reply;
    k->reply_ctx = reply_ctx;
    k->mode = act->buffer_mode;
    k->seg_bytes = act->segment_bytes;
    if (k->mode == KCONF_BUF_DISK && (!act->buffer_dir || !k->fixed_topic)) {
        free_templates(k);
        free(k);
        return ec_fail(err, EC_EINVAL,
                       !act->buffer_dir ? "parameters.buffer.mode: disk needs a buffer directory"
                                        : "parameters.buffer.mode: disk-mode buffering is "
                                          "disallowed when using dynamic topics");
    }
    if (k->mode == KCONF_BUF_HYBRID && !act->buffer_dir) k->mode = KCONF_BUF_MEMORY;
    if (k->mode != KCONF_BUF_MEMORY && !(k->dir = strdup(act->buffer_dir))) {
        free_templates(k);
        free(k);
        return ec_fail(err, EC_ENOMEM, "out of memory creating the action");
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    pthread_cond_init(&k->meta_cv, NULL);
    pthread_mutex_init(&k->dmu, NULL);
    if (k->fixed_topic) k->fixed = topic_get(k, act->topic, strlen(act->topic));
    if (k->fixed_topic && !k->fixed)
        st = ec_fail(err, EC_ENOMEM, "out of memory creating the action");
    else if (k->mode == KCONF_BUF_HYBRID)
        st = wipe_buffer(k->dir, err); /* hybrid promises nothing across a restart */
    else if (k->mode == KCONF_BUF_DISK)
        st = replay_all(k, k->fixed, err);
    arena a;
    arena_init(&a, 4096);
    kconf_props props;
    if (st || (st = kconf_producer_props(conn, act, &a, &props, err)) ||
        (st = kprod_new(props.kv, props.n, on_delivery, k, &k->p, err))) {
        arena_free(&a);
        free_action(k);
        return st;
    }
    arena_free(&a);
    k->meta_started = pthread_create(&k->meta, NULL, meta_main, k) == 0;
    if (!k->meta_started || pthread_create(&k->pump, NULL, pump_main, k) != 0) {
        stop_meta(k);
        kprod_destroy(k->p, 0);
        free_action(k);
        return ec_fail(err, EC_ENOMEM, "cannot start the action's threads");
    }
    *out = k;
    return EC_OK;
}

void kaction_test_partition_count(kaction *k, int32_t n) {
    atomic_store(&k->forced_count, n);
}

bool kaction_is_sync(const kaction *k, uint64_t *timeout_ms) {
    if (timeout_ms) *timeout_ms = k->sync_timeout_ms;
    return k->sync;
}

ec_status kaction_health(kaction *k, ec_error *err) {
    if (!k->fixed_topic) return kprod_ping(k->p, k->metadata_timeout_ms, err);
    int32_t n = kprod_partition_count(k->p, k->topic_t->src, k->metadata_timeout_ms, err);
    return n > 0 ? EC_OK : EC_EKAFKA;
}

void kaction_get_metrics(kaction *k, kaction_metrics *m) {
    memset(m, 0, sizeof *m);
    m->matched = atomic_load(&k->m.matched);
    m->success = atomic_load(&k->m.success);
    m->failed = atomic_load(&k->m.failed);
    m->dropped = atomic_load(&k->m.dropped);
    m->dropped_queue_full = atomic_load(&k->m.dropped_queue_full);
    m->dropped_resource_stopped = atomic_load(&k->m.dropped_resource_stopped);
    m->dropped_expired = atomic_load(&k->m.dropped_expired);
    m->queuing = atomic_load(&k->m.queuing);
    m->queuing_bytes = atomic_load(&k->m.queuing_bytes);
    m->inflight = atomic_load(&k->m.inflight);
    m->replayed = k->replayed;
    m->skipped_bytes = k->skipped_bytes;
}

void kaction_reset_metrics(kaction *k) { /* counters only; gauges keep their values */
    atomic_store(&k->m.matched, 0);
    atomic_store(&k->m.success, 0);
    atomic_store(&k->m.failed, 0);
    atomic_store(&k->m.dropped, 0);
    atomic_store(&k->m.dropped_queue_full, 0);
    atomic_store(&k->m.dropped_resource_stopped, 0);
    atomic_store(&k->m.dropped_expired, 0);
}

void kaction_destroy(kaction *k, int flush_ms) {
    if (!k) return;
    /* let the pump drain the buffers into librdkafka for up to flush_ms */
    int64_t deadline = now_ms() + flush_ms;
    while (atomic_load(&k->m.queuing) > 0 && now_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv); /* unconditionally: stop must be seen */
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->pump, NULL);
    stop_meta(k);
    int64_t left = deadline - now_ms();
    atomic_store(&k->closing, true); /* disk mode: what is not acknowledged stays on disk */
    kprod_destroy(k->p, left > 0 ? (int)left : 0); /* in-flight records get their reports */
    krec *rest = NULL;
    uint64_t ndisk = 0;
    for (ktopic *t = k->topics; t; t = t->next) {
        for (int32_t i = -1; i < t->cap; i++) {
            kqueue *q = i < 0 ? &t->pending : t->parts[i];
            drain_all(k, q, &rest);
            for (krec *r = q->stage, *n; r; r = n) { /* disk mode: kept for the next start */
                n = r->next;
                uint32_t len;
                const uint8_t *b = encode(k, r, &len);
                ec_error err;
                uint64_t id;
                if (k->mode == KCONF_BUF_DISK && b && dq_open(k, q, &err) == EC_OK)
                    segq_append(q->dq, b, len, &id, &err);
                r->next = rest;
                rest = r;
                atomic_fetch_sub(&k->m.queuing, 1);
                atomic_fetch_sub(&k->m.queuing_bytes, r->est);
            }
            q->stage = NULL;
            if (q->peek) {
                q->peek->next = rest;
                rest = q->peek;
                q->peek = NULL;
            }
            for (krec *r = q->ch, *n; r; r = n) { /* on disk too: kept for the next start */
                n = r->next;
                r->next = rest;
                rest = r;
            }
            q->ch = q->ct = NULL;
            q->cn = 0;
            for (size_t j = 0; j < q->tok_n; j++) { /* records on disk: their callers */
                tokrun *tr = &q->toks[q->tok_head + j];
                for (uint64_t c = 0; c < tr->n; c++)
                    if (k->reply) k->reply(k->reply_ctx, tr->token, "resource_stopped", -1, -1);
                ndisk += tr->n;
            }
            q->tok_n = 0;
        }
    }
    atomic_fetch_add(&k->m.dropped, ndisk);
    atomic_fetch_add(&k->m.dropped_resource_stopped, ndisk);
    answer_all(k, rest, "resource_stopped", &k->m.dropped, &k->m.dropped_resource_stopped);
    free_action(k); /* the disk parts closed: synced */
}
