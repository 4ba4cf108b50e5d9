/* segq.c - durable segment-file FIFO (see segq.h). */
#include "segq.h"

#include "../core/crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

typedef struct seginfo {
    uint64_t num;
    uint64_t size; /* valid end */
    uint64_t live; /* records after the marker not acknowledged yet */
} seginfo;

/* A handed-out record not yet behind the marker, or a run of acknowledged
 * ones (records acknowledged as soon as they are handed out, such as those
 * dropped from a full buffer, merge into one entry: the ring stays as long as
 * the unacknowledged records, not as the records offered since the oldest). */
typedef struct inflight {
    uint64_t first;    /* id of its first record */
    uint64_t seg, end; /* where its last record ends */
    uint64_t bytes;    /* payload bytes */
    uint64_t n;        /* records */
    bool acked;
} inflight;

struct segq {
    char *dir;
    uint64_t seg_bytes;
    uint32_t fsync_ms;
    uint64_t last_sync;
    seginfo *segs;
    uint32_t nsegs, cap;
    int tail_fd; /* the last segment, for appending (-1: none open) */
    bool tail_dirty, commit_dirty;
    /* appends are gathered in wbuf (file offset woff) and written with one
     * pwrite (segq_flush, or when it is full) into blocks allocated ahead */
    uint8_t *wbuf;
    size_t wlen;
    uint64_t woff;
    uint64_t alloc_end; /* the tail's blocks are allocated up to here */
    bool no_alloc;      /* the file system cannot allocate ahead */
    bool commit_moved;  /* the marker moved since it was last written */
    int commit_fd;
    uint64_t c_seg, c_off; /* acknowledged prefix */
    uint64_t r_seg, r_off; /* next record to hand out */
    int r_fd;              /* cached read descriptor of r_fd_seg */
    uint64_t r_fd_seg;
    segq_pin *rpin;       /* r_fd_seg mapped for reading (no system call per record); the
                             queue holds one reference, every record lent from it one more */
    uint64_t rmap_ok;     /* bytes of the file known to exist (fstat): readable in rpin */
    const uint8_t *rdata; /* the record read last */
    uint64_t rdrop;       /* rpin's pages below this were given back */
    uint8_t *rbuf;
    size_t rcap;
    uint64_t next_id, next_read_id;
    inflight *fl; /* ring: handed out, not committed; ids next_read_id - fl_n .. */
    size_t fl_head, fl_n, fl_cap;
    uint64_t pending, pending_bytes;
    segq_sync_fn syncer; /* NULL: fdatasync here */
    void *syncer_ctx;
    segq_remove_fn remover; /* NULL: finished segments unlinked here */
    void *remover_ctx;
    segq_unmap_fn unmapper; /* NULL: read mappings unmapped by their last unpin */
    void *unmapper_ctx;
    _Atomic uint32_t sync_out; /* descriptors handed to the syncer, not yet synced */
};

/* ---- little helpers ------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) {
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static ec_status sys_fail(ec_error *err, const char *what, const char *path) {
    return ec_fail(err, EC_EINVAL, "%s %s: %s", what, path, strerror(errno));
}

static void seg_path(const segq *q, uint64_t num, char *buf, size_t n) {
    snprintf(buf, n, "%s/%020llu.seg", q->dir, (unsigned long long)num);
}

static bool read_full(int fd, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

static bool ensure_rbuf(segq *q, size_t n) {
    if (n <= q->rcap) return true;
    size_t cap = q->rcap ? q->rcap : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *p = realloc(q->rbuf, cap);
    if (!p) return false;
    q->rbuf = p;
    q->rcap = cap;
    return true;
}

/* a record's checksum over its first 8 header bytes and its payload: CRC-32
 * (zlib) for format version 1, CRC-32C for version 2 (what is written) */
static uint32_t rec_crc(const uint8_t *hdr8, const void *payload, uint32_t len) {
    if (hdr8[1] == SEGQ_REC_FORMAT_V1) {
        uLong c = crc32(0L, Z_NULL, 0);
        c = crc32(c, hdr8, 8);
        return (uint32_t)crc32(c, payload, len);
    }
    return crc32c(crc32c(0, hdr8, 8), payload, len);
}

/* segs[] is in ascending order of num (sorted at open, appended by roll in
 * order, deleted from in place); called per record read and acknowledged,
 * with up to hundreds of segments behind a backlog */
static int seg_index(const segq *q, uint64_t num) {
    uint32_t lo = 0, hi = q->nsegs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (q->segs[mid].num < num)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < q->nsegs && q->segs[lo].num == num ? (int)lo : -1;
}

