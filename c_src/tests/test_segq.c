/* test_segq.c - the disk buffer's segment queue: order, acknowledged prefix,
 * replay after reopen (crash), segment roll and deletion, and start-up on a
 * torn tail, a corrupt record in the middle and a garbled commit marker. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "../buffer/segq.h"
#include "test.h"

static void tmpdir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/ec-segq-XXXXXX");
    if (!mkdtemp(buf)) buf[0] = 0;
}

static void rmrf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static void rec(char *buf, size_t n, int i) {
    snprintf(buf, n, "record-%04d-%s", i, i % 3 ? "short" : "a somewhat longer payload here");
}

static int next_str(segq *q, char *out, size_t n, uint64_t *id) {
    const void *d;
    uint32_t len;
    ec_error err;
    int r = segq_next(q, &d, &len, id, &err);
    if (r == 1) snprintf(out, n, "%.*s", (int)len, (const char *)d);
    return r;
}

TEST(segq_append_read_ack_replay) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 0);
    char b[128], got[128];
    enum { N = 1000 };
    for (int i = 0; i < N; i++) { /* several 4 KiB segments */
        rec(b, sizeof b, i);
        uint64_t id;
        REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
        CHECK_INT(id, i);
    }
    CHECK(segq_segments(q) > 3);
    CHECK_INT(segq_pending(q), N);
    /* hand out 100, acknowledge 0..49 and 60..99 (not 50..59) */
    for (int i = 0; i < 100; i++) {
        uint64_t id;
        REQUIRE(next_str(q, got, sizeof got, &id) == 1);
        rec(b, sizeof b, i);
        CHECK_STR(got, b);
        CHECK_INT(id, i);
    }
    for (int i = 0; i < 100; i++)
        if (i < 50 || i >= 60) CHECK(segq_ack(q, (uint64_t)i, &err) == EC_OK);
    CHECK_INT(segq_pending(q), N - 50); /* 60..99 wait behind 50..59 */
    uint32_t segs_before = segq_segments(q);
    /* "crash": reopen without acknowledging 50..59 */
    segq_close(q);
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, N - 50); /* 50.. again, 60..99 included (at-least-once) */
    CHECK_INT(rep.skipped_bytes, 0);
    CHECK_INT(rep.bad_segments, 0);
    CHECK(!rep.commit_unreadable);
    CHECK(segq_segments(q) <= segs_before);
    uint64_t id;
    REQUIRE(next_str(q, got, sizeof got, &id) == 1);
    rec(b, sizeof b, 50);
    CHECK_STR(got, b);
    CHECK_INT(id, 0);
    /* acknowledge everything: segments go, one (the tail) stays */
    CHECK(segq_ack(q, id, &err) == EC_OK);
    int n = 1;
    while (next_str(q, got, sizeof got, &id) == 1) {
        CHECK(segq_ack(q, id, &err) == EC_OK);
        n++;
    }
    CHECK_INT(n, N - 50);
    CHECK_INT(segq_pending(q), 0);
    CHECK_INT(segq_segments(q), 1);
    /* appends after everything was acknowledged are read next */
    REQUIRE(segq_append(q, "after", 5, &id, &err) == EC_OK);
    REQUIRE(next_str(q, got, sizeof got, &id) == 1);
    CHECK_STR(got, "after");
    segq_close(q);
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 1);
    segq_close(q);
    rmrf(dir);
}

/* An outage: the oldest record stays out (never acknowledged) while every
 * later record is handed out and acknowledged at once (dropped from a full
 * buffer). Only the stuck record's segment and the tail stay on disk, the
 * bookkeeping stays small, and a crash replays the stuck record and what
 * follows it in the segments left, never what went with deleted segments. */
