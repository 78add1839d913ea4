/* rn_common.c: error messages, status names and small file helpers shared by every layer. */
#include "rn_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

rn_status rn_fail(rn_error *err, rn_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

void rn_error_prefix(rn_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Shift the message right and put "prefix: " in front, cutting its tail if need be. */
    const size_t cap = sizeof err->message;
    size_t plen = strlen(prefix);
    if (plen > cap / 2) plen = cap / 2;
    size_t mlen = strlen(err->message);
    if (plen + 2 + mlen > cap - 1) mlen = cap - 1 - plen - 2;
    memmove(err->message + plen + 2, err->message, mlen);
    err->message[plen + 2 + mlen] = '\0';
    memcpy(err->message, prefix, plen);
    err->message[plen] = ':';
    err->message[plen + 1] = ' ';
}

const char *rn_status_str(rn_status status) {
    switch (status) {
#define RN_NAME(s) case s: return #s;
        RN_NAME(RN_OK)
        RN_NAME(RN_ERR_INVALID_ARGUMENT)
        RN_NAME(RN_ERR_OUT_OF_HOST_MEMORY)
        RN_NAME(RN_ERR_LIMIT)
        RN_NAME(RN_ERR_IO)
        RN_NAME(RN_ERR_JSON)
        RN_NAME(RN_ERR_TRUNCATED)
        RN_NAME(RN_ERR_HEADER_SIZE)
        RN_NAME(RN_ERR_TENSOR_ENTRY)
        RN_NAME(RN_ERR_OFFSETS)
        RN_NAME(RN_ERR_UNKNOWN_DTYPE)
        RN_NAME(RN_ERR_UNSUPPORTED_DTYPE)
        RN_NAME(RN_ERR_DUPLICATE)
        RN_NAME(RN_ERR_CONFIG)
        RN_NAME(RN_ERR_UNSUPPORTED_CONFIG)
        RN_NAME(RN_ERR_MISSING_TENSOR)
        RN_NAME(RN_ERR_TENSOR_SHAPE)
        RN_NAME(RN_ERR_TOKENIZER)
        RN_NAME(RN_ERR_STATE_FILE)
        RN_NAME(RN_ERR_NO_PLATFORM)
        RN_NAME(RN_ERR_NO_DEVICE)
        RN_NAME(RN_ERR_BUILD)
        RN_NAME(RN_ERR_DEVICE_MEMORY)
        RN_NAME(RN_ERR_OPENCL)
        RN_NAME(RN_ERR_CLBLAST)
        RN_NAME(RN_ERR_NUMERIC)
        RN_NAME(RN_ERR_CANCELLED)
#undef RN_NAME
    }
    return "RN_ERR_UNKNOWN_STATUS";
}

rn_status rn_read_file(const char *path, uint64_t max_bytes, char **data, size_t *size,
                       rn_error *err) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rn_fail(err, RN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return rn_fail(err, RN_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return rn_fail(err, RN_ERR_LIMIT, "'%s' is %llu bytes, more than the %llu this file may have",
                       path, (unsigned long long)st.st_size, (unsigned long long)max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for the %zu bytes of '%s'", n, path);
    }
    size_t got = n ? fread(buf, 1, n, f) : 0;
    int read_error = ferror(f);
    fclose(f);
    if (got != n || read_error) {
        free(buf);
        return rn_fail(err, RN_ERR_IO, "short read of '%s': %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return RN_OK;
}

char *rn_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a && dir[a - 1] != '/') p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}
