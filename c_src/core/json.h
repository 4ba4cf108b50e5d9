/* json.h - JSON <-> value.
 *
 * Decoding (RFC 8259) is a single pass into an arena. Strings without escapes
 * borrow the input bytes (zero copy), so the input must outlive the values.
 * Invalid UTF-8 in strings, trailing garbage, depth or size beyond the caps
 * are errors with a byte position. Duplicate object keys: the last one wins
 * (as jiffy does when it builds an Erlang map).
 *
 * Encoding writes EMQX's serialization (emqx_utils_json / jiffy, see
 * spec/sink-behaviour.md §2.3 and spec/rule-sql.md §3): compact; undefined as
 * the string "undefined"; floats in shortest round-trip form with jiffy's
 * layout: 1500.0, 0.30000000000000004, 1.5e-7, 1e+21 (decimal notation for
 * decimal exponents -6..20, else exponent with an explicit sign);
 * invalid UTF-8 in strings replaced by U+FFFD; maps of up to 32 keys in
 * descending key order with string keys before atom keys (EMQX small-map
 * order), larger maps in insertion order. */
#ifndef EC_JSON_H
#define EC_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"
#include "value.h"

#define JSON_MAX_DEPTH        512                /* nesting of arrays/objects */
#define JSON_MAX_BYTES        ((size_t)64 << 20) /* a document larger than this is refused */
#define JSON_SMALL_MAP_KEYS   32                 /* EMQX's flatmap limit: sorted order up to here */
#define JSON_DOUBLE_MAX_CHARS 32                 /* longest json_fmt_double output, plus NUL */

typedef struct json_limits {
    unsigned max_depth; /* 0 = JSON_MAX_DEPTH */
    size_t max_bytes;   /* 0 = JSON_MAX_BYTES */
} json_limits;

/* Decodes text[0..len) into *out (allocated in a). limits may be NULL.
 * Errors: EC_EPARSE (position and expectation in err), EC_ELIMIT, EC_ENOMEM. */
ec_status json_decode(arena *a, const char *text, size_t len, const json_limits *limits, value *out,
                      ec_error *err);

/* Appends the JSON text of v to out. False on out-of-memory or depth beyond
 * 2*JSON_MAX_DEPTH (out->oom is set for the former). */
bool json_encode(const value *v, ec_buf *out);

/* Appends a JSON string literal (quotes, escapes, UTF-8 repair) to out. */
void json_encode_string(const char *s, size_t len, ec_buf *out);

/* Writes the shortest round-trip text of d the way jiffy does into
 * buf[JSON_DOUBLE_MAX_CHARS]; returns its length. Non-finite values (which
 * EMQX cannot hold) are written as "null". */
size_t json_fmt_double(double d, char *buf);

/* Writes the decimal text of i into buf[21]; returns its length. */
size_t json_fmt_int(int64_t i, char *buf);

#endif