/* ---- commit marker ------------------------------------------------------------- */

#define COMMIT_SIZE 28

static ec_status write_commit(segq *q, ec_error *err) {
    uint8_t b[COMMIT_SIZE];
    memcpy(b, "ECCM", 4);
    put32(b + 4, SEGQ_FORMAT);
    put64(b + 8, q->c_seg);
    put64(b + 16, q->c_off);
    put32(b + 24, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, 24));
    if (pwrite(q->commit_fd, b, sizeof b, 0) != (ssize_t)sizeof b)
        return sys_fail(err, "cannot write the commit marker in", q->dir);
    q->commit_dirty = true;
    return EC_OK;
}

static bool read_commit(segq *q) {
    uint8_t b[COMMIT_SIZE];
    if (!read_full(q->commit_fd, b, sizeof b, 0)) return false;
    if (memcmp(b, "ECCM", 4) || get32(b + 4) != SEGQ_FORMAT ||
        get32(b + 24) != (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, 24))
        return false;
    q->c_seg = get64(b + 8);
    q->c_off = get64(b + 16);
    return true;
}

/* ---- open: scan and repair ------------------------------------------------------ */

static int cmp_seg(const void *a, const void *b) {
    uint64_t x = ((const seginfo *)a)->num, y = ((const seginfo *)b)->num;
    return x < y ? -1 : x > y;
}

static bool add_seg(segq *q, uint64_t num, uint64_t size) {
    if (q->nsegs == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 8;
        seginfo *s = realloc(q->segs, sizeof *s * cap);
        if (!s) return false;
        q->segs = s;
        q->cap = cap;
    }
    q->segs[q->nsegs++] = (seginfo){num, size, 0};
    return true;
}

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* whether [off, end) of fd reads as zeros */
static bool zeros_from(int fd, uint64_t off, uint64_t end) {
    uint8_t b[16384];
    while (off < end) {
        size_t n = end - off < sizeof b ? (size_t)(end - off) : sizeof b;
        if (!read_full(fd, b, n, off) || !all_zero(b, n)) return false;
        off += n;
    }
    return true;
}

/* the end of what was written in [off, end): zeros allocated ahead are not data */
static uint64_t data_end(int fd, uint64_t off, uint64_t end) {
    uint8_t b[16384];
    while (end > off) {
        size_t n = end - off < sizeof b ? (size_t)(end - off) : sizeof b;
        if (!read_full(fd, b, n, end - n)) return end;
        for (size_t i = n; i > 0; i--)
            if (b[i - 1]) return end - n + i;
        end -= n;
    }
    return off;
}

/* validates segment i, cutting it at the first bad record; counts what is
 * after the commit marker */
static void scan_segment(segq *q, uint32_t i, segq_report *rep) {
    char path[4096];
    seg_path(q, q->segs[i].num, path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        q->segs[i].size = 0;
        rep->bad_segments++;
        return;
    }
    uint64_t size = (uint64_t)st.st_size, off = SEGQ_SEG_HEADER;
    uint8_t h[SEGQ_SEG_HEADER];
    bool bad = false;
    if (!read_full(fd, h, sizeof h, 0) || memcmp(h, "ECSEG\0", 6) ||
        (h[6] | h[7] << 8) != SEGQ_FORMAT || get64(h + 8) != q->segs[i].num) {
        off = 0; /* nothing usable */
        bad = true;
    }
    bool zero_tail = false;
    while (!bad && off < size) {
        uint8_t rh[SEGQ_REC_HEADER];
        uint64_t hn = size - off < SEGQ_REC_HEADER ? size - off : SEGQ_REC_HEADER;
        uint32_t len;
        if (!read_full(fd, rh, hn, off)) {
            bad = true;
            break;
        }
        if (all_zero(rh, hn)) { /* blocks allocated ahead of the appends */
            zero_tail = zeros_from(fd, off + hn, size);
            bad = !zero_tail; /* something written after a gap: damage */
            break;
        }
        if (hn < SEGQ_REC_HEADER || rh[0] != 0xEC ||
            (rh[1] != SEGQ_REC_FORMAT_V1 && rh[1] != SEGQ_REC_FORMAT) ||
            (len = get32(rh + 4)) > SEGQ_MAX_RECORD || size - off - SEGQ_REC_HEADER < len ||
            !ensure_rbuf(q, len) || (len && !read_full(fd, q->rbuf, len, off + SEGQ_REC_HEADER)) ||
            rec_crc(rh, q->rbuf, len) != get32(rh + 8)) {
            bad = true;
            break;
        }
        bool after_commit =
            q->segs[i].num > q->c_seg || (q->segs[i].num == q->c_seg && off >= q->c_off);
        if (after_commit) {
            q->segs[i].live++;
            rep->pending++;
            rep->pending_bytes += len;
        }
        off += SEGQ_REC_HEADER + len;
    }
    if (bad) {
        rep->bad_segments++;
        rep->skipped_bytes += data_end(fd, off, size) - off;
        if (off == 0) {
            close(fd);
            unlink(path);
            q->segs[i].size = 0;
            return;
        }
        if (ftruncate(fd, (off_t)off) == 0) fdatasync(fd);
    } else if (zero_tail) { /* a clean end (the process stopped without closing) */
        (void)!ftruncate(fd, (off_t)off);
    }
    close(fd);
    q->segs[i].size = off;
}

