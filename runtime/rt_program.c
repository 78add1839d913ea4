/*
 * rt_program.c: compiling kernel sources for the device, with an on-disk binary cache.
 *
 * Cache file (one per program): "RNCLBIN1", u32 format version, u64 key length, the key,
 * u64 binary length, the binary. The key holds everything the binary depends on: device
 * name, driver version, platform version, build options and a hash of the full source; the
 * file name is a hash of the key, and the stored key is compared in full on load, so a hash
 * collision reads as a miss. Any problem (missing, short, foreign, rejected by the driver)
 * is a miss: we compile from source and rewrite the entry via a temporary file and rename.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

#define CACHE_MAGIC "RNCLBIN1"
#define CACHE_VERSION 1u
#define CACHE_MAX_BINARY (256u << 20)

static char *concat_sources(const char *preamble, const char *const *sources,
                            const size_t *lengths, size_t n, size_t *total) {
    size_t len = strlen(preamble);
    for (size_t i = 0; i < n; i++) len += lengths[i] + 1;
    char *all = malloc(len + 1);
    if (!all) return NULL;
    size_t at = strlen(preamble);
    memcpy(all, preamble, at);
    for (size_t i = 0; i < n; i++) {
        memcpy(all + at, sources[i], lengths[i]);
        at += lengths[i];
        all[at++] = '\n';
    }
    all[at] = '\0';
    *total = at;
    return all;
}

static char *cache_key(const rt_runtime *rt, const char *source, size_t source_len,
                       const char *options) {
    char platform_version[256] = "";
    clGetPlatformInfo(rt->dev.platform, CL_PLATFORM_VERSION, sizeof platform_version,
                      platform_version, NULL);
    platform_version[sizeof platform_version - 1] = '\0';
    /* Two independent 64-bit hashes of the source: the key is compared in full, so this only
     * has to make a stale source look different, which either one alone already does. */
    uint64_t h1 = rn_fnv1a(RN_FNV_OFFSET, source, source_len);
    uint64_t h2 = rn_fnv1a(0x84222325cbf29ce4ull, source, source_len);
    size_t cap = strlen(options) + 1024;
    char *key = malloc(cap);
    if (!key) return NULL;
    snprintf(key, cap, "device=%s|driver=%s|platform=%s|options=%s|source=%016llx%016llx:%zu",
             rt->dev.info.name, rt->dev.info.driver, platform_version, options,
             (unsigned long long)h1, (unsigned long long)h2, source_len);
    return key;
}

static char *cache_path(const rt_runtime *rt, const char *key) {
    char name[64];
    snprintf(name, sizeof name, "%016llx.clbin",
             (unsigned long long)rn_fnv1a(RN_FNV_OFFSET, key, strlen(key)));
    return rn_path_join(rt->cache_dir, name);
}

static bool read_u64(FILE *f, uint64_t *v) {
    unsigned char b[8];
    if (fread(b, 1, 8, f) != 8) return false;
    *v = 0;
    for (int i = 7; i >= 0; i--) *v = (*v << 8) | b[i];
    return true;
}

static bool write_u64(FILE *f, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    return fwrite(b, 1, 8, f) == 8;
}

/* The binary stored under `key`, or NULL. */
static unsigned char *cache_load(const char *path, const char *key, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *binary = NULL;
    char magic[8];
    uint64_t version, key_len, bin_len;
    char *stored = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CACHE_MAGIC, 8) != 0) goto done;
    if (!read_u64(f, &version) || version != CACHE_VERSION) goto done;
    if (!read_u64(f, &key_len) || key_len != strlen(key)) goto done;
    stored = malloc(key_len);
    if (!stored || fread(stored, 1, key_len, f) != key_len || memcmp(stored, key, key_len) != 0)
        goto done;
    if (!read_u64(f, &bin_len) || bin_len == 0 || bin_len > CACHE_MAX_BINARY) goto done;
    binary = malloc(bin_len);
    if (!binary || fread(binary, 1, bin_len, f) != bin_len || fgetc(f) != EOF) {
        free(binary);
        binary = NULL;
        goto done;
    }
    *size = bin_len;
done:
    free(stored);
    fclose(f);
    return binary;
}

static void mkdir_p(const char *dir) {
    char *path = strdup(dir);
    if (!path) return;
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    mkdir(path, 0755);
    free(path);
}

