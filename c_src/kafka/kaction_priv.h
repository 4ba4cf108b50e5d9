/* kaction_priv.h - what the producer action's runtime files share:
 * kaction.c (sending, the RAM queues, the pump, life cycle) and kdisk.c (the
 * disk part of the queues). Not part of the action's interface (kaction.h).
 *
 * Threads: senders (any thread) render records and append them to a
 * queue; the pump thread alone talks to librdkafka for sending: it hands
 * records over, serves the delivery reports and errors (kprod_poll) and
 * keeps the in-flight windows; the metadata thread asks partition counts.
 *
 * Locking: one mutex per action (mu) guards the topic list and every queue's
 * RAM part, staged list and byte counts; it is held only for queue
 * operations, never across a librdkafka call or file I/O (librdkafka's
 * queue-event callback takes it with a librdkafka lock held). The disk part
 * of each queue belongs to the pump, under dmu (taken to acknowledge records
 * on disk). Window and stall state are the pump's alone. */
#ifndef EC_KACTION_PRIV_H
#define EC_KACTION_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../buffer/ramq.h"
#include "../buffer/segq.h"
#include "../core/clock.h"
#include "../sink/kheaders.h"
#include "../sink/tmpl.h"
#include "kaction.h"
#include "kprod.h"

#define KACTION_MAX_TOPICS     10000 /* distinct dynamic topics per action */
#define UNKNOWN_TOPIC_RETRY_MS 30000 /* EMQX caches "unknown topic" for 30 s */
#define UNRESOLVED_RETRY_MS    1000  /* metadata retry while Kafka is unreachable */
#define PUMP_IDLE_WAIT_MS      100
#define SYNC_QMAX              64 /* descriptors waiting for the syncer (more: synced at once) */
#define POOL_BUSY_MAX          (16u << 20) /* spare ring chunks kept under load, at most */
#define PUMP_BATCH             512         /* records handed to librdkafka per lock release */
#define DISK_FSYNC_MS          200         /* disk mode: appends made durable at least this often */
#define DQ_NONE                UINT64_MAX
#define STAGE_MAX              (16u << 20) /* staged bytes per queue before drops, at least */
#define LOCK_SLICE             512         /* backlog records handled per hold of k->mu */
#define CACHE_MAX              (4u << 20)  /* RAM for written records kept to send (per action) */
#define READ_RETRY_MS          1000        /* a disk part that failed to read waits this long */
#define STALL_MS               1000 /* in-flight records unanswered this long: the partition stalls */
#define KREC_TAG               ((uintptr_t)4) /* a librdkafka opaque that is a krec (else a kticket) */

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
    int64_t born_ms; /* max_batch_age set: when the record was buffered, wall clock (else 0) */
    char *key, *val;
    uint32_t klen, vlen, nh;
    kprod_header *hdrs;
    uint64_t dq_id; /* disk mode: the record's id in the segment queue (DQ_NONE: none) */
    bool replayed;  /* read back from disk at start: no `success` (sink-behaviour.md §6.1) */
    _Alignas(8) char data[]; /* starts with the header array (unpersist, ka_materialize) */
} krec;

/* A RAM record in its compact form (kaction.c ring_*): a flags byte (1: a
 * token follows, else the previous record's; 2: headers follow), varint key
 * and value lengths, the timestamp as a zig-zag varint difference to the
 * previous record's (and when max_batch_age is set the buffering time the
 * same way), the token (8 bytes), the header count, then key, value and the
 * headers (varint length, name, varint length, value). What a view of one
 * holds, decoded; key, val and hdrs point into the record. */
typedef struct kview {
    const uint8_t *key, *val, *hdrs;
    uint32_t klen, vlen, nh, hbytes, est;
    int64_t ts, born_ms;
    void *token;
} kview;

typedef struct ring_state { /* the previous record's, for the differences */
    int64_t ts, born_ms;
    void *token;
} ring_state;

typedef struct tokrun { /* n records from id `first` on carry the same token */
    uint64_t first, n;
    void *token;
} tokrun;

/* Buffered records of one partition (or of a topic whose partition count is
 * not known yet) and its in-flight window. Under k->mu: the RAM part (the
 * list of records of their own, then the ring), the staged list and the
 * byte counts. The list only holds records put back after librdkafka
 * refused them for now. In disk and hybrid mode records reach the disk part
 * through the staged list: senders never do file I/O; the pump appends them.
 * The disk part (dq, dq_n, peek, toks) is the pump's alone, except
 * acknowledgements (k->dmu). Order: RAM part, then disk (peek first), then
 * staged. A kqueue never moves or goes away before the action (delivery
 * reports find it). */