ec_status segq_open(const char *dir, uint64_t segment_bytes, uint32_t fsync_ms, segq **out,
                    segq_report *rep, ec_error *err) {
    memset(rep, 0, sizeof *rep);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return sys_fail(err, "cannot create", dir);
    segq *q = calloc(1, sizeof *q);
    if (!q || !(q->dir = strdup(dir))) {
        free(q);
        return ec_fail(err, EC_ENOMEM, "out of memory");
    }
    q->seg_bytes = segment_bytes < 4096 ? 4096 : segment_bytes;
    q->fsync_ms = fsync_ms;
    q->tail_fd = q->r_fd = q->commit_fd = -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/commit", dir);
    q->commit_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (q->commit_fd < 0) {
        sys_fail(err, "cannot open", path);
        segq_close(q);
        return EC_EINVAL;
    }
    struct stat cst;
    bool had_commit = fstat(q->commit_fd, &cst) == 0 && cst.st_size > 0;
    bool commit_ok = had_commit && read_commit(q);
    rep->commit_unreadable = had_commit && !commit_ok;
    DIR *d = opendir(dir);
    if (!d) {
        sys_fail(err, "cannot list", dir);
        segq_close(q);
        return EC_EINVAL;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        unsigned long long num = strtoull(e->d_name, &end, 10);
        if (end != e->d_name && !strcmp(end, ".seg") && strlen(e->d_name) == 24 &&
            !add_seg(q, num, 0)) {
            closedir(d);
            segq_close(q);
            return ec_fail(err, EC_ENOMEM, "out of memory");
        }
    }
    closedir(d);
    if (q->nsegs) qsort(q->segs, q->nsegs, sizeof *q->segs, cmp_seg);
    if (!commit_ok) { /* replay everything there is */
        q->c_seg = q->nsegs ? q->segs[0].num : 1;
        q->c_off = SEGQ_SEG_HEADER;
    }
    /* drop what the marker says is acknowledged, validate the rest */
    uint32_t keep = 0;
    for (uint32_t i = 0; i < q->nsegs; i++) {
        if (q->segs[i].num < q->c_seg) {
            seg_path(q, q->segs[i].num, path, sizeof path);
            unlink(path);
            continue;
        }
        q->segs[keep] = q->segs[i];
        scan_segment(q, keep, rep);
        if (q->segs[keep].size > 0) keep++;
    }
    q->nsegs = keep;
    /* the read cursor starts at the marker (or the first segment after it) */
    int ci = seg_index(q, q->c_seg);
    if (ci >= 0 && q->c_off > q->segs[ci].size) q->c_off = q->segs[ci].size; /* cut below it */
    if (ci < 0) {
        q->c_seg = q->nsegs ? q->segs[0].num : q->c_seg;
        q->c_off = SEGQ_SEG_HEADER;
    }
    q->r_seg = q->c_seg;
    q->r_off = q->c_off;
    q->pending = rep->pending;
    q->pending_bytes = rep->pending_bytes;
    q->next_id = rep->pending;
    if (write_commit(q, err) != EC_OK) {
        segq_close(q);
        return EC_EINVAL;
    }
    *out = q;
    return EC_OK;
}

/* ---- append ----------------------------------------------------------------------- */

/* makes what was written to fd durable: handed to the syncer as a
 * descriptor of its own when there is one, else here; 0 or -1 (errno) */
static int sync_fd(segq *q, int fd) {
    if (q->syncer) {
        int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (d >= 0) {
            atomic_fetch_add(&q->sync_out, 1);
            q->syncer(q->syncer_ctx, q, d);
            return 0;
        }
    }
    return fdatasync(fd);
}

