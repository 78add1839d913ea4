/*
 * rt_probe.c: the device's ceilings, measured in the same process as the benchmark that quotes
 * them (machines differ from run to run): memory bandwidth with a copy kernel, fp32 compute
 * with one large SGEMM through the same CLBlast path prefill uses.
 *
 * Timings are wall-clock (CLOCK_MONOTONIC) around enqueue and clFinish, because the queue has
 * no profiling. The copy repeats its launch inside one sample until the sample lasts long
 * enough for launch and finish overheads to fade; the SGEMM is large enough on its own.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "rt.h"

#define COPY_MAX_BYTES ((uint64_t)512 << 20)
#define COPY_MIN_BYTES ((uint64_t)4 << 20)
#define COPY_GRAIN ((uint64_t)64 << 10)   /* 4096 float4s: a multiple of any work-group */
#define COPY_SAMPLES 5
#define COPY_SAMPLE_S 0.02
#define COPY_MAX_REPEATS 100
#define COPY_PATTERN 1.5f

#define SGEMM_START 512
#define SGEMM_SMALLEST 64
#define SGEMM_LARGEST 8192
#define SGEMM_TIMED 3
#define SGEMM_SLAB_BYTES ((size_t)4 << 20)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* ---- bandwidth ------------------------------------------------------------------------------- */

/* min(512 MiB, max_alloc / 2, global / 8), but at least 4 MiB where one allocation allows it:
 * large enough that caches do not hold it, small enough to leave the device room to work. */
static uint64_t copy_bytes(const rt_runtime *rt) {
    const rt_device_info *d = &rt->dev.info;
    uint64_t bytes = min_u64(COPY_MAX_BYTES, min_u64(d->max_alloc_bytes / 2, d->global_mem_bytes / 8));
    if (bytes < COPY_MIN_BYTES) bytes = min_u64(COPY_MIN_BYTES, d->max_alloc_bytes);
    return bytes / COPY_GRAIN * COPY_GRAIN;
}

/* `repeats` copies back to back, then one wait; the seconds the whole took. */
static rn_status copy_sample(rt_runtime *rt, cl_kernel kernel, rt_buffer *src, rt_buffer *dst,
                             size_t n4, int repeats, double *seconds) {
    const rt_arg args[] = {RT_ARG_BUF(src), RT_ARG_BUF(dst)};
    double t0 = now_s();
    for (int r = 0; r < repeats; r++) {
        rn_status st = rt_launch(rt, kernel, "probe_copy", args, 2, 1, &n4, NULL);
        if (st != RN_OK) return st;
    }
    rn_status st = rt_finish(rt);
    *seconds = now_s() - t0;
    return st;
}

/* The copy must have happened: dst was zero-filled, src holds the pattern. */
static rn_status copy_check(rt_runtime *rt, const rt_buffer *dst) {
    const size_t n = dst->bytes / sizeof(float);
    const size_t at[] = {0, n / 2, n - 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        float v = 0;
        rn_status st = rt_buffer_read(rt, dst, at[i] * sizeof(float), &v, sizeof v);
        if (st != RN_OK) return st;
        if (v != COPY_PATTERN)
            return rn_fail(rt->err, RN_ERR_OPENCL,
                           "probe_copy left %g at float %zu of %zu, not the %g it copied", v, at[i],
                           n, COPY_PATTERN);
    }
    return RN_OK;
}

static rn_status measure_copy(rt_runtime *rt, cl_kernel kernel, rt_buffer *src, rt_buffer *dst,
                              double *gb_per_s) {
    const float pattern = COPY_PATTERN;
    cl_int rc = clEnqueueFillBuffer(rt->queue, src->mem, &pattern, sizeof pattern, 0, src->bytes, 0,
                                    NULL, NULL);
    if (rc != CL_SUCCESS) return rt_cl_fail(rt->err, rc, "clEnqueueFillBuffer");
    const size_t n4 = src->bytes / (4 * sizeof(float));

    /* The first launch pays for whatever the driver defers (PoCL specialises the kernel for its
     * work-group then); the second tells how many launches make a sample long enough. */
    double once = 0;
    rn_status st = copy_sample(rt, kernel, src, dst, n4, 1, &once);
    if (st == RN_OK) st = copy_sample(rt, kernel, src, dst, n4, 1, &once);
    if (st != RN_OK) return st;
    int repeats = once > 0 ? (int)ceil(COPY_SAMPLE_S / once) : COPY_MAX_REPEATS;
    if (repeats < 1) repeats = 1;
    if (repeats > COPY_MAX_REPEATS) repeats = COPY_MAX_REPEATS;

    /* The best sample: interference (other processes, clock ramps) only ever slows a copy. */
    double best = INFINITY;
    for (int s = 0; s < COPY_SAMPLES; s++) {
        double t = 0;
        if ((st = copy_sample(rt, kernel, src, dst, n4, repeats, &t)) != RN_OK) return st;
        if (t < best) best = t;
    }
    if ((st = copy_check(rt, dst)) != RN_OK) return st;
    if (!(best > 0))
        return rn_fail(rt->err, RN_ERR_OPENCL, "the clock did not advance over %d copies", repeats);
    /* Read plus written bytes, as clpeak counts. */
    *gb_per_s = 2.0 * (double)src->bytes * repeats / best / 1e9;
    return RN_OK;
}

