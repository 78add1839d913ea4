/*
 * fuzz_common.h: what the libFuzzer targets share.
 *
 * The loaders take paths, so each input is written to a memfd (an anonymous in-memory file,
 * never on disk) and handed over as /proc/self/fd/N. One memfd per process, truncated and
 * rewritten for every input. A broken invariant of the API (as opposed to a refused input)
 * aborts through fuzz_check, which libFuzzer reports as a crash with the input saved.
 */
#ifndef RN_FUZZ_COMMON_H
#define RN_FUZZ_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* libFuzzer's entry points. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_check(cond, ...)                                                 \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant broken: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* Replaces the contents of this process's memfd with data[0..size) and returns its path. */
static inline const char *fuzz_memfd_write(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("rn-fuzz-input", MFD_CLOEXEC);
        fuzz_check(fd >= 0, "memfd_create failed");
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    fuzz_check(ftruncate(fd, 0) == 0, "ftruncate failed");
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        fuzz_check(n > 0, "pwrite failed");
        done += (size_t)n;
    }
    return path;
}

/* Writes data[0..size) to `path` (replacing it); aborts on failure. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    fuzz_check(f != NULL, "cannot write %s", path);
    fuzz_check(size == 0 || fwrite(data, 1, size, f) == size, "short write to %s", path);
    fuzz_check(fclose(f) == 0, "cannot close %s", path);
}

#endif /* RN_FUZZ_COMMON_H */
