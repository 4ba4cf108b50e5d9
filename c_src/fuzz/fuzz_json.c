/* fuzz_json.c - libFuzzer target for the JSON codec.
 * Oracle: whatever decodes must encode, and the encoding must decode to an
 * equal value (round trip); nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>

#include "../core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arena a;
    arena_init(&a, 4096);
    value v, back;
    ec_error err;
    if (json_decode(&a, (const char *)data, size, NULL, &v, &err) == EC_OK) {
        ec_buf b;
        buf_init(&b);
        if (!json_encode(&v, &b)) abort();
        if (json_decode(&a, b.p, b.len, NULL, &back, &err) != EC_OK) abort();
        if (!v_equal(&v, &back)) abort();
        buf_free(&b);
    } else if (err.code != EC_EPARSE && err.code != EC_ELIMIT && err.code != EC_ENOMEM) {
        abort();
    }
    arena_free(&a);
    return 0;
}