rn_status rt_measure_bandwidth(rt_runtime *rt, const char *copy_source, size_t copy_len,
                               double *gb_per_s) {
    *gb_per_s = 0;
    if (!copy_source || copy_len == 0)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "bandwidth probe: no copy kernel source");
    const uint64_t bytes = copy_bytes(rt);
    if (bytes == 0)
        return rn_fail(rt->err, RN_ERR_DEVICE_MEMORY,
                       "bandwidth probe: '%s' allows no allocation of %llu KiB", rt->dev.info.name,
                       (unsigned long long)(COPY_GRAIN >> 10));

    cl_program program = NULL;
    cl_kernel kernel = NULL;
    rt_buffer src = {0}, dst = {0};
    rn_status st = rt_program_build(rt, "// runtime/rt_probe.c\n", &copy_source, &copy_len, 1, "",
                                    &program);
    if (st == RN_OK) st = rt_kernel_create(rt, program, "probe_copy", &kernel);
    if (st == RN_OK) st = rt_buffer_alloc(rt, (size_t)bytes, "bandwidth probe source", &src);
    if (st == RN_OK) st = rt_buffer_alloc(rt, (size_t)bytes, "bandwidth probe destination", &dst);
    if (st == RN_OK) st = measure_copy(rt, kernel, &src, &dst, gb_per_s);
    if (st != RN_OK) rn_error_prefix(rt->err, "bandwidth probe (2 x %.0f MiB)", bytes / 1048576.0);
    rt_buffer_free(rt, &dst);
    rt_buffer_free(rt, &src);
    if (kernel) clReleaseKernel(kernel);
    if (program) clReleaseProgram(program);
    return st;
}

/* ---- SGEMM ----------------------------------------------------------------------------------- */

/* Inputs are multiples of 1/8 in [-1, 1]: every product is a multiple of 1/64 and every partial
 * sum of up to 8192 of them is exact in fp32, so whatever order CLBlast sums in, each entry of
 * the product must equal the host's exactly, and a few entries prove the rate was a real GEMM. */
static float input_value(uint64_t row, uint64_t col, uint32_t seed) {
    uint64_t h = (row * 0x9e3779b97f4a7c15ull) ^ (col * 0xc2b2ae3d27d4eb4full) ^ seed;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (float)((int)(h % 17) - 8) / 8.0f;
}

/* Fills an [n, n] matrix a slab of rows at a time, so that host memory stays small. */
static rn_status upload_input(rt_runtime *rt, rt_buffer *buf, size_t n, uint32_t seed, float *slab,
                              size_t slab_rows) {
    for (size_t row0 = 0; row0 < n; row0 += slab_rows) {
        size_t rows = n - row0 < slab_rows ? n - row0 : slab_rows;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < n; c++) slab[r * n + c] = input_value(row0 + r, c, seed);
        rn_status st = rt_buffer_write(rt, buf, row0 * n * sizeof(float), slab, rows * n * sizeof(float));
        if (st != RN_OK) return st;
    }
    return RN_OK;
}

/* Three [n, n] fp32 matrices within one allocation each, and all three within a quarter of the
 * device's memory (CLBlast's padded copies need room too) and what is still free. */
static bool sgemm_fits(const rt_runtime *rt, uint64_t n) {
    const uint64_t bytes = n * n * sizeof(float);
    const uint64_t global = rt->dev.info.global_mem_bytes;
    const uint64_t free_bytes = global > rt->bytes_current ? global - rt->bytes_current : 0;
    return bytes <= rt->dev.info.max_alloc_bytes && 3 * bytes <= global / 4 && 3 * bytes <= free_bytes;
}

static rn_status timed_gemm(rt_runtime *rt, size_t n, rt_buffer *x, rt_buffer *w, rt_buffer *y,
                            double *seconds) {
    double t0 = now_s();
    rn_status st = rt_gemm_xwt(rt, n, n, n, x, 0, w, 0, y, 0, n);
    if (st == RN_OK) st = rt_finish(rt);
    *seconds = now_s() - t0;
    return st;
}

#define SEED_X 0x51u
#define SEED_W 0xa7u

