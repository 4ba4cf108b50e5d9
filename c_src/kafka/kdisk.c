/* kdisk.c - the disk part of an action's partition queues (buffer.mode disk,
 * and hybrid once it spills; sink-behaviour.md §6): records in their disk
 * form, written by the pump to one segment queue per topic-partition (p<N>/,
 * the pending queue in the action's directory itself), read back for sending
 * (up to CACHE_MAX bytes of just-written records stay in RAM and are not read
 * back), dropped and expired from the disk head, moved from the pending queue
 * to their partitions once the partition count is known; replayed at start.
 * See kaction_priv.h for the structures and the locking.
 *
 * @locality the pump thread (kdisk_work) and kaction_new/destroy; in disk
 * mode the fdatasync calls and segment removals on the action's syncer
 * thread; file I/O: never on a scheduler thread. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kaction_priv.h"

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

/* the fixed fields of a record's disk form */
static void put_head(uint8_t **p, uint32_t klen, uint32_t vlen, uint32_t nh, int64_t ts,
                     int64_t born_ms, bool replayed) {
    wr32(p, klen);
    wr32(p, vlen);
    wr32(p, nh | (born_ms ? REC_BORN : 0) | (replayed ? REC_REPLAYED : 0));
    wr64(p, ts);
    if (born_ms) wr64(p, born_ms);
}

static bool enc_room(kaction *k, size_t n) {
    if (n <= k->enc_cap) return true;
    uint8_t *nb = realloc(k->enc, n);
    if (!nb) return false;
    k->enc = nb;
    k->enc_cap = n;
    return true;
}

/* A staged view's disk form as the parts of one segment record (iov[4]):
 * the fixed fields and the headers (re-encoded) in the action's buffer, key
 * and value where the view has them (no copy). False: too large, or out of
 * memory. */
static bool encode_view(kaction *k, const kview *v, struct iovec *iov) {
    /* a disk header takes 8 bytes of lengths, a compact one at least 2 */
    size_t fixed = 20 + (v->born_ms ? 8 : 0), most = fixed + v->hbytes + 6 * (size_t)v->nh;
    if (!enc_room(k, most)) return false;
    uint8_t *p = k->enc;
    put_head(&p, v->klen, v->vlen, v->nh, v->ts, v->born_ms, false);
    const uint8_t *h = v->hdrs, *end = v->hdrs + v->hbytes;
    for (uint32_t i = 0; i < v->nh; i++) { /* written by the ring: whole */
        uint64_t kl = 0, vl = 0;
        ramq_get_varint(&h, end, &kl);
        wr32(&p, (uint32_t)kl);
        uint8_t *vlen_at = p;
        p += 4;
        memcpy(p, h, kl), p += kl, h += kl;
        ramq_get_varint(&h, end, &vl);
        wr32(&vlen_at, (uint32_t)vl);
        memcpy(p, h, vl), p += vl, h += vl;
    }
    size_t hlen = (size_t)(p - k->enc) - fixed;
    if (fixed + v->klen + v->vlen + hlen > SEGQ_MAX_RECORD) return false;
    iov[0] = (struct iovec){k->enc, fixed};
    iov[1] = (struct iovec){(void *)v->key, v->klen};
    iov[2] = (struct iovec){(void *)v->val, v->vlen};
    iov[3] = (struct iovec){k->enc + fixed, hlen};
    return true;
}

/* r in its disk form, in the action's buffer (the pump's, or destroy's once
 * the pump stopped; no allocation per record) */