TEST(segq_stuck_record_holds_back_only_its_segment) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    char b[128], got[128];
    uint64_t id, stuck;
    rec(b, sizeof b, 0);
    REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
    REQUIRE(next_str(q, got, sizeof got, &stuck) == 1);
    enum { N = 5000 }; /* about 60 segments of 4 KiB */
    uint32_t most = 0;
    size_t most_out = 0;
    for (int i = 1; i < N; i++) {
        rec(b, sizeof b, i);
        REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
        REQUIRE(next_str(q, got, sizeof got, &id) == 1);
        CHECK_STR(got, b);
        REQUIRE(segq_ack(q, id, &err) == EC_OK);
        if (segq_segments(q) > most) most = segq_segments(q);
        if (segq_out_entries(q) > most_out) most_out = segq_out_entries(q);
    }
    CHECK(most <= 3);              /* the stuck record's, the tail, one being rolled */
    CHECK(most_out <= 2);          /* the stuck record and one run */
    CHECK_INT(segq_pending(q), N); /* all behind the marker, which cannot move */
    segq_close(q);                 /* crash: the stuck record was never acknowledged */
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    CHECK(rep.pending > 1);
    CHECK(rep.pending < 400); /* two or three segments' worth, not N */
    REQUIRE(next_str(q, got, sizeof got, &id) == 1);
    rec(b, sizeof b, 0);
    CHECK_STR(got, b); /* the stuck record first */
    int prev = 0, n = 1;
    while (next_str(q, got, sizeof got, &id) == 1) { /* then in order: the rest of its */
        int i = atoi(got + 7);                       /* segment, then the last ones */
        CHECK(i > prev);
        CHECK(i < 200 || i > N - 300); /* a segment holds about 110 */
        prev = i;
        n++;
        CHECK(segq_ack(q, id, &err) == EC_OK);
    }
    CHECK_INT(n, rep.pending);
    CHECK_INT(prev, N - 1);
    segq_close(q);
    rmrf(dir);
}

static void file_in(const char *dir, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", dir, name);
}

/* writes n records, closes, and returns the path of the one segment */
static void fill(const char *dir, int n, char *seg, size_t cap) {
    segq *q;
    segq_report rep;
    ec_error err;
    if (segq_open(dir, 1 << 20, 1000, &q, &rep, &err) != EC_OK) return;
    for (int i = 0; i < n; i++) {
        char b[128];
        rec(b, sizeof b, i);
        segq_append(q, b, (uint32_t)strlen(b), NULL, &err);
    }
    segq_close(q);
    file_in(dir, "00000000000000000001.seg", seg, cap);
}

TEST(segq_torn_tail_cut_and_counted) {
    char dir[64], seg[128];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    fill(dir, 10, seg, sizeof seg);
    struct stat st;
    REQUIRE(stat(seg, &st) == 0);
    /* power loss in the middle of the last record */
    REQUIRE(truncate(seg, st.st_size - 7) == 0);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 1 << 20, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 9);
    CHECK(rep.skipped_bytes > 0);
    CHECK_INT(rep.bad_segments, 1);
    /* appending goes on after the cut, and reads are whole */
    REQUIRE(segq_append(q, "new", 3, NULL, &err) == EC_OK);
    char got[128], b[128];
    uint64_t id;
    int n = 0;
    while (next_str(q, got, sizeof got, &id) == 1) {
        if (n < 9) {
            rec(b, sizeof b, n);
            CHECK_STR(got, b);
        } else {
            CHECK_STR(got, "new");
        }
        n++;
    }
    CHECK_INT(n, 10);
    segq_close(q);
    rmrf(dir);
}

/* a child process appends n records and exits without closing (as if
 * killed): the segment keeps the blocks allocated ahead, as zeros */
