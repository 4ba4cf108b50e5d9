/* cases.c - golden case runner; see cases.h.
 * A case line is a request plus "name" and "expect":
 *   expect {"matched": true, "output": X} / {"matched": false} / {"rendered": X}:
 *       the answer must equal it structurally (map order ignored, 1 != 1.0);
 *   expect {"error": "text"}: the answer must be an error containing text. */
#include "cases.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"

static int check_line(const char *file, int lineno, const char *line, size_t len,
                      case_answer_fn fn) {
    arena a;
    arena_init(&a, 8192);
    value c;
    ec_error err;
    int failed = 0;
    if (json_decode(&a, line, len, NULL, &c, &err) != EC_OK || c.type != VT_MAP) {
        fprintf(stderr, "    %s:%d: bad case line: %s\n", file, lineno, err.msg);
        arena_free(&a);
        return 1;
    }
    const value *name = V_MAP_GET(&c, "name"), *expect = V_MAP_GET(&c, "expect");
    /* the request: the case without name/expect */
    bool ok;
    value req = v_map_new(&a, c.len, &ok);
    for (uint32_t i = 0; i < c.len; i++) {
        const value *k = &c.u.pairs[i].key;
        if ((k->len == 4 && !memcmp(k->u.s, "name", 4)) ||
            (k->len == 6 && !memcmp(k->u.s, "expect", 6)))
            continue;
        v_map_append(&a, &req, *k, c.u.pairs[i].val);
    }
    ec_buf rb, out;
    buf_init(&rb);
    buf_init(&out);
    json_encode(&req, &rb);
    fn(rb.p, rb.len, &a, &out);
    value ans;
    const char *why = NULL;
    if (json_decode(&a, out.p, out.len, NULL, &ans, &err) != EC_OK) {
        why = "answer is not JSON";
    } else if (!expect) {
        why = "case has no expect";
    } else {
        const value *want_err = V_MAP_GET(expect, "error");
        const value *got_err = V_MAP_GET(&ans, "error");
        if (want_err) {
            if (!got_err || got_err->type != VT_BIN)
                why = "expected an error";
            else if (!memmem(got_err->u.s, got_err->len, want_err->u.s, want_err->len))
                why = "error text differs";
        } else if (!v_equal(expect, &ans)) {
            why = "answer differs";
        }
    }
    if (why) {
        failed = 1;
        fprintf(stderr, "    %s:%d [%.*s]: %s\n      got:  %.*s\n      want: ", file, lineno,
                name ? (int)name->len : 0, name ? name->u.s : "", why, (int)out.len, out.p);
        ec_buf wb;
        buf_init(&wb);
        if (expect) json_encode(expect, &wb);
        fprintf(stderr, "%.*s\n", (int)wb.len, wb.p);
        buf_free(&wb);
    }
    buf_free(&rb);
    buf_free(&out);
    arena_free(&a);
    return failed;
}

static int cmpstr(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

int cases_run_dir(const char *subdir, case_answer_fn fn, int *total) {
    const char *root = getenv("EC_ROOT") ? getenv("EC_ROOT") : ".";
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/test/cases/%s", root, subdir);
    DIR *d = opendir(dir);
    *total = 0;
    if (!d) {
        fprintf(stderr, "    cannot open %s (run from the project root or set EC_ROOT)\n", dir);
        return 1;
    }
    char *names[256];
    int nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 256) {
        size_t l = strlen(e->d_name);
        if (l > 6 && strcmp(e->d_name + l - 6, ".jsonl") == 0) names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)nn, sizeof *names, cmpstr);
    int failed = 0;
    for (int i = 0; i < nn; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "r");
        if (!f) {
            failed++;
            continue;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        int lineno = 0;
        while ((n = getline(&line, &cap, f)) > 0) {
            lineno++;
            while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
            if (!n || line[0] == '#') continue;
            (*total)++;
            failed += check_line(names[i], lineno, line, (size_t)n, fn);
        }
        free(line);
        fclose(f);
        free(names[i]);
    }
    return failed;
}