static const uint8_t *encode(kaction *k, const krec *r, uint32_t *len) {
    size_t n = 20 + (r->born_ms ? 8 : 0) + r->klen + r->vlen;
    for (uint32_t i = 0; i < r->nh; i++)
        n += 8 + r->hdrs[i].key_len + r->hdrs[i].val_len;
    if (n > SEGQ_MAX_RECORD || !enc_room(k, n)) return NULL;
    uint8_t *p = k->enc;
    put_head(&p, r->klen, r->vlen, r->nh, r->ts, r->born_ms, r->replayed);
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

const uint8_t *kdisk_hdrs_walk(const uint8_t *p, const uint8_t *end, uint32_t n, size_t *lens,
                               kprod_header *out) {
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 8) return NULL;
        uint32_t kl = rd32(&p), vl = rd32(&p);
        if ((uint64_t)kl + vl > (uint64_t)(end - p)) return NULL;
        lens[2 * i] = kl;
        lens[2 * i + 1] = vl;
        if (out) out[i] = (kprod_header){(const char *)p, kl, p + kl, vl};
        p += (size_t)kl + vl;
    }
    return p;
}

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
    if (!(p = kdisk_hdrs_walk(p, end, d->nh, hl, NULL))) return false;
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

/* -- the pump's disk work (k->dmu held; k->mu taken for the shared parts) -- */

/* RAM a cached record takes (about: its header, data and the allocator's share) */
static uint64_t ram_cost_of(uint32_t nh, uint32_t est) {
    return sizeof(krec) + nh * sizeof(kprod_header) + est + 16;
}

static uint64_t ram_cost(const krec *r) {
    return ram_cost_of(r->nh, r->est);
}

/* -- the syncer: fdatasync, the removal of finished segments and the unmap
 * of read mappings on a thread of its own (disk mode). This VM's fdatasync
 * has taken up to 1.5 s under load, and its file system trims the blocks of
 * an unlinked file before unlink returns; the pump waiting for either let
 * staged records pile up in RAM. The last unmap of a removed segment is its
 * file's last close (its cached pages dropped, its blocks freed): 4 % of the
 * pump's samples when the pump did it. -- */

static void sync_one(segq *q, int fd) {
    if (fdatasync(fd) != 0)
        fprintf(stderr, "emqx_confluent: disk buffer: cannot sync a segment: %s\n",
                strerror(errno));
    close(fd);
    segq_synced(q);
}

static void remove_one(char *path) {
    if (unlink(path) != 0 && errno != ENOENT)
        fprintf(stderr, "emqx_confluent: disk buffer: cannot remove %s: %s\n", path,
                strerror(errno));
    free(path);
}

static void *syncer_main(void *arg) {
    kaction *k = arg;
    pthread_setname_np(pthread_self(), "ec_sync");
    pthread_mutex_lock(&k->smu);
    for (;;) {
        while (!k->sq_n && !k->sync_stop)
            pthread_cond_wait(&k->scv, &k->smu);
        if (!k->sq_n) break; /* stopping, and nothing left */
        ksync_job j = k->sq[k->sq_head];
        k->sq_head = (k->sq_head + 1) % SYNC_QMAX;
        k->sq_n--;
        pthread_mutex_unlock(&k->smu);
        if (j.path)
            remove_one(j.path);
        else if (j.addr)
            munmap(j.addr, j.len);
        else
            sync_one(j.q, j.fd);
        pthread_mutex_lock(&k->smu);
    }
    pthread_mutex_unlock(&k->smu);
    return NULL;
}

/* queued for the syncer: a descriptor to sync, a path to remove or a
 * mapping to unmap; false when its queue is full or it is not running */
static bool syncer_put(kaction *k, ksync_job j) {
    pthread_mutex_lock(&k->smu);
    bool ok = k->syncer_started && !k->sync_stop && k->sq_n < SYNC_QMAX;
    if (ok) {
        k->sq[(k->sq_head + k->sq_n++) % SYNC_QMAX] = j;
        pthread_cond_signal(&k->scv);
    }
    pthread_mutex_unlock(&k->smu);
    return ok;
}

/* segq's syncer callback: synced here when the syncer cannot take it */
static void sync_submit(void *ctx, segq *q, int fd) {
    if (!syncer_put(ctx, (ksync_job){.q = q, .fd = fd})) sync_one(q, fd);
}