/* y = x w^T at a few places, corners included, against the host's exact sums. */
static rn_status sgemm_check(rt_runtime *rt, size_t n, const rt_buffer *y) {
    const size_t at[][2] = {{0, 0}, {0, n - 1}, {n - 1, 0}, {n - 1, n - 1},
                            {n / 2, n / 3}, {n / 3, n / 2}, {n / 7, n - 2}, {n - 3, n / 5}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        const size_t r = at[i][0], c = at[i][1];
        double want = 0;
        for (size_t k = 0; k < n; k++)
            want += (double)input_value(r, k, SEED_X) * (double)input_value(c, k, SEED_W);
        float got = 0;
        rn_status st = rt_buffer_read(rt, y, (r * n + c) * sizeof(float), &got, sizeof got);
        if (st != RN_OK) return st;
        if (fabs((double)got - want) > 1e-6 * (1.0 + fabs(want)))
            return rn_fail(rt->err, RN_ERR_CLBLAST,
                           "CLBlastSgemm(%zu^3) gave %.9g at [%zu, %zu] where the product is %.9g", n,
                           got, r, c, want);
    }
    return RN_OK;
}

/* Allocates and fills the three matrices for size n, runs one untimed call (CLBlast compiles
 * its kernels on first use, and may pick other kernels at another size), then one timed. */
static rn_status sgemm_at(rt_runtime *rt, size_t n, rt_buffer *x, rt_buffer *w, rt_buffer *y,
                          double *seconds) {
    const size_t row_bytes = n * sizeof(float);
    size_t slab_rows = SGEMM_SLAB_BYTES / row_bytes;
    if (slab_rows == 0) slab_rows = 1;
    if (slab_rows > n) slab_rows = n;
    float *slab = malloc(slab_rows * row_bytes);
    if (!slab) return rn_fail(rt->err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for SGEMM inputs");
    rn_status st = rt_buffer_alloc(rt, n * row_bytes, "SGEMM probe x", x);
    if (st == RN_OK) st = rt_buffer_alloc(rt, n * row_bytes, "SGEMM probe w", w);
    if (st == RN_OK) st = rt_buffer_alloc(rt, n * row_bytes, "SGEMM probe y", y);
    if (st == RN_OK) st = upload_input(rt, x, n, SEED_X, slab, slab_rows);
    if (st == RN_OK) st = upload_input(rt, w, n, SEED_W, slab, slab_rows);
    free(slab);
    if (st == RN_OK) st = timed_gemm(rt, n, x, w, y, seconds);   /* the warm-up */
    if (st == RN_OK) st = timed_gemm(rt, n, x, w, y, seconds);
    return st;
}

rn_status rt_measure_sgemm(rt_runtime *rt, double budget_s, double *gflops, size_t *size_used) {
    *gflops = 0;
    *size_used = 0;
    if (!(budget_s > 0) || !isfinite(budget_s))
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "SGEMM probe: budget %g s is not positive",
                       budget_s);
    size_t n = SGEMM_START;
    while (n > SGEMM_SMALLEST && !sgemm_fits(rt, n)) n /= 2;
    if (!sgemm_fits(rt, n))
        return rn_fail(rt->err, RN_ERR_DEVICE_MEMORY,
                       "SGEMM probe: '%s' cannot hold three %zu x %zu fp32 matrices", rt->dev.info.name,
                       n, n);

    /* Double while a call stays under an eighth of the budget: the next is about 8x longer, so
     * the final size's calls each take at most about the budget. */
    rt_buffer x = {0}, w = {0}, y = {0};
    double best = 0;
    rn_status st;
    for (;;) {
        st = sgemm_at(rt, n, &x, &w, &y, &best);
        if (st != RN_OK || best >= budget_s / 8 || 2 * n > SGEMM_LARGEST || !sgemm_fits(rt, 2 * n))
            break;
        rt_buffer_free(rt, &y);
        rt_buffer_free(rt, &w);
        rt_buffer_free(rt, &x);
        n *= 2;
    }
    /* The last timed call of the ladder is the first of SGEMM_TIMED; keep the best. */
    for (int r = 1; st == RN_OK && r < SGEMM_TIMED; r++) {
        double t = 0;
        st = timed_gemm(rt, n, &x, &w, &y, &t);
        if (t < best) best = t;
    }
    if (st == RN_OK) st = sgemm_check(rt, n, &y);
    if (st == RN_OK && !(best > 0))
        st = rn_fail(rt->err, RN_ERR_OPENCL, "the clock did not advance over a %zu^3 SGEMM", n);
    if (st == RN_OK) {
        *gflops = 2.0 * (double)n * (double)n * (double)n / best / 1e9;
        *size_used = n;
    } else {
        rn_error_prefix(rt->err, "SGEMM probe (%zu^3)", n);
    }
    rt_buffer_free(rt, &y);
    rt_buffer_free(rt, &w);
    rt_buffer_free(rt, &x);
    return st;
}
