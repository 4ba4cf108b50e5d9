/* text.h - EMQX's value -> text conversion (emqx_utils_conv:bin/1), shared by
 * the rule function str() and by template rendering (templates.md §1.3):
 * strings as they are, integers in decimal, floats with at most 10 decimals
 * (compact, never an exponent), booleans and null by name, maps and arrays as
 * compact JSON except that an empty array is "" and an array of printable
 * character codes becomes those characters. */
#ifndef EC_TEXT_H
#define EC_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "value.h"

typedef enum text_undef {
    TEXT_UNDEF_WORD,  /* undefined -> "undefined" (str()) */
    TEXT_UNDEF_EMPTY, /* undefined -> "" (Kafka templates) */
} text_undef;

/* Appends the text of v to b. False when v has no text form (a bit string
 * that is not a whole number of bytes); b is then unchanged. */
bool text_append(ec_buf *b, const value *v, text_undef u);

/* float_to_binary(F, [{decimals, 10}, compact]) into buf; returns its length. */
size_t text_fmt_float10(double d, char *buf, size_t cap);

#endif