static void fill_and_die(const char *dir, int n, char *seg, size_t cap) {
    file_in(dir, "00000000000000000001.seg", seg, cap);
    pid_t pid = fork();
    if (pid == 0) {
        segq *q;
        segq_report rep;
        ec_error err;
        if (segq_open(dir, 1 << 20, 1000, &q, &rep, &err) != EC_OK) _exit(1);
        for (int i = 0; i < n; i++) {
            char b[128];
            rec(b, sizeof b, i);
            if (segq_append(q, b, (uint32_t)strlen(b), NULL, &err) != EC_OK) _exit(1);
        }
        _exit(0);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    if (status != 0) seg[0] = 0;
}

TEST(segq_killed_writer_zero_tail_is_a_clean_end) {
    char dir[64], seg[128];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    fill_and_die(dir, 10, seg, sizeof seg);
    REQUIRE(seg[0]);
    off_t data = SEGQ_SEG_HEADER;
    for (int i = 0; i < 10; i++) {
        char b[128];
        rec(b, sizeof b, i);
        data += SEGQ_REC_HEADER + (off_t)strlen(b);
    }
    struct stat st;
    REQUIRE(stat(seg, &st) == 0);
    CHECK(st.st_size > data); /* zeros after the last record */
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 1 << 20, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 10);
    CHECK_INT(rep.skipped_bytes, 0);
    CHECK_INT(rep.bad_segments, 0);
    REQUIRE(stat(seg, &st) == 0);
    CHECK_INT(st.st_size, data); /* trimmed to its records */
    /* appends go on after the last record, and everything reads back */
    REQUIRE(segq_append(q, "new", 3, NULL, &err) == EC_OK);
    char got[128], b[128];
    uint64_t id;
    int n = 0;
    while (next_str(q, got, sizeof got, &id) == 1) {
        if (n < 10)
            rec(b, sizeof b, n);
        else
            snprintf(b, sizeof b, "new");
        CHECK_STR(got, b);
        n++;
    }
    CHECK_INT(n, 11);
    segq_close(q);
    rmrf(dir);

    /* bytes after a zero gap are damage: cut, and only they are counted */
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    fill_and_die(dir, 10, seg, sizeof seg);
    REQUIRE(seg[0]);
    int fd = open(seg, O_RDWR);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, "junk", 4, data + 100) == 4);
    close(fd);
    REQUIRE(segq_open(dir, 1 << 20, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 10);
    CHECK_INT(rep.bad_segments, 1);
    CHECK_INT(rep.skipped_bytes, 104);
    segq_close(q);
    rmrf(dir);
}

/* A full disk is an error for the append that hits it, never a SIGBUS, and
 * every append that succeeded reads back after reopening. The child process
 * mounts a 1.5 MiB tmpfs on the queue's directory in a mount namespace of its
 * own (as root; otherwise a 1.5 MiB file-size limit stands in for it), so the
 * second 1 MiB allocated ahead does not fit. */
typedef struct full_disk_result {
    int appended, pending, skipped, tmpfs;
    bool error_named;
} full_disk_result;

static full_disk_result fill_until_full(const char *dir) {
    full_disk_result res = {0};
    res.tmpfs = unshare(CLONE_NEWNS) == 0 &&
                mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
                mount("tmpfs", dir, "tmpfs", 0, "size=1536k") == 0;
    if (!res.tmpfs) {
        signal(SIGXFSZ, SIG_IGN); /* writes past the limit fail with EFBIG instead */
        struct rlimit rl = {3u << 19, 3u << 19};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return res;
    }
    segq *q;
    segq_report rep;
    ec_error err;
    if (segq_open(dir, 64u << 20, 1000, &q, &rep, &err) != EC_OK) return res;
    char b[1000];
    memset(b, 'x', sizeof b);
    while (res.appended < 10000 && segq_append(q, b, sizeof b, NULL, &err) == EC_OK)
        res.appended++;
    res.error_named = strstr(err.msg, "cannot append") != NULL;
    segq_close(q);
    if (segq_open(dir, 64u << 20, 1000, &q, &rep, &err) != EC_OK) return res;
    res.pending = (int)rep.pending;
    res.skipped = (int)rep.skipped_bytes;
    segq_close(q);
    return res;
}

TEST(segq_full_disk_is_an_error) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        full_disk_result res = fill_until_full(dir);
        _exit(write(pipefd[1], &res, sizeof res) == (ssize_t)sizeof res ? 0 : 3);
    }
    close(pipefd[1]);
    full_disk_result res;
    int status = -1;
    REQUIRE(read(pipefd[0], &res, sizeof res) == (ssize_t)sizeof res);
    close(pipefd[0]);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0); /* no SIGBUS */
    if (!res.tmpfs) fprintf(stderr, "    (not root: a file-size limit instead of a full tmpfs)\n");
    CHECK(res.error_named);
    CHECK(res.appended > 1000 && res.appended < 1600); /* past the first mapped MiB */
    CHECK_INT(res.pending, res.appended);
    CHECK_INT(res.skipped, 0);
    rmrf(dir);
}