void segq_set_syncer(segq *q, segq_sync_fn fn, void *ctx) {
    while (atomic_load(&q->sync_out)) { /* what is out finishes first */
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    q->syncer = fn;
    q->syncer_ctx = ctx;
}

void segq_synced(segq *q) {
    atomic_fetch_sub(&q->sync_out, 1);
}

void segq_set_remover(segq *q, segq_remove_fn fn, void *ctx) {
    q->remover = fn;
    q->remover_ctx = ctx;
}

void segq_set_unmapper(segq *q, segq_unmap_fn fn, void *ctx) {
    q->unmapper = fn;
    q->unmapper_ctx = ctx;
}

static ec_status flush_tail(segq *q, ec_error *err);

/* writes what was gathered; trim: gives back the blocks allocated past the
 * last record, so a closed segment's size is its data. A segment closed by a
 * roll is not trimmed (the file system may trim the blocks on the device
 * before ftruncate returns): its zeros past the data read as its clean end,
 * and the next open trims it */
static void close_tail(segq *q, bool trim) {
    if (q->tail_fd < 0) return;
    ec_error err;
    if (flush_tail(q, &err)) { /* closing: what could not be written is lost */
        fprintf(stderr, "emqx_confluent: disk buffer: %s\n", err.msg);
        q->wlen = 0;
    }
    q->alloc_end = 0;
    if (trim && q->nsegs) (void)!ftruncate(q->tail_fd, (off_t)q->segs[q->nsegs - 1].size);
    if (q->tail_dirty) (void)sync_fd(q, q->tail_fd);
    close(q->tail_fd);
    q->tail_fd = -1;
    q->tail_dirty = false;
}

static void delete_seg(segq *q, uint32_t i);

static ec_status roll(segq *q, ec_error *err) {
    ec_status st;
    if (q->wlen && (st = flush_tail(q, err))) return st; /* what is gathered belongs to this tail */
    close_tail(q, false);
    uint64_t num = q->nsegs ? q->segs[q->nsegs - 1].num + 1 : (q->c_seg ? q->c_seg : 1);
    if (q->nsegs && !q->segs[q->nsegs - 1].live && q->segs[q->nsegs - 1].num != q->c_seg)
        delete_seg(q, q->nsegs - 1); /* everything in it was acknowledged already */
    char path[4096];
    seg_path(q, num, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return sys_fail(err, "cannot create", path);
    uint8_t h[SEGQ_SEG_HEADER];
    memcpy(h, "ECSEG\0", 6);
    h[6] = SEGQ_FORMAT & 0xff;
    h[7] = SEGQ_FORMAT >> 8;
    put64(h + 8, num);
    if (write(fd, h, sizeof h) != (ssize_t)sizeof h || !add_seg(q, num, SEGQ_SEG_HEADER)) {
        close(fd);
        unlink(path);
        return sys_fail(err, "cannot write", path);
    }
    q->tail_fd = fd;
    q->tail_dirty = true;
    if (q->nsegs == 1 && q->pending == 0) { /* the queue was empty: start here */
        q->c_seg = q->r_seg = num;
        q->c_off = q->r_off = SEGQ_SEG_HEADER;
    }
    return EC_OK;
}

static ec_status open_tail(segq *q, ec_error *err) {
    char path[4096];
    seg_path(q, q->segs[q->nsegs - 1].num, path, sizeof path);
    q->tail_fd = open(path, O_RDWR | O_CLOEXEC);
    return q->tail_fd < 0 ? sys_fail(err, "cannot open", path) : EC_OK;
}

#define ALLOC_AHEAD (1u << 20)   /* blocks of the tail allocated ahead at a time */
#define WBUF_BYTES  (256u << 10) /* appends gathered before one pwrite */

/* writes the gathered appends to the tail. When that fails (blocks
 * allocated ahead make that a file system without fallocate on a full disk,
 * or a failing device), what was written stays and the rest stays gathered
 * for the next flush: nothing is lost, and until a flush succeeds reads
 * (which flush first) and appends past the buffer fail with the reason */
static ec_status flush_tail(segq *q, ec_error *err) {
    size_t done = 0;
    while (done < q->wlen) {
        ssize_t w = pwrite(q->tail_fd, q->wbuf + done, q->wlen - done, (off_t)(q->woff + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = ENOSPC;
            ec_status st = sys_fail(err, "cannot write to segment in", q->dir);
            memmove(q->wbuf, q->wbuf + done, q->wlen - done);
            q->woff += done;
            q->wlen -= done;
            return st;
        }
        done += (size_t)w;
    }
    q->woff += q->wlen;
    q->wlen = 0;
    return EC_OK;
}

ec_status segq_flush(segq *q, ec_error *err) {
    return q->wlen ? flush_tail(q, err) : EC_OK;
}

/* allocates the tail's blocks up to end at least (false: the disk is full) */
static bool alloc_tail(segq *q, uint64_t from, uint64_t end) {
    if (q->no_alloc || end <= q->alloc_end) return true;
    uint64_t want = end - from < ALLOC_AHEAD ? ALLOC_AHEAD : end - from;
    if (fallocate(q->tail_fd, 0, (off_t)from, (off_t)want) == 0 ||
        (errno == ENOSPC &&
         fallocate(q->tail_fd, 0, (off_t)from, (off_t)(want = end - from)) == 0)) {
        q->alloc_end = from + want;
        return true;
    }
    if (errno == EOPNOTSUPP) q->no_alloc = true;
    return q->no_alloc;
}

/* writes one record, the n parts of iov (n <= SEGQ_MAX_PARTS), at the tail
 * (no sync); *id its id, *plen its payload bytes */
static ec_status append_raw(segq *q, const struct iovec *iov, int n, uint64_t *id, uint32_t *plen,
                            ec_error *err) {
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (n > SEGQ_MAX_PARTS || total > SEGQ_MAX_RECORD)
        return ec_fail(err, EC_ELIMIT, "record of %llu bytes: too large",
                       (unsigned long long)total);
    uint32_t len = (uint32_t)total;
    ec_status st;
    if (q->tail_fd < 0 && q->nsegs && (st = open_tail(q, err))) return st;
    seginfo *t = q->nsegs ? &q->segs[q->nsegs - 1] : NULL;
    if (!t || (t->size > SEGQ_SEG_HEADER && t->size + SEGQ_REC_HEADER + len > q->seg_bytes)) {
        if ((st = roll(q, err))) return st;
        t = &q->segs[q->nsegs - 1];
    }
    uint8_t h[SEGQ_REC_HEADER] = {0xEC, SEGQ_REC_FORMAT, 0, 0};
    put32(h + 4, len);
    uint32_t crc = crc32c(0, h, 8);
    for (int i = 0; i < n; i++)
        crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
    put32(h + 8, crc);
    size_t rec = sizeof h + len;
    if (!alloc_tail(q, t->size, t->size + rec))
        return sys_fail(err, "cannot append to segment in", q->dir); /* full */
    if (q->wlen + rec > WBUF_BYTES && (st = flush_tail(q, err))) return st;
    if (!q->wlen) q->woff = t->size;
    if (!q->wbuf && rec <= WBUF_BYTES) q->wbuf = malloc(WBUF_BYTES);
    if (q->wbuf && rec <= WBUF_BYTES) {
        /* a record cut short by a kill during the pwrite fails its CRC at the
         * next open */
        uint8_t *at = q->wbuf + q->wlen;
        memcpy(at, h, sizeof h);
        at += sizeof h;
        for (int i = 0; i < n; i++) {
            if (iov[i].iov_len) memcpy(at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        q->wlen += rec;
    } else {
        struct iovec all[SEGQ_MAX_PARTS + 1] = {{h, sizeof h}};
        memcpy(all + 1, iov, (size_t)n * sizeof *iov);
        if (pwritev(q->tail_fd, all, n + 1, (off_t)t->size) != (ssize_t)(sizeof h + len)) {
            /* a short write leaves a torn record: cut it (if that fails too,
             * the next open cuts it) */
            (void)!ftruncate(q->tail_fd, (off_t)t->size);
            return sys_fail(err, "cannot append to segment in", q->dir);
        }
    }
    t->size += sizeof h + len;
    t->live++;
    q->tail_dirty = true;
    q->pending++;
    q->pending_bytes += len;
    *id = q->next_id++;
    *plen = len;
    return EC_OK;
}

static bool fl_push(segq *q, inflight f);

ec_status segq_appendv(segq *q, const struct iovec *iov, int n, bool out, uint64_t *id,
                       ec_error *err) {
    if (out && q->next_read_id != q->next_id)
        return ec_fail(err, EC_ESTATE, "records of %s not handed out yet", q->dir);
    uint64_t rid = 0;
    uint32_t plen = 0;
    ec_status st = append_raw(q, iov, n, &rid, &plen, err);
    if (st) return st;
    if (out) {
        seginfo *t = &q->segs[q->nsegs - 1];
        if (!fl_push(q, (inflight){rid, t->num, t->size, plen, 1, false})) {
            /* not trackable: leave it to be handed out by segq_next */
            return ec_fail(err, EC_ENOMEM, "out of memory");
        }
        q->r_seg = t->num;
        q->r_off = t->size;
        q->next_read_id++;
    }
    if (id) *id = rid;
    return q->fsync_ms == 0 ? segq_sync(q, err) : EC_OK;
}

/* one record of one part, written at once */
static ec_status append_now(segq *q, const void *data, uint32_t len, bool out, uint64_t *id,
                            ec_error *err) {
    struct iovec iov = {(void *)data, len};
    ec_status st = segq_appendv(q, &iov, 1, out, id, err);
    return st ? st : segq_flush(q, err);
}

ec_status segq_append(segq *q, const void *data, uint32_t len, uint64_t *id, ec_error *err) {
    return append_now(q, data, len, false, id, err);
}

ec_status segq_append_out(segq *q, const void *data, uint32_t len, uint64_t *id, ec_error *err) {
    return append_now(q, data, len, true, id, err);
}

/* ---- read, ack ------------------------------------------------------------------------ */

static inflight *fl_at(const segq *q, size_t i) { /* fl_cap: a power of two */
    return &q->fl[(q->fl_head + i) & (q->fl_cap - 1)];
}

static bool fl_push(segq *q, inflight f) {
    if (q->fl_n == q->fl_cap) {
        size_t cap = q->fl_cap ? q->fl_cap * 2 : 64;
        inflight *n = malloc(sizeof *n * cap);
        if (!n) return false;
        for (size_t i = 0; i < q->fl_n; i++)
            n[i] = *fl_at(q, i);
        free(q->fl);
        q->fl = n;
        q->fl_cap = cap;
        q->fl_head = 0;
    }
    *fl_at(q, q->fl_n++) = f;
    return true;
}

/* A mapping of a segment, unmapped when its last reference goes (the
 * queue's, or that of a record lent from it). */
struct segq_pin {
    _Atomic uint32_t refs;
    void *addr;
    size_t len;
    segq_unmap_fn unmap; /* the queue's unmapper when the mapping was made */
    void *unmap_ctx;
};

void segq_unpin(segq_pin *p) {
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    if (p->unmap)
        p->unmap(p->unmap_ctx, p->addr, p->len);
    else
        munmap(p->addr, p->len);
    free(p);
}

static void drop_map(segq *q) {
    segq_unpin(q->rpin);
    q->rpin = NULL;
    q->rmap_ok = 0;
}

static void close_read(segq *q) {
    drop_map(q);
    q->rdrop = 0;
    if (q->r_fd >= 0) close(q->r_fd);
    q->r_fd = -1;
}

/* n bytes at off of the segment being read, from its mapping; NULL: read
 * them with pread. The mapping covers a whole segment (segment_bytes and
 * what is allocated past it) however far the file has grown, so a growing
 * tail is mapped once; only bytes the file is known to hold are read from
 * it (a page past the end of the file would fault). */
static const uint8_t *rview(segq *q, uint64_t off, size_t n) {
    if (q->rpin && off + n <= q->rmap_ok) return (const uint8_t *)q->rpin->addr + off;
    struct stat st;
    if (fstat(q->r_fd, &st) != 0 || (uint64_t)st.st_size < off + n || st.st_size == 0) return NULL;
    if (!q->rpin || (uint64_t)st.st_size > q->rpin->len) {
        drop_map(q); /* records lent from the old mapping keep it */
        size_t page = (size_t)sysconf(_SC_PAGESIZE), want = (size_t)q->seg_bytes + ALLOC_AHEAD;
        if (want < (size_t)st.st_size) want = (size_t)st.st_size;
        want = (want + page - 1) / page * page;
        segq_pin *p = malloc(sizeof *p);
        void *m = p ? mmap(NULL, want, PROT_READ, MAP_SHARED, q->r_fd, 0) : MAP_FAILED;
        if (m == MAP_FAILED) {
            free(p);
            return NULL;
        }
        *p = (segq_pin){.addr = m, .len = want, .unmap = q->unmapper, .unmap_ctx = q->unmapper_ctx};
        atomic_init(&p->refs, 1);
        q->rpin = p;
    }
    q->rmap_ok = (uint64_t)st.st_size;
    return (const uint8_t *)q->rpin->addr + off;
}

/* reads the record at (*seg, *off), moving past segments that ended or are
 * gone; 1 with the record at q->rdata (valid until the next read), 0 at the
 * end, -1 on an I/O error */
static int read_at(segq *q, uint64_t *seg, uint64_t *off, uint32_t *len, ec_error *err) {
    for (;;) {
        int i = seg_index(q, *seg);
        if (i < 0) {
            /* the cursor's segment is gone or not made yet: the next one */
            uint32_t j = 0;
            while (j < q->nsegs && q->segs[j].num < *seg)
                j++;
            if (j == q->nsegs) return 0;
            *seg = q->segs[j].num;
            *off = SEGQ_SEG_HEADER;
            continue;
        }
        if (*off >= q->segs[i].size) {
            if ((uint32_t)i + 1 >= q->nsegs) return 0;
            *seg = q->segs[i + 1].num;
            *off = SEGQ_SEG_HEADER;
            continue;
        }
        if (q->r_fd < 0 || q->r_fd_seg != *seg) {
            close_read(q);
            char path[4096];
            seg_path(q, *seg, path, sizeof path);
            if ((q->r_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
                sys_fail(err, "cannot open", path);
                return -1;
            }
            q->r_fd_seg = *seg;
        }
        const uint8_t *h = rview(q, *off, SEGQ_REC_HEADER), *payload = NULL;
        uint8_t hb[SEGQ_REC_HEADER];
        uint32_t n = 0;
        if (!h && read_full(q->r_fd, hb, sizeof hb, *off)) h = hb;
        if (h && (n = get32(h + 4)) <= SEGQ_MAX_RECORD &&
            *off + SEGQ_REC_HEADER + n <= q->segs[i].size)
            payload = rview(q, *off + SEGQ_REC_HEADER, n);
        if (h && !payload && n <= SEGQ_MAX_RECORD && ensure_rbuf(q, n ? n : 1) &&
            (!n || read_full(q->r_fd, q->rbuf, n, *off + SEGQ_REC_HEADER)))
            payload = q->rbuf;
        if (!payload) {
            ec_fail(err, EC_EINVAL, "cannot read segment %llu in %s", (unsigned long long)*seg,
                    q->dir);
            return -1;
        }
        q->rdata = payload;
        /* pages read past leave this process's resident set (they stay in
         * the page cache): RAM stays flat however far the reader goes */
        uint64_t page = 1u << 20;
        if (q->rpin && *off >= q->rdrop + page) {
            uint64_t to = *off & ~(page - 1);
            madvise((uint8_t *)q->rpin->addr + q->rdrop, to - q->rdrop, MADV_DONTNEED);
            q->rdrop = to;
        }
        *len = n;
        return 1;
    }
}

int segq_next(segq *q, const void **data, uint32_t *len, uint64_t *id, ec_error *err) {
    return segq_next_pinned(q, data, len, id, NULL, err);
}

int segq_next_pinned(segq *q, const void **data, uint32_t *len, uint64_t *id, segq_pin **pin,
                     ec_error *err) {
    if (pin) *pin = NULL;
    if (segq_flush(q, err)) return -1; /* what is read must be in the file */
    uint32_t n;
    int r = read_at(q, &q->r_seg, &q->r_off, &n, err);
    if (r != 1) return r;
    uint64_t end = q->r_off + SEGQ_REC_HEADER + n;
    if (!fl_push(q, (inflight){q->next_read_id, q->r_seg, end, n, 1, false})) {
        ec_fail(err, EC_ENOMEM, "out of memory");
        return -1;
    }
    q->r_off = end;
    if (pin && q->rpin && q->rdata != q->rbuf) { /* in the mapping: lent */
        atomic_fetch_add(&q->rpin->refs, 1);
        *pin = q->rpin;
    }
    *data = q->rdata;
    *len = n;
    *id = q->next_read_id++;
    return 1;
}

int segq_scan(segq *q, void (*fn)(void *ctx, const void *data, uint32_t len), void *ctx,
              ec_error *err) {
    if (segq_flush(q, err)) return -1;
    uint64_t seg = q->r_seg, off = q->r_off;
    uint32_t n;
    int r;
    while ((r = read_at(q, &seg, &off, &n, err)) == 1) {
        fn(ctx, q->rdata, n);
        off += SEGQ_REC_HEADER + n;
    }
    return r;
}

static void delete_seg(segq *q, uint32_t i) {
    char path[4096];
    seg_path(q, q->segs[i].num, path, sizeof path);
    char *own = q->remover ? strdup(path) : NULL;
    if (own)
        q->remover(q->remover_ctx, own); /* as if unlinked (see segq_set_remover) */
    else
        unlink(path);
    if (q->r_fd >= 0 && q->r_fd_seg == q->segs[i].num) close_read(q);
    memmove(&q->segs[i], &q->segs[i + 1], sizeof *q->segs * (q->nsegs - i - 1));
    q->nsegs--;
}

static void delete_before(segq *q, uint64_t num) {
    while (q->nsegs > 1 && q->segs[0].num < num) /* never the tail */
        delete_seg(q, 0);
}

ec_status segq_ack(segq *q, uint64_t id, ec_error *err) {
    if (!q->fl_n || id < fl_at(q, 0)->first || id >= q->next_read_id) return EC_OK;
    /* the last entry whose first id is <= id: reports mostly come in order,
     * so mostly the oldest */
    size_t lo = 0, hi = q->fl_n == 1 || fl_at(q, 1)->first > id ? 0 : q->fl_n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (fl_at(q, mid)->first <= id)
            lo = mid;
        else
            hi = mid - 1;
    }
    inflight *f = fl_at(q, lo);
    if (f->acked) return EC_OK;
    f->acked = true;
    int si = seg_index(q, f->seg);
    if (si >= 0 && q->segs[si].live && !--q->segs[si].live && (uint32_t)si + 1 < q->nsegs &&
        q->segs[si].num != q->c_seg)
        delete_seg(q, (uint32_t)si); /* every record of it acknowledged, not the tail */
    if (lo + 1 == q->fl_n && lo > 0 && fl_at(q, lo - 1)->acked) { /* merge into the run */
        inflight *p = fl_at(q, lo - 1);
        p->seg = f->seg;
        p->end = f->end;
        p->bytes += f->bytes;
        p->n += f->n;
        q->fl_n--;
    }
    uint64_t old_seg = q->c_seg;
    bool moved = false;
    while (q->fl_n && q->fl[q->fl_head].acked) {
        inflight *h = &q->fl[q->fl_head];
        q->c_seg = h->seg;
        q->c_off = h->end;
        q->pending -= h->n;
        q->pending_bytes -= h->bytes;
        q->fl_head = (q->fl_head + 1) & (q->fl_cap - 1);
        q->fl_n--;
        moved = true;
    }
    if (!moved) return EC_OK;
    /* a segment read to its end is done once the marker reaches its end */
    int ci = seg_index(q, q->c_seg);
    if (ci >= 0 && q->c_off >= q->segs[ci].size && (uint32_t)ci + 1 < q->nsegs) {
        q->c_seg = q->segs[ci + 1].num;
        q->c_off = SEGQ_SEG_HEADER;
    }
    if (q->c_seg != old_seg) {
        /* the marker must be past a segment before its file goes */
        ec_status st = write_commit(q, err);
        if (st) return st;
        q->commit_moved = false;
        delete_before(q, q->c_seg);
        return EC_OK;
    }
    /* within a segment the marker is written with the next sync: a crash
     * before it replays a few acknowledged records (at-least-once) */
    q->commit_moved = true;
    return EC_OK;
}

ec_status segq_sync(segq *q, ec_error *err) {
    ec_status fst = segq_flush(q, err);
    if (fst) return fst;
    if (q->syncer && atomic_load(&q->sync_out)) return EC_OK; /* the last one is under way */
    if (q->commit_moved) {
        ec_status st = write_commit(q, err);
        if (st) return st;
        q->commit_moved = false;
    }
    if (q->tail_fd >= 0 && q->tail_dirty) {
        if (sync_fd(q, q->tail_fd) != 0) return sys_fail(err, "cannot sync segment in", q->dir);
        q->tail_dirty = false;
    }
    if (q->commit_dirty) {
        if (sync_fd(q, q->commit_fd) != 0)
            return sys_fail(err, "cannot sync the marker in", q->dir);
        q->commit_dirty = false;
    }
    return EC_OK;
}

ec_status segq_maybe_sync(segq *q, uint64_t now_ms, ec_error *err) {
    if (now_ms - q->last_sync < q->fsync_ms) return EC_OK;
    q->last_sync = now_ms;
    return segq_sync(q, err);
}

uint64_t segq_pending(const segq *q) {
    return q->pending;
}
uint64_t segq_pending_bytes(const segq *q) {
    return q->pending_bytes;
}
uint32_t segq_segments(const segq *q) {
    return q->nsegs;
}
size_t segq_out_entries(const segq *q) {
    return q->fl_n;
}

void segq_close(segq *q) {
    if (!q) return;
    ec_error err;
    segq_set_syncer(q, NULL, NULL); /* waits for what is out; the rest is synced here */
    if (q->commit_fd >= 0) segq_sync(q, &err);
    close_tail(q, true);
    close_read(q);
    if (q->commit_fd >= 0) close(q->commit_fd);
    free(q->segs);
    free(q->rbuf);
    free(q->wbuf);
    free(q->fl);
    free(q->dir);
    free(q);
}
