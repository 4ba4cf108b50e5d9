/* fuzz_segq.c - libFuzzer target for the disk buffer's segment reader: the
 * input becomes a segment file (with a valid header when the first byte is
 * odd, so records get exercised) and optionally a commit marker; opening the
 * queue must never fail on the data, every replayed record must be readable
 * and acknowledgeable, and a second open must find nothing pending. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../buffer/segq.h"

static char dir[128];

static void put(const char *name, const uint8_t *d, size_t n) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (n && fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/ec-fuzz-segq-%d",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        mkdir(dir, 0700);
    }
    char p[256];
    snprintf(p, sizeof p, "%s/commit", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/00000000000000000001.seg", dir);
    unlink(p);
    if (size < 1) return 0;
    uint8_t mode = data[0];
    data++, size--;
    if ((mode & 2) && size >= 28) { /* a commit marker from the input */
        put("commit", data, 28);
        data += 28, size -= 28;
    }
    uint8_t *seg = malloc(size + SEGQ_SEG_HEADER);
    size_t n = 0;
    if (mode & 1) {
        memcpy(seg, "ECSEG\0\1\0\1\0\0\0\0\0\0\0", SEGQ_SEG_HEADER);
        n = SEGQ_SEG_HEADER;
    }
    if (size) memcpy(seg + n, data, size);
    put("00000000000000000001.seg", seg, n + size);
    free(seg);
    segq *q;
    segq_report rep;
    ec_error err;
    if (segq_open(dir, 1 << 20, 1000, &q, &rep, &err) != EC_OK) abort(); /* never on data */
    const void *d;
    uint32_t len;
    uint64_t id, got = 0;
    int r;
    while ((r = segq_next(q, &d, &len, &id, &err)) == 1) {
        if (len > SEGQ_MAX_RECORD) abort();
        if (segq_ack(q, id, &err) != EC_OK) abort();
        got++;
    }
    if (r < 0 || got != rep.pending) abort();
    segq_close(q);
    if (segq_open(dir, 1 << 20, 1000, &q, &rep, &err) != EC_OK || rep.pending != 0) abort();
    segq_close(q);
    return 0;
}