TEST(segq_corrupt_record_ends_its_segment) {
    char dir[64], seg[128];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    fill(dir, 10, seg, sizeof seg);
    /* flip a payload byte of the 4th record */
    int fd = open(seg, O_RDWR);
    REQUIRE(fd >= 0);
    off_t off = SEGQ_SEG_HEADER;
    for (int i = 0; i < 3; i++) {
        char b[128];
        rec(b, sizeof b, i);
        off += SEGQ_REC_HEADER + (off_t)strlen(b);
    }
    char c;
    REQUIRE(pread(fd, &c, 1, off + SEGQ_REC_HEADER + 2) == 1);
    c ^= 0x40;
    REQUIRE(pwrite(fd, &c, 1, off + SEGQ_REC_HEADER + 2) == 1);
    close(fd);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 1 << 20, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 3);
    CHECK_INT(rep.bad_segments, 1);
    struct stat st;
    REQUIRE(stat(seg, &st) == 0);
    CHECK_INT(st.st_size, off); /* cut at the bad record */
    segq_close(q);
    rmrf(dir);
}

TEST(segq_garbled_marker_replays_all) {
    char dir[64], seg[128], marker[128];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    fill(dir, 6, seg, sizeof seg);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 1 << 20, 1000, &q, &rep, &err) == EC_OK);
    char got[128];
    uint64_t id;
    for (int i = 0; i < 4; i++) {
        REQUIRE(next_str(q, got, sizeof got, &id) == 1);
        CHECK(segq_ack(q, id, &err) == EC_OK);
    }
    segq_close(q);
    file_in(dir, "commit", marker, sizeof marker);
    int fd = open(marker, O_RDWR);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, "garbage!", 8, 10) == 8);
    close(fd);
    REQUIRE(segq_open(dir, 1 << 20, 1000, &q, &rep, &err) == EC_OK);
    CHECK(rep.commit_unreadable);
    CHECK_INT(rep.pending, 6); /* duplicates, never loss */
    segq_close(q);
    /* a good marker again after that open */
    REQUIRE(segq_open(dir, 1 << 20, 1000, &q, &rep, &err) == EC_OK);
    CHECK(!rep.commit_unreadable);
    segq_close(q);
    rmrf(dir);
}

TEST(segq_write_through) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 200, &q, &rep, &err) == EC_OK);
    uint64_t ids[200];
    for (int i = 0; i < 200; i++) {
        char b[64];
        snprintf(b, sizeof b, "wt-%03d-padding-padding", i);
        REQUIRE(segq_append_out(q, b, (uint32_t)strlen(b), &ids[i], &err) == EC_OK);
        CHECK_INT(ids[i], i);
    }
    const void *d;
    uint32_t len;
    uint64_t id;
    CHECK_INT(segq_next(q, &d, &len, &id, &err), 0); /* all already out */
    /* acknowledged out of order: the marker stops at the first hole (150) */
    for (int i = 199; i >= 0; i--)
        if (i != 150) CHECK(segq_ack(q, ids[i], &err) == EC_OK);
    CHECK_INT(segq_pending(q), 50);
    segq_close(q);
    REQUIRE(segq_open(dir, 4096, 200, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 50);
    char got[64];
    REQUIRE(next_str(q, got, sizeof got, &id) == 1);
    CHECK_STR(got, "wt-150-padding-padding");
    /* not everything handed out: write-through refuses */
    CHECK(segq_append_out(q, "x", 1, &id, &err) == EC_ESTATE);
    segq_close(q);
    rmrf(dir);
}

/* Records of format version 1 (zlib's CRC-32), as earlier versions wrote
 * them, are still read after an upgrade: a queue whose records are turned
 * into version 1 on disk opens with nothing skipped and reads back whole. */
