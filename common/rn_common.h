/*
 * rn_common.h: what every layer shares: the error buffer each call fills, and checked
 * arithmetic for sizes computed from input. Internal; not installed.
 */
#ifndef RN_COMMON_H
#define RN_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rn_status.h"

#define RN_ERROR_CAPACITY 4096

/* The detailed message of the last error. Layers below host/ write into one of these; the
 * context owns it and hands it out through rn_context_last_error. */
typedef struct rn_error {
    char message[RN_ERROR_CAPACITY];
} rn_error;

#if defined(__GNUC__)
#define RN_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define RN_PRINTF(fmt, args)
#endif

/* Formats the message into `err` (which may be NULL) and returns `status`, so that a failing
 * check reads `return rn_fail(err, RN_ERR_CONFIG, "...", ...);`. */
rn_status rn_fail(rn_error *err, rn_status status, const char *fmt, ...) RN_PRINTF(3, 4);

/* Prepends "context: " to the message already in `err`, e.g. the file name. */
void rn_error_prefix(rn_error *err, const char *fmt, ...) RN_PRINTF(2, 3);

/* Checked 64-bit arithmetic: false on overflow, *out untouched then. */
static inline bool rn_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}

static inline bool rn_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return false;
    *out = a + b;
    return true;
}

/* FNV-1a, 64-bit: continues hash `h` over n bytes. Start from RN_FNV_OFFSET. For cache keys
 * and fingerprints, never for security. */
#define RN_FNV_OFFSET 0xcbf29ce484222325ull
static inline uint64_t rn_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Reads a whole file of at most `max_bytes` into a NUL-terminated heap buffer. */
rn_status rn_read_file(const char *path, uint64_t max_bytes, char **data, size_t *size,
                       rn_error *err);

/* Joins a directory and a file name into a heap string. */
char *rn_path_join(const char *dir, const char *name);

#endif /* RN_COMMON_H */
