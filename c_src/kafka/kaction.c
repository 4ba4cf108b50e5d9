/* kaction.c - the producer action runtime; see kaction.h. Senders render a
 * record and append it to its partition's queue; the RAM part of a queue is
 * a ring of records in their compact form (no allocation per record) behind
 * a list of records of their own (those librdkafka refused for now). The
 * pump thread hands records to librdkafka (which copies them), serves the
 * delivery reports and errors itself and keeps each partition's in-flight
 * window; the metadata thread asks partition counts; life cycle. The disk
 * part of the queues is kdisk.c; threads and locking in kaction_priv.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kaction_priv.h"

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

/* -- answering records -- */

/* a record with the id dq_id on q's disk part (DQ_NONE: none) reaches its
 * end: off the disk, unless the action is closing with it unsent (then it
 * is replayed at the next start) */
static void disk_done(kaction *k, kqueue *q, uint64_t dq_id, bool failed) {
    if (dq_id == DQ_NONE || (atomic_load(&k->closing) && failed)) return;
    ec_error err;
    pthread_mutex_lock(&k->dmu);
    segq_ack(q->dq, dq_id, &err);
    pthread_mutex_unlock(&k->dmu);
}

/* a record of its own reaches its end: off the disk (see disk_done), its
 * caller answered, freed */
static void finish(kaction *k, krec *r, const char *error, int32_t partition, int64_t offset) {
    disk_done(k, r->q, r->dq_id, error != NULL);
    if (r->token && k->reply) k->reply(k->reply_ctx, r->token, error, partition, offset);
    free(r);
}

/* Answers a chain of records taken out of the buffers (no lock held), each
 * counted in c1 and, when not NULL, c2. */
void ka_answer_all(kaction *k, krec *list, const char *why, _Atomic uint64_t *c1,
                   _Atomic uint64_t *c2) {
    while (list) {
        krec *n = list->next;
        atomic_fetch_add(c1, 1);
        if (c2) atomic_fetch_add(c2, 1);
        finish(k, list, why, -1, -1);
        list = n;
    }
}

void ka_answer_dropped(kaction *k, krec *list) {
    ka_answer_all(k, list, "buffer_overflow", &k->m.dropped, &k->m.dropped_queue_full);
}

/* Records taken out of a RAM part to be answered outside the lock: records
 * of their own on a chain, ring records as tokens. */
typedef struct ktaken {
    krec *list;
    ktoks toks;
} ktaken;

/* one ring record taken out; its token kept for the answer (when the token
 * array cannot grow, answered at once: why) */
static void toks_add(kaction *k, ktoks *t, void *token, const char *why) {
    t->count++;
    if (!token) return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        void **nv = realloc(t->v, cap * sizeof *nv);
        if (!nv) {
            if (k->reply) k->reply(k->reply_ctx, token, why, -1, -1);
            return;
        }
        t->v = nv;
        t->cap = cap;
    }
    t->v[t->n++] = token;
}

/* answers what was taken (no lock held), counted in c1 and c2 (when not
 * NULL); the token array is kept for the next time */
static void taken_answer(kaction *k, ktaken *t, const char *why, _Atomic uint64_t *c1,
                         _Atomic uint64_t *c2) {
    ka_answer_all(k, t->list, why, c1, c2);
    t->list = NULL;
    if (t->toks.count) {
        atomic_fetch_add(c1, t->toks.count);
        if (c2) atomic_fetch_add(c2, t->toks.count);
    }
    for (size_t i = 0; i < t->toks.n; i++)
        if (k->reply) k->reply(k->reply_ctx, t->toks.v[i], why, -1, -1);
    t->toks.n = 0;
    t->toks.count = 0;
}

static void taken_free(ktaken *t) {
    free(t->toks.v);
    t->toks.v = NULL;
    t->toks.cap = 0;
}

/* -- records in their compact form (the ring of a queue; kaction_priv.h) -- */

#define RF_TOKEN 1
#define RF_HDRS  2
#define MAX_HDRS 256