TEST(segq_reads_format_1_records) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    char b[128], got[128];
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        rec(b, sizeof b, i);
        uint64_t id;
        REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
    }
    segq_close(q);
    /* every record of every segment rewritten as version 1 */
    char cmd[256], path[512];
    snprintf(cmd, sizeof cmd, "ls %s/*.seg", dir);
    FILE *ls = popen(cmd, "r");
    REQUIRE(ls);
    int rewritten = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        FILE *f = fopen(path, "r+b");
        REQUIRE(f);
        for (long off = SEGQ_SEG_HEADER;;) {
            uint8_t h[SEGQ_REC_HEADER];
            if (fseek(f, off, SEEK_SET) || fread(h, 1, sizeof h, f) != sizeof h || h[0] != 0xEC)
                break;
            CHECK_INT(h[1], SEGQ_REC_FORMAT);
            uint32_t len = h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24;
            uint8_t *pl = malloc(len ? len : 1);
            REQUIRE(pl && fread(pl, 1, len, f) == len);
            h[1] = 1;
            uLong c = crc32(crc32(crc32(0L, Z_NULL, 0), h, 8), pl, len);
            for (int k = 0; k < 4; k++)
                h[8 + k] = (uint8_t)(c >> (8 * k));
            REQUIRE(fseek(f, off, SEEK_SET) == 0 && fwrite(h, 1, sizeof h, f) == sizeof h);
            free(pl);
            off += SEGQ_REC_HEADER + (long)len;
            rewritten++;
        }
        fclose(f);
    }
    pclose(ls);
    CHECK_INT(rewritten, N);
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, N);
    CHECK_INT(rep.skipped_bytes, 0);
    CHECK_INT(rep.bad_segments, 0);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        uint64_t id;
        if (next_str(q, got, sizeof got, &id) != 1) {
            bad++;
            continue;
        }
        rec(b, sizeof b, i);
        bad += strcmp(got, b) != 0;
    }
    CHECK_INT(bad, 0);
    segq_close(q);
    rmrf(dir);
}

/* a syncer that keeps the descriptors it is handed (the test syncs them) */
typedef struct held_fds {
    int fd[64];
    int n;
} held_fds;

static void hold_fd(void *ctx, segq *q, int fd) {
    (void)q;
    held_fds *h = ctx;
    if (h->n < 64) h->fd[h->n++] = fd;
}

static void release_fds(segq *q, held_fds *h) {
    for (int i = 0; i < h->n; i++) {
        CHECK_INT(fdatasync(h->fd[i]), 0); /* a descriptor of its own, still open */
        close(h->fd[i]);
        segq_synced(q);
    }
    h->n = 0;
}

/* with a syncer, segq_sync hands descriptors out instead of syncing; while
 * they are out the next sync waits; a roll hands its segment out too; the
 * records survive a reopen */
TEST(segq_syncer_gets_the_fdatasync) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 200, &q, &rep, &err) == EC_OK);
    held_fds h = {.n = 0};
    segq_set_syncer(q, hold_fd, &h);
    char b[128];
    uint64_t id;
    rec(b, sizeof b, 1);
    REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
    CHECK_INT(segq_sync(q, &err), EC_OK);
    CHECK(h.n >= 1); /* the tail (and the marker when it was written) */
    for (int i = 0; i < h.n; i++)
        CHECK(fcntl(h.fd[i], F_GETFD) >= 0);
    int first = h.n;
    REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
    CHECK_INT(segq_sync(q, &err), EC_OK);
    CHECK_INT(h.n, first); /* the last ones are still out: nothing new */
    release_fds(q, &h);
    CHECK_INT(segq_sync(q, &err), EC_OK);
    CHECK(h.n >= 1); /* now the second append's */
    release_fds(q, &h);
    for (int i = 0; i < 200; i++) { /* past a 4 KiB segment: the roll hands its file out */
        rec(b, sizeof b, i);
        REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
    }
    CHECK(segq_segments(q) > 1);
    CHECK(h.n >= 1);
    release_fds(q, &h);
    segq_close(q); /* nothing out: syncs the rest itself */
    REQUIRE(segq_open(dir, 4096, 200, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 202);
    segq_close(q);
    rmrf(dir);
}

/* a remover that keeps the paths it is handed (the test removes them) */
typedef struct held_paths {
    char *p[256];
    int n;
} held_paths;

static void hold_path(void *ctx, char *path) {
    held_paths *h = ctx;
    if (h->n < 256)
        h->p[h->n++] = path;
    else
        free(path);
}

/* with a remover, a finished segment's file is handed out instead of
 * unlinked, and stays until the remover removes it; a process that died
 * before that leaves nothing to replay: the next open removes the files */
