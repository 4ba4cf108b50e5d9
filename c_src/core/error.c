/* error.c - filling ec_error; see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static void vfill(ec_error *err, ec_status code, const char *fmt, va_list ap) {
    err->code = code;
    err->pos = 0;
    err->line = 0;
    err->column = 0;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

ec_status ec_fail(ec_error *err, ec_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vfill(err, code, fmt, ap);
        va_end(ap);
    }
    return code;
}

ec_status ec_fail_at(ec_error *err, ec_status code, const char *text, size_t pos, const char *fmt,
                     ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vfill(err, code, fmt, ap);
        va_end(ap);
        int line = 1, col = 1;
        for (size_t i = 0; text && i < pos; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
                col++; /* count characters, not UTF-8 continuation bytes */
            }
        }
        err->pos = pos;
        err->line = line;
        err->column = col;
    }
    return code;
}

const char *ec_status_name(ec_status code) {
    switch (code) {
    case EC_OK: return "ok";
    case EC_ENOMEM: return "enomem";
    case EC_EPARSE: return "parse";
    case EC_ELIMIT: return "limit";
    case EC_EINVAL: return "invalid";
    case EC_ETYPE: return "type";
    case EC_EKAFKA: return "kafka";
    case EC_ESTATE: return "state";
    case EC_EEXPIRED: return "expired";
    }
    return "unknown";
}