/* segq's remover callback: segments removed on the syncer too (unlink on a
 * file system mounted with `discard` waits for the device) */
static void remove_submit(void *ctx, char *path) {
    if (!syncer_put(ctx, (ksync_job){.fd = -1, .path = path})) remove_one(path);
}

/* segq's unmapper callback: the last unmap of a read mapping (on the pump,
 * from a delivery report) done by the syncer */
static void unmap_submit(void *ctx, void *addr, size_t len) {
    if (!syncer_put(ctx, (ksync_job){.fd = -1, .addr = addr, .len = len})) munmap(addr, len);
}

void kdisk_syncer_start(kaction *k) {
    pthread_mutex_init(&k->smu, NULL);
    pthread_cond_init(&k->scv, NULL);
    k->syncer_started = pthread_create(&k->syncer, NULL, syncer_main, k) == 0;
}

void kdisk_syncer_stop(kaction *k) {
    if (!k->syncer_started) return;
    pthread_mutex_lock(&k->smu);
    k->sync_stop = true;
    pthread_cond_signal(&k->scv);
    pthread_mutex_unlock(&k->smu);
    pthread_join(k->syncer, NULL); /* it syncs what is queued first */
    k->syncer_started = false;
}

/* q's segment queue opened: its syncs go to the syncer (disk mode) */
static void use_syncer(kaction *k, segq *dq) {
    if (k->mode != KCONF_BUF_DISK || !k->syncer_started) return;
    segq_set_syncer(dq, sync_submit, k);
    segq_set_remover(dq, remove_submit, k);
    segq_set_unmapper(dq, unmap_submit, k);
}

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
    if (st == EC_OK) use_syncer(k, q->dq);
    return st;
}

/* a record on disk that cannot be read back leaves the buffer as failed */
static void drop_unreadable(kaction *k, kqueue *q, uint64_t id, void *tok, uint32_t est) {
    ec_error err;
    segq_ack(q->dq, id, &err);
    pthread_mutex_lock(&k->mu);
    q->bytes -= est;
    pthread_mutex_unlock(&k->mu);
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, est);
    atomic_fetch_add(&k->m.failed, 1);
    if (tok && k->reply) k->reply(k->reply_ctx, tok, "unreadable_disk_record", -1, -1);
}

/* Reads q's next record on disk: 1 with it decoded into *dr (its bytes valid
 * until the next read, or when *pin is set until segq_unpin(*pin): pin not
 * NULL asks for that where the record can be lent), its id and token; 2 when
 * it is a cached one (its RAM copy is q->peek now); 0 when there is none, or
 * after an I/O error (tried again READ_RETRY_MS later, not at every turn of
 * the pump). A record that does not decode fails. */
static int dq_read(kaction *k, kqueue *q, drec *dr, uint64_t *id, void **tok, segq_pin **pin) {
    if (pin) *pin = NULL;
    while (q->dq_n) {
        const void *d;
        uint32_t n;
        ec_error err;
        if (q->read_again_ms && ec_mono_ms() < q->read_again_ms) return 0;
        int got = segq_next_pinned(q->dq, &d, &n, id, pin, &err);
        if (got != 1) {
            if (got == 0) ec_fail(&err, EC_EINVAL, "records missing from the disk buffer");
            fprintf(stderr, "emqx_confluent: disk buffer: %s\n", err.msg);
            q->read_again_ms = ec_mono_ms() + READ_RETRY_MS;
            return 0;
        }
        q->read_again_ms = 0;
        q->dq_n--;
        if (q->cn && *id == q->cfirst) { /* its RAM copy */
            krec *r = q->ch;
            q->ch = r->next;
            q->cfirst++;
            if (!--q->cn) q->ct = NULL;
            k->cache_bytes -= ram_cost(r);
            q->peek = r;
            if (pin) segq_unpin(*pin), *pin = NULL;
            return 2;
        }
        *tok = tok_take(q, *id);
        if (decode(d, n, dr)) {
            dr->replayed = dr->replayed || *id < q->replay_end;
            if (!dr->born_ms && k->max_age_ms) dr->born_ms = ec_wall_ms(); /* written without one */
            return 1;
        }
        if (pin) segq_unpin(*pin), *pin = NULL;
        drop_unreadable(k, q, *id, *tok, 0);
    }
    return 0;
}