TEST(segq_remover_gets_finished_segments) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    held_paths h = {.n = 0};
    segq_set_remover(q, hold_path, &h);
    char b[128], got[128];
    uint64_t id;
    for (int i = 0; i < 600; i++) { /* about 6 segments of 4 KiB, read and acknowledged */
        rec(b, sizeof b, i);
        REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
        REQUIRE(next_str(q, got, sizeof got, &id) == 1);
        REQUIRE(segq_ack(q, id, &err) == EC_OK);
    }
    CHECK(h.n >= 4);
    CHECK(segq_segments(q) <= 2);
    for (int i = 0; i < h.n; i++) {
        CHECK(strncmp(h.p[i], dir, strlen(dir)) == 0);
        CHECK_INT(access(h.p[i], F_OK), 0); /* not unlinked by segq */
    }
    remove(h.p[0]); /* the remover did its work for the first one only */
    segq_close(q);  /* the process "dies" before removing the rest */
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 0); /* all were acknowledged: nothing replayed */
    for (int i = 0; i < h.n; i++) {
        CHECK(access(h.p[i], F_OK) != 0); /* removed by the open */
        free(h.p[i]);
    }
    segq_close(q);
    rmrf(dir);
}

/* segq_appendv: a record made of parts reads back as their concatenation;
 * the records gathered are not in the file until segq_flush (a process
 * killed before it loses them, one killed after it loses nothing), and a
 * read flushes first */
TEST(segq_appendv_gathers_until_flush) {
    char dir[64], seg[128];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    snprintf(seg, sizeof seg, "%s/00000000000000000001.seg", dir);
    char val[300];
    memset(val, 'v', sizeof val);
    struct iovec iov[3] = {{"ab", 2}, {val, sizeof val}, {"z", 1}};
    pid_t pid = fork();
    if (pid == 0) { /* 2 flushed, 3 only gathered, then killed */
        segq *q;
        segq_report rep;
        ec_error err;
        uint64_t id;
        if (segq_open(dir, 1u << 20, 1000, &q, &rep, &err)) _exit(2);
        for (int i = 0; i < 5; i++) {
            if (segq_appendv(q, iov, 3, false, &id, &err) || id != (uint64_t)i) _exit(3);
            uint8_t h[12] = {0};
            int fd = open(seg, O_RDONLY);
            ssize_t got = fd >= 0 ? pread(fd, h, sizeof h, 16) : -1;
            if (fd >= 0) close(fd);
            if (i == 0 && (got != (ssize_t)sizeof h || h[0] != 0)) _exit(4); /* not written yet */
            if (i == 1 && segq_flush(q, &err)) _exit(5);
        }
        kill(getpid(), SIGKILL);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 1u << 20, 1000, &q, &rep, &err) == EC_OK);
    CHECK_INT(rep.pending, 2);
    CHECK_INT(rep.skipped_bytes, 0);
    uint64_t id;
    REQUIRE(segq_appendv(q, iov, 3, false, &id, &err) == EC_OK); /* gathered, then read */
    CHECK_INT(id, 2);
    for (int i = 0; i < 3; i++) {
        const void *d;
        uint32_t len;
        REQUIRE(segq_next(q, &d, &len, &id, &err) == 1);
        CHECK_INT(id, i);
        CHECK_INT(len, 2 + sizeof val + 1);
        CHECK(memcmp(d, "ab", 2) == 0 && memcmp((const char *)d + 2, val, sizeof val) == 0 &&
              ((const char *)d)[len - 1] == 'z');
    }
    segq_close(q);
    rmrf(dir);
}

/* segq_next_pinned: a record read from the segment's mapping stays readable
 * through its pin while the reader goes on (the tail growing under the
 * mapping, later segments), after every record was acknowledged (its
 * segment removed) and after segq_close; without a pin it is as segq_next */
