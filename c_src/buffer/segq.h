/* segq.h - a durable FIFO of records in append-only segment files: the
 * storage of the disk buffer mode (issue 5), one queue per topic-partition.
 *
 * Layout of a queue directory:
 *   00000000000000000001.seg ...  segments of at most segment_bytes (a single
 *                                 larger record gets a segment of its own)
 *   commit                        the acknowledged prefix: (segment, offset)
 * A segment starts with a 16-byte header ("ECSEG\0", format version u16,
 * segment number u64). Each record is a 12-byte header (0xEC, record format
 * version, two reserved bytes, u32 length, u32 checksum of the first 8
 * header bytes and the payload) followed by the payload; integers
 * little-endian. Records are written in version 2, checksummed with CRC-32C
 * (a CPU instruction where there is one); version 1 records, checksummed with
 * zlib's CRC-32, are still read. The commit
 * file holds (segment, offset) with its own CRC; it only moves forward, over
 * records acknowledged in order (segq_ack marks any record; the marker
 * advances over the contiguous acknowledged prefix).
 *
 * Opening replays: every record after the commit marker is pending again
 * (at-least-once: what was sent but not acknowledged before a crash is sent
 * again). A torn or corrupt record ends its segment: the rest of that
 * segment is cut off (ftruncate), counted in the report, and reading goes on
 * with the next segment; start-up never fails on bad data. An unreadable
 * commit marker replays from the oldest segment (duplicates, not loss).
 *
 * Durability: segq_append and segq_append_out write the record at once
 * (a killed process loses nothing: the page cache keeps it); segq_appendv
 * gathers records in a buffer of the queue's (256 KiB) and writes them with
 * one pwrite at segq_flush (or when the buffer is full, or before a read,
 * a sync, a roll or the close): a killed process loses what was not
 * flushed. Blocks are allocated ahead of the appends (fallocate, 1 MiB at a
 * time, so a full disk is an error of the append; where the file system
 * cannot, a write that fails at segq_flush keeps what was gathered for the
 * next flush, and until one succeeds reads, rolls and appends past the
 * buffer fail with the reason; only segq_close then loses it), so a
 * segment left by a killed process (or closed by a roll) ends in zeros: at
 * open a zero record header with only zeros after it is a clean end, and
 * such a segment is trimmed to its data, as the tail is by segq_close. The
 * marker is written when it passes a segment and by segq_sync, which makes
 * both durable (fdatasync). The caller decides when: after every append
 * (fsync_ms = 0) or batched (segq_maybe_sync every fsync_ms). A segment file
 * truncated by another process while it is the tail is not supported.
 *
 * @locality every function does file I/O: dirty schedulers or C threads. Not
 * thread-safe: one owner (or the caller's lock), except segq_synced. */
#ifndef EC_SEGQ_H
#define EC_SEGQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../core/error.h"

#define SEGQ_FORMAT        1 /* segment header and commit marker */
#define SEGQ_REC_FORMAT    2 /* records written: CRC-32C */
#define SEGQ_REC_FORMAT_V1 1 /* records read too: zlib CRC-32 */
#define SEGQ_SEG_HEADER    16
#define SEGQ_REC_HEADER    12
#define SEGQ_MAX_RECORD    (64u << 20)
#define SEGQ_MAX_PARTS     8 /* parts of one record for segq_appendv */

typedef struct segq segq;

typedef struct segq_report {
    uint64_t pending;       /* records after the commit marker, replayed */
    uint64_t pending_bytes; /* their payload bytes */
    uint64_t skipped_bytes; /* cut off after torn/corrupt records */
    uint32_t bad_segments;  /* segments that had a bad record or header */
    bool commit_unreadable; /* the marker was corrupt: replayed from the oldest */
} segq_report;

/* Opens (creating) the queue in dir. */
ec_status segq_open(const char *dir, uint64_t segment_bytes, uint32_t fsync_ms, segq **out,
                    segq_report *rep, ec_error *err);

/* Appends one record (len <= SEGQ_MAX_RECORD). Returns its id (ids grow by
 * one per record, from 0 at open for the replayed ones). */
ec_status segq_append(segq *q, const void *data, uint32_t len, uint64_t *id, ec_error *err);

/* Appends one record that counts as handed out at once (write-through use:
 * the caller keeps the record in memory and acknowledges it later). Only
 * when every earlier record was handed out (EC_ESTATE otherwise). */
ec_status segq_append_out(segq *q, const void *data, uint32_t len, uint64_t *id, ec_error *err);

/* Appends one record made of the n parts of iov (n <= SEGQ_MAX_PARTS, in
 * order) to the queue's write buffer: as segq_append_out when out, else as
 * segq_append, but in the file only after segq_flush (see Durability). */