/* the record read, as q->peek (false: out of memory, it failed) */
static bool keep_peek(kaction *k, ktopic *t, kqueue *q, const drec *dr, uint64_t id, void *tok) {
    krec *r = unpersist(dr);
    if (!r) {
        drop_unreadable(k, q, id, tok, dr->est);
        return false;
    }
    r->dq_id = id;
    r->token = tok;
    r->q = q;
    r->topic = t;
    r->partition = q->index;
    q->peek = r;
    return true;
}

/* the oldest record of q's disk part, read ahead into q->peek (NULL: none,
 * or an I/O error) */
static krec *dq_load(kaction *k, ktopic *t, kqueue *q) {
    while (!q->peek) {
        drec dr;
        uint64_t id;
        void *tok;
        int got = dq_read(k, q, &dr, &id, &tok, NULL);
        if (got == 0) return NULL;
        if (got == 1) keep_peek(k, t, q, &dr, id, tok);
    }
    return q->peek;
}

/* dr as a view lent from the segment's mapping (its headers in the disk
 * form: the kout's dform) */
static kview disk_view(const drec *dr, void *tok) {
    return (kview){.key = dr->key,
                   .val = dr->val,
                   .hdrs = dr->hdrs,
                   .klen = dr->klen,
                   .vlen = dr->vlen,
                   .nh = dr->nh,
                   .hbytes = dr->hbytes,
                   .est = dr->est,
                   .ts = dr->ts,
                   .born_ms = dr->born_ms,
                   .token = tok};
}

/* q's read-ahead disk record taken out of the buffer for good */
static krec *take_peek(kaction *k, kqueue *q) {
    krec *r = q->peek;
    q->peek = NULL;
    q->unbuf += r->est;
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, r->est);
    return r;
}

/* the oldest buffered record of q (RAM list, then disk), taken out of the
 * buffer for good; NULL when q holds none */