static uint64_t zz(int64_t v) {
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzz(uint64_t u) {
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* a - b and a + b without overflow (timestamps may be anything) */
static int64_t sub64(int64_t a, int64_t b) {
    return (int64_t)((uint64_t)a - (uint64_t)b);
}

static int64_t add64(int64_t a, int64_t b) {
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

/* Walks the n headers of a compact record (varint length, name, varint
 * length, value): their lengths into lens (2n) and, when out is not NULL,
 * their parts. False when the bytes do not hold them. */
static bool hdrs_walk(const uint8_t *p, const uint8_t *end, uint32_t n, size_t *lens,
                      kprod_header *out) {
    for (uint32_t i = 0; i < n; i++) {
        uint64_t kl, vl;
        if (!ramq_get_varint(&p, end, &kl) || kl > (uint64_t)(end - p)) return false;
        const uint8_t *key = p;
        p += kl;
        if (!ramq_get_varint(&p, end, &vl) || vl > (uint64_t)(end - p)) return false;
        lens[2 * i] = (size_t)kl;
        lens[2 * i + 1] = (size_t)vl;
        if (out) out[i] = (kprod_header){(const char *)key, (size_t)kl, p, (size_t)vl};
        p += vl;
    }
    return true;
}

/* appends v to a ring whose writer state is w (k->mu held); false when out
 * of memory */
static bool ring_put_to(kaction *k, ramq *ring, ring_state *w, const kview *v) {
    bool tok = v->token != w->token;
    uint64_t dts = zz(sub64(v->ts, w->ts)), dborn = zz(sub64(v->born_ms, w->born_ms));
    size_t len = 1 + ramq_varint_len(v->klen) + ramq_varint_len(v->vlen) + ramq_varint_len(dts) +
                 (k->max_age_ms ? ramq_varint_len(dborn) : 0) + (tok ? sizeof v->token : 0) +
                 (v->nh ? ramq_varint_len(v->nh) : 0) + v->klen + v->vlen + v->hbytes;
    uint8_t *p = ramq_push(ring, len);
    if (!p) return false;
    *p++ = (uint8_t)((tok ? RF_TOKEN : 0) | (v->nh ? RF_HDRS : 0));
    p = ramq_put_varint(p, v->klen);
    p = ramq_put_varint(p, v->vlen);
    p = ramq_put_varint(p, dts);
    if (k->max_age_ms) p = ramq_put_varint(p, dborn);
    if (tok) {
        memcpy(p, &v->token, sizeof v->token);
        p += sizeof v->token;
    }
    if (v->nh) p = ramq_put_varint(p, v->nh);
    if (v->klen) memcpy(p, v->key, v->klen);
    p += v->klen;
    if (v->vlen) memcpy(p, v->val, v->vlen);
    p += v->vlen;
    if (v->hbytes) memcpy(p, v->hdrs, v->hbytes);
    *w = (ring_state){v->ts, v->born_ms, v->token};
    return true;
}

static bool ring_put(kaction *k, kqueue *q, const kview *v) { /* q's RAM ring */
    return ring_put_to(k, &q->ring, &q->w, v);
}

/* the oldest record of a ring whose reader state is rs decoded into v (k->mu
 * held); false when the ring is empty */
static bool ring_peek_at(const kaction *k, const ramq *ring, const ring_state *rs, kview *v) {
    size_t len;
    const uint8_t *p = ramq_front(ring, &len);
    if (!p) return false;
    const uint8_t *end = p + len;
    uint8_t flags = *p++;
    uint64_t kl = 0, vl = 0, dts = 0, dborn = 0, nh = 0;
    ramq_get_varint(&p, end, &kl);
    ramq_get_varint(&p, end, &vl);
    ramq_get_varint(&p, end, &dts);
    if (k->max_age_ms) ramq_get_varint(&p, end, &dborn);
    v->token = rs->token;
    if (flags & RF_TOKEN) {
        memcpy(&v->token, p, sizeof v->token);
        p += sizeof v->token;
    }
    if (flags & RF_HDRS) ramq_get_varint(&p, end, &nh);
    v->ts = add64(rs->ts, unzz(dts));
    v->born_ms = k->max_age_ms ? add64(rs->born_ms, unzz(dborn)) : 0;
    v->klen = (uint32_t)kl;
    v->vlen = (uint32_t)vl;
    v->nh = (uint32_t)nh;
    v->key = p;
    v->val = p + kl;
    v->hdrs = v->val + vl;
    v->hbytes = (uint32_t)(end - v->hdrs);
    size_t hl[2 * MAX_HDRS];
    if (v->nh) hdrs_walk(v->hdrs, end, v->nh, hl, NULL); /* written by ring_put: whole */
    v->est = (uint32_t)kaction_estimate_size(v->klen, v->vlen, hl, v->nh);
    return true;
}

/* removes a ring's oldest record, v (its ring_peek_at) */
static void ring_pop_at(ramq *ring, ring_state *rs, const kview *v) {
    *rs = (ring_state){v->ts, v->born_ms, v->token};
    ramq_pop(ring);
}

static bool ring_peek(const kaction *k, const kqueue *q, kview *v) { /* q's RAM ring */
    return ring_peek_at(k, &q->ring, &q->r, v);
}

static void ring_pop(kqueue *q, const kview *v) {
    ring_pop_at(&q->ring, &q->r, v);
}

/* the n headers in hbytes at h, in the compact form or (dform) the disk
 * form (see hdrs_walk) */
static bool view_hdrs(const uint8_t *h, uint32_t hbytes, uint32_t n, bool dform, size_t *lens,
                      kprod_header *out) {
    return dform ? kdisk_hdrs_walk(h, h + hbytes, n, lens, out) != NULL
                 : hdrs_walk(h, h + hbytes, n, lens, out);
}

krec *ka_materialize(const kview *v) {
    return ka_materialize_form(v, false);
}

/* a record of its own from a view (NULL: out of memory) */
krec *ka_materialize_form(const kview *v, bool dform) {
    krec *r = malloc(sizeof *r + v->nh * sizeof(kprod_header) + v->klen + v->vlen + v->hbytes);
    if (!r) return NULL;
    char *d = r->data;
    r->hdrs = (kprod_header *)d;
    d += v->nh * sizeof(kprod_header);
    r->key = d;
    if (v->klen) memcpy(d, v->key, v->klen);
    d += v->klen;
    r->val = d;
    if (v->vlen) memcpy(d, v->val, v->vlen);
    d += v->vlen;
    if (v->hbytes) memcpy(d, v->hdrs, v->hbytes);
    size_t hl[2 * MAX_HDRS];
    if (v->nh) view_hdrs((const uint8_t *)d, v->hbytes, v->nh, dform, hl, r->hdrs);
    r->klen = v->klen;
    r->vlen = v->vlen;
    r->nh = v->nh;
    r->ts = v->ts;
    r->born_ms = v->born_ms;
    r->est = v->est;
    r->token = v->token;
    r->dq_id = DQ_NONE;
    r->replayed = false;
    r->next = NULL;
    r->topic = NULL;
    r->q = NULL;
    r->partition = -1;
    return r;
}

/* -- the RAM part of a queue (k->mu held): the list, then the ring -- */

static void list_push(kqueue *q, krec *r) {
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
}

static krec *list_pop(kqueue *q) {
    krec *r = q->head;
    q->head = r->next;
    if (!q->head) q->tail = NULL;
    return r;
}

bool ka_ram_any(const kqueue *q) {
    return q->head || q->ring.n;
}

/* q's oldest RAM record into o (o->r, or o->r NULL and the view o->v);
 * false when the RAM part is empty */
static bool ram_peek(const kaction *k, kqueue *q, kout *o) {
    o->q = q;
    o->r = q->head;
    return o->r || ring_peek(k, q, &o->v);
}

static uint32_t out_est(const kout *o) {
    return o->r ? o->r->est : o->v.est;
}

static int64_t out_born(const kout *o) {
    return o->r ? o->r->born_ms : o->v.born_ms;
}

/* o (q's oldest RAM record, from ram_peek) leaves the RAM part, with the
 * byte counts (the metrics are the caller's) */
static void ram_pop(kqueue *q, const kout *o) {
    if (o->r)
        list_pop(q);
    else
        ring_pop(q, &o->v);
    q->bytes -= out_est(o);
    q->ram_bytes -= out_est(o);
}

uint32_t ka_ram_head_est(kaction *k, kqueue *q) {
    kout o;
    return ram_peek(k, q, &o) ? out_est(&o) : 0;
}

krec *ka_ram_take(kaction *k, kqueue *q) {
    kout o;
    if (!ram_peek(k, q, &o)) return NULL;
    krec *r = o.r ? o.r : ka_materialize(&o.v);
    if (!r) return NULL;
    ram_pop(q, &o);
    return r;
}

/* takes o (q's oldest RAM record) out of the buffer for good onto *out */
static void ram_drop(kaction *k, kqueue *q, const kout *o, ktaken *out, const char *why) {
    ram_pop(q, o);
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, out_est(o));
    if (o->r) {
        o->r->next = out->list;
        out->list = o->r;
    } else {
        toks_add(k, &out->toks, o->v.token, why);
    }
}

/* every RAM record of q taken out (to fail them) */
static void drain_all(kaction *k, kqueue *q, ktaken *out, const char *why) {
    kout o;
    while (ram_peek(k, q, &o))
        ram_drop(k, q, &o, out, why);
}

/* Evicts from the head (oldest first) after `appended` bytes were added
 * (sink-behaviour.md §6.2-6.3). Normally: while the removed bytes stay within
 * the excess over per_partition_limit, at least one record. Under memory
 * pressure (memory_overload_protection and the host above its watermark):
 * at least min(appended, bytes above the reserve max_inflight x
 * max_batch_bytes), rounded up to whole records, if that is more. */
static void enforce_limit(kaction *k, kqueue *q, uint64_t appended, ktaken *dropped) {
    uint64_t excess = q->bytes > k->per_partition_limit ? q->bytes - k->per_partition_limit : 0;
    uint64_t pressure = 0;
    if (k->overload_protection && atomic_load(&k->high_mem) && q->bytes > k->window) {
        pressure = q->bytes - k->window;
        if (appended < pressure) pressure = appended;
    }
    if (!excess && !pressure) return;
    bool at_least = pressure > excess; /* the high-memory rule removes at least that much */
    uint64_t target = at_least ? pressure : excess, removed = 0;
    kout o;
    if (!ram_peek(k, q, &o)) return;
    do {
        removed += out_est(&o);
        ram_drop(k, q, &o, dropped, "buffer_overflow");
    } while (ram_peek(k, q, &o) && (at_least ? removed < target : removed + out_est(&o) <= target));
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

int32_t ka_pick(kaction *k, const krec *r, int32_t count) {
    return part_pick(k->strategy, r->key, r->klen, count);
}

/* zeroed memory aligned for the cache-line-aligned members (free() frees it) */
static void *zalloc64(size_t n) {
    n = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

bool ka_grow_parts(kaction *k, ktopic *t, int32_t count) {
    if (count <= t->cap) return true;
    kqueue **np = realloc(t->parts, sizeof *np * (size_t)count);
    if (!np) return false;
    t->parts = np;
    for (; t->cap < count; t->cap++) {
        if (!(np[t->cap] = zalloc64(sizeof **np))) return false;
        np[t->cap]->index = t->cap;
        ramq_init(&np[t->cap]->ring, &k->pool);
        ramq_init(&np[t->cap]->stage, &k->pool);
    }
    return true;
}

/* -- in-flight windows and stalls (the pump's) -- */

/* Room in q's window for est more bytes: max_inflight x max_batch_bytes,
 * and nothing more while the partition stalls (records out get no answer:
 * EMQX sends nothing to a leader it is not connected to). One record always
 * goes to an empty window. */
bool ka_window_room(const kaction *k, kqueue *q, uint32_t est) {
    if (!q->inflight) return true;
    return !q->stalled && q->inflight_bytes + est <= k->window;
}

void ka_window_take(kaction *k, kqueue *q, uint32_t est) {
    if (!q->inflight++) q->progress_ms = k->now_ms; /* silence is timed from here */
    q->inflight_bytes += est;
    atomic_fetch_add(&k->m.inflight, 1);
}

/* a record leaves q's window; answered: Kafka answered it (the partition
 * is not stalled), else librdkafka refused it */
static void window_give(kaction *k, kqueue *q, uint32_t est, bool answered) {
    q->inflight_bytes -= est;
    if (!--q->inflight) q->inflight_bytes = 0;
    if (answered) {
        q->stalled = false;
        q->progress_ms = k->now_ms;
    }
    atomic_fetch_sub(&k->m.inflight, 1);
}

/* A partition stalls when a broker connection failed (on_trouble: librdkafka
 * does not say which partitions lead there, so every partition; those on a
 * healthy leader are answered within a round trip), or when its records out
 * got no answer for the stall time. A stalled partition with nothing out
 * still sends one record: its answer (the leader back) ends the stall. */
static void check_stall(kaction *k, kqueue *q, bool trouble) {
    if (trouble || (q->inflight && k->now_ms - q->progress_ms >= k->stall_ms)) q->stalled = true;
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
    ramq_init(&t->pending.ring, &k->pool);
    ramq_init(&t->pending.stage, &k->pool);
    t->next = k->topics;
    k->topics = t;
    k->ntopics++;
    return t;
}

/* -- the disk part of a queue (disk and hybrid mode) -- */

/* Whether a new record for q goes through the disk part (k->mu held): always
 * in disk mode; in hybrid mode once the RAM part holds segment_bytes, and
 * then until the disk part is empty again (so order holds), and while the
 * topic's pending queue still has records to place. */
static bool to_disk(const kaction *k, const ktopic *t, const kqueue *q, uint32_t est) {
    if (k->mode == KCONF_BUF_DISK) return true;
    if (k->mode != KCONF_BUF_HYBRID) return false;
    return q->spilled || q->stage.n || q->ram_bytes + est > k->seg_bytes ||
           (q != &t->pending && t->pending.bytes);
}

/* v staged for the pump to write to q's disk part (k->mu held); false when
 * out of memory. Senders outrunning the disk writer: RAM stays bounded, the
 * oldest records not written yet go onto *dropped (the older ones on disk
 * cannot be reached from here). */
static bool stage_view(kaction *k, kqueue *q, const kview *v, ktaken *dropped) {
    if (!ring_put_to(k, &q->stage, &q->sw, v)) return false;
    q->spilled = true;
    q->bytes += v->est;
    q->stage_bytes += v->est;
    atomic_fetch_add(&k->m.queuing, 1);
    atomic_fetch_add(&k->m.queuing_bytes, v->est);
    uint64_t cap = k->per_partition_limit > STAGE_MAX ? k->per_partition_limit : STAGE_MAX;
    kview o;
    while (q->stage_bytes > cap && q->stage.n > 1 && ring_peek_at(k, &q->stage, &q->sr, &o)) {
        ring_pop_at(&q->stage, &q->sr, &o);
        q->stage_bytes -= o.est;
        q->bytes -= o.est;
        atomic_fetch_sub(&k->m.queuing, 1);
        atomic_fetch_sub(&k->m.queuing_bytes, o.est);
        toks_add(k, &dropped->toks, o.token, "buffer_overflow");
    }
    return true;
}

/* (k->mu held, the pump's) after every LOCK_SLICE records of a backlog
 * (done of them handled): the lock is let go and taken again, so senders get
 * in between */
static void lock_slice(kaction *k, size_t done) {
    if (done % LOCK_SLICE) return;
    pthread_mutex_unlock(&k->mu);
    pthread_mutex_lock(&k->mu);
}

/* About as many records as were staged when it is called (those staged
 * later wait for the next turn), taken LOCK_SLICE at a time: k->mu is let go
 * between slices, so a sender (on a normal scheduler) never waits while a
 * whole backlog is taken. Between slices a sender may only add records or
 * drop the oldest (stage_view, over the cap), both under k->mu. */
size_t ka_stage_views(kaction *k, kqueue *q, uint64_t *cur) {
    pthread_mutex_lock(&k->mu);
    *cur = q->bytes - q->stage_bytes;
    size_t n = 0, left = q->stage.n;
    kout o = {.dq_id = DQ_NONE};
    while (left && ring_peek_at(k, &q->stage, &q->sr, &o.v)) {
        if (n == k->staged_cap) {
            size_t cap = k->staged_cap ? 2 * k->staged_cap : 256;
            kout *nv = realloc(k->staged, cap * sizeof *nv);
            if (!nv) break; /* the rest waits for the next turn */
            k->staged = nv;
            k->staged_cap = cap;
        }
        o.chunk = ramq_pin_front(&q->stage);
        ring_pop_at(&q->stage, &q->sr, &o.v);
        q->stage_bytes -= o.v.est;
        k->staged[n++] = o;
        if (--left) lock_slice(k, n);
    }
    pthread_mutex_unlock(&k->mu);
    return n;
}

/* The views' chunks unpinned, LOCK_SLICE at a time (as they were taken);
 * chunks the pool does not keep are freed after the lock is let go (a burst
 * of 100 MB freed under it kept senders waiting for 3-12 ms of free()) */
void ka_stage_release(kaction *k, size_t n) {
    ramq_chunk *gc = NULL;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < n; i++) {
        if (k->staged[i].chunk) /* NULL: its pin moved on */
            ramq_unpin_to(k->staged[i].chunk, &gc);
        if (i + 1 < n) lock_slice(k, i + 1);
    }
    pthread_mutex_unlock(&k->mu);
    ramq_gc_free(gc);
}

krec *ka_stage_take(kaction *k, ktopic *t, kqueue *q, uint64_t *cur) {
    size_t n = ka_stage_views(k, q, cur);
    krec *head = NULL, **tail = &head;
    ktaken failed = {0};
    for (size_t i = 0; i < n; i++) {
        krec *r = ka_materialize(&k->staged[i].v);
        if (!r) { /* it fails: out of memory */
            ka_stage_fail(k, q, &k->staged[i].v);
            toks_add(k, &failed.toks, k->staged[i].v.token, "out of memory");
            continue;
        }
        r->topic = t;
        r->partition = q->index;
        *tail = r;
        tail = &r->next;
    }
    ka_stage_release(k, n);
    taken_answer(k, &failed, "out of memory", &k->m.failed, NULL);
    taken_free(&failed);
    return head;
}

void ka_stage_fail(kaction *k, kqueue *q, const kview *v) {
    pthread_mutex_lock(&k->mu);
    q->bytes -= v->est;
    pthread_mutex_unlock(&k->mu);
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, v->est);
}

/* -- sending -- */

static _Thread_local arena scratch;
static _Thread_local bool scratch_ready;
static _Thread_local ktaken send_dropped; /* its token array is kept per thread */

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
    /* key and value: in place when a template is one placeholder holding a
     * string (no copy of the payload), else rendered into the arena */
    const char *key, *val;
    size_t klen, vlen;
    if (!tmpl_render_bytes(k->key_t, ctx, a, &kb, &key, &klen) ||
        !tmpl_render_bytes(k->val_t, ctx, a, &vb, &val, &vlen))
        goto oom;
    int64_t ts = tmpl_render_timestamp(k->ts_t, ctx, a);
    if (k->hdrs && (st = kh_render(k->hdrs, ctx, a, &hp, &nh, err))) goto failed;
    if (!k->fixed_topic && (tb.len == 0 || tb.len > 249)) {
        st = ec_fail(err, EC_EINVAL, "bad_topic: the topic renders to %zu bytes", tb.len);
        goto failed;
    }
    if (klen > UINT32_MAX / 2 || vlen > UINT32_MAX / 2) {
        st = ec_fail(err, EC_ELIMIT, "the record is too large to buffer");
        goto failed;
    }
    if (nh > MAX_HDRS) nh = MAX_HDRS;
    kview v = {.key = (const uint8_t *)key,
               .val = (const uint8_t *)val,
               .klen = (uint32_t)klen,
               .vlen = (uint32_t)vlen,
               .nh = nh,
               .ts = ts,
               .born_ms = k->max_age_ms ? ec_wall_ms() : 0,
               .token = token};
    size_t hl[2 * MAX_HDRS];
    if (nh) { /* the headers in their compact form */
        size_t hbytes = 0;
        for (uint32_t i = 0; i < nh; i++) {
            hl[2 * i] = hp[i].klen;
            hl[2 * i + 1] = hp[i].vlen;
            hbytes +=
                ramq_varint_len(hp[i].klen) + hp[i].klen + ramq_varint_len(hp[i].vlen) + hp[i].vlen;
        }
        uint8_t *h = arena_alloc(a, hbytes), *p = h;
        if (!h) {
            st = ec_fail(err, EC_ENOMEM, "out of memory rendering the record");
            goto failed;
        }
        for (uint32_t i = 0; i < nh; i++) {
            p = ramq_put_varint(p, hp[i].klen);
            memcpy(p, hp[i].k, hp[i].klen), p += hp[i].klen;
            p = ramq_put_varint(p, hp[i].vlen);
            memcpy(p, hp[i].v, hp[i].vlen), p += hp[i].vlen;
        }
        v.hdrs = h;
        v.hbytes = (uint32_t)hbytes;
    }
    v.est = (uint32_t)kaction_estimate_size(klen, vlen, hl, nh);
    ktaken *dropped = &send_dropped;
    pthread_mutex_lock(&k->mu);
    ktopic *t = k->fixed_topic ? k->fixed : topic_get(k, tb.p, tb.len);
    if (!t) {
        pthread_mutex_unlock(&k->mu);
        st = ec_fail(err, EC_ELIMIT, "too many distinct topics for one action (%d)",
                     KACTION_MAX_TOPICS);
        goto failed;
    }
    if (t->count == 0 && ec_mono_ms() < t->next_refresh_ms) { /* known unknown topic (cached) */
        pthread_mutex_unlock(&k->mu);
        st = ec_fail(err, EC_EINVAL, "resolved_to_unknown_topic: %s", t->name);
        goto failed;
    }
    kqueue *q;
    int32_t partition = -1;
    if (t->count > 0) {
        partition = part_pick(k->strategy, key, klen, t->count);
        q = t->parts[partition];
    } else {
        q = &t->pending;
    }
    bool staged = to_disk(k, t, q, v.est);
    if (staged) { /* the pump writes it */
        if (!stage_view(k, q, &v, dropped)) {
            pthread_mutex_unlock(&k->mu);
            st = ec_fail(err, EC_ENOMEM, "out of memory buffering the record");
            goto failed;
        }
    } else {
        if (!ring_put(k, q, &v)) {
            pthread_mutex_unlock(&k->mu);
            st = ec_fail(err, EC_ENOMEM, "out of memory buffering the record");
            goto failed;
        }
        q->bytes += v.est;
        q->ram_bytes += v.est;
        atomic_fetch_add(&k->m.queuing, 1);
        atomic_fetch_add(&k->m.queuing_bytes, v.est);
        enforce_limit(k, q, v.est, dropped);
    }
    /* a pump asleep with every window full is woken by the next delivery
     * report (on_events), not by each new record */
    if (staged || q == &t->pending || k->idle_room) wake_pump(k);
    pthread_mutex_unlock(&k->mu);
    if (dropped->list || dropped->toks.count)
        taken_answer(k, dropped, "buffer_overflow", &k->m.dropped, &k->m.dropped_queue_full);
    arena_reset(a);
    return EC_OK;
oom:
    st = ec_fail(err, EC_ENOMEM, "out of memory rendering the record");
failed:
    atomic_fetch_add(&k->m.failed, 1);
    arena_reset(a);
    return st;
}

/* -- tickets and pins (the pump's) -- */

static kticket *tk_get(kaction *k) {
    if (!k->tk_free) {
        enum { N = 256 };
        void **nb = realloc(k->tk_blocks, (k->tk_nblocks + 1) * sizeof *nb);
        kticket *blk = nb ? malloc(N * sizeof *blk) : NULL;
        if (nb) k->tk_blocks = nb;
        if (!blk) return NULL;
        k->tk_blocks[k->tk_nblocks++] = blk;
        for (int i = 0; i < N; i++) {
            blk[i].next = k->tk_free;
            k->tk_free = &blk[i];
        }
    }
    kticket *t = k->tk_free;
    k->tk_free = t->next;
    return t;
}

static void tk_put(kaction *k, kticket *t) {
    t->next = k->tk_free;
    k->tk_free = t;
}

/* a pinned chunk to unpin once the lock is taken (no lock held); when the
 * list cannot grow, unpinned at once */
static void rel_push(kaction *k, ramq_chunk *c) {
    if (!c) return;
    if (k->nrel == k->relcap) {
        size_t cap = k->relcap ? 2 * k->relcap : 256;
        ramq_chunk **n = realloc(k->rel, cap * sizeof *n);
        if (!n) {
            pthread_mutex_lock(&k->mu);
            ramq_unpin(c);
            pthread_mutex_unlock(&k->mu);
            return;
        }
        k->rel = n;
        k->relcap = cap;
    }
    k->rel[k->nrel++] = c;
}

/* (k->mu held) chunks the pool does not keep wait in k->gc, freed by the
 * pump without the lock (free() of many chunks can take milliseconds) */
static void rel_drain(kaction *k) {
    for (size_t i = 0; i < k->nrel; i++)
        ramq_unpin_to(k->rel[i], &k->gc);
    k->nrel = 0;
}

/* Hands one record of the batch to librdkafka (no lock held). A ring
 * record's value is lent from its pinned chunk (its key and headers are
 * copied), with a ticket for the delivery report; a record of its own is
 * lent too, tagged KREC_TAG. Not EC_OK: librdkafka did not take it
 * (kprod_send's codes say whether for now or for good); the caller keeps o
 * (and its pin). */
static ec_status hand_off(kaction *k, kout *o, ktopic *t, ec_error *err) {
    kprod_header hdrs[MAX_HDRS];
    size_t hl[2 * MAX_HDRS];
    kprod_topic *th = atomic_load(&t->th);
    bool own = o->r != NULL;
    kticket *tk = NULL;
    if (!own && !(tk = tk_get(k))) return ec_fail(err, EC_ENOMEM, "out of memory");
    kprod_record rec;
    if (own) {
        krec *r = o->r;
        r->topic = t;
        r->q = o->q;
        r->partition = o->q->index;
        rec = (kprod_record){.topic = t->name,
                             .th = th,
                             .partition = r->partition,
                             .key = r->klen ? r->key : NULL, /* empty -> Kafka NULL */
                             .key_len = r->klen,
                             .value = r->vlen ? r->val : NULL,
                             .value_len = r->vlen,
                             .headers = r->hdrs,
                             .n_headers = r->nh,
                             .timestamp_ms = r->ts,
                             .opaque = (void *)((uintptr_t)r | KREC_TAG),
                             .borrow_value = true};
    } else {
        const kview *v = &o->v;
        if (v->nh) view_hdrs(v->hdrs, v->hbytes, v->nh, o->dform, hl, hdrs);
        *tk = (kticket){.q = o->q,
                        .chunk = o->chunk,
                        .pin = o->pin,
                        .token = v->token,
                        .dq_id = o->dq_id,
                        .est = v->est,
                        .replayed = o->replayed};
        rec = (kprod_record){.topic = t->name,
                             .th = th,
                             .partition = o->q->index,
                             .key = v->klen ? v->key : NULL,
                             .key_len = v->klen,
                             .value = v->vlen ? v->val : NULL,
                             .value_len = v->vlen,
                             .headers = hdrs,
                             .n_headers = v->nh,
                             .timestamp_ms = v->ts,
                             .opaque = tk,
                             .borrow_value = true};
    }
    ec_status st = kprod_send(k->p, &rec, err);
    if (st != EC_OK && tk) tk_put(k, tk);
    return st;
}

/* -- delivery reports and errors (the pump's kprod_poll, or destroy) -- */

static void on_delivery(void *ctx, const kprod_report *rp) {
    kaction *k = ctx;
    krec *r = NULL;
    kqueue *q;
    uint32_t est;
    void *token;
    bool replayed;
    if ((uintptr_t)rp->opaque & KREC_TAG) {
        r = (krec *)((uintptr_t)rp->opaque & ~KREC_TAG);
        q = r->q;
        est = r->est;
        token = r->token;
        replayed = r->replayed;
    } else { /* a ring record: its ticket; the chunk is unpinned after the poll */
        kticket *tk = rp->opaque;
        q = tk->q;
        est = tk->est;
        token = tk->token;
        replayed = tk->replayed;
        disk_done(k, q, tk->dq_id, rp->err != NULL);
        rel_push(k, tk->chunk);
        segq_unpin(tk->pin);
        tk_put(k, tk);
    }
    window_give(k, q, est, true);
    const ec_error *err = rp->err;
    if (err && err->code == EC_EEXPIRED) { /* max_batch_age inside librdkafka */
        atomic_fetch_add(&k->m.dropped, 1);
        atomic_fetch_add(&k->m.dropped_expired, 1);
    } else if (err && !atomic_load(&k->closing)) {
        atomic_fetch_add(&k->m.failed, 1);
    } else if (!err && !replayed) {
        atomic_fetch_add(&k->m.success, 1);
    }
    const char *msg = err ? err->msg : NULL;
    if (r)
        finish(k, r, msg, rp->partition, rp->offset);
    else if (token && k->reply)
        k->reply(k->reply_ctx, token, msg, rp->partition, rp->offset);
}

static void on_trouble(void *ctx) { /* the pump's: a broker connection failed */
    kaction *k = ctx;
    k->trouble++;
}

/* librdkafka has reports or errors waiting (a librdkafka thread, its queue
 * lock held: k->mu is never held across a librdkafka call) */
static void on_events(void *ctx) {
    kaction *k = ctx;
    pthread_mutex_lock(&k->mu);
    k->events = true;
    wake_pump(k);
    pthread_mutex_unlock(&k->mu);
}

/* -- the pump -- */

/* The metadata thread: asks Kafka for the partition count of each topic
 * the pump marked META_ASKED (a request blocks up to the metadata timeout
 * while Kafka is unreachable; the pump goes on meanwhile, writing and
 * sending) and leaves the answer for the pump to apply. A dynamic topic's
 * handle is made here, before its first use on the producer. */
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
        bool need_th = !atomic_load(&t->th);
        pthread_mutex_unlock(&k->mu);
        kprod_topic *th = need_th ? kprod_topic_get(k->p, t->name, t) : NULL;
        ec_error err;
        int32_t n = atomic_load(&k->forced_count);
        if (n == INT32_MIN) n = kprod_partition_count(k->p, t->name, k->metadata_timeout_ms, &err);
        pthread_mutex_lock(&k->mu);
        if (need_th) atomic_store(&t->th, th);
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
    ktaken failed = {0}, lost = {0}, dropped = {0};
    pthread_mutex_lock(&k->mu);
    int64_t now = ec_mono_ms();
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
        drain_all(k, &t->pending, &failed, "resolved_to_unknown_topic");
        for (int32_t i = 0; i < t->cap; i++)
            drain_all(k, t->parts[i], &failed, "resolved_to_unknown_topic");
    } else if (ka_grow_parts(k, t, n)) {
        for (int32_t i = n; i < t->cap; i++) /* their disk parts: dq_turn */
            drain_all(k, t->parts[i], &lost, "partition_lost");
        t->count = n;
        t->next_refresh_ms = k->refresh_ms ? now + (int64_t)k->refresh_ms : INT64_MAX;
        kout o; /* partitions for what waited, in order */
        while (ram_peek(k, &t->pending, &o)) {
            const uint8_t *key = o.r ? (const uint8_t *)o.r->key : o.v.key;
            uint32_t klen = o.r ? o.r->klen : o.v.klen;
            kqueue *pq = t->parts[part_pick(k->strategy, (const char *)key, klen, n)];
            if (!o.r && !ring_put(k, pq, &o.v)) { /* out of memory: it fails */
                ram_drop(k, &t->pending, &o, &failed, "out of memory");
                continue;
            }
            ram_pop(&t->pending, &o);
            if (o.r) list_push(pq, o.r);
            pq->bytes += out_est(&o);
            pq->ram_bytes += out_est(&o);
            enforce_limit(k, pq, out_est(&o), &dropped);
        }
    }
    pthread_mutex_unlock(&k->mu);
    char why[300];
    snprintf(why, sizeof why, "resolved_to_unknown_topic: %s", t->name);
    taken_answer(k, &failed, why, &k->m.failed, NULL);
    taken_answer(k, &lost, "partition_lost", &k->m.failed, NULL);
    taken_answer(k, &dropped, "buffer_overflow", &k->m.dropped, &k->m.dropped_queue_full);
    taken_free(&failed);
    taken_free(&lost);
    taken_free(&dropped);
}

