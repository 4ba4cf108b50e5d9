/* fuzz_template.c - libFuzzer target for the template compilers and renderers.
 * Input: a template, a NUL byte, then JSON data (the rendering context).
 * Both syntaxes are compiled and rendered every way the sink renders them,
 * plus the header builder. Oracle: no crash/leak/UB; errors carry text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../sink/kheaders.h"
#include "../sink/tmpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    arena a;
    arena_init(&a, 4096);
    value ctx = {.type = VT_MAP};
    if (nul) {
        value d;
        if (json_decode(&a, (const char *)nul + 1, size - tlen - 1, NULL, &d, NULL) == EC_OK &&
            d.type == VT_MAP)
            ctx = d;
    }
    ec_error err;
    for (int syn = 0; syn < 2; syn++) {
        tmpl *t;
        if (tmpl_compile(syn ? TMPL_NEW : TMPL_LEGACY, (const char *)data, tlen, &t, &err) !=
            EC_OK) {
            if (!err.msg[0]) abort();
            continue;
        }
        ec_buf b;
        buf_init_arena(&b, &a);
        tmpl_render(t, &ctx, TMPL_DECODE_EVERY, false, &a, &b);
        buf_init_arena(&b, &a);
        tmpl_render(t, &ctx, TMPL_PLAIN, true, &a, &b);
        buf_init_arena(&b, &a);
        if (tmpl_render_strict(t, &ctx, TMPL_DECODE_ONCE, &a, &b, &err) != EC_OK && !err.msg[0])
            abort();
        (void)tmpl_render_timestamp(t, &ctx, &a);
        tmpl_free(t);
    }
    const char *ext[2] = {(const char *)data, "${x}"};
    size_t ext_len[2] = {tlen, 4};
    kh_spec *hs;
    if (kh_compile((const char *)data, tlen, ext, ext_len, 1, tlen % 2, &hs, &err) == EC_OK) {
        kh_pair *pairs;
        uint32_t n;
        if (kh_render(hs, &ctx, &a, &pairs, &n, &err) != EC_OK && !err.msg[0]) abort();
        kh_free(hs);
    }
    arena_free(&a);
    return 0;
}
