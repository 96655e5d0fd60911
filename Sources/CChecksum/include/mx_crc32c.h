#ifndef MX_CRC32C_H
#define MX_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli) of `len` bytes, continuing from `crc` (0 to start).
/// Uses the SSE4.2 crc32 instruction where the CPU has it, a table where not.
uint32_t mx_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