ec_status segq_appendv(segq *q, const struct iovec *iov, int n, bool out, uint64_t *id,
                       ec_error *err);
/* Writes what segq_appendv gathered (one pwrite). */
ec_status segq_flush(segq *q, ec_error *err);

/* The next record not yet handed out: 1 with *data and *len (valid until the
 * next call) and *id, 0 when none, -1 on an I/O error (in err). */
int segq_next(segq *q, const void **data, uint32_t *len, uint64_t *id, ec_error *err);

/* segq_next, and when the record lies in the segment's mapping (pin not
 * NULL), a reference to it in *pin: *data stays valid (read-only) until
 * segq_unpin(*pin), even after later reads, the removal of the segment or
 * segq_close (the records of a segment are never rewritten or cut while it
 * is open). *pin NULL: *data is valid until the next call only. */
typedef struct segq_pin segq_pin;
int segq_next_pinned(segq *q, const void **data, uint32_t *len, uint64_t *id, segq_pin **pin,
                     ec_error *err);
/* drops a reference from segq_next_pinned (any thread; NULL: nothing) */
void segq_unpin(segq_pin *p);

/* Marks a handed-out record acknowledged; the marker advances over the
 * contiguous acknowledged prefix. A segment whose records are all
 * acknowledged is deleted even while an older record is still out (the tail
 * once it rolls), so a stuck record holds back only its own segment; after
 * a crash the records of the segments left are replayed from the marker
 * (at-least-once). Memory: one entry per handed-out unacknowledged record,
 * records acknowledged as they are handed out merge into one. Unknown ids
 * are ignored. */
ec_status segq_ack(segq *q, uint64_t id, ec_error *err);

/* Calls fn for every record not handed out yet, in order, without handing
 * it out (*data valid during the call): 0 at the end, -1 on an I/O error. */
int segq_scan(segq *q, void (*fn)(void *ctx, const void *data, uint32_t len), void *ctx,
              ec_error *err);

/* fdatasync of the tail segment and the marker. */
ec_status segq_sync(segq *q, ec_error *err);
/* segq_sync when fsync_ms passed since the last one (now in ms, monotonic). */
ec_status segq_maybe_sync(segq *q, uint64_t now_ms, ec_error *err);

/* The fdatasync calls done elsewhere (a thread of the caller's), so the
 * owner never waits for the device: fn(ctx, q, fd) gets a descriptor of its
 * own to sync and close, then calls segq_synced(q) (from any thread). While
 * one is out, segq_sync leaves its work for the next call; a segment closed
 * on a roll is handed out too. fn = NULL: syncs here again (after waiting
 * for what is out); segq_close does that itself. */
typedef void (*segq_sync_fn)(void *ctx, segq *q, int fd);
void segq_set_syncer(segq *q, segq_sync_fn fn, void *ctx);
void segq_synced(segq *q);

/* The unlink of a segment whose records are all acknowledged done elsewhere
 * (it can wait for the device: a file system mounted with `discard` trims
 * its blocks synchronously): fn(ctx, path) owns the malloc'd path, unlinks
 * and frees it (from any thread). A segment not removed yet when the process
 * dies is as one the process died before removing: removed at the next open
 * when the marker is past it, else replayed (duplicates, never loss).
 * fn = NULL: unlinked here. */
typedef void (*segq_remove_fn)(void *ctx, char *path);
void segq_set_remover(segq *q, segq_remove_fn fn, void *ctx);

/* The munmap of a segment's read mapping done elsewhere once its last
 * reference goes (segq_unpin may run on a thread that must not wait): for a
 * segment already removed it is the file's last close, which drops its
 * cached pages and frees its blocks. fn(ctx, addr, len) unmaps it (from any
 * thread). Mappings made after the call use it; fn = NULL: unmapped by the
 * thread that drops the last reference. */
typedef void (*segq_unmap_fn)(void *ctx, void *addr, size_t len);
void segq_set_unmapper(segq *q, segq_unmap_fn fn, void *ctx);

/* Records appended or replayed and not yet behind the commit marker (an
 * acknowledged record after an unacknowledged one still counts), and their
 * payload bytes. */
uint64_t segq_pending(const segq *q);
uint64_t segq_pending_bytes(const segq *q);
/* Number of segment files on disk. */
uint32_t segq_segments(const segq *q);
/* Entries kept for handed-out records not behind the marker (tests). */
size_t segq_out_entries(const segq *q);

/* Syncs and closes (what is not acknowledged stays for the next open). */
void segq_close(segq *q);

#endif
