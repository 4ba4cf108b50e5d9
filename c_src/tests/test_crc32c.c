/* test_crc32c.c - CRC-32C: the published check value, and the CPU
 * instruction path against the table for every length and alignment. */
#include <stdlib.h>

#include "../core/crc32c.h"
#include "test.h"

TEST(crc32c_check_values) {
    CHECK_INT(crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_INT(crc32c_sw(0, "123456789", 9), 0xE3069283u);
    CHECK_INT(crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0}; /* RFC 3720 B.4: 32 bytes of zeros */
    CHECK_INT(crc32c(0, zeros, 32), 0x8A9136AAu);
    /* continuing over parts gives the same as at once */
    CHECK_INT(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

TEST(crc32c_hw_matches_table) {
    uint8_t buf[5000]; /* past three strides of the longest (512) */
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    int bad = 0;
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += n < 40 ? 1 : 37)
            bad += crc32c(7, buf + off, n) != crc32c_sw(7, buf + off, n);
    CHECK_INT(bad, 0);
}