/* Best effort: a cache that cannot be written only costs the next start a compile. */
static void cache_store(const rt_runtime *rt, cl_program program, const char *path,
                        const char *key) {
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0 || size > CACHE_MAX_BINARY)
        return;
    unsigned char *binary = malloc(size);
    if (!binary) return;
    unsigned char *binaries[1] = {binary};
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binaries, binaries, NULL) != CL_SUCCESS) {
        free(binary);
        return;
    }
    mkdir_p(rt->cache_dir);
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (tmp) {
        snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        bool ok = f != NULL;
        if (ok) {
            ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && write_u64(f, CACHE_VERSION) &&
                 write_u64(f, strlen(key)) && fwrite(key, 1, strlen(key), f) == strlen(key) &&
                 write_u64(f, size) && fwrite(binary, 1, size, f) == size;
            ok = (fclose(f) == 0) && ok;
        }
        if (!ok || rename(tmp, path) != 0) remove(tmp);
        free(tmp);
    }
    free(binary);
}

/* The program's build log, NUL-terminated (NULL without memory). */
static char *program_build_log(rt_runtime *rt, cl_program program) {
    size_t log_size = 0;
    clGetProgramBuildInfo(program, rt->dev.device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
    char *log = malloc(log_size + 1);
    if (log) {
        if (clGetProgramBuildInfo(program, rt->dev.device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL) !=
            CL_SUCCESS)
            log_size = 0;
        log[log_size] = '\0';
    }
    return log;
}

static rn_status build_failure(rt_runtime *rt, cl_program program, cl_int rc, const char *options) {
    char *log = program_build_log(rt, program);
    rn_status st = rn_fail(rt->err, RN_ERR_BUILD,
                           "clBuildProgram failed: %s (%d) on '%s' with options \"%s\"; build log:\n%s",
                           rt_cl_error_name(rc), (int)rc, rt->dev.info.name, options,
                           log && *log ? log : "(empty)");
    free(log);
    return st;
}

static cl_program try_cached(rt_runtime *rt, const char *path, const char *key,
                             const char *options) {
    size_t size = 0;
    unsigned char *binary = cache_load(path, key, &size);
    if (!binary) return NULL;
    const unsigned char *binaries[1] = {binary};
    cl_int rc, binary_status = CL_SUCCESS;
    cl_program program = clCreateProgramWithBinary(rt->context, 1, &rt->dev.device, &size, binaries,
                                                   &binary_status, &rc);
    free(binary);
    if (rc != CL_SUCCESS || binary_status != CL_SUCCESS) {
        if (program) clReleaseProgram(program);
        return NULL;
    }
    if (clBuildProgram(program, 1, &rt->dev.device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        return NULL;
    }
    return program;
}

rn_status rt_program_build(rt_runtime *rt, const char *preamble, const char *const *sources,
                           const size_t *lengths, size_t n, const char *options,
                           cl_program *out) {
    *out = NULL;
    /* The caller's own options (rn_context_options.build_options), to see what the compiler
     * makes of the kernels: the program is compiled afresh and its log handed back. */
    char *with_extra = NULL;
    if (rt->build_options) {
        with_extra = malloc(strlen(options) + strlen(rt->build_options) + 2);
        if (!with_extra) return rn_fail(rt->err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for build options");
        sprintf(with_extra, "%s %s", options, rt->build_options);
        options = with_extra;
    }
    size_t total = 0;
    char *source = concat_sources(preamble, sources, lengths, n, &total);
    if (!source) {
        free(with_extra);
        return rn_fail(rt->err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for kernel sources");
    }

    char *key = NULL, *path = NULL;
    if (rt->cache_mode == RT_CACHE_ON && rt->cache_dir && !with_extra) {
        key = cache_key(rt, source, total, options);
        path = key ? cache_path(rt, key) : NULL;
        if (path) *out = try_cached(rt, path, key, options);
    }

    rn_status st = RN_OK;
    if (!*out) {
        cl_int rc;
        const char *strings[1] = {source};
        cl_program program = clCreateProgramWithSource(rt->context, 1, strings, &total, &rc);
        if (rc != CL_SUCCESS) {
            st = rt_cl_fail(rt->err, rc, "clCreateProgramWithSource");
        } else {
            rc = clBuildProgram(program, 1, &rt->dev.device, options, NULL, NULL);
            if (rc != CL_SUCCESS) {
                st = build_failure(rt, program, rc, options);
                clReleaseProgram(program);
            } else {
                if (path) cache_store(rt, program, path, key);
                if (with_extra && rt->build_log) {
                    char *log = program_build_log(rt, program);
                    rt->build_log(rt->build_log_user, options, log ? log : "(no memory for the build log)");
                    free(log);
                }
                *out = program;
            }
        }
    }
    free(path);
    free(key);
    free(source);
    free(with_extra);
    return st;
}

rn_status rt_kernel_create(rt_runtime *rt, cl_program program, const char *name, cl_kernel *out) {
    cl_int rc;
    *out = clCreateKernel(program, name, &rc);
    if (rc != CL_SUCCESS) {
        *out = NULL;
        rn_status st = rt_cl_fail(rt->err, rc, "clCreateKernel");
        rn_error_prefix(rt->err, "kernel '%s'", name);
        return st;
    }
    return RN_OK;
}