/* max_batch_age: takes RAM records buffered longer than that from the head
 * of q (oldest first) onto *out (k->mu held, let go every LOCK_SLICE: a
 * backlog that goes stale at once does not hold senders up) */
static void expire_queue(kaction *k, kqueue *q, int64_t now, ktaken *out) {
    kout o;
    for (size_t n = 1; ram_peek(k, q, &o) && now - out_born(&o) > k->max_age_ms; n++) {
        ram_drop(k, q, &o, out, KPROD_ERR_EXPIRED);
        lock_slice(k, n);
    }
}

/* whether the pump has work now (k->mu held): a partition with buffered
 * records and window room, or records staged for the disk */
static bool sendable(kaction *k) {
    for (ktopic *t = k->topics; t; t = t->next) {
        if (t->pending.stage.n) return true;
        for (int32_t p = 0; p < t->cap; p++) {
            kqueue *q = t->parts[p];
            if (q->stage.n) return true;
            if (p >= t->count) continue;
            bool readable = q->dq_n && (!q->read_again_ms || ec_mono_ms() >= q->read_again_ms);
            uint32_t e = ka_ram_head_est(k, q);
            if (!e) e = q->peek ? q->peek->est : readable ? 1 : 0;
            if (e && ka_window_room(k, q, e)) return true;
        }
    }
    return false;
}

