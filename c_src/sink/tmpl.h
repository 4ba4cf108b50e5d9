/* tmpl.h - EMQX `${...}` templates (spec/templates.md), compiled once and
 * rendered many times against a rule output map.
 *
 * Two syntaxes:
 *   TMPL_LEGACY (emqx_placeholder): `${` any chars but `}` `}`; no escape; `${}` literal.
 *     Used for the Kafka key, value, timestamp and headers.
 *   TMPL_NEW (emqx_template): `${` [.] [A-Za-z0-9._]* `}`; `${$}` is a literal `$`;
 *     anything else stays literal. Used for the Kafka topic and generic templates.
 * In both, a path splits on '.', one leading '.' is dropped, and `${.}` is the
 * whole context. Lookup walks maps only (no array indexes). */
#ifndef EC_TMPL_H
#define EC_TMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/arena.h"
#include "../core/buf.h"
#include "../core/error.h"
#include "../core/value.h"

#define TMPL_MAX_BYTES (64 * 1024) /* longest accepted template text */

typedef enum tmpl_syntax { TMPL_LEGACY, TMPL_NEW } tmpl_syntax;

/* How a string met along a path is treated (templates.md §3.2). */
typedef enum tmpl_lookup {
    TMPL_DECODE_EVERY, /* legacy: JSON-decode at every step that holds a string */
    TMPL_DECODE_ONCE,  /* emqx_jsonish (Kafka topic): decode once along the path */
    TMPL_PLAIN,        /* emqx_template plain: never decode */
} tmpl_lookup;

typedef struct tmpl_seg {
    const char *s;
    uint32_t len;
} tmpl_seg;

typedef struct tmpl_part {
    bool is_var;
    const char *lit; /* literal bytes */
    uint32_t len;
    tmpl_seg *path; /* var: path segments; npath = 0 means the whole context */
    uint32_t npath;
} tmpl_part;

typedef struct tmpl {
    arena a;
    char *src;
    size_t src_len;
    tmpl_syntax syntax;
    tmpl_part *parts;
    uint32_t nparts;
} tmpl;

ec_status tmpl_compile(tmpl_syntax syntax, const char *text, size_t len, tmpl **out, ec_error *err);
void tmpl_free(tmpl *t);

/* True when the template is exactly one placeholder (nothing around it). */
bool tmpl_is_single_var(const tmpl *t);
/* True when the template has no placeholder at all. */
bool tmpl_is_literal(const tmpl *t);

/* Resolves one placeholder part against ctx: false when missing (absent, or
 * the path cannot be walked). An undefined value counts as missing. */
bool tmpl_lookup_var(const tmpl_part *p, const value *ctx, tmpl_lookup mode, arena *a, value *out);

/* Lenient rendering (Kafka key/value): missing renders as "" (or as the word
 * "undefined" when undefined_word), values by EMQX's text rules. Appends to
 * out; false only on out-of-memory. */
bool tmpl_render(const tmpl *t, const value *ctx, tmpl_lookup mode, bool undefined_word, arena *a,
                 ec_buf *out);

/* Lenient rendering without a copy where it can be had: a template that is
 * one placeholder whose value is a string gives the string's bytes in place
 * (valid while ctx and a are), one whose value is missing gives ""; true
 * then. False otherwise: tmpl_render it. */
bool tmpl_render_ref(const tmpl *t, const value *ctx, tmpl_lookup mode, arena *a, const char **p,
                     size_t *len);

/* Kafka key/value rendering as the producer does it: in place
 * (tmpl_render_ref) when it can be, else tmpl_render into out; *p and *len
 * give the bytes. False only on out-of-memory. */
bool tmpl_render_bytes(const tmpl *t, const value *ctx, arena *a, ec_buf *out, const char **p,
                       size_t *len);

/* Strict rendering (Kafka topic): a missing placeholder is an error naming
 * it (EC_EINVAL "failed_to_render_topic: ..."). */
ec_status tmpl_render_strict(const tmpl *t, const value *ctx, tmpl_lookup mode, arena *a,
                             ec_buf *out, ec_error *err);

/* Kafka timestamp: render leniently, parse as a decimal integer; anything
 * else gives the current time (read only then). */
int64_t tmpl_render_timestamp(const tmpl *t, const value *ctx, arena *a);

#endif
