/* text.c - value -> text; see text.h. */
#include "text.h"

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "utf8.h"

size_t text_fmt_float10(double d, char *buf, size_t cap) {
    int len = snprintf(buf, cap, "%.10f", d);
    if (len < 0 || (size_t)len >= cap) return 0;
    char *dot = strchr(buf, '.');
    if (dot) {
        char *end = buf + len;
        while (end > dot + 2 && end[-1] == '0')
            end--;
        *end = '\0';
        len = (int)(end - buf);
    }
    return (size_t)len;
}

static bool printable_list(const value *v) {
    for (uint32_t i = 0; i < v->len; i++) {
        const value *e = &v->u.items[i];
        if (e->type != VT_INT) return false;
        int64_t c = e->u.i;
        if (!((c >= 32 && c <= 126) || (c >= 8 && c <= 13) || c == 27 ||
              (c >= 160 && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF))))
            return false;
    }
    return true;
}

bool text_append(ec_buf *b, const value *v, text_undef u) {
    char tmp[400];
    switch ((vtype)v->type) {
    case VT_BIN:
        if ((v->flags >> 4) & 7) return false; /* bit string */
        buf_append(b, v->u.s, v->len);
        return true;
    case VT_INT: buf_append(b, tmp, json_fmt_int(v->u.i, tmp)); return true;
    case VT_FLOAT: {
        size_t k = text_fmt_float10(v->u.f, tmp, sizeof tmp);
        if (k) {
            buf_append(b, tmp, k);
        } else { /* a magnitude beyond tmp: print it in full */
            int len = snprintf(NULL, 0, "%.1f", v->u.f);
            if (buf_reserve(b, (size_t)len + 1)) {
                snprintf(b->p + b->len, (size_t)len + 1, "%.1f", v->u.f);
                b->len += (size_t)len;
            }
        }
        return true;
    }
    case VT_BOOL: buf_puts(b, v->u.b ? "true" : "false"); return true;
    case VT_NULL: buf_puts(b, "null"); return true;
    case VT_UNDEF:
        if (u == TEXT_UNDEF_WORD) buf_puts(b, "undefined");
        return true;
    case VT_ARRAY:
        if (printable_list(v)) { /* Erlang prints a printable list as its characters */
            for (uint32_t i = 0; i < v->len; i++) {
                char c[4];
                buf_append(b, c, utf8_put(c, (uint32_t)v->u.items[i].u.i));
            }
            return true;
        }
        return json_encode(v, b);
    case VT_MAP: return json_encode(v, b);
    }
    return false;
}