struct kqueue {
    krec *head, *tail;
    ramq ring;
    ring_state w, r;    /* the ring's writer (tail) and reader (head) */
    uint64_t bytes;     /* estimated bytes buffered (RAM, disk and staged) */
    uint64_t ram_bytes; /* of the RAM part */
    ramq stage;         /* records for the disk part, in the compact form (no allocation by
                       senders; the pump writes them to disk from here) */
    ring_state sw, sr;  /* its writer and reader */
    uint64_t stage_bytes;
    uint64_t unbuf; /* the pump's: bytes out of the disk part this turn, still in `bytes` */
    bool spilled;   /* hybrid: the disk part is in use, so new records go after it */
    int32_t index;  /* partition; -1: the topic's pending queue */
    segq *dq;
    uint64_t dq_n;         /* records on disk not handed out (peek not counted) */
    uint64_t replay_end;   /* ids below it were read back at start */
    krec *peek;            /* the oldest record on disk, read ahead */
    int64_t read_again_ms; /* after a read error: no reading before then */
    krec *ch, *ct;         /* cached: RAM copies of the next records on disk to read, */
    uint64_t cfirst, cn;   /* ids cfirst.. (no reading back, no decoding) */
    tokrun *toks;          /* tokens of records on disk, by id */
    size_t tok_head, tok_n, tok_cap;
    /* the pump's: the in-flight window, and whether the partition stalled
     * (records out get no answer: no more are handed over until one comes) */
    uint64_t inflight_bytes;
    uint32_t inflight;
    bool stalled;
    int64_t progress_ms; /* the last answer, or when the window opened */
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
    _Atomic(kprod_topic *) th; /* handle for sending: made by kaction_new (fixed topic) or
                                  the metadata thread before its first query */
};

/* One record of the pump's batch: a record of its own, or a view of one
 * lent to librdkafka until the report: in q's ring or stage ring (its chunk
 * pinned), or read back from q's disk part into the segment's mapping (then
 * pinned there, its headers in the disk form, with its id there and its
 * topic). */
typedef struct kout {
    kqueue *q;
    krec *r;
    kview v;
    ramq_chunk *chunk;
    segq_pin *pin;  /* views in a segment's mapping: their pin */
    ktopic *t;      /* views from disk: their topic */
    uint64_t dq_id; /* views: the id on disk (DQ_NONE: none) */
    bool replayed;  /* views from disk: read back after a restart */
    bool dform;     /* v's headers are in the disk form (kdisk.c), not the compact one */
} kout;

/* What the delivery report of a ring record lent to librdkafka needs (the
 * pump's: taken at hand-off, given back in the report). */
typedef struct kticket {
    struct kticket *next; /* free list */
    kqueue *q;
    ramq_chunk *chunk; /* pinned while librdkafka holds the value (NULL: none) */
    segq_pin *pin;     /* or the segment mapping it lies in (NULL: none) */
    void *token;
    uint64_t dq_id; /* read back from disk: its id there (else DQ_NONE) */
    uint32_t est;
    bool replayed;
} kticket;

/* Records taken out of the buffers to be answered outside the lock: how
 * many (for the counters) and the tokens to reply to. */
typedef struct ktoks {
    void **v;
    size_t n, cap;
    uint64_t count;
} ktoks;

/* Grouped by the thread that writes them, one cache line per group, so the
 * senders and the pump do not bounce each other's lines. */
typedef struct kmetrics {
    _Alignas(64) _Atomic uint64_t matched, failed, dropped, dropped_queue_full,
        dropped_resource_stopped, dropped_expired;
    _Atomic int64_t queuing, queuing_bytes;
    _Alignas(64) _Atomic int64_t inflight;
    _Atomic uint64_t success;
} kmetrics;

/* work for a disk-mode action's syncer thread (kdisk.c): a segment to
 * remove (path), a read mapping to unmap (addr, len), else a descriptor of
 * q's to sync */
typedef struct ksync_job {
    segq *q;
    int fd;
    char *path;
    void *addr;
    size_t len;
} ksync_job;

