/* utf8.h - UTF-8 helpers shared by JSON, the SQL lexer and string functions. */
#ifndef EC_UTF8_H
#define EC_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid UTF-8 sequence at s (avail bytes), 0 if invalid
 * (overlong, surrogate, > U+10FFFF, truncated). Its code point into *cp. */
int utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp);
/* True when s[0..n) is entirely valid UTF-8. */
bool utf8_valid(const char *s, size_t n);
/* Writes cp (<= 0x10FFFF) as UTF-8 into o (4 bytes room); returns the length. */
size_t utf8_put(char *o, uint32_t cp);

#endif
