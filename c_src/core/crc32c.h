/* crc32c.h - CRC-32C (Castagnoli, the polynomial 0x1EDC6F41 reflected),
 * the checksum of the disk buffer's records from format version 2 on.
 *
 * Uses the CPU's CRC-32C instruction where there is one (x86-64 SSE4.2,
 * checked at run time; ARMv8 with the CRC extension), else a slice-by-8
 * table. crc32c(0, "123456789", 9) == 0xE3069283. */
#ifndef EC_CRC32C_H
#define EC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc (0 to start) over n bytes at p. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* The table version alone (tests compare the two). */
uint32_t crc32c_sw(uint32_t crc, const void *p, size_t n);

#endif
