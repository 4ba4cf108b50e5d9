/* error.h - the one error type of the C core.
 *
 * Every fallible function returns an ec_status and, when given one, fills an
 * ec_error with a human sentence and, for parse errors, a position. Nothing in
 * the core calls exit() or abort() on anything input can cause. */
#ifndef EC_ERROR_H
#define EC_ERROR_H

#include <stddef.h>

typedef enum ec_status {
    EC_OK = 0,
    EC_ENOMEM,   /* out of memory (or an arena limit) */
    EC_EPARSE,   /* malformed input text (JSON, SQL, template); position set */
    EC_ELIMIT,   /* a size or depth cap was exceeded */
    EC_EINVAL,   /* an argument or configuration value is invalid */
    EC_ETYPE,    /* a value has the wrong type for the operation */
    EC_EKAFKA,   /* librdkafka reported an error; message has its text */
    EC_ESTATE,   /* the object is closed or not ready */
    EC_EEXPIRED, /* a record outlived its time limit (max_batch_age) */
} ec_status;

#define EC_ERRMSG_MAX 256

typedef struct ec_error {
    ec_status code;
    size_t pos; /* byte offset of the error in the input, when it applies */
    int line;   /* 1-based line, 0 when it does not apply */
    int column; /* 1-based column, 0 when it does not apply */
    char msg[EC_ERRMSG_MAX];
} ec_error;

/* Fills err (when not NULL) and returns code. printf-style message. */
ec_status ec_fail(ec_error *err, ec_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, with a byte position in text (line and column are computed). */
ec_status ec_fail_at(ec_error *err, ec_status code, const char *text, size_t pos, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
/* Short stable name of a status code ("enomem", "parse", ...). */
const char *ec_status_name(ec_status code);

#endif