TEST(segq_pinned_records_outlive_reads_removal_and_close) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    enum { N = 400 }; /* about 5 segments of 4 KiB */
    static segq_pin *pins[N];
    static const char *at[N];
    static uint32_t lens[N];
    char b[128];
    uint64_t id;
    int pinned = 0;
    for (int i = 0; i < N; i++) {
        rec(b, sizeof b, i);
        REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
        if (i % 2 == 0) continue; /* read two at a time: the tail grows between reads */
        for (int j = i - 1; j <= i; j++) {
            const void *d;
            REQUIRE(segq_next_pinned(q, &d, &lens[j], &id, &pins[j], &err) == 1);
            CHECK_INT(id, j);
            at[j] = d;
            pinned += pins[j] != NULL;
        }
    }
    CHECK_INT(pinned, N); /* every one was in a mapping */
    CHECK(segq_segments(q) >= 4);
    for (int i = 0; i < N; i++)
        REQUIRE(segq_ack(q, (uint64_t)i, &err) == EC_OK);
    CHECK(segq_segments(q) <= 2); /* the others removed */
    REQUIRE(segq_append(q, "x", 1, &id, &err) == EC_OK);
    const void *d;
    uint32_t len;
    REQUIRE(segq_next(q, &d, &len, &id, &err) == 1); /* the plain read: no pin asked */
    CHECK(len == 1 && memcmp(d, "x", 1) == 0);
    segq_close(q);
    int same = 0;
    for (int i = 0; i < N; i++) {
        rec(b, sizeof b, i);
        same += lens[i] == strlen(b) && memcmp(at[i], b, lens[i]) == 0;
        segq_unpin(pins[i]);
    }
    CHECK_INT(same, N);
    segq_unpin(NULL);
    rmrf(dir);
}

/* an unmapper that keeps the mappings it is handed and unmaps them */
typedef struct held_maps {
    const uint8_t *addr[64];
    size_t len[64];
    int n;
} held_maps;

static void hold_map(void *ctx, void *addr, size_t len) {
    held_maps *h = ctx;
    if (h->n < 64) {
        h->addr[h->n] = addr;
        h->len[h->n++] = len;
    }
    munmap(addr, len);
}

/* with an unmapper, a read mapping goes to it once, when its last reference
 * goes (the reader moving on, the queue closing, the last lent record), and
 * not before: records lent from it stay readable until then */
TEST(segq_unmapper_gets_the_last_unmap) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    segq *q;
    segq_report rep;
    ec_error err;
    REQUIRE(segq_open(dir, 4096, 1000, &q, &rep, &err) == EC_OK);
    held_maps h = {.n = 0};
    segq_set_unmapper(q, hold_map, &h);
    enum { N = 600 }; /* about 7 segments of 4 KiB, all written before reading */
    static segq_pin *pins[N];
    static const char *at[N];
    static uint32_t lens[N];
    char b[128];
    uint64_t id;
    for (int i = 0; i < N; i++) {
        rec(b, sizeof b, i);
        REQUIRE(segq_append(q, b, (uint32_t)strlen(b), &id, &err) == EC_OK);
    }
    int maps = 0;
    for (int i = 0; i < N; i++) {
        const void *d;
        REQUIRE(segq_next_pinned(q, &d, &lens[i], &id, &pins[i], &err) == 1);
        REQUIRE(pins[i] != NULL);
        at[i] = d;
        maps += i == 0 || pins[i] != pins[i - 1];
    }
    CHECK(maps >= 3);
    CHECK_INT(h.n, 0); /* every mapping still has a lent record */
    for (int i = 0; i < N; i++)
        REQUIRE(segq_ack(q, (uint64_t)i, &err) == EC_OK);
    segq_close(q);
    CHECK_INT(h.n, 0);
    int same = 0;
    for (int i = 0; i < N; i++) {
        rec(b, sizeof b, i);
        same += lens[i] == strlen(b) && memcmp(at[i], b, lens[i]) == 0;
        bool last = i == N - 1 || pins[i + 1] != pins[i];
        int before = h.n;
        segq_unpin(pins[i]);
        CHECK_INT(h.n, before + (last ? 1 : 0)); /* only the last reference unmaps */
        if (last && h.n > before) /* the mapping handed over is the one the record lay in */
            CHECK((const uint8_t *)at[i] >= h.addr[h.n - 1] &&
                  (const uint8_t *)at[i] + lens[i] <= h.addr[h.n - 1] + h.len[h.n - 1]);
    }
    CHECK_INT(same, N);
    CHECK_INT(h.n, maps);
    rmrf(dir);
}