static krec *take_head(kaction *k, ktopic *t, kqueue *q) {
    pthread_mutex_lock(&k->mu);
    krec *r = ka_ram_take(k, q);
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
    uint32_t e = ka_ram_head_est(k, q);
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

/* r leaves q's buffer into its window and the pump's batch */
static void send_out(kaction *k, kqueue *q, krec *r, kout *batch, int *nb) {
    r->q = q;
    ka_window_take(k, q, r->est);
    batch[(*nb)++] = (kout){.q = q, .r = r};
    q->unbuf += r->est;
}

/* q's bytes that left the buffer this turn taken off its count (k->mu held) */
static void settle(kqueue *q) {
    q->bytes -= q->unbuf;
    q->unbuf = 0;
}

/* whether the record to write to q can skip its disk part's queue: handed
 * out at once, nothing ahead of it and room in the window */
static bool can_go_direct(kaction *k, ktopic *t, kqueue *q, bool ahead, uint32_t est, int nb) {
    return !ahead && !q->peek && !q->dq_n && usable(t, q) && nb < PUMP_BATCH &&
           ka_window_room(k, q, est);
}

/* a record that could not be written fails (a full disk): off q's counts */
static void write_failed(kaction *k, kqueue *q, krec *r, const ec_error *err, dq_out *out) {
    pthread_mutex_lock(&k->mu);
    q->bytes -= r->est;
    pthread_mutex_unlock(&k->mu);
    atomic_fetch_sub(&k->m.queuing, 1);
    atomic_fetch_sub(&k->m.queuing_bytes, r->est);
    snprintf(out->failed_why, sizeof out->failed_why, "disk_buffer_error: %s", err->msg);
    r->next = out->failed;
    out->failed = r;
}

/* The record `id` (r, or when r is NULL the staged view v) was written to
 * q's disk part to be read back later. It is kept in RAM too while it is the
 * next to read (nothing unread on disk before it but cached records) and the
 * cache has room: read back without reading or decoding. */
static void written(kaction *k, ktopic *t, kqueue *q, uint64_t id, krec *r, const kview *v,
                    uint64_t *cur, dq_out *out) {
    bool next = q->cn ? q->cfirst + q->cn == id && q->dq_n == q->cn : !q->dq_n;
    uint32_t est = r ? r->est : v->est;
    void *token = r ? r->token : v->token;
    q->dq_n++;
    *cur += est;
    if (next && k->cache_bytes + ram_cost_of(r ? r->nh : v->nh, est) <= CACHE_MAX &&
        (r || (r = ka_materialize(v)))) {
        r->dq_id = id;
        r->q = q;
        r->topic = t;
        r->partition = q->index;
        r->next = NULL;
        if (q->cn++)
            q->ct->next = r;
        else
            q->ch = r, q->cfirst = id;
        q->ct = r;
        k->cache_bytes += ram_cost(r);
    } else {
        tok_put(q, id, token);
        free(r);
    }
    disk_limit(k, t, q, cur, &out->dropped);
}

/* Writes a record to q's disk part, or hands it out at once when it can go
 * direct (into batch), without waiting for the write to reach the file
 * (kdisk_work flushes every queue before the batch is sent). The record is
 * r (moved to q from the pending queue), or else the staged view o, written
 * straight from the stage ring and, when direct, lent from there (o's pin
 * moves to the batch): a staged record gets a record of its own only to be
 * cached or to fail. *cur: q's buffered bytes before it. */
static void dq_write(kaction *k, ktopic *t, kqueue *q, krec *r, kout *o, bool ahead, uint64_t *cur,
                     kout *batch, int *nb, dq_out *out) {
    const kview *v = r ? NULL : &o->v;
    uint32_t est = r ? r->est : v->est, n;
    struct iovec iov[4];
    int parts = 0;
    if (v) {
        if (encode_view(k, v, iov)) parts = 4;
    } else {
        const uint8_t *b = encode(k, r, &n);
        if (b) iov[0] = (struct iovec){(void *)b, n}, parts = 1;
    }
    ec_error err;
    ec_status st = parts ? dq_open(k, q, &err) : ec_fail(&err, EC_ENOMEM, "out of memory");
    bool direct = !st && can_go_direct(k, t, q, ahead, est, *nb);
    uint64_t id = 0;
    if (!st && !direct && !tok_reserve(q)) st = ec_fail(&err, EC_ENOMEM, "out of memory");
    if (!st) st = segq_appendv(q->dq, iov, parts, direct, &id, &err);
    if (st) {
        if (!r && (r = ka_materialize(v))) {
            r->topic = t;
            r->partition = q->index;
        }
        if (r) {
            write_failed(k, q, r, &err, out);
        } else { /* not even that: answered here */
            ka_stage_fail(k, q, v);
            atomic_fetch_add(&k->m.failed, 1);
            if (v->token && k->reply) k->reply(k->reply_ctx, v->token, "out of memory", -1, -1);
        }
        return;
    }
    if (direct && r) {
        r->dq_id = id;
        send_out(k, q, r, batch, nb);
    } else if (direct) {
        ka_window_take(k, q, est);
        batch[(*nb)++] = (kout){.q = q, .v = *v, .chunk = o->chunk, .t = t, .dq_id = id};
        o->chunk = NULL; /* unpinned after the delivery report */
        q->unbuf += est;
    } else {
        written(k, t, q, id, r, v, cur, out);
    }
}

/* Hands q's records on disk out into batch while the window has room: the
 * read-ahead and cached ones as they are, the others lent from the
 * segment's mapping (no copy: the key and headers are copied by librdkafka,
 * the value is read where it lies). One that does not fit, or that could
 * not be mapped (read with pread), waits as q->peek, a record of its own. */
static void dq_send(kaction *k, ktopic *t, kqueue *q, kout *batch, int *nb) {
    while (usable(t, q) && *nb < PUMP_BATCH) {
        if (q->peek) {
            if (!ka_window_room(k, q, q->peek->est)) return;
            krec *r = q->peek;
            q->peek = NULL;
            send_out(k, q, r, batch, nb);
            continue;
        }
        drec dr;
        uint64_t id;
        void *tok;
        segq_pin *pin;
        int got = dq_read(k, q, &dr, &id, &tok, &pin);
        if (got == 0) return;
        if (got == 2) continue; /* cached: q->peek */
        if (!pin || !ka_window_room(k, q, dr.est)) {
            keep_peek(k, t, q, &dr, id, tok);
            segq_unpin(pin);
            continue;
        }
        ka_window_take(k, q, dr.est);
        batch[(*nb)++] = (kout){.q = q,
                                .v = disk_view(&dr, tok),
                                .pin = pin,
                                .t = t,
                                .dq_id = id,
                                .replayed = dr.replayed,
                                .dform = true};
        q->unbuf += dr.est;
    }
}

/* One turn of disk work for q: staged records written (the pending queue's
 * moved to their partitions once the count is known), stale ones expired,
 * a lost partition emptied, and records read back into batch while the
 * window has room. */
static void dq_turn(kaction *k, ktopic *t, kqueue *q, int64_t now, kout *batch, int *nb,
                    dq_out *out) {
    uint64_t cur;
    if (q->index < 0 && t->count > 0) { /* pending: every record to its partition, in order */
        krec *staged = ka_stage_take(k, t, q, &cur);
        krec *r;
        while ((r = dq_load(k, t, q)) || (r = staged)) {
            if (r == q->peek)
                q->peek = NULL;
            else
                staged = r->next;
            int32_t p = ka_pick(k, r, t->count);
            kqueue *pq = t->parts[p];
            pthread_mutex_lock(&k->mu);
            q->bytes -= r->est;
            pq->bytes += r->est;
            pq->spilled = true;
            uint64_t pcur = pq->bytes - pq->unbuf - pq->stage_bytes - r->est;
            bool ahead = ka_ram_any(pq);
            pthread_mutex_unlock(&k->mu);
            uint64_t old = r->dq_id;
            r->dq_id = DQ_NONE;
            r->partition = p;
            dq_write(k, t, pq, r, NULL, ahead, &pcur, batch, nb,
                     out); /* before it leaves pending */
            if (old != DQ_NONE) {
                ec_error err;
                segq_ack(q->dq, old, &err);
            }
        }
        pthread_mutex_lock(&k->mu);
        settle(q);
        if (!q->stage.n) q->spilled = false;
        pthread_mutex_unlock(&k->mu);
        return;
    }
    /* The RAM part cannot grow meanwhile: senders stage while the disk part
     * is in use, and only the pump puts records back */
    pthread_mutex_lock(&k->mu);
    bool ram = ka_ram_any(q);
    pthread_mutex_unlock(&k->mu);
    size_t n = ka_stage_views(k, q, &cur);
    for (size_t i = 0; i < n; i++)
        dq_write(k, t, q, NULL, &k->staged[i], ram, &cur, batch, nb, out);
    ka_stage_release(k, n);
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
    if (ram) { /* records may have left it (limit, lost partition) */
        pthread_mutex_lock(&k->mu);
        ram = ka_ram_any(q);
        pthread_mutex_unlock(&k->mu);
    }
    if (!ram) dq_send(k, t, q, batch, nb);
    pthread_mutex_lock(&k->mu);
    settle(q);
    if (!q->peek && !q->dq_n && !q->stage.n) q->spilled = false;
    pthread_mutex_unlock(&k->mu);
}

/* whether q has disk work: staged records, or records on disk */
static bool has_disk_work(const kqueue *q) {
    return q->stage.n || q->peek || q->dq_n;
}

/* The pump's disk work for every queue (no lock held): see dq_turn; and
 * in disk mode what was written made durable every DISK_FSYNC_MS. */
void kdisk_work(kaction *k, int64_t wall, kout *batch, int *nb) {
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
            settle(q); /* moved here from the pending queue this turn */
            bool work = has_disk_work(q);
            pthread_mutex_unlock(&k->mu);
            if (work) dq_turn(k, t, q, wall, batch, nb, &out);
            /* what was written is in the file before any record is sent (and in
             * disk mode durable every DISK_FSYNC_MS) */
            ec_error err;
            if (q->dq &&
                (segq_flush(q->dq, &err) ||
                 (k->mode == KCONF_BUF_DISK && segq_maybe_sync(q->dq, (uint64_t)k->now_ms, &err))))
                fprintf(stderr, "emqx_confluent: disk buffer: %s\n", err.msg);
        }
    }
    pthread_mutex_unlock(&k->dmu);
    ka_answer_dropped(k, out.dropped);
    ka_answer_all(k, out.expired, KPROD_ERR_EXPIRED, &k->m.dropped, &k->m.dropped_expired);
    ka_answer_all(k, out.lost, "partition_lost", &k->m.failed, NULL);
    ka_answer_all(k, out.failed, out.failed_why, &k->m.failed, NULL);
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
    use_syncer(k, q->dq);
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
ec_status kdisk_replay_all(kaction *k, ktopic *t, ec_error *err) {
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
        if (!ka_grow_parts(k, t, (int32_t)n + 1)) {
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

ec_status kdisk_wipe(const char *dir, ec_error *err) {
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

/* Destroy, once the pump stopped: q's staged records written to disk (disk
 * mode: kept for the next start) and, with the read-ahead and cached ones,
 * chained onto *rest to be answered; the callers of records only on disk
 * answered resource_stopped here. Returns how many were answered here. */
uint64_t kdisk_close_queue(kaction *k, kqueue *q, krec **rest) {
    uint64_t n = 0, cur;
    for (krec *r = ka_stage_take(k, NULL, q, &cur), *next; r; r = next) {
        next = r->next;
        uint32_t len;
        const uint8_t *b = encode(k, r, &len);
        ec_error err;
        uint64_t id;
        if (k->mode == KCONF_BUF_DISK && b && dq_open(k, q, &err) == EC_OK)
            segq_append(q->dq, b, len, &id, &err);
        r->next = *rest;
        *rest = r;
        atomic_fetch_sub(&k->m.queuing, 1);
        atomic_fetch_sub(&k->m.queuing_bytes, r->est);
    }
    if (q->peek) {
        q->peek->next = *rest;
        *rest = q->peek;
        q->peek = NULL;
    }
    for (krec *r = q->ch, *next; r; r = next) { /* on disk too: kept for the next start */
        next = r->next;
        r->next = *rest;
        *rest = r;
    }
    q->ch = q->ct = NULL;
    q->cn = 0;
    for (size_t j = 0; j < q->tok_n; j++) { /* records on disk: their callers */
        tokrun *tr = &q->toks[q->tok_head + j];
        for (uint64_t c = 0; c < tr->n; c++)
            if (k->reply) k->reply(k->reply_ctx, tr->token, "resource_stopped", -1, -1);
        n += tr->n;
    }
    q->tok_n = 0;
    return n;
}

/* frees q's disk part (closed: what is on disk stays) */
void kdisk_free_queue(kqueue *q) {
    segq_close(q->dq);
    free(q->peek);
    for (krec *r = q->ch, *n; r; r = n)
        n = r->next, free(r);
    free(q->toks);
}
