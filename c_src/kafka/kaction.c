/* kaction.c - the producer action runtime; see kaction.h. Rendering and
 * sending, the RAM queues, the pump thread (hands records to librdkafka),
 * the metadata thread, delivery reports (librdkafka's poll thread, kprod),
 * life cycle. The disk part of the queues is kdisk.c; locking in
 * kaction_priv.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kaction_priv.h"

int64_t ka_now_ms(void) {
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

krec *ka_q_pop(kqueue *q) {
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
    krec *r = ka_q_pop(q);
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, r->est);
    r->next = *out;
    *out = r;
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
void ka_answer_dropped(kaction *k, krec *list) {
    ka_answer_all(k, list, "buffer_overflow", &k->m.dropped, &k->m.dropped_queue_full);
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

bool ka_grow_parts(ktopic *t, int32_t count) {
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
bool ka_window_room(const kaction *k, kqueue *q, uint32_t est) {
    return atomic_load(&q->inflight) == 0 || atomic_load(&q->inflight_bytes) + est <= k->window;
}

void ka_window_take(kqueue *q, krec *r) {
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
    r->born_ms = k->max_age_ms ? ka_now_ms() : 0;
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
    if (t->count == 0 && ka_now_ms() < t->next_refresh_ms) { /* known unknown topic (cached) */
        pthread_mutex_unlock(&k->mu);
        r->token = NULL;
        finish(k, r, "unknown topic", -1, -1);
        st = ec_fail(err, EC_EINVAL, "resolved_to_unknown_topic: %s", t->name);
        goto failed;
    }
    r->topic = t;
    kqueue *q;
    if (t->count > 0) {
        r->partition = ka_pick(k, r, t->count);
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
        ka_answer_dropped(k, dropped);
        arena_reset(a);
        return EC_OK;
    }
    if (t->count > 0 && !q->head && ka_window_room(k, q, r->est)) {
        /* fast path: nothing buffered ahead of it and room in the window:
         * hand it to librdkafka from this thread (non-blocking) */
        ka_window_take(q, r);
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
    ka_answer_dropped(k, dropped);
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
    int64_t now = ka_now_ms();
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
    } else if (ka_grow_parts(t, n)) {
        for (int32_t i = n; i < t->cap; i++) /* their disk parts: dq_turn */
            drain_all(k, t->parts[i], &lost);
        t->count = n;
        t->next_refresh_ms = k->refresh_ms ? now + (int64_t)k->refresh_ms : INT64_MAX;
        krec *r;
        while ((r = ka_q_pop(&t->pending))) { /* partitions for what waited */
            r->partition = ka_pick(k, r, n);
            q_push(t->parts[r->partition], r);
            enforce_limit(k, t->parts[r->partition], r->est, &dropped);
        }
    }
    pthread_mutex_unlock(&k->mu);
    char why[300];
    snprintf(why, sizeof why, "resolved_to_unknown_topic: %s", t->name);
    ka_answer_all(k, failed, why, &k->m.failed, NULL);
    ka_answer_all(k, lost, "partition_lost", &k->m.failed, NULL);
    ka_answer_dropped(k, dropped);
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
            bool readable = q->dq_n && (!q->read_again_ms || ka_now_ms() >= q->read_again_ms);
            uint32_t e = q->head ? q->head->est : q->peek ? q->peek->est : readable ? 1 : 0;
            if (e && ka_window_room(k, q, e)) return true;
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

static void *pump_main(void *arg) {
    kaction *k = arg;
    pthread_setname_np(pthread_self(), "ec_pump");
    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        int64_t now = ka_now_ms();
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
                ka_answer_all(k, expired, KPROD_ERR_EXPIRED, &k->m.dropped, &k->m.dropped_expired);
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
                while (q->head && nb < PUMP_BATCH && ka_window_room(k, q, q->head->est)) {
                    krec *r = ka_q_pop(q);
                    ka_window_take(q, r);
                    batch[nb++] = r;
                }
            }
        }
        if (k->dir) { /* disk work without k->mu (senders are never held up by file I/O) */
            pthread_mutex_unlock(&k->mu);
            kdisk_work(k, now, batch, &nb);
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
        st = kdisk_wipe(k->dir, err); /* hybrid promises nothing across a restart */
    else if (k->mode == KCONF_BUF_DISK)
        st = kdisk_replay_all(k, k->fixed, err);
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
    int64_t deadline = ka_now_ms() + flush_ms;
    while (atomic_load(&k->m.queuing) > 0 && ka_now_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv); /* unconditionally: stop must be seen */
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->pump, NULL);
    stop_meta(k);
    int64_t left = deadline - ka_now_ms();
    atomic_store(&k->closing, true); /* disk mode: what is not acknowledged stays on disk */
    kprod_destroy(k->p, left > 0 ? (int)left : 0); /* in-flight records get their reports */
    krec *rest = NULL;
    uint64_t ndisk = 0;
    for (ktopic *t = k->topics; t; t = t->next) {
        for (int32_t i = -1; i < t->cap; i++) {
            kqueue *q = i < 0 ? &t->pending : t->parts[i];
            drain_all(k, q, &rest);
            ndisk += kdisk_close_queue(k, q, &rest);
        }
    }
    atomic_fetch_add(&k->m.dropped, ndisk);
    atomic_fetch_add(&k->m.dropped_resource_stopped, ndisk);
    ka_answer_all(k, rest, "resource_stopped", &k->m.dropped, &k->m.dropped_resource_stopped);
    free_action(k); /* the disk parts closed: synced */
}