/* A segment that cannot be mapped (here: the address space limit is below
 * the size of the mapping) is read with pread: segq_next_pinned gives each
 * record without a pin, valid until the next read. */
TEST(segq_unmappable_segment_read_without_pin) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    pid_t pid = fork();
    if (pid == 0) { /* in a child: the limit stays there */
        segq *q;
        segq_report rep;
        ec_error err;
        uint64_t id;
        char b[128];
        /* a 4 GiB segment is mapped whole: more than the limit leaves */
        if (segq_open(dir, 4ull << 30, 1000, &q, &rep, &err)) _exit(2);
        for (int i = 0; i < 50; i++) {
            rec(b, sizeof b, i);
            if (segq_append(q, b, (uint32_t)strlen(b), &id, &err)) _exit(3);
        }
        /* 1 GiB more than the address space in use (a sanitizer reserves
         * much of it up front) */
        unsigned long long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%llu", &pages) != 1) _exit(4);
        fclose(f);
        rlim_t most = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (1ull << 30);
        struct rlimit rl = {most, most};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(4);
        for (int i = 0; i < 50; i++) {
            const void *d;
            uint32_t len;
            segq_pin *pin = (segq_pin *)1;
            rec(b, sizeof b, i);
            if (segq_next_pinned(q, &d, &len, &id, &pin, &err) != 1 || id != (uint64_t)i) _exit(5);
            if (pin) _exit(6); /* nothing mapped: nothing lent */
            if (len != strlen(b) || memcmp(d, b, len) != 0) _exit(7);
        }
        segq_close(q);
        _exit(0);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), 0);
    rmrf(dir);
}

/* A flush that the file system refuses (here the file size limit cuts the
 * pwrite short, then fails it; on a full disk without fallocate the same)
 * keeps what was gathered: reads fail with the reason meanwhile, and once
 * a flush gets through every record is there, in order, also after a
 * reopen. */
TEST(segq_failed_flush_keeps_gathered_records) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    REQUIRE(dir[0]);
    pid_t pid = fork();
    if (pid == 0) { /* in a child: the limit stays there */
        signal(SIGXFSZ, SIG_IGN);
        segq *q;
        segq_report rep;
        ec_error err;
        uint64_t id;
        char b[128];
        if (segq_open(dir, 10u << 20, 1000, &q, &rep, &err)) _exit(2);
        rec(b, sizeof b, 0);
        if (segq_append(q, b, (uint32_t)strlen(b), &id, &err)) _exit(3); /* written at once */
        struct rlimit was;
        if (getrlimit(RLIMIT_FSIZE, &was)) _exit(4);
        rlim_t end = SEGQ_SEG_HEADER + SEGQ_REC_HEADER + strlen(b);
        struct rlimit rl = {end + 30, was.rlim_max}; /* part of the next record fits */
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(4);
        for (int i = 1; i < 4; i++) {
            rec(b, sizeof b, i);
            struct iovec iov = {b, strlen(b)};
            if (segq_appendv(q, &iov, 1, false, &id, &err)) _exit(5); /* gathered */
        }
        if (segq_flush(q, &err) == EC_OK) _exit(6);
        if (!strstr(err.msg, "cannot write to segment")) _exit(7);
        const void *d;
        uint32_t len;
        if (segq_next(q, &d, &len, &id, &err) != -1) _exit(8); /* not before the flush */
        if (setrlimit(RLIMIT_FSIZE, &was)) _exit(9);
        if (segq_flush(q, &err)) _exit(10);
        for (int i = 0; i < 4; i++) {
            rec(b, sizeof b, i);
            if (segq_next(q, &d, &len, &id, &err) != 1 || id != (uint64_t)i) _exit(11);
            if (len != strlen(b) || memcmp(d, b, len) != 0) _exit(12);
        }
        segq_close(q);
        if (segq_open(dir, 10u << 20, 1000, &q, &rep, &err) || rep.skipped_bytes) _exit(13);
        for (int i = 0; i < 4; i++) {
            rec(b, sizeof b, i);
            if (segq_next(q, &d, &len, &id, &err) != 1) _exit(14);
            if (len != strlen(b) || memcmp(d, b, len) != 0) _exit(15);
        }
        segq_close(q);
        _exit(0);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), 0);
    rmrf(dir);
}