/* whether some partition's window has room (k->mu held; the pump's) */
static bool window_room_anywhere(kaction *k) {
    for (ktopic *t = k->topics; t; t = t->next)
        for (int32_t p = 0; p < t->count && p < t->cap; p++)
            if (ka_window_room(k, t->parts[p], 1)) return true;
    return false;
}

/* Hands a batch taken into the windows to librdkafka (no lock held). What
 * librdkafka refuses for now (its queue is full; its metadata lacks the topic
 * or partition) goes to keep[] in batch order, and with it every later record
 * of the same partition, so order holds; what it refuses for good fails here.
 * Returns how many were kept; *behind: a topic to ask metadata for soon. */
static int hand_off_batch(kaction *k, kout *batch, ktopic **tops, int nb, int *keep,
                          ktopic **behind) {
    kqueue *blocked[8]; /* partitions with a refused record in this batch */
    int nk = 0, nblocked = 0;
    bool full = false; /* everything else waits too */
    uint64_t sent_est = 0;
    int sent = 0;
    for (int i = 0; i < nb; i++) {
        kout *o = &batch[i];
        bool held = full;
        for (int j = 0; j < nblocked && !held; j++)
            held = blocked[j] == o->q;
        ec_error herr;
        uint32_t est = out_est(o); /* once handed off, a record may be delivered and freed */
        ec_status st = held ? EC_ELIMIT : hand_off(k, o, tops[i], &herr);
        if (st == EC_ELIMIT || st == EC_ESTATE) {
            keep[nk++] = i;
            if (held) continue;
            if (st == EC_ESTATE) *behind = tops[i];
            if (st == EC_ESTATE && nblocked < 8)
                blocked[nblocked++] = o->q; /* other partitions go on */
            else
                full = true;
            continue;
        }
        sent++;
        sent_est += est;
        if (st != EC_OK) { /* refused for good (e.g. message_too_large) */
            window_give(k, o->q, est, false);
            atomic_fetch_add(&k->m.failed, 1);
            if (o->r) {
                finish(k, o->r, herr.msg, -1, -1);
            } else {
                disk_done(k, o->q, o->dq_id, true);
                rel_push(k, o->chunk);
                segq_unpin(o->pin);
                if (o->v.token && k->reply) k->reply(k->reply_ctx, o->v.token, herr.msg, -1, -1);
            }
        }
    }
    atomic_fetch_sub(&k->m.queuing, sent);
    atomic_fetch_sub(&k->m.queuing_bytes, (int64_t)sent_est);
    return nk;
}