struct kaction {
    kprod *p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t pump, meta;
    pthread_cond_t meta_cv; /* wakes the metadata thread */
    bool meta_started;
    bool stop;
    _Atomic bool pump_idle; /* the pump sleeps on cv: only then is a wake-up needed */
    bool idle_room;         /* (mu) it went to sleep with room in a window: a new record can go */
    bool events;            /* (mu) librdkafka has reports or errors for the pump */
    uint32_t trouble, trouble_seen; /* the pump's: broker connection failures seen */
    int64_t now_ms;                 /* the pump's monotonic clock for this turn */
    int64_t
        stall_ms;  /* STALL_MS, plus twice max_linger_time (librdkafka holds records that long) */
    kout *batch;   /* the pump's batch (PUMP_BATCH), and per record: */
    ktopic **tops; /*   its topic */
    int *keep;     /* records librdkafka refused for now */
    kticket *tk_free; /* the pump's tickets: free list, and the blocks they come from */
    void **tk_blocks;
    size_t tk_nblocks;
    ramq_chunk **rel; /* the pump's: chunks to unpin (under mu) once the reports are served */
    size_t nrel, relcap;
    ramq_chunk *gc; /* the pump's: chunks unpinned for good, freed without the lock */
    kout *staged;   /* ka_stage_take's views (the pump's, or destroy's) */
    size_t staged_cap;
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
    ramq_pool pool; /* (mu) spare ring chunks of every queue */
    kaction_reply_fn reply;
    void *reply_ctx;
    kconf_buffer_mode mode; /* hybrid without a directory: memory */
    char *dir;              /* disk and hybrid: the action's buffer directory */
    uint64_t seg_bytes;     /* segment_bytes; hybrid: the RAM part's size */
    pthread_mutex_t dmu;    /* guards every queue's dq (the pump and acknowledgements) */
    uint8_t *enc;           /* a record's disk form (the pump's) */
    size_t enc_cap;
    uint64_t cache_bytes; /* of every queue's cached records (the pump's) */
    /* disk mode: the syncer thread does the fdatasync calls, so the pump
     * never waits for the device (segq_set_syncer) */
    pthread_t syncer;
    bool syncer_started, sync_stop;
    pthread_mutex_t smu;
    pthread_cond_t scv;
    ksync_job sq[SYNC_QMAX]; /* ring */
    uint32_t sq_head, sq_n;
    _Atomic bool closing; /* destroy: purged/stopped records stay on disk */
    uint64_t replayed, skipped_bytes;
    _Atomic int32_t forced_count; /* tests: what metadata answers (INT32_MIN: ask Kafka) */
};

/* -- kaction.c -- */
bool ka_ram_any(const kqueue *q);                /* the RAM part holds records (k->mu) */
uint32_t ka_ram_head_est(kaction *k, kqueue *q); /* the estimate of its oldest (0: none) */
/* its oldest, out of the buffer (k->mu); NULL: none or out of memory */
krec *ka_ram_take(kaction *k, kqueue *q);
/* the pump: every record staged for q's disk part, as a chain of records of
 * their own (topic t), in order; *cur: q's buffered bytes without them (no
 * lock held; a record that cannot be made fails here) */
krec *ka_stage_take(kaction *k, ktopic *t, kqueue *q, uint64_t *cur);
/* the same as views: k->staged[0..n) (their chunks pinned until
 * ka_stage_release(k, n)), in order, taken off the staged list */
size_t ka_stage_views(kaction *k, kqueue *q, uint64_t *cur);
void ka_stage_release(kaction *k, size_t n);
/* a staged view that leaves the buffer as failed: off q's counts (the caller
 * answers it) */
void ka_stage_fail(kaction *k, kqueue *q, const kview *v);
krec *ka_materialize(const kview *v); /* a record of its own from a view (NULL: out of memory) */
/* the same for a view whose headers are in the disk form when dform */
krec *ka_materialize_form(const kview *v, bool dform);
/* answers a chain of records taken out of the buffers, counting each in c1
 * and c2 (when not NULL); no lock held */
void ka_answer_all(kaction *k, krec *list, const char *why, _Atomic uint64_t *c1,
                   _Atomic uint64_t *c2);
void ka_answer_dropped(kaction *k, krec *list); /* buffer_overflow */
int32_t ka_pick(kaction *k, const krec *r, int32_t count);
bool ka_grow_parts(kaction *k, ktopic *t, int32_t count);
bool ka_window_room(const kaction *k, kqueue *q, uint32_t est);
void ka_window_take(kaction *k, kqueue *q, uint32_t est);

/* -- kdisk.c -- */
/* Walks the n headers of a record's disk form (u32 name length, u32 value
 * length, name, value), as kaction.c's hdrs_walk does the compact form: the
 * end of the headers, NULL when the bytes do not hold them. */
const uint8_t *kdisk_hdrs_walk(const uint8_t *p, const uint8_t *end, uint32_t n, size_t *lens,
                               kprod_header *out);
/* the pump's disk work for every queue, sending into batch (no lock held);
 * wall: the wall clock for records' ages (syncs are timed by k->now_ms) */
void kdisk_work(kaction *k, int64_t wall, kout *batch, int *nb);
ec_status kdisk_replay_all(kaction *k, ktopic *t, ec_error *err); /* disk mode, at start */
ec_status kdisk_wipe(const char *dir, ec_error *err);             /* hybrid, at start */
uint64_t kdisk_close_queue(kaction *k, kqueue *q, krec **rest);
void kdisk_free_queue(kqueue *q);
void kdisk_syncer_start(kaction *k); /* disk mode, before a queue opens */
void kdisk_syncer_stop(kaction *k);  /* after every queue closed */

#endif
