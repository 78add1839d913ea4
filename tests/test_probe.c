/*
 * test_probe.c: the device ceilings (runtime/rt_probe.c) on the default device.
 *
 *   test_probe [--budget SECONDS]     (SGEMM budget, 0.5 unless given)
 *
 * A rate means something only if the work behind it was right, so first a small awkward GEMM
 * through rt_gemm_xwt is checked against a host product (rt_measure_sgemm itself checks
 * entries of its own large product exactly). Then bandwidth and SGEMM rate must be finite,
 * positive and within sane bounds, misuse must give its named status, and every device byte
 * the probes allocated must be freed. Timings are printed, never compared: this is not a
 * benchmark.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel_sources.h"
#include "rt.h"

static int failures = 0;

static void expect(int ok, const char *what) {
    printf("  %-64s %s\n", what, ok ? "pass" : "FAIL");
    if (!ok) failures++;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* y[M, N] = x[M, K] w[N, K]^T with M, N, K that no kernel tile divides. */
static void small_gemm(rt_runtime *rt) {
    enum { M = 37, N = 53, K = 29 };
    static float x[M * K], w[N * K], y[M * N];
    srand(7);
    for (int i = 0; i < M * K; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < N * K; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    rt_buffer bx = {0}, bw = {0}, by = {0};
    rn_status st = rt_buffer_alloc(rt, sizeof x, "x", &bx);
    if (st == RN_OK) st = rt_buffer_alloc(rt, sizeof w, "w", &bw);
    if (st == RN_OK) st = rt_buffer_alloc(rt, sizeof y, "y", &by);
    if (st == RN_OK) st = rt_buffer_write(rt, &bx, 0, x, sizeof x);
    if (st == RN_OK) st = rt_buffer_write(rt, &bw, 0, w, sizeof w);
    if (st == RN_OK) st = rt_gemm_xwt(rt, M, N, K, &bx, 0, &bw, 0, &by, 0, N);
    if (st == RN_OK) st = rt_buffer_read(rt, &by, 0, y, sizeof y);
    if (st != RN_OK) printf("  gemm: %s: %s\n", rn_status_str(st), rt->err->message);
    expect(st == RN_OK, "rt_gemm_xwt 37x53x29 runs");
    double worst = 0;
    for (int i = 0; st == RN_OK && i < M; i++)
        for (int j = 0; j < N; j++) {
            double want = 0;
            for (int k = 0; k < K; k++) want += (double)x[i * K + k] * w[j * K + k];
            double e = fabs(y[i * N + j] - want);
            if (!(e <= worst)) worst = e;   /* NaN sticks */
        }
    printf("  largest error against the host: %.2e\n", worst);
    expect(st == RN_OK && worst < 1e-5, "rt_gemm_xwt 37x53x29 equals the host product");
    rt_buffer_free(rt, &by);
    rt_buffer_free(rt, &bw);
    rt_buffer_free(rt, &bx);
}

static void bandwidth(rt_runtime *rt) {
    const char *src = NULL;
    size_t len = 0;
    rn_status st = rn_kernel_source("probe.cl", &src, &len, rt->err);
    expect(st == RN_OK && len > 0, "probe.cl is embedded");
    double gbps = 0, t0 = now_s();
    st = rt_measure_bandwidth(rt, src, len, &gbps);
    double took = now_s() - t0;
    if (st != RN_OK) printf("  bandwidth: %s: %s\n", rn_status_str(st), rt->err->message);
    printf("  bandwidth %.2f GB/s (read + write), measured in %.2f s\n", gbps, took);
    expect(st == RN_OK, "rt_measure_bandwidth succeeds");
    expect(isfinite(gbps) && gbps >= 0.1 && gbps <= 100000, "bandwidth within 0.1 .. 100000 GB/s");

    const char *none = NULL;
    size_t no_len = 0;
    expect(rn_kernel_source("no-such.cl", &none, &no_len, rt->err) == RN_ERR_INVALID_ARGUMENT &&
               none == NULL && strstr(rt->err->message, "no-such.cl"),
           "an unknown kernel file is RN_ERR_INVALID_ARGUMENT, named");
    expect(rt_measure_bandwidth(rt, NULL, 0, &gbps) == RN_ERR_INVALID_ARGUMENT && gbps == 0,
           "no copy source is RN_ERR_INVALID_ARGUMENT");
    const char *broken = "__kernel void probe_copy(__global float4 *a) { a[0] = b; }";
    size_t broken_len = strlen(broken);
    st = rt_measure_bandwidth(rt, broken, broken_len, &gbps);
    expect(st == RN_ERR_BUILD && strstr(rt->err->message, "bandwidth probe"),
           "a copy kernel that does not build is RN_ERR_BUILD, with context");
}

static void sgemm(rt_runtime *rt, double budget) {
    double gflops = 0, t0 = now_s();
    size_t n = 0;
    rn_status st = rt_measure_sgemm(rt, budget, &gflops, &n);
    double took = now_s() - t0;
    if (st != RN_OK) printf("  sgemm: %s: %s\n", rn_status_str(st), rt->err->message);
    printf("  SGEMM %.2f GFLOP/s at %zu^3 (budget %.2f s), measured in %.2f s\n", gflops, n, budget,
           took);
    expect(st == RN_OK, "rt_measure_sgemm succeeds (its product checked exactly)");
    expect(isfinite(gflops) && gflops > 0.01 && gflops < 1e6, "SGEMM rate within 0.01 .. 1e6 GFLOP/s");
    expect(n >= 64 && n <= 8192 && (n & (n - 1)) == 0, "SGEMM size a power of two in 64 .. 8192");
    expect(rt_measure_sgemm(rt, 0, &gflops, &n) == RN_ERR_INVALID_ARGUMENT && gflops == 0 && n == 0,
           "a zero budget is RN_ERR_INVALID_ARGUMENT");
    expect(rt_measure_sgemm(rt, NAN, &gflops, &n) == RN_ERR_INVALID_ARGUMENT,
           "a NaN budget is RN_ERR_INVALID_ARGUMENT");
}

int main(int argc, char **argv) {
    double budget = 0.5;
    bool ok = argc == 1;
    if (argc == 3 && strcmp(argv[1], "--budget") == 0) {
        char *end = NULL;
        budget = strtod(argv[2], &end);
        ok = *end == '\0' && budget > 0 && isfinite(budget);
    }
    if (!ok) {
        fprintf(stderr, "usage: %s [--budget SECONDS]\n", argv[0]);
        return 2;
    }
    rn_error err = {{0}};
    rt_runtime rt;
    rn_status st = rt_init(&rt, NULL, RT_CACHE_AUTO, NULL, &err);
    if (st != RN_OK) {
        printf("no device: %s: %s\n", rn_status_str(st), err.message);
        return 1;
    }
    printf("device %s (%s): %.1f MiB global memory, %.1f MiB per allocation\n", rt.dev.info.name,
           rt.dev.info.platform, rt.dev.info.global_mem_bytes / 1048576.0,
           rt.dev.info.max_alloc_bytes / 1048576.0);
    small_gemm(&rt);
    bandwidth(&rt);
    sgemm(&rt, budget);
    expect(rt.bytes_current == 0, "every probe buffer freed");
    rt_release(&rt);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