/* records librdkafka refused for now back to the heads of their queues, in
 * order (k->mu held); views become records of their own first (their chunk
 * is unpinned), and when even that fails they fail */
static void put_back(kaction *k, kout *batch, const int *keep, int nk, ktaken *failed) {
    for (int i = nk - 1; i >= 0; i--) {
        kout *o = &batch[keep[i]];
        kqueue *q = o->q;
        window_give(k, q, out_est(o), false);
        krec *r = o->r ? o->r : ka_materialize_form(&o->v, o->dform);
        if (o->chunk) ramq_unpin(o->chunk);
        segq_unpin(o->pin);
        if (r && !o->r) { /* read back from disk: still there */
            r->dq_id = o->dq_id;
            r->replayed = o->replayed;
        }
        if (!r) {
            atomic_fetch_sub(&k->m.queuing, 1);
            atomic_fetch_sub(&k->m.queuing_bytes, o->v.est);
            toks_add(k, &failed->toks, o->v.token, "out of memory");
            continue;
        }
        r->next = q->head;
        q->head = r;
        if (!q->tail) q->tail = r;
        q->bytes += r->est;
        q->ram_bytes += r->est;
    }
}

static void *pump_main(void *arg) {
    kaction *k = arg;
    pthread_setname_np(pthread_self(), "ec_pump");
    kout *batch = k->batch;
    ktopic **tops = k->tops;
    int *keep = k->keep;
    ktaken gone = {0}; /* expired or failed records to answer */
    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        /* now: timers and stalls; wall: the age of buffered records (read
         * only where records have one) */
        int64_t now = k->now_ms = ec_mono_ms(), wall = k->max_age_ms ? ec_wall_ms() : 0;
        /* delivery reports and errors first (without the lock) */
        k->events = false;
        pthread_mutex_unlock(&k->mu);
        ramq_gc_free(k->gc);
        k->gc = NULL;
        kprod_poll(k->p);
        pthread_mutex_lock(&k->mu);
        rel_drain(k); /* chunks whose values librdkafka is done with */
        bool trouble = k->trouble != k->trouble_seen;
        k->trouble_seen = k->trouble;
        if (k->overload_protection && now >= k->next_mem_check_ms) {
            int used = mem_used_pct();
            atomic_store(&k->high_mem, used >= 0 && used >= high_watermark_pct());
            k->next_mem_check_ms = now + 1000;
        }
        if (k->max_age_ms) { /* stale records leave the buffer (EMQX: dropped.expired) */
            for (ktopic *t = k->topics; t; t = t->next) {
                expire_queue(k, &t->pending, wall, &gone);
                for (int32_t p = 0; p < t->cap; p++)
                    expire_queue(k, t->parts[p], wall, &gone);
            }
            if (gone.list || gone.toks.count) {
                pthread_mutex_unlock(&k->mu);
                taken_answer(k, &gone, KPROD_ERR_EXPIRED, &k->m.dropped, &k->m.dropped_expired);
                pthread_mutex_lock(&k->mu);
            }
        }
        /* metadata (without the lock) */
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
        /* take a batch within each partition's window under the lock (ring
         * records pinned), hand it to librdkafka without the lock */
        int nb = 0;
        for (ktopic *t = k->topics; t; t = t->next) {
            for (int32_t p = 0; p < t->count && p < t->cap; p++) {
                kqueue *q = t->parts[p];
                check_stall(k, q, trouble);
                kout o = {.dq_id = DQ_NONE};
                while (nb < PUMP_BATCH && ram_peek(k, q, &o) && ka_window_room(k, q, out_est(&o))) {
                    o.chunk = o.r ? NULL : ramq_pin_front(&q->ring);
                    ram_pop(q, &o);
                    ka_window_take(k, q, out_est(&o));
                    tops[nb] = t;
                    batch[nb++] = o;
                }
            }
        }
        if (k->dir) { /* disk work without k->mu (senders are never held up by file I/O) */
            int before = nb;
            pthread_mutex_unlock(&k->mu);
            kdisk_work(k, wall, batch, &nb);
            pthread_mutex_lock(&k->mu);
            for (int i = before; i < nb; i++)
                tops[i] = batch[i].r ? batch[i].r->topic : batch[i].t;
        }
        bool stalled = false; /* librdkafka refused records for now: wait before retrying */
        if (nb) {
            pthread_mutex_unlock(&k->mu);
            ktopic *behind = NULL;
            int nk = hand_off_batch(k, batch, tops, nb, keep, &behind);
            pthread_mutex_lock(&k->mu);
            if (behind && behind->next_refresh_ms > now + UNRESOLVED_RETRY_MS)
                behind->next_refresh_ms = now + UNRESOLVED_RETRY_MS; /* a shrink shows soon */
            put_back(k, batch, keep, nk, &gone);
            rel_drain(k); /* records refused for good */
            if (gone.toks.count) {
                pthread_mutex_unlock(&k->mu);
                taken_answer(k, &gone, "out of memory", &k->m.failed, NULL);
                pthread_mutex_lock(&k->mu);
            }
            if (!nk) continue; /* more may be waiting: no sleep */
            stalled = true;
        }
        struct timespec until = ec_deadline(PUMP_IDLE_WAIT_MS);
        atomic_store(&k->pump_idle, true);
        /* reports came, or a delivery made room, before it saw pump_idle */
        if (k->events || (!stalled && sendable(k))) {
            atomic_store(&k->pump_idle, false);
            continue;
        }
        k->idle_room = window_room_anywhere(k);
        if (pthread_cond_timedwait(&k->cv, &k->mu, &until) == ETIMEDOUT)
            /* quiet: spare chunks go back (freed at the next turn, without the lock) */
            ramq_pool_trim(&k->pool, RAMQ_POOL_BYTES, &k->gc);
        atomic_store(&k->pump_idle, false);
    }
    pthread_mutex_unlock(&k->mu);
    taken_free(&gone);
    return NULL;
}

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
            kdisk_free_queue(q);
            ramq_free(&q->ring);
            ramq_free(&q->stage);
            for (krec *r = q->head, *n; r; r = n)
                n = r->next, free(r);
            if (i >= 0) free(q);
        }
        ktopic *n = t->next;
        free(t->parts);
        free(t->name);
        free(t);
        t = n;
    }
    kdisk_syncer_stop(k); /* every disk part closed */
    ramq_pool_free(&k->pool);
    free_templates(k);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    pthread_cond_destroy(&k->meta_cv);
    pthread_mutex_destroy(&k->dmu);
    free(k->dir);
    free(k->enc);
    free(k->batch);
    free(k->tops);
    free(k->keep);
    for (size_t i = 0; i < k->tk_nblocks; i++)
        free(k->tk_blocks[i]);
    free(k->tk_blocks);
    free(k->rel);
    ramq_gc_free(k->gc);
    free(k->staged);
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
    /* under load, chunks of lent values come back as fast as new ones are
     * needed: spare ones are kept (up to about a window) instead of going
     * back to the allocator, which returns them to the system and faults
     * them in again; the pump trims the pool when it has been quiet */
    k->pool.cap = k->window > POOL_BUSY_MAX ? POOL_BUSY_MAX : k->window;
    if (k->pool.cap < RAMQ_POOL_BYTES) k->pool.cap = RAMQ_POOL_BYTES;
    k->stall_ms = STALL_MS + 2 * (int64_t)act->max_linger_ms;
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
    k->batch = malloc(PUMP_BATCH * sizeof *k->batch);
    k->tops = malloc(PUMP_BATCH * sizeof *k->tops);

    k->keep = malloc(PUMP_BATCH * sizeof *k->keep);
    /* adaptive: a sender or the pump finding the lock held (held for a
     * record's copy or one batch's bookkeeping) spins briefly before it
     * sleeps in the kernel, saving a futex wait and wake-up each time */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&k->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    ec_cond_init(&k->cv);
    pthread_cond_init(&k->meta_cv, NULL);
    pthread_mutex_init(&k->dmu, NULL);
    if (k->fixed_topic) k->fixed = topic_get(k, act->topic, strlen(act->topic));
    if ((k->fixed_topic && !k->fixed) || !k->batch || !k->tops || !k->keep)
        st = ec_fail(err, EC_ENOMEM, "out of memory creating the action");
    else if (k->mode == KCONF_BUF_HYBRID)
        st = kdisk_wipe(k->dir, err); /* hybrid promises nothing across a restart */
    else if (k->mode == KCONF_BUF_DISK) {
        kdisk_syncer_start(k);
        st = kdisk_replay_all(k, k->fixed, err);
    }
    arena a;
    arena_init(&a, 4096);
    kconf_props props;
    kprod_hooks hooks = {.on_delivery = on_delivery,
                         .on_trouble = on_trouble,
                         .on_events = on_events,
                         .ctx = k,
                         .caller_polls = true}; /* the pump serves them */
    if (st || (st = kconf_producer_props(conn, act, &a, &props, err)) ||
        (st = kprod_new(props.kv, props.n, &hooks, &k->p, err))) {
        arena_free(&a);
        free_action(k);
        return st;
    }
    arena_free(&a);
    /* the fixed topic's handle before anything uses the topic by name */
    if (k->fixed) atomic_store(&k->fixed->th, kprod_topic_get(k->p, k->fixed->name, k->fixed));
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

bool kaction_test_idle(kaction *k) {
    pthread_mutex_lock(&k->mu);
    bool idle = atomic_load(&k->pump_idle) && !k->events; /* only true while it waits */
    for (ktopic *t = k->topics; t && idle; t = t->next) {
        idle = t->meta != META_DONE && !t->pending.stage.n;
        for (int32_t p = 0; p < t->cap && idle; p++)
            idle = !t->parts[p]->stage.n;
    }
    pthread_mutex_unlock(&k->mu);
    return idle;
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
    int64_t deadline = ec_mono_ms() + flush_ms;
    while (atomic_load(&k->m.queuing) > 0 && ec_mono_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv); /* unconditionally: stop must be seen */
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->pump, NULL);
    stop_meta(k);
    int64_t left = deadline - ec_mono_ms();
    atomic_store(&k->closing, true); /* disk mode: what is not acknowledged stays on disk */
    kprod_destroy(k->p, left > 0 ? (int)left : 0); /* in-flight records get their reports */
    pthread_mutex_lock(&k->mu);
    rel_drain(k);
    pthread_mutex_unlock(&k->mu);
    ktaken rest = {0};
    uint64_t ndisk = 0;
    for (ktopic *t = k->topics; t; t = t->next) {
        for (int32_t i = -1; i < t->cap; i++) {
            kqueue *q = i < 0 ? &t->pending : t->parts[i];
            drain_all(k, q, &rest, "resource_stopped");
            ndisk += kdisk_close_queue(k, q, &rest.list);
        }
    }
    atomic_fetch_add(&k->m.dropped, ndisk);
    atomic_fetch_add(&k->m.dropped_resource_stopped, ndisk);
    taken_answer(k, &rest, "resource_stopped", &k->m.dropped, &k->m.dropped_resource_stopped);
    taken_free(&rest);
    free_action(k); /* the disk parts closed: synced */
}
