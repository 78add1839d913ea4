/*
 * selftest.c: every kernel against the plain-C reference, op by op, on one OpenCL device.
 * The public rn_selftest (retnet.h): tests/test_ops.c runs it on every device and `retnet
 * selftest` on the chosen one (for people validating a new GPU or driver).
 *
 * Each output lives inside a larger buffer filled with a sentinel byte: the kernel sees a
 * sub-buffer in the middle, and afterwards the guard regions before and after it must still
 * hold the sentinel, so an out-of-bounds write fails the test even where it corrupts nothing
 * visible. Inputs come from a fixed-seed generator; shapes include sizes that are not
 * multiples of the work-group, value dimensions above it, and chunk lengths that do not divide
 * the sequence.
 *
 * The metric is max |got - ref| / max |ref| over the output (NaN anywhere fails). Tolerances,
 * all against a double-precision reference of fp32 kernels:
 *   1e-6  elementwise ops (embedding, residual): one or two fp32 roundings
 *   1e-5  reductions over at most a few hundred terms (norms, products, rotation by an fp32
 *         sin/cos of up to 4 ulp), and the GLU whose erf/exp are accurate to a few ulp
 *   2e-5  retention: sums of up to n * dk products with decays, then a division
 *   0     exact ops: column copies, and greedy decoding's argmax against the host sampler's
 * Failures are counted, never fatal: a failed allocation or launch is a FAIL row, and the run
 * goes on.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "ops.h"
#include "ref.h"
#include "engine.h"
#include "sampler.h"

#define SENTINEL 0xA5
#define GUARD_MIN 1024

static int failures, checks;
static rn_text_sink sink;  /* where the rows go, one line at a time */
static void *sink_user;

/* One line of the report (no newline), to the caller's sink. */
static void RN_PRINTF(1, 2) emit(const char *fmt, ...) {
    char line[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (sink) sink(sink_user, line);
}

/* quick: the small shapes only, without the CLBlast-backed linear cases (n > 1), for slow
 * devices such as Oclgrind's simulator (test_ops --quick). */
static bool quick = false;

/* ---- fixed-seed inputs --------------------------------------------------------------------- */

#define RNG_SEED 0x9e3779b97f4a7c15ull
static uint64_t rng_state = RNG_SEED;

static double uniform(void) {  /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static float *random_floats(size_t n, double scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)((2.0 * uniform() - 1.0) * scale);
    return v;
}

/* ---- device buffers with guards ------------------------------------------------------------ */

typedef struct guarded {
    cl_mem parent;
    rt_buffer view;   /* what the kernel sees */
    size_t guard;     /* bytes before and after the view */
} guarded;

static guarded guarded_alloc(rt_runtime *rt, size_t bytes) {
    cl_uint align_bits = 0;
    clGetDeviceInfo(rt->dev.device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
    size_t guard = align_bits / 8 > GUARD_MIN ? align_bits / 8 : GUARD_MIN;
    guarded g = {0};
    g.guard = guard;
    cl_int rc;
    g.parent = clCreateBuffer(rt->context, CL_MEM_READ_WRITE, bytes + 2 * guard, NULL, &rc);
    if (rc != CL_SUCCESS) {
        emit("  clCreateBuffer: %s  FAIL", rt_cl_error_name(rc));
        failures++;
    }
    const cl_uchar pattern = SENTINEL;
    clEnqueueFillBuffer(rt->queue, g.parent, &pattern, 1, 0, bytes + 2 * guard, 0, NULL, NULL);
    cl_buffer_region region = {guard, bytes};
    g.view.mem = clCreateSubBuffer(g.parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &rc);
    if (rc != CL_SUCCESS) {
        emit("  clCreateSubBuffer: %s  FAIL", rt_cl_error_name(rc));
        failures++;
    }
    g.view.bytes = bytes;
    return g;
}

static guarded guarded_from(rt_runtime *rt, const void *data, size_t bytes) {
    guarded g = guarded_alloc(rt, bytes);
    clEnqueueWriteBuffer(rt->queue, g.view.mem, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    return g;
}

/* Reads the view into `out` and reports whether both guard regions are intact. */
static bool guarded_read(rt_runtime *rt, guarded *g, void *out) {
    size_t total = g->view.bytes + 2 * g->guard;
    unsigned char *all = calloc(1, total);
    cl_int rc = clEnqueueReadBuffer(rt->queue, g->parent, CL_TRUE, 0, total, all, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        emit("  clEnqueueReadBuffer: %s  FAIL", rt_cl_error_name(rc));
        failures++;
    }
    bool intact = true;
    for (size_t i = 0; i < g->guard; i++)
        if (all[i] != SENTINEL || all[g->guard + g->view.bytes + i] != SENTINEL) intact = false;
    if (out) memcpy(out, all + g->guard, g->view.bytes);
    free(all);
    return intact;
}

static void guarded_free(guarded *g) {
    if (g->view.mem) clReleaseMemObject(g->view.mem);
    if (g->parent) clReleaseMemObject(g->parent);
}

/* ---- comparison ---------------------------------------------------------------------------- */

static void check(const char *op, const char *shape, const float *ref, const float *got, size_t n,
                  double tol, bool guards_intact) {
    double max_ref = 0.0, max_diff = 0.0;
    size_t worst = 0;
    bool nan = false;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(ref[i])) nan = true;
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > max_diff) {
            max_diff = d;
            worst = i;
        }
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
    }
    double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
    bool ok = !nan && rel <= tol && guards_intact;
    checks++;
    emit("  %-18s %-34s max err %.2e  tol %.0e  %s%s%s", op, shape, rel, tol, ok ? "pass" : "FAIL",
                 nan ? " (non-finite value)" : "", guards_intact ? "" : " (write outside the output)");
    if (!ok) {
        failures++;
        if (!nan && rel > tol)
            emit("    worst at %zu: got %.9g, reference %.9g", worst, (double)got[worst], (double)ref[worst]);
    }
}

/* A launch that fails is a failure of its own; the comparison that follows fails too. */
static void must(rn_status st, rt_runtime *rt, const char *what) {
    if (st == RN_OK) st = rt_finish(rt);
    if (st != RN_OK) {
        emit("  %s: %s: %s  FAIL", what, rn_status_str(st), rt->err->message);
        failures++;
    }
}

/* ---- the ops ------------------------------------------------------------------------------- */

/* Weights as the kernels store them: `values` rounded to the kernels' weight type in place (so
 * the reference sees what the device sees), and the stored bytes on the device. */
static guarded stored_weights(rt_runtime *rt, const rn_kernels *k, float *values, size_t count) {
    size_t bytes_count = (size_t)rn_storage_bytes(k->weights, count);
    void *bytes = malloc(bytes_count);
    rn_convert(ST_F32, values, count, k->weights, bytes, NULL);
    rn_convert(k->weights, bytes, count, ST_F32, values, NULL);
    guarded g = guarded_from(rt, bytes, bytes_count);
    free(bytes);
    return g;
}

/* A matrix width for the weight ops: as asked, or for the block-quantized types (whose rows are
 * whole blocks of 32) rounded up to a multiple of 32. */
static int64_t weight_cols(const rn_kernels *k, int64_t cols) {
    const int64_t block = (int64_t)rn_block_elements(k->weights);
    return (cols + block - 1) / block * block;
}

static void test_embed(rt_runtime *rt, const rn_kernels *k) {
    const int64_t V = 50, D = weight_cols(k, 40), n = 7;
    float *E = random_floats((size_t)(V * D), 1.0);
    int32_t tokens[7] = {0, 49, 3, 3, 17, 48, 1};
    float ref[7 * 64], got[7 * 64];
    guarded e = stored_weights(rt, k, E, (size_t)(V * D));
    ref_embedding(E, D, tokens, n, 2.5, ref);
    guarded t = guarded_from(rt, tokens, sizeof tokens);
    guarded x = guarded_alloc(rt, sizeof got);
    must(rn_op_embed(rt, k, &t.view, n, &e.view, 0, V, D, 2.5f, &x.view), rt, "embed");
    bool intact = guarded_read(rt, &x, got);
    char shape[64];
    snprintf(shape, sizeof shape, "V 50, D %lld, n 7, scale 2.5, %s", (long long)D, st_dtype_name(k->weights));
    check("embed_tokens", shape, ref, got, (size_t)(n * D), 1e-6, intact);
    guarded_free(&e), guarded_free(&t), guarded_free(&x);
    free(E);
}

static void test_rms_norm(rt_runtime *rt, const rn_kernels *k) {
    /* Row lengths with and without a scalar tail, and 4103: past the pieces a GPU's group keeps
     * (64 work-items x 8 x 4 floats), so the second pass reads x again. */
    const int64_t dims[] = {40, 129, 1000, 4103};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int weighted = 0; weighted < 2; weighted++) {
            const int64_t rows = 5, dim = dims[d];
            size_t count = (size_t)(rows * dim);
            float *x = random_floats(count, 3.0), *w = random_floats((size_t)dim, 1.0);
            float *ref = malloc(count * sizeof *ref), *got = malloc(count * sizeof *got);
            ref_rms_norm(x, weighted ? w : NULL, rows, dim, 1e-6, ref);
            guarded gx = guarded_from(rt, x, count * sizeof *x), gw = guarded_from(rt, w, (size_t)dim * sizeof *w);
            guarded gy = guarded_alloc(rt, count * sizeof *got);
            must(rn_op_rms_norm(rt, k, &gx.view, weighted ? &gw.view : NULL, rows, dim, 1e-6f, &gy.view), rt,
                 "rms_norm");
            bool intact = guarded_read(rt, &gy, got);
            char shape[64];
            snprintf(shape, sizeof shape, "5 x %lld, %s", (long long)dim, weighted ? "weight" : "no weight");
            check("rms_norm", shape, ref, got, count, 1e-5, intact);
            /* In place, as the post-norm layers and the embedding norm use it. */
            must(rn_op_rms_norm(rt, k, &gx.view, weighted ? &gw.view : NULL, rows, dim, 1e-6f, &gx.view), rt,
                 "rms_norm");
            intact = guarded_read(rt, &gx, got);
            snprintf(shape, sizeof shape, "5 x %lld, %s, in place", (long long)dim, weighted ? "weight" : "no weight");
            check("rms_norm", shape, ref, got, count, 1e-5, intact);
            guarded_free(&gx), guarded_free(&gw), guarded_free(&gy);
            free(x), free(w), free(ref), free(got);
        }
}

static void test_group_norm_gate(rt_runtime *rt, const rn_kernels *k) {
    const int64_t n = 5, H = 3, dv = k->dv;
    size_t count = (size_t)(n * H * dv);
    float *o = random_floats(count, 0.01), *g = random_floats(count, 4.0), *w = random_floats((size_t)dv, 2.0);
    float *ref = malloc(count * sizeof *ref), *got = malloc(count * sizeof *got);
    guarded go = guarded_from(rt, o, count * sizeof *o), gg = guarded_from(rt, g, count * sizeof *g);
    guarded gw = guarded_from(rt, w, (size_t)dv * sizeof *w);
    /* torchscale: gate, no weight; fla: gate and weight; fla without output gate. */
    for (int variant = 0; variant < 3; variant++) {
        const float *gate = variant < 2 ? g : NULL, *weight = variant > 0 ? w : NULL;
        ref_group_norm_gate(o, gate, weight, n, H, dv, 1e-6, ref);
        guarded gy = guarded_alloc(rt, count * sizeof *got);
        must(rn_op_group_norm_gate(rt, k, &go.view, gate ? &gg.view : NULL, weight ? &gw.view : NULL, n, H,
                                   1e-6f, &gy.view),
             rt, "group_norm_gate");
        bool intact = guarded_read(rt, &gy, got);
        char shape[64];
        snprintf(shape, sizeof shape, "n 5, H 3, dv %lld, %s", (long long)dv,
                 variant == 0 ? "gate" : variant == 1 ? "gate, weight" : "weight, no gate");
        check("group_norm_gate", shape, ref, got, count, 1e-5, intact);
        guarded_free(&gy);
    }
    guarded_free(&go), guarded_free(&gg), guarded_free(&gw);
    free(o), free(g), free(w), free(ref), free(got);
}

/* Rows at consecutive positions from 0, 1000 and 70000 (a prompt), and (p == 3) rows each at
 * its own position (a batch of sequences, from a positions buffer). */
static void test_theta_shift(rt_runtime *rt, const rn_kernels *k, const float *angle) {
    const int64_t n = 6, H = 3, dk = k->dk;
    const int64_t positions[] = {0, 1000, 70000};
    const cl_int rows_at[6] = {5, 0, 70001, 12, 13, 999};
    for (int half = 0; half < 2; half++)
    for (size_t p = 0; p < 4; p++)
        for (int is_key = 0; is_key < 2; is_key++) {
            size_t count = (size_t)(n * H * dk);
            double scale = is_key ? 1.0 / sqrt((double)dk) : 1.0;
            float *x = random_floats(count, 2.0), *ref = malloc(count * sizeof *ref), *got = malloc(count * sizeof *got);
            memcpy(ref, x, count * sizeof *x);
            if (p < 3) ref_theta_shift(ref, n, H, dk, angle, positions[p], scale, half);
            else
                for (int64_t t = 0; t < n; t++) ref_theta_shift(ref + t * H * dk, 1, H, dk, angle, rows_at[t], scale, half);
            guarded gx = guarded_from(rt, x, count * sizeof *x);
            guarded ga = guarded_from(rt, angle, (size_t)dk * sizeof *angle);
            guarded gp = guarded_from(rt, rows_at, sizeof rows_at);
            must(rn_op_theta_shift(rt, k, &gx.view, n, H, &ga.view, p < 3 ? positions[p] : 0, p < 3 ? NULL : &gp.view,
                                   (float)scale, half),
                 rt, "theta_shift");
            bool intact = guarded_read(rt, &gx, got);
            char shape[64];
            if (p < 3)
                snprintf(shape, sizeof shape, "n 6, H 3, dk %lld, pos %lld, %s%s", (long long)dk,
                         (long long)positions[p], is_key ? "k" : "q", half ? ", halves" : "");
            else
                snprintf(shape, sizeof shape, "n 6, H 3, dk %lld, per row, %s%s", (long long)dk, is_key ? "k" : "q",
                         half ? ", halves" : "");
            check("theta_shift", shape, ref, got, count, 1e-5, intact);
            guarded_free(&gx), guarded_free(&ga), guarded_free(&gp);
            free(x), free(ref), free(got);
        }
}

static void test_glu_residual(rt_runtime *rt, const rn_kernels *k) {
    const int64_t count = 1000;
    float *a = random_floats((size_t)count, 10.0), *b = random_floats((size_t)count, 2.0);
    float ref[1000], got[1000];
    for (int act = 0; act < 2; act++) {
        ref_glu(a, b, count, (rn_activation)act, ref);
        guarded ga = guarded_from(rt, a, sizeof ref), gb = guarded_from(rt, b, sizeof ref);
        guarded gc = guarded_alloc(rt, sizeof got);
        must(rn_op_glu(rt, k, &ga.view, &gb.view, count, (rn_activation)act, &gc.view), rt, "glu");
        bool intact = guarded_read(rt, &gc, got);
        check("glu", act == RN_ACT_GELU ? "1000, gelu, |a| < 10" : "1000, swish, |a| < 10", ref, got,
              (size_t)count, 1e-5, intact);
        guarded_free(&ga), guarded_free(&gb), guarded_free(&gc);
    }
    const float alphas[] = {1.0f, 1.6817928f};
    for (int i = 0; i < 2; i++) {
        for (int64_t j = 0; j < count; j++) ref[j] = (float)((double)alphas[i] * a[j] + b[j]);
        guarded gx = guarded_from(rt, a, sizeof ref), gy = guarded_from(rt, b, sizeof ref);
        must(rn_op_residual(rt, k, &gx.view, &gy.view, count, alphas[i]), rt, "residual");
        bool intact = guarded_read(rt, &gx, got);
        check("residual", i ? "1000, alpha (2L)^(1/4), L 4" : "1000, alpha 1", ref, got, (size_t)count, 1e-6, intact);
        guarded_free(&gx), guarded_free(&gy);
    }
    free(a), free(b);
}

/* The SGEMM path of prompts, reading a block of rows from inside a larger stored matrix. */
static void test_linear(rt_runtime *rt, const rn_kernels *k) {
    const int64_t shapes[][3] = {{1, 40, 33}, {5, 40, 33}, {9, 130, 70}};
    const int64_t row0 = 2, spare = 3;  /* rows of the stored matrix before and after the block */
    if (quick || !k->gemm) return;      /* CLBlast only: the engine does without it where its
                                           work-groups do not fit (the project kernel) */
    for (size_t s = 0; s < 3; s++) {
        const int64_t n = shapes[s][0], in = weight_cols(k, shapes[s][1]), out = shapes[s][2];
        const size_t stored = (size_t)((row0 + out + spare) * in);
        float *x = random_floats((size_t)(n * in), 1.0), *W = random_floats(stored, 0.2);
        float *ref = malloc((size_t)(n * out) * sizeof *ref), *got = malloc((size_t)(n * out) * sizeof *got);
        guarded gx = guarded_from(rt, x, (size_t)(n * in) * sizeof *x);
        guarded gw = stored_weights(rt, k, W, stored);
        guarded scratch = guarded_alloc(rt, (size_t)(out * in) * sizeof(float));
        ref_linear(x, W + row0 * in, n, in, out, ref);
        guarded gy = guarded_alloc(rt, (size_t)(n * out) * sizeof *got);
        must(rn_op_linear(rt, k, &gx.view, n, in, &gw.view, row0, out, &scratch.view, &gy.view, out, 0), rt, "linear");
        bool intact = guarded_read(rt, &gy, got) & guarded_read(rt, &scratch, NULL);
        char shape[64];
        snprintf(shape, sizeof shape, "%lld x %lld -> %lld (%s, %s)", (long long)n, (long long)in, (long long)out,
                 k->weights == ST_F32 ? "CLBlast" : "widen + CLBlast", st_dtype_name(k->weights));
        check("linear", shape, ref, got, (size_t)(n * out), 1e-5, intact);
        guarded_free(&gx), guarded_free(&gw), guarded_free(&gy), guarded_free(&scratch);
        free(x), free(W), free(ref), free(got);
    }
}

/* The matrix-engine GEMM (gemm_mma.cl; the real instructions on a device that has them, else
 * their portable stand-in) and the rounding of its activations (gemm_mma_operand): x rounded to
 * the weights' half type on the device must equal the host's rounding (to nearest even) bit for
 * bit; with W as stored, the double-accumulated reference then sees the products the engine
 * multiplies, and only the fp32 accumulation differs. Shapes: M, N and K that
 * leave every tile part-used (N not a multiple of 8), several K steps and tiles, a block of rows
 * from inside a larger stored matrix, a column range of a wider output, and the residual epilogue.
 *
 * Tolerance, computed per shape: summing K exact fp32 products in fp32 errs by at most
 * K u sum_k |x_k w_k| per output (the bound of recursive summation, first order), with u = 2^-23
 * rather than 2^-24 as the tensor cores' adds may truncate instead of rounding; the residual
 * epilogue adds two roundings, 2 u (|alpha y| + |x W^T|). The check's metric divides by max |ref|,
 * so the tolerance is that bound's largest value over the outputs over max |ref|. */
static void test_linear_mma(rt_runtime *rt, const rn_kernels *k) {
    /* K from one step of 16 (fewer than the pipeline's stages) to 17 of them, one part-used; an odd
     * width, whose last column has no neighbour to be stored with */
    const int64_t shapes[][3] = {{37, 40, 70}, {130, 264, 136}, {257, 96, 24}, {5, 8, 20}, {19, 32, 45}};
    const int64_t row0 = 3, spare = 5, extra = 9;  /* rows of W around the block; y's spare columns */
    const double u = ldexp(1.0, -23);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        for (int residual = 0; residual < 2; residual++) {
            const int64_t ldy = residual ? out : out + extra, col0 = residual ? 0 : 4;
            const float alpha = residual ? 1.25f : 0.0f;
            const size_t stored = (size_t)((row0 + out + spare) * in), ys = (size_t)(n * ldy);
            float *x = random_floats((size_t)(n * in), 1.0), *W = random_floats(stored, 0.2);
            float *y0 = random_floats(ys, 1.0);
            float *ref = malloc(ys * sizeof *ref), *got = malloc(ys * sizeof *got), *prod = malloc((size_t)(n * out) * sizeof *prod);
            guarded gx = guarded_from(rt, x, (size_t)(n * in) * sizeof *x);
            guarded gw = stored_weights(rt, k, W, stored);  /* W now holds the stored values */
            guarded gy = guarded_from(rt, y0, ys * sizeof *y0);
            /* The reference multiplies the rounded activations. */
            uint16_t *bits = malloc((size_t)(n * in) * sizeof *bits);
            rn_convert(ST_F32, x, (size_t)(n * in), k->weights, bits, NULL);
            rn_convert(k->weights, bits, (size_t)(n * in), ST_F32, x, NULL);
            guarded gh = guarded_alloc(rt, (size_t)(n * in) * sizeof *bits);
            must(rn_op_engine_operand(rt, k, &gx.view, n * in, &gh.view), rt, "engine_operand");
            float *rounded = malloc((size_t)(n * in) * sizeof *rounded);
            bool h_intact = guarded_read(rt, &gh, bits);
            rn_convert(k->weights, bits, (size_t)(n * in), ST_F32, rounded, NULL);
            char what[64];
            snprintf(what, sizeof what, "%lld x %lld (%s)", (long long)n, (long long)in, k->mma_variant);
            if (!residual) check("engine_operand", what, x, rounded, (size_t)(n * in), 0.0, h_intact);  /* exact */
            free(bits), free(rounded);
            ref_linear(x, W + row0 * in, n, in, out, prod);
            double max_ref = 0.0, max_bound = 0.0;
            for (int64_t t = 0; t < n; t++)
                for (int64_t j = 0; j < ldy; j++) {
                    const size_t at = (size_t)(t * ldy + j);
                    const bool inside = j >= col0 && j < col0 + out;
                    const double p = inside ? prod[t * out + j - col0] : 0.0;
                    double bound = 0.0;
                    if (inside) {
                        for (int64_t i = 0; i < in; i++)
                            bound += fabs((double)x[t * in + i] * (double)W[(row0 + j - col0) * in + i]);
                        bound *= (double)in * u;
                        if (residual) bound += 2.0 * u * (fabs(alpha * (double)y0[at]) + fabs(p));
                    }
                    ref[at] = !inside ? y0[at] : residual ? (float)(alpha * (double)y0[at] + p) : (float)p;
                    if (fabs((double)ref[at]) > max_ref) max_ref = fabs((double)ref[at]);
                    if (bound > max_bound) max_bound = bound;
                }
            must(rn_op_linear_mma(rt, k, &gh.view, n, in, &gw.view, row0, out, &gy.view, ldy, col0, residual != 0,
                                  alpha), rt, "linear_mma");
            bool intact = guarded_read(rt, &gy, got);
            char shape[64];
            snprintf(shape, sizeof shape, "%lld x %lld -> %lld%s (%s)", (long long)n, (long long)in, (long long)out,
                     residual ? " +res" : " cols", k->mma_variant);
            check("linear_mma", shape, ref, got, ys, max_ref > 0 ? max_bound / max_ref : max_bound, intact);
            guarded_free(&gx), guarded_free(&gh), guarded_free(&gw), guarded_free(&gy);
            free(x), free(W), free(y0), free(ref), free(got), free(prod);
        }
    }
}

/* The small matrix-engine GEMM and its reduction (rn_op_project_mma) in the project kernel's
 * modes: rows M = 1 .. 64 (part of a 16-row fragment, one to four fragments), K a multiple of 8
 * that ends inside a 32-step, inside a 256-chunk, or spans several chunks and slices of K;
 * widths that leave a 64-column group part-used, odd widths, rotated q and k heads with
 * per-row positions (pairs and halves) into four outputs, residual and GLU. Against the double
 * reference of the rounded activations; tolerance the fp32 summation bound per shape (four
 * times it where the epilogue combines two sums), at least the project kernel's 1e-5. */
static void test_project_mma(rt_runtime *rt, const rn_kernels *k, const float *angle) {
    const int64_t dk = k->dk;
    /* units: the compute units the slices of K are cut for, if not the device's: at 4, 9 x 1704
     * -> 20 is cut into 7 slices, more than the device's own count gives on a 2-core CPU. */
    /* alpha: a residual of alpha 1 is added into y by the slices themselves (no reduction).
     * norm: the RMSNorm before the product (1 without a weight, 2 with one), folded into the
     * GEMM where the build does that (rn_kernels.mma_folds_norm), else not run. */
    const struct { int64_t n, cols, rows; rn_project_mode mode; int rotate; rn_activation act; uint32_t units; float alpha; int norm; } cases[] = {
        {1, 40, 13, RN_PROJECT_PLAIN, 0, RN_ACT_GELU, 0, 1.3f, 0},       {3, 264, 70, RN_PROJECT_RESIDUAL, 0, RN_ACT_GELU, 0, 1.3f, 0},
        {8, 520, 3 * 16 + 5, RN_PROJECT_PLAIN, 1, RN_ACT_GELU, 0, 1.3f, 0}, {17, 600, 200, RN_PROJECT_GLU, 0, RN_ACT_SWISH, 0, 1.3f, 0},
        {32, 96, 3 * 16 + 5, RN_PROJECT_PLAIN, 2, RN_ACT_GELU, 0, 1.3f, 0}, {64, 328, 70, RN_PROJECT_GLU, 0, RN_ACT_GELU, 0, 1.3f, 0},
        {64, 1032, 136, RN_PROJECT_RESIDUAL, 0, RN_ACT_GELU, 0, 1.0f, 0},  {33, 16, 9, RN_PROJECT_PLAIN, 0, RN_ACT_GELU, 0, 1.3f, 0},
        {9, 1704, 20, RN_PROJECT_RESIDUAL, 0, RN_ACT_GELU, 4, 1.0f, 0},    {5, 264, 70, RN_PROJECT_RESIDUAL, 0, RN_ACT_GELU, 0, 1.0f, 0},
        {17, 600, 200, RN_PROJECT_GLU, 0, RN_ACT_SWISH, 0, 1.3f, 2},     {8, 520, 0, RN_PROJECT_PLAIN, 1, RN_ACT_GELU, 0, 1.3f, 2},
        {33, 1704, 70, RN_PROJECT_PLAIN, 0, RN_ACT_GELU, 4, 1.3f, 1},   {64, 328, 136, RN_PROJECT_PLAIN, 0, RN_ACT_GELU, 0, 1.3f, 2},
    };
    const float eps = 1e-5f;
    const float k_scale = (float)(1.0 / sqrt((double)dk));
    const double u = ldexp(1.0, -23);
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        if (cases[s].norm && !k->mma_folds_norm) continue;
        const int64_t n = cases[s].n, cols = cases[s].cols;
        const float alpha = cases[s].alpha;
        const bool glu = cases[s].mode == RN_PROJECT_GLU, rot = cases[s].rotate != 0;
        rn_kernels cut = *k;  /* the same kernels; only how the host cuts K differs */
        if (cases[s].units) cut.compute_units = cases[s].units;
        /* Rotated cases: two q heads and one k head of dk rows, then five plain rows. */
        const int64_t rows = rot ? 3 * dk + 5 : cases[s].rows, q_rows = 2 * dk, rotated = rot ? 3 * dk : 0;
        const int64_t w_rows = glu ? 2 * rows : rows;
        const size_t in_count = (size_t)(n * cols), out_count = (size_t)(n * rows);
        float *x = random_floats(in_count, 1.0), *W = random_floats((size_t)(w_rows * cols), 0.3);
        float *y0 = random_floats(out_count, 1.0), *full = malloc((size_t)(n * w_rows) * sizeof *full);
        float *bound = malloc((size_t)(n * w_rows) * sizeof *bound);
        float *ref = malloc(out_count * sizeof *ref), *got = malloc(out_count * sizeof *got);
        cl_int *at = malloc((size_t)n * sizeof *at);
        for (int64_t b = 0; b < n; b++) at[b] = (cl_int)(b % 3 == 1 ? 3 + b : 70000 + 17 * b);
        guarded gw = stored_weights(rt, k, W, (size_t)(w_rows * cols));
        guarded gx = guarded_from(rt, x, in_count * sizeof *x);  /* the device rounds it itself */
        /* The norm's weight in powers of two, so that x times it rounds to the half type exactly
         * as x does; each row's scale from x as the device has it (before rounding), in double. */
        float *gamma = malloc((size_t)cols * sizeof *gamma), *xw = malloc(in_count * sizeof *xw);
        double *inv = malloc((size_t)n * sizeof *inv);
        for (int64_t i = 0; i < cols; i++) gamma[i] = cases[s].norm == 2 ? ldexpf(1.0f, (int)(i % 5) - 2) : 1.0f;
        for (int64_t b = 0; b < n; b++) {
            double squares = 0.0;
            for (int64_t i = 0; i < cols; i++) squares += (double)x[b * cols + i] * (double)x[b * cols + i];
            inv[b] = cases[s].norm ? 1.0 / sqrt(squares / (double)cols + (double)eps) : 1.0;
        }
        uint16_t *bits = malloc(in_count * sizeof *bits);
        rn_convert(ST_F32, x, in_count, k->weights, bits, NULL);
        rn_convert(k->weights, bits, in_count, ST_F32, x, NULL);
        free(bits);
        for (size_t i = 0; i < in_count; i++) xw[i] = x[i] * gamma[i % (size_t)cols];
        ref_linear(xw, W, n, cols, w_rows, full);
        double max_bound = 0.0;
        for (int64_t b = 0; b < n; b++)
            for (int64_t r = 0; r < w_rows; r++) {
                double sum = 0.0;
                for (int64_t i = 0; i < cols; i++) sum += fabs((double)xw[b * cols + i] * (double)W[r * cols + i]);
                full[b * w_rows + r] = (float)(full[b * w_rows + r] * inv[b]);
                bound[b * w_rows + r] = (float)(sum * inv[b] * (double)cols * u);
                if (bound[b * w_rows + r] > max_bound) max_bound = bound[b * w_rows + r];
            }
        for (int64_t b = 0; b < n; b++) {
            for (int64_t r = 0; r < rows; r++) {
                float value = full[b * w_rows + r];
                if (glu) ref_glu(&value, &full[b * w_rows + rows + r], 1, cases[s].act, &value);
                if (cases[s].mode == RN_PROJECT_RESIDUAL) value += alpha * y0[b * rows + r];
                ref[b * rows + r] = value;
            }
            if (rot) {
                const bool half = cases[s].rotate == 2;
                ref_theta_shift(ref + b * rows, 1, 2, dk, angle, at[b], 1.0, half);
                ref_theta_shift(ref + b * rows + q_rows, 1, 1, dk, angle, at[b], k_scale, half);
            }
        }
        double max_ref = 0.0;
        for (size_t i = 0; i < out_count; i++)
            if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
        /* Rotated cases write four outputs: q, k, three plain rows, two more. */
        const int64_t ends[4] = {q_rows, rotated, rotated + 3, rows};
        const int outputs = rot ? 4 : 1;
        guarded ga = guarded_from(rt, angle, (size_t)dk * sizeof *angle);
        guarded gp = guarded_from(rt, at, (size_t)n * sizeof *at);
        guarded gy[4] = {{0}};
        for (int o = 0; o < outputs; o++) {
            const int64_t width = rot ? ends[o] - (o ? ends[o - 1] : 0) : rows;
            gy[o] = cases[s].mode == RN_PROJECT_RESIDUAL ? guarded_from(rt, y0, out_count * sizeof *y0)
                                                         : guarded_alloc(rt, (size_t)(n * width) * sizeof(float));
        }
        const uint64_t partial_bytes = rn_mma_partial_bytes(&cut, n, cols, w_rows);
        guarded gpart = guarded_alloc(rt, (size_t)partial_bytes);
        guarded gg = guarded_from(rt, gamma, (size_t)cols * sizeof *gamma);
        rn_projection p = {.W = &gw.view, .rows = rows, .cols = cols, .x = &gx.view, .n = n, .mode = cases[s].mode,
                           .alpha = alpha, .activation = cases[s].act, .ends = {ends[0], ends[1], ends[2]},
                           .rotated = rotated, .q_rows = q_rows, .pos0 = 0, .pos_step = 1,
                           .positions = rot ? &gp.view : NULL, .angle = &ga.view, .k_scale = k_scale,
                           .half_split = cases[s].rotate == 2, .normalize = cases[s].norm != 0,
                           .norm = cases[s].norm == 2 ? &gg.view : NULL, .eps = eps};
        for (int o = 0; o < outputs; o++) p.y[o] = &gy[o].view;
        must(rn_op_project_mma(rt, &cut, &p, &gpart.view), rt, "project_mma");
        bool intact = guarded_read(rt, &gpart, NULL);
        float *part = malloc(out_count * sizeof *part);
        for (int o = 0; o < outputs; o++) {
            const int64_t first = rot && o ? ends[o - 1] : 0, width = rot ? ends[o] - first : rows;
            intact &= guarded_read(rt, &gy[o], part);
            for (int64_t b = 0; b < n; b++) memcpy(got + b * rows + first, part + b * width, (size_t)width * sizeof *got);
        }
        double tol = (glu || rot ? 4.0 : 1.0) * (max_ref > 0 ? max_bound / max_ref : max_bound);
        if (cases[s].mode == RN_PROJECT_RESIDUAL) tol += 4.0 * u;
        if (tol < 1e-5) tol = 1e-5;
        char shape[80];
        int64_t kper;
        snprintf(shape, sizeof shape, "%lld x %lld -> %lld %s%s, %lld slices (%s)", (long long)n, (long long)cols,
                 (long long)rows, cases[s].norm == 2 ? "norm w, " : cases[s].norm ? "norm, " : "",
                 glu ? (cases[s].act == RN_ACT_SWISH ? "glu swish" : "glu gelu")
                     : cases[s].mode == RN_PROJECT_RESIDUAL ? (alpha == 1.0f ? "+res added" : "+res")
                     : rot ? (cases[s].rotate == 2 ? "rot halves" : "rot pairs") : "plain",
                 (long long)rn_mma_slices(&cut, cols, w_rows, &kper), k->mma_variant);
        check("project_mma", shape, ref, got, out_count, tol, intact);
        for (int o = 0; o < outputs; o++) guarded_free(&gy[o]);
        guarded_free(&gw), guarded_free(&gx), guarded_free(&ga), guarded_free(&gp), guarded_free(&gpart);
        guarded_free(&gg);
        free(x), free(W), free(y0), free(full), free(bound), free(ref), free(got), free(at), free(part);
        free(gamma), free(xw), free(inv);
    }
}

/* Columns of a stacked product handed out: an exact copy. */
static void test_split_columns(rt_runtime *rt, const rn_kernels *k) {
    const int64_t n = 5, stride = 33, col0 = 7, width = 13;
    float *src = random_floats((size_t)(n * stride), 1.0), ref[5 * 13], got[5 * 13];
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < width; j++) ref[t * width + j] = src[t * stride + col0 + j];
    guarded gs = guarded_from(rt, src, (size_t)(n * stride) * sizeof *src), gd = guarded_alloc(rt, sizeof got);
    must(rn_op_split_columns(rt, k, &gs.view, n, stride, col0, width, &gd.view), rt, "split_columns");
    bool intact = guarded_read(rt, &gd, got);
    check("split_columns", "5 x 33, columns 7..20", ref, got, (size_t)(n * width), 0.0, intact);
    guarded_free(&gs), guarded_free(&gd);
    free(src);
}

/* Greedy decoding's choice on the device against the host sampler's at temperature 0 (the
 * reference it must equal exactly), and each row's first non-finite column against a plain
 * scan. Row kinds: random; all negative; the maximum tied at three places, the lowest in a later
 * work-item's share than a higher one; every value equal; -0 before +0 as the maximum (equal);
 * a NaN after an infinity; -inf alone; +inf alone. Lengths: 1, below and above the group,
 * neither a multiple of it, and long enough to be cut into slices, the longest into more than
 * RN_ARGMAX_MAX_PARTS rounds of loads. */
static void test_argmax(rt_runtime *rt, const rn_kernels *k) {
    const int64_t lengths[] = {1, 37, 200, 1000, 5000, 70001, 200003};
    enum { KINDS = 8 };
    rn_sampling greedy;
    rn_sampling_default(&greedy);
    greedy.temperature = 0.0f;
    greedy.repeat_penalty = 1.0f;
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        const int64_t V = lengths[l], rows = KINDS;
        float *x = random_floats((size_t)(rows * V), 1.0);
        float want[2 * KINDS], got[2 * KINDS];
        for (int64_t r = 0; r < rows; r++) {
            float *row = x + r * V;
            switch (r) {
            case 1:  /* all negative */
                for (int64_t i = 0; i < V; i++) row[i] = -fabsf(row[i]) - 1.0f;
                break;
            case 2:  /* ties: 2.0 at V-1, 2V/3 and V/3 + 1; V/3 + 1 is the lowest */
                for (int64_t i = 0; i < V; i++) row[i] = -fabsf(row[i]);
                row[V - 1] = row[2 * V / 3] = row[V / 3 + (V > 1)] = 2.0f;
                break;
            case 3:  /* all equal: index 0 */
                for (int64_t i = 0; i < V; i++) row[i] = 0.5f;
                break;
            case 4:  /* signed zeros: -0 at V/4 ties with +0 at V/2, the lower wins */
                for (int64_t i = 0; i < V; i++) row[i] = -fabsf(row[i]) - 0.25f;
                row[V / 2] = 0.0f;
                row[V / 4] = -0.0f;
                break;
            case 5:  /* NaN at V/2 after +inf at V/3 */
                row[V / 3] = INFINITY;
                row[V / 2] = NAN;
                break;
            case 6: row[2 * V / 3] = -INFINITY; break;
            case 7: row[V - 1] = INFINITY; break;
            default: break;
            }
        }
        rn_sampler *sampler = NULL;
        rn_error err = {{0}};
        rn_status st = sampler_init(&greedy, (size_t)V, &sampler, &err);
        for (int64_t r = 0; r < rows; r++) {
            const float *row = x + r * V;
            int64_t bad = -1;
            for (int64_t i = 0; i < V && bad < 0; i++)
                if (!isfinite(row[i])) bad = i;
            int32_t token = 0;
            if (bad < 0 && st == RN_OK) st = sampler_sample(sampler, row, NULL, 0, 0, &token, &err);
            want[2 * r] = (float)token;
            want[2 * r + 1] = (float)bad;
        }
        sampler_free(sampler);
        if (st != RN_OK) {
            emit("  argmax_rows: the host sampler failed: %s  FAIL", err.message);
            failures++;
        }
        /* Each row in one work-group, then cut into slices where the device can count its groups
         * (rn_argmax_parts: the longer rows take several, the longest the most there are); the
         * sliced launch runs twice, so that counters not left at zero would show in the second. */
        for (int sliced = 0; sliced < 2; sliced++) {
            const int64_t parts = rn_argmax_parts(k, V, sliced);
            if (sliced && parts == 1) continue;  /* the same launch as the first */
            guarded gx = guarded_from(rt, x, (size_t)(rows * V) * sizeof *x), gc = guarded_alloc(rt, sizeof got),
                    gn = guarded_alloc(rt, (size_t)rows * sizeof(cl_int)),
                    gw = guarded_alloc(rt, (size_t)rows * RN_ARGMAX_MAX_PARTS * 3 * sizeof(cl_int)),
                    gd = guarded_alloc(rt, (size_t)rows * sizeof(cl_int));
            cl_int zeros[KINDS] = {0}, done[KINDS];
            clEnqueueWriteBuffer(rt->queue, gd.view.mem, CL_TRUE, 0, sizeof zeros, zeros, 0, NULL, NULL);
            const rn_argmax_slices slices = {&gw.view, &gd.view};
            for (int run = 0; run < (sliced ? 2 : 1); run++)
                must(rn_op_argmax(rt, k, &gx.view, rows, V, &gc.view, 0, &gn.view, sliced ? &slices : NULL), rt,
                     "argmax_rows");
            cl_int choice[2 * KINDS], next[KINDS];
            bool intact = guarded_read(rt, &gc, choice), next_intact = guarded_read(rt, &gn, next);
            bool counters_intact = guarded_read(rt, &gd, done) && guarded_read(rt, &gw, NULL);
            float want_row[2 * KINDS], want_next[KINDS], got_next[KINDS], want_done[KINDS], got_done[KINDS];
            for (int64_t r = 0; r < rows; r++) {
                got[2 * r] = (float)choice[2 * r];
                got[2 * r + 1] = (float)choice[2 * r + 1];
                want_row[2 * r + 1] = want[2 * r + 1];
                /* a refused row's choice means nothing */
                want_row[2 * r] = want[2 * r + 1] >= 0 ? got[2 * r] : want[2 * r];
                /* the next step's input: the choice, or 0 (a valid token) for a refused row */
                want_next[r] = want[2 * r + 1] >= 0 ? 0.0f : want[2 * r];
                got_next[r] = (float)next[r];
                want_done[r] = 0.0f;
                got_done[r] = (float)done[r];
            }
            char shape[96];
            snprintf(shape, sizeof shape, "%lld x %lld in %lld slice%s, ties, +-0, NaN, +-inf", (long long)rows,
                     (long long)V, (long long)parts, parts > 1 ? "s" : "");
            check("argmax_rows", shape, want_row, got, 2 * (size_t)rows, 0.0, intact);
            check("argmax_rows next", shape, want_next, got_next, (size_t)rows, 0.0, next_intact);
            if (sliced) check("argmax_rows counters", shape, want_done, got_done, (size_t)rows, 0.0, counters_intact);
            guarded_free(&gx), guarded_free(&gc), guarded_free(&gn), guarded_free(&gw), guarded_free(&gd);
        }
        free(x);
    }
}

/* The project kernel (decoding's products) in every mode against the reference's rmsnorm,
 * linear, residual and GLU: row counts that leave a work-group's rows part-used, columns with
 * and without a tail past the last group of eight, and more input rows than one pass of lanes
 * (4). The plain mode splits its rows over four outputs, as q, k, v and g. */
static void test_project(rt_runtime *rt, const rn_kernels *k) {
    const struct { int64_t n, rows, cols; } shapes[] = {{1, 13, 64}, {3, 7, 37}, {6, 9, 130}};
    const struct { rn_project_mode mode; int norm; rn_activation act; const char *name; } variants[] = {
        {RN_PROJECT_PLAIN, 0, RN_ACT_GELU, "plain"},
        {RN_PROJECT_PLAIN, 2, RN_ACT_GELU, "4 outputs, norm w"},
        {RN_PROJECT_PLAIN, 1, RN_ACT_GELU, "norm"},
        {RN_PROJECT_RESIDUAL, 0, RN_ACT_GELU, "residual"},
        {RN_PROJECT_GLU, 2, RN_ACT_GELU, "glu gelu, norm w"},
        {RN_PROJECT_GLU, 0, RN_ACT_SWISH, "glu swish"},
    };
    const float alpha = 1.7f, eps = 1e-6f;
    for (size_t s = 0; s < 3; s++)
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            const int64_t n = shapes[s].n, rows = shapes[s].rows, cols = weight_cols(k, shapes[s].cols);
            const bool glu = variants[v].mode == RN_PROJECT_GLU, split = v == 1;
            const int64_t w_rows = glu ? 2 * rows : rows;
            const size_t in_count = (size_t)(n * cols), out_count = (size_t)(n * rows);
            float *x = random_floats(in_count, 1.0), *W = random_floats((size_t)(w_rows * cols), 0.3);
            float *norm = random_floats((size_t)cols, 2.0), *y0 = random_floats(out_count, 1.0);
            float *h = malloc(in_count * sizeof *h), *full = malloc((size_t)(n * w_rows) * sizeof *full);
            float *ref = malloc(out_count * sizeof *ref), *got = malloc(out_count * sizeof *got);
            guarded gw = stored_weights(rt, k, W, (size_t)(w_rows * cols));
            if (variants[v].norm) ref_rms_norm(x, variants[v].norm == 2 ? norm : NULL, n, cols, eps, h);
            else memcpy(h, x, in_count * sizeof *h);
            ref_linear(h, W, n, cols, w_rows, full);
            for (int64_t b = 0; b < n; b++)
                for (int64_t r = 0; r < rows; r++) {
                    float value = full[b * w_rows + r];
                    if (glu) ref_glu(&value, &full[b * w_rows + rows + r], 1, variants[v].act, &value);
                    if (variants[v].mode == RN_PROJECT_RESIDUAL) value += alpha * y0[b * rows + r];
                    ref[b * rows + r] = value;
                }
            /* Outputs: one [n, rows], or four holding rows [0,2), [2,3), [3,rows-2), [rows-2,rows). */
            const int64_t ends[4] = {2, 3, rows - 2, rows};
            guarded gx = guarded_from(rt, x, in_count * sizeof *x), gn = guarded_from(rt, norm, (size_t)cols * sizeof *norm);
            guarded gy[4] = {{0}};
            int outputs = split ? 4 : 1;
            for (int o = 0; o < outputs; o++) {
                int64_t width = split ? ends[o] - (o ? ends[o - 1] : 0) : rows;
                gy[o] = variants[v].mode == RN_PROJECT_RESIDUAL ? guarded_from(rt, y0, out_count * sizeof *y0)
                                                                : guarded_alloc(rt, (size_t)(n * width) * sizeof(float));
            }
            rn_projection p = {.W = &gw.view, .rows = rows, .cols = cols, .x = &gx.view, .n = n,
                               .normalize = variants[v].norm != 0, .norm = variants[v].norm == 2 ? &gn.view : NULL,
                               .eps = eps, .mode = variants[v].mode, .alpha = alpha, .activation = variants[v].act,
                               .ends = {ends[0], ends[1], ends[2]}};
            for (int o = 0; o < outputs; o++) p.y[o] = &gy[o].view;
            must(rn_op_project(rt, k, &p), rt, "project");
            bool intact = true;
            float *part = malloc(out_count * sizeof *part);
            for (int o = 0; o < outputs; o++) {
                int64_t first = split && o ? ends[o - 1] : 0, width = split ? ends[o] - first : rows;
                intact &= guarded_read(rt, &gy[o], part);
                for (int64_t b = 0; b < n; b++)
                    memcpy(got + b * rows + first, part + b * width, (size_t)width * sizeof *got);
            }
            char shape[64];
            snprintf(shape, sizeof shape, "%lld x %lld -> %lld, %s, %s", (long long)n, (long long)cols, (long long)rows,
                     variants[v].name, st_dtype_name(k->weights));
            check("project", shape, ref, got, out_count, 1e-5, intact);
            for (int o = 0; o < outputs; o++) guarded_free(&gy[o]);
            guarded_free(&gx), guarded_free(&gn), guarded_free(&gw);
            free(x), free(W), free(norm), free(y0), free(h), free(full), free(ref), free(got), free(part);
        }
}

/* The project kernel's rotated rows (decoding's q and k): two q heads and one k head of dk
 * rows, then five plain rows, for three input rows at consecutive positions (a prompt) and at
 * positions of their own (a batch of sequences), interleaved pairs and halves, against the
 * reference's linear then theta shift. Positions up to 70000 make the fp32 angle product
 * matter. */
static void test_project_rotation(rt_runtime *rt, const rn_kernels *k, const float *angle) {
    const int64_t dk = k->dk, n = 3, cols = 40, q_rows = 2 * dk, rotated = 3 * dk, rows = rotated + 5;
    const float k_scale = (float)(1.0 / sqrt((double)dk));
    const size_t out_count = (size_t)(n * rows);
    for (int half = 0; half < 2; half++)
        for (int batch = 0; batch < 2; batch++) {
            const int64_t pos0 = 1000;
            const cl_int rows_at[3] = {70000, 3, 70001};
            float *x = random_floats((size_t)(n * cols), 1.0), *W = random_floats((size_t)(rows * cols), 0.3);
            float *ref = malloc(out_count * sizeof *ref), *got = malloc(out_count * sizeof *got);
            guarded gw = stored_weights(rt, k, W, (size_t)(rows * cols));
            ref_linear(x, W, n, cols, rows, ref);
            for (int64_t b = 0; b < n; b++) {
                const int64_t pos = batch ? rows_at[b] : pos0 + b;
                ref_theta_shift(ref + b * rows, 1, 2, dk, angle, pos, 1.0, half);
                ref_theta_shift(ref + b * rows + q_rows, 1, 1, dk, angle, pos, k_scale, half);
            }
            guarded gx = guarded_from(rt, x, (size_t)(n * cols) * sizeof *x);
            guarded ga = guarded_from(rt, angle, (size_t)dk * sizeof *angle);
            guarded gy = guarded_alloc(rt, out_count * sizeof *got);
            guarded gp = guarded_from(rt, rows_at, sizeof rows_at);
            rn_projection p = {.W = &gw.view, .rows = rows, .cols = cols, .x = &gx.view, .n = n,
                               .mode = RN_PROJECT_PLAIN, .y = {&gy.view}, .rotated = rotated, .q_rows = q_rows,
                               .pos0 = pos0, .pos_step = 1, .positions = batch ? &gp.view : NULL,
                               .angle = &ga.view, .k_scale = k_scale, .half_split = half};
            must(rn_op_project(rt, k, &p), rt, "project");
            bool intact = guarded_read(rt, &gy, got);
            char shape[64];
            snprintf(shape, sizeof shape, "rotated, dk %lld, %s, %s", (long long)dk, half ? "halves" : "pairs",
                     batch ? "per row" : "positions");
            check("project", shape, ref, got, out_count, 1e-5, intact);
            guarded_free(&gw), guarded_free(&gx), guarded_free(&ga), guarded_free(&gy), guarded_free(&gp);
            free(x), free(W), free(ref), free(got);
        }
}

/* ---- matrices in pieces (matrix.h) ----------------------------------------------------------- */

/* W [rows, cols] as the model keeps a matrix on a device with a small largest allocation:
 * pieces of `per` rows (of each half), made here by hand. The pieces are quantized from W's own
 * values, block for block as the whole matrix would be, and W is then rounded in place as the
 * device stores it, for the reference. */
#define MAX_TEST_PIECES 8
typedef struct pieced {
    rn_matrix m;
    rt_buffer views[MAX_TEST_PIECES];
    guarded store[MAX_TEST_PIECES];
} pieced;

static void pieced_init(pieced *out, rt_runtime *rt, const rn_kernels *k, float *W, int64_t rows, int64_t cols,
                        bool halves, int64_t per) {
    memset(out, 0, sizeof *out);
    const int64_t half = halves ? rows / 2 : rows, parts = halves ? 2 : 1;
    out->m = (rn_matrix){.pieces = out->views, .count = (half + per - 1) / per, .rows = rows, .cols = cols,
                         .piece_rows = per, .halves = halves, .what = "test matrix"};
    for (int64_t p = 0; p < out->m.count && p < MAX_TEST_PIECES; p++) {
        const int64_t held = rn_matrix_held(&out->m, p);
        float *piece = malloc((size_t)(parts * held * cols) * sizeof *piece);
        for (int64_t h = 0; h < parts; h++)
            memcpy(piece + h * held * cols, W + (h * half + p * per) * cols, (size_t)(held * cols) * sizeof *piece);
        out->store[p] = stored_weights(rt, k, piece, (size_t)(parts * held * cols));
        out->views[p] = out->store[p].view;
        free(piece);
    }
    guarded whole = stored_weights(rt, k, W, (size_t)(rows * cols));
    guarded_free(&whole);
}

/* Whether every piece's guard bytes are intact. */
static bool pieced_free(rt_runtime *rt, pieced *pm) {
    bool intact = true;
    for (int64_t p = 0; p < pm->m.count && p < MAX_TEST_PIECES; p++) {
        intact &= guarded_read(rt, &pm->store[p], NULL);
        guarded_free(&pm->store[p]);
    }
    return intact;
}

/* The ops over a matrix in pieces against the reference (or, for the matrix engine and the
 * random fill, against the same op on the matrix in one buffer): a lookup whose tokens fall in
 * every piece; projections whose pieces end inside a work-group's rows, rotated pairs by head,
 * GLU halves; SGEMM runs that cross pieces into a column range of a wider output, with a
 * scratch too small for one piece (widened in steps). Pieces of 16 rows here stand for a
 * device that allows only a few kilobytes in one buffer. */
static void test_pieces(rt_runtime *rt, const rn_kernels *k, const float *angle) {
    const int64_t cols = 64, dk = k->dk, per = 16;
    const char *type = st_dtype_name(k->weights);
    char shape[80];
    {   /* embedding: 50 rows in pieces of 16, 16, 16, 2 */
        const int64_t V = 50, n = 7;
        float *E = random_floats((size_t)(V * cols), 1.0), ref[7 * 64], got[7 * 64];
        const int32_t tokens[7] = {0, 49, 16, 15, 31, 32, 48};
        pieced pe;
        pieced_init(&pe, rt, k, E, V, cols, false, per);
        ref_embedding(E, cols, tokens, n, 2.5, ref);
        guarded t = guarded_from(rt, tokens, sizeof tokens), x = guarded_alloc(rt, sizeof got);
        must(rn_matrix_embed(rt, k, &t.view, n, &pe.m, 2.5f, &x.view), rt, "matrix embed");
        bool intact = guarded_read(rt, &x, got) & pieced_free(rt, &pe);
        snprintf(shape, sizeof shape, "V 50 in 4 pieces, D 64, %s", type);
        check("embed pieces", shape, ref, got, (size_t)(n * cols), 1e-6, intact);
        guarded_free(&t), guarded_free(&x);
        free(E);
    }
    /* projections: q (2 heads), k (1 head) rotated, then 6 plain rows, in pieces of one head; a
     * GLU pair of 40 rows a half with a weighted norm; a residual of 40 rows */
    const struct { rn_project_mode mode; int64_t rows, per; const char *name; } cases[] = {
        {RN_PROJECT_PLAIN, 3 * dk + 6, dk % 2 ? 2 * dk : dk, "rotated"},
        {RN_PROJECT_GLU, 40, per, "glu, norm w"},
        {RN_PROJECT_RESIDUAL, 40, per, "residual"},
    };
    const int64_t n = 3;
    const cl_int at[3] = {70000, 3, 9};
    const float k_scale = 0.25f, alpha = 1.3f, eps = 1e-6f;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const bool glu = cases[c].mode == RN_PROJECT_GLU, rot = cases[c].mode == RN_PROJECT_PLAIN;
        const int64_t rows = cases[c].rows, w_rows = glu ? 2 * rows : rows;
        float *W = random_floats((size_t)(w_rows * cols), 0.3), *x = random_floats((size_t)(n * cols), 1.0);
        float *norm = random_floats((size_t)cols, 2.0), *y0 = random_floats((size_t)(n * rows), 1.0);
        float *h = malloc((size_t)(n * cols) * sizeof *h), *full = malloc((size_t)(n * w_rows) * sizeof *full);
        float *ref = malloc((size_t)(n * rows) * sizeof *ref), *got = malloc((size_t)(n * rows) * sizeof *got);
        pieced pw;
        pieced_init(&pw, rt, k, W, w_rows, cols, glu, cases[c].per);
        if (glu) ref_rms_norm(x, norm, n, cols, eps, h);
        else memcpy(h, x, (size_t)(n * cols) * sizeof *h);
        ref_linear(h, W, n, cols, w_rows, full);
        for (int64_t b = 0; b < n; b++) {
            for (int64_t r = 0; r < rows; r++) {
                float value = full[b * w_rows + r];
                if (glu) ref_glu(&value, &full[b * w_rows + rows + r], 1, RN_ACT_SWISH, &value);
                if (!glu && !rot) value += alpha * y0[b * rows + r];
                ref[b * rows + r] = value;
            }
            if (rot) {
                ref_theta_shift(ref + b * rows, 1, 2, dk, angle, at[b], 1.0, false);
                ref_theta_shift(ref + b * rows + 2 * dk, 1, 1, dk, angle, at[b], k_scale, false);
            }
        }
        guarded gx = guarded_from(rt, x, (size_t)(n * cols) * sizeof *x);
        guarded gn = guarded_from(rt, norm, (size_t)cols * sizeof *norm);
        guarded ga = guarded_from(rt, angle, (size_t)dk * sizeof *angle), gp = guarded_from(rt, at, sizeof at);
        guarded gy = glu || rot ? guarded_alloc(rt, (size_t)(n * rows) * sizeof *got)
                                : guarded_from(rt, y0, (size_t)(n * rows) * sizeof *y0);
        rn_projection p = {.rows = rows, .cols = cols, .x = &gx.view, .n = n, .normalize = glu,
                           .norm = glu ? &gn.view : NULL, .eps = eps, .mode = cases[c].mode, .alpha = alpha,
                           .activation = RN_ACT_SWISH, .y = {&gy.view}, .rotated = rot ? 3 * dk : 0,
                           .q_rows = 2 * dk, .positions = &gp.view, .angle = &ga.view, .k_scale = k_scale};
        must(rn_matrix_project(rt, k, &pw.m, p, false, NULL), rt, "matrix project");
        bool intact = guarded_read(rt, &gy, got) & pieced_free(rt, &pw);
        snprintf(shape, sizeof shape, "%lld x %lld -> %lld in %lld, %s, %s", (long long)n, (long long)cols,
                 (long long)rows, (long long)pw.m.count, cases[c].name, type);
        check("project pieces", shape, ref, got, (size_t)(n * rows), 1e-5, intact);
        guarded_free(&gx), guarded_free(&gn), guarded_free(&ga), guarded_free(&gp), guarded_free(&gy);
        free(W), free(x), free(norm), free(y0), free(h), free(full), free(ref), free(got);
    }
    {   /* random weights: a GLU pair filled in pieces equals the pair filled in one buffer, seen
         * through the same projection (exactly: the same stored values in the same order) */
        const int64_t rows = 40;
        rn_matrix whole = {0}, split = {0};
        rn_error err = {0};
        must(rn_matrix_plan(&whole, "filled whole", 2 * rows, cols, true, k->weights, UINT64_MAX, 16, &err), rt,
             "plan");
        const uint64_t cap = rn_storage_bytes(k->weights, (uint64_t)(2 * per * cols));
        must(rn_matrix_plan(&split, "filled in pieces", 2 * rows, cols, true, k->weights, cap, 16, &err), rt, "plan");
        must(rn_matrix_alloc(rt, &whole, k->weights), rt, "alloc");
        must(rn_matrix_alloc(rt, &split, k->weights), rt, "alloc");
        must(rn_matrix_fill(rt, k, &whole, 12345, 0.3f), rt, "fill");
        must(rn_matrix_fill(rt, k, &split, 12345, 0.3f), rt, "fill");
        float *x = random_floats((size_t)(n * cols), 1.0), ref[3 * 40], got[3 * 40];
        guarded gx = guarded_from(rt, x, (size_t)(n * cols) * sizeof *x);
        guarded gr = guarded_alloc(rt, sizeof ref), gg = guarded_alloc(rt, sizeof got);
        rn_projection p = {.rows = rows, .cols = cols, .x = &gx.view, .n = n, .mode = RN_PROJECT_GLU,
                           .activation = RN_ACT_SWISH, .y = {&gr.view}};
        must(rn_matrix_project(rt, k, &whole, p, false, NULL), rt, "matrix project");
        p.y[0] = &gg.view;
        must(rn_matrix_project(rt, k, &split, p, false, NULL), rt, "matrix project");
        bool intact = guarded_read(rt, &gr, ref) & guarded_read(rt, &gg, got);
        snprintf(shape, sizeof shape, "glu 2 x 40 x 64 in %lld pieces, %s", (long long)split.count, type);
        check("fill pieces", shape, ref, got, (size_t)(n * rows), 0.0, intact && split.count == 3);
        rn_matrix_free(rt, &whole), rn_matrix_free(rt, &split);
        guarded_free(&gx), guarded_free(&gr), guarded_free(&gg);
        free(x);
    }
    if (quick || !k->gemm) return;
    {   /* SGEMM runs: rows [5, 65) of a 70-row matrix in pieces of 32, 32, 6, and the gate half
         * [40, 80) of a GLU pair in pieces of 16, 16, 8; into columns 3.. of a 67-wide output,
         * through a scratch of 20 rows */
        const struct { int64_t rows, row0, out; bool halves; } runs[] = {{70, 5, 60, false}, {80, 40, 40, true}};
        for (int r = 0; r < 2; r++) {
            const int64_t rows = runs[r].rows, ldy = 67, col0 = 3, m = 9;
            float *W = random_floats((size_t)(rows * cols), 0.2), *x = random_floats((size_t)(m * cols), 1.0);
            float *full = malloc((size_t)(m * rows) * sizeof *full), *zero = calloc((size_t)(m * ldy), sizeof *zero);
            float *ref = calloc((size_t)(m * ldy), sizeof *ref), *got = malloc((size_t)(m * ldy) * sizeof *got);
            pieced pw;
            pieced_init(&pw, rt, k, W, rows, cols, runs[r].halves, runs[r].halves ? per : 32);
            ref_linear(x, W, m, cols, rows, full);
            for (int64_t t = 0; t < m; t++)
                for (int64_t j = 0; j < runs[r].out; j++) ref[t * ldy + col0 + j] = full[t * rows + runs[r].row0 + j];
            guarded gx = guarded_from(rt, x, (size_t)(m * cols) * sizeof *x);
            guarded gy = guarded_from(rt, zero, (size_t)(m * ldy) * sizeof *zero);
            guarded scratch = guarded_alloc(rt, (size_t)(20 * cols) * sizeof(float));
            const rn_linear l = {.x = &gx.view, .n = m, .row0 = runs[r].row0, .out = runs[r].out, .y = &gy.view,
                                 .ldy = ldy, .col0 = col0};
            must(rn_matrix_linear(rt, k, &pw.m, &l, &scratch.view), rt, "matrix linear");
            bool intact = guarded_read(rt, &gy, got) & guarded_read(rt, &scratch, NULL) & pieced_free(rt, &pw);
            snprintf(shape, sizeof shape, "rows %lld.. +%lld of %lld in %lld%s, %s", (long long)runs[r].row0,
                     (long long)runs[r].out, (long long)rows, (long long)pw.m.count, runs[r].halves ? " halves" : "",
                     type);
            check("linear pieces", shape, ref, got, (size_t)(m * ldy), 1e-5, intact);
            guarded_free(&gx), guarded_free(&gy), guarded_free(&scratch);
            free(W), free(x), free(full), free(zero), free(ref), free(got);
        }
    }
}

/* The matrix engine over a matrix in pieces against the same product in one buffer: the small
 * GEMM's reduction writing each piece's GLU outputs, and gemm_mma's runs into a column range. K
 * is one chunk (64), so both sum in the same order: they must agree exactly. */
static void test_pieces_mma(rt_runtime *rt, const rn_kernels *k) {
    const int64_t cols = 64, F = 40, n = 6;
    float *W = random_floats((size_t)(2 * F * cols), 0.3), *x = random_floats((size_t)(n * cols), 1.0);
    float ref[6 * 40], got[6 * 40];
    pieced pw;
    pieced_init(&pw, rt, k, W, 2 * F, cols, true, 16);
    guarded whole = stored_weights(rt, k, W, (size_t)(2 * F * cols));
    rn_matrix one = {.pieces = &whole.view, .count = 1, .rows = 2 * F, .cols = cols, .piece_rows = F, .halves = true,
                     .what = "test matrix"};
    guarded gx = guarded_from(rt, x, (size_t)(n * cols) * sizeof *x);
    guarded gr = guarded_alloc(rt, sizeof ref), gg = guarded_alloc(rt, sizeof got);
    guarded part = guarded_alloc(rt, (size_t)rn_mma_partial_bytes(k, n, cols, 2 * F));
    rn_projection p = {.rows = F, .cols = cols, .x = &gx.view, .n = n, .mode = RN_PROJECT_GLU,
                       .activation = RN_ACT_SWISH, .y = {&gr.view}};
    must(rn_matrix_project(rt, k, &one, p, true, &part.view), rt, "matrix project mma");
    p.y[0] = &gg.view;
    must(rn_matrix_project(rt, k, &pw.m, p, true, &part.view), rt, "matrix project mma");
    bool intact = guarded_read(rt, &gr, ref) & guarded_read(rt, &gg, got) & guarded_read(rt, &part, NULL);
    check("project_mma pieces", "6 x 64 -> glu 40 in 3 pieces", ref, got, (size_t)(n * F), 0.0, intact);
    guarded_free(&gr), guarded_free(&gg), guarded_free(&part);

    const int64_t ldy = 45, m = 6;
    float wide_ref[6 * 45], wide_got[6 * 45], zero[6 * 45] = {0};
    guarded yr = guarded_from(rt, zero, sizeof zero), yg = guarded_from(rt, zero, sizeof zero);
    guarded gh = guarded_alloc(rt, (size_t)(n * cols) * sizeof(uint16_t));
    must(rn_op_engine_operand(rt, k, &gx.view, n * cols, &gh.view), rt, "engine_operand");
    rn_linear l = {.x = &gh.view, .n = m, .row0 = 30, .out = 40, .y = &yr.view, .ldy = ldy, .col0 = 5, .mma = true};
    must(rn_matrix_linear(rt, k, &one, &l, NULL), rt, "matrix linear mma");
    l.y = &yg.view;
    must(rn_matrix_linear(rt, k, &pw.m, &l, NULL), rt, "matrix linear mma");
    intact = guarded_read(rt, &yr, wide_ref) & guarded_read(rt, &yg, wide_got) & pieced_free(rt, &pw);
    check("linear_mma pieces", "rows 30.. +40 of glu 80 in 3, cols 5..", wide_ref, wide_got, (size_t)(m * ldy), 0.0,
          intact);
    guarded_free(&yr), guarded_free(&yg), guarded_free(&gh), guarded_free(&whole);

    /* A residual of alpha 1, which the slices add into y themselves: each piece's sums must land
     * in its own columns (from its row0). One slice of K, so each output is one addition and the
     * two agree exactly. */
    float y0[6 * 40];
    for (size_t i = 0; i < sizeof y0 / sizeof y0[0]; i++) y0[i] = (float)((int)(i % 7) - 3);
    pieced_init(&pw, rt, k, W, F, cols, false, 16);
    guarded rows_whole = stored_weights(rt, k, W, (size_t)(F * cols));
    rn_matrix plain = {.pieces = &rows_whole.view, .count = 1, .rows = F, .cols = cols, .piece_rows = F,
                       .what = "test matrix"};
    gr = guarded_from(rt, y0, sizeof y0), gg = guarded_from(rt, y0, sizeof y0);
    part = guarded_alloc(rt, (size_t)rn_mma_partial_bytes(k, n, cols, F));
    p = (rn_projection){.rows = F, .cols = cols, .x = &gx.view, .n = n, .mode = RN_PROJECT_RESIDUAL, .alpha = 1.0f,
                        .y = {&gr.view}};
    must(rn_matrix_project(rt, k, &plain, p, true, &part.view), rt, "matrix project mma");
    p.y[0] = &gg.view;
    must(rn_matrix_project(rt, k, &pw.m, p, true, &part.view), rt, "matrix project mma");
    intact = guarded_read(rt, &gr, ref) & guarded_read(rt, &gg, got) & guarded_read(rt, &part, NULL) &
             pieced_free(rt, &pw);
    check("project_mma pieces", "6 x 64 -> +res added 40 in 3 pieces", ref, got, (size_t)(n * F), 0.0, intact);
    guarded_free(&gr), guarded_free(&gg), guarded_free(&part), guarded_free(&rows_whole), guarded_free(&gx);
    free(W), free(x);
}

/* Parallel and chunkwise retention (output, state, scale), then recurrent steps continuing
 * from the state it left, all against the reference. q and k are large enough that the
 * normalisers' clamps act (d_n, iota and sigma above 1). */
/* Recurrent steps of two sequences together, both continuing from `state0` and `scale0` (the
 * state a prompt of `pos0` tokens left) with their own q, k, v, q and k rotated as the project
 * kernel leaves them (fla's shapes, plain, by halves), the second one position further on (the
 * other parity: each reads and writes its own scale slots): against the reference stepping
 * each sequence alone. The slot a sequence must not read holds garbage. The first step leaves
 * the retention output; the next two apply the group norm and gate in the same launch (with
 * fla's weight, then without), which must leave their counters zero for the launch after. */
static void test_retention_steps(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape,
                                 const float *decay, const float *angle, const float *state0,
                                 const float *scale0, int64_t pos0, const char *heads) {
    enum { B = 2 };
    const int64_t steps = 3, H = shape.heads, G = shape.kv_heads, dk = k->dk, dv = k->dv;
    const size_t st = (size_t)(H * dk * dv), on = (size_t)(B * H * dv);
    const bool half = shape.plain;
    float *ref_state = malloc((size_t)B * st * sizeof(float)), *got_state = malloc((size_t)B * st * sizeof(float));
    float ref_scale[B][8], slots[2][B * 8], got_scale[2][B * 8];
    cl_int at[B];
    for (int64_t b = 0; b < B; b++) {
        at[b] = (cl_int)(pos0 + b);
        memcpy(ref_state + b * st, state0, st * sizeof(float));
        memcpy(ref_scale[b], scale0, (size_t)H * sizeof(float));
        for (int64_t h = 0; h < H; h++) {
            slots[(at[b] + 1) & 1][b * H + h] = scale0[h];
            slots[at[b] & 1][b * H + h] = -7.0f;
        }
    }
    guarded gs = guarded_from(rt, ref_state, (size_t)B * st * sizeof(float));
    guarded gsc[2] = {guarded_from(rt, slots[0], (size_t)(B * H) * sizeof(float)),
                      guarded_from(rt, slots[1], (size_t)(B * H) * sizeof(float))};
    guarded gd = guarded_from(rt, decay, (size_t)H * sizeof(float));
    cl_int done[B * 8] = {0};
    guarded gdone = guarded_from(rt, done, sizeof done);
    float *o_ref = malloc(on * sizeof(float)), *o_got = malloc(on * sizeof(float));
    float *y_ref = malloc(on * sizeof(float)), *gate = random_floats(on, 4.0), *weight = random_floats((size_t)dv, 2.0);
    guarded ggate = guarded_from(rt, gate, on * sizeof(float)), gw = guarded_from(rt, weight, (size_t)dv * sizeof(float));
    const float k_scale = (float)(1.0 / sqrt((double)dk));
    char what[96];
    for (int64_t s = 0; s < steps; s++) {
        float *q = random_floats((size_t)(B * H * dk), 3.0), *kk = random_floats((size_t)(B * G * dk), 3.0);
        float *v = random_floats((size_t)(B * G * dv), 1.0);
        /* The step takes q and k rotated (the project kernel does it): rotate them here. */
        for (int64_t b = 0; b < B; b++) {
            ref_theta_shift(q + b * H * dk, 1, H, dk, angle, at[b], 1.0, half);
            ref_theta_shift(kk + b * G * dk, 1, G, dk, angle, at[b], k_scale, half);
        }
        guarded sq = guarded_from(rt, q, (size_t)(B * H * dk) * sizeof(float));
        guarded sk = guarded_from(rt, kk, (size_t)(B * G * dk) * sizeof(float));
        guarded sv = guarded_from(rt, v, (size_t)(B * G * dv) * sizeof(float));
        guarded sp = guarded_from(rt, at, sizeof at);
        guarded so = guarded_alloc(rt, on * sizeof(float));
        const rn_step_norm norm = {.gate = &ggate.view, .weight = s == 1 ? &gw.view : NULL, .eps = 1e-6f,
                                   .done = &gdone.view};
        must(rn_op_retention_step(rt, k, shape, B, &sq.view, &sk.view, &sv.view, &gd.view, &sp.view, &gs.view,
                                  &gsc[0].view, &gsc[1].view, &so.view, s > 0 ? &norm : NULL, NULL),
             rt, "retention_step");
        for (int64_t b = 0; b < B; b++)
            ref_retention_step(q + b * H * dk, kk + b * G * dk, v + b * G * dv, H, G, dk, dv, decay, shape.plain,
                               ref_state + b * st, ref_scale[b], o_ref + b * H * dv);
        if (s > 0) ref_group_norm_gate(o_ref, gate, norm.weight ? weight : NULL, B, H, dv, 1e-6, y_ref);
        bool intact = guarded_read(rt, &so, o_got) & guarded_read(rt, &gsc[0], got_scale[0]) &
                      guarded_read(rt, &gsc[1], got_scale[1]) & guarded_read(rt, &sp, NULL) &
                      guarded_read(rt, &gdone, done);
        snprintf(what, sizeof what, "2 seqs, step %lld after %lld/%lld, %s%s", (long long)s, (long long)pos0,
                 (long long)pos0 + 1, heads, s == 0 ? "" : s == 1 ? ", normed, weight" : ", normed");
        /* The group norm's own tolerance (test_group_norm_gate) on top of the step's. */
        check("retention_step", what, s > 0 ? y_ref : o_ref, o_got, on, s > 0 ? 3e-5 : 2e-5, intact);
        int counted = 0;
        for (int64_t i = 0; i < B * H; i++) counted |= done[i];
        if (counted) {
            emit("  retention_step counters  %s: left nonzero  FAIL", what);
            failures++;
        }
        for (int64_t b = 0; b < B; b++)
            check("retention_step sc", what, ref_scale[b], got_scale[at[b] & 1] + b * H, (size_t)H, 1e-6, true);
        guarded_free(&sq), guarded_free(&sk), guarded_free(&sv), guarded_free(&so), guarded_free(&sp);
        free(q), free(kk), free(v);
        for (int64_t b = 0; b < B; b++) at[b]++;
    }
    bool intact = guarded_read(rt, &gs, got_state);
    snprintf(what, sizeof what, "2 states after 3 steps, %s", heads);
    check("retention_step st", what, ref_state, got_state, (size_t)B * st, 2e-5, intact);
    guarded_free(&gs), guarded_free(&gsc[0]), guarded_free(&gsc[1]), guarded_free(&gd), guarded_free(&gdone);
    guarded_free(&ggate), guarded_free(&gw);
    free(ref_state), free(got_state), free(o_ref), free(o_got), free(y_ref), free(gate), free(weight);
}

/* The products of a prompt's retention on the matrix engine (rn_op_chunk_products_mma), each
 * form the engine runs: a chunk's share of the state (both operands k-major), the scores (both
 * row-major, lower triangle), masked scores times values (A lower triangular, accumulating) and
 * a product into a fixed width, and that product with B far beyond half's range, scaled by a
 * bound per product (the cross term with the incoming states). Three chunks of a window of 150 (the last 37 long: a dimension
 * 0 follows it), two query heads sharing B, several tiles and K steps with tails, operands at
 * an offset with rows longer than the matrices (padding that must stay untouched). Operands are
 * rounded to the engine's half type on the host as the kernel rounds them, so only the fp32
 * accumulation differs from the double reference: tolerance as test_linear_mma's, K u sum
 * |a b| per output (and 2 u (|c| + |ab|) when accumulating) over max |ref|. */
static void test_chunk_products_mma(rt_runtime *rt, const rn_kernels *k) {
    const int64_t W = 150, n = 337, chunks = 3, H = 2, group = 2, pad = 3, base = 5;
    const struct { rn_engine_product e; double b_scale; const char *name; } cases[] = {
        {{.a_kmajor = true, .b_kmajor = true, .M = 40, .N = 136, .K = 0}, 1.0, "state share"},
        {{.M = 0, .N = 0, .K = 40, .triangle = 1}, 1.0, "scores"},
        {{.b_kmajor = true, .accumulate = true, .M = 0, .N = 24, .K = 0, .triangle = 2}, 1.0, "scores x values"},
        {{.b_kmajor = true, .M = 0, .N = 136, .K = 40}, 1.0, "fixed width"},
        {{.b_kmajor = true, .M = 0, .N = 136, .K = 40, .b_bound_at = 3}, 3e5, "B to 3e5, bounded"},
    };
    const double u = ldexp(1.0, -23);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rn_engine_product e = cases[c].e;
        const bool bounded = cases[c].b_scale != 1.0;
        const int64_t Mx = e.M ? e.M : W, Nx = e.N ? e.N : W, Kx = e.K ? e.K : W;
        /* Stored shapes (rows x cols, the largest chunk's) and blocked layouts: per (chunk, head)
         * a block of rows x (cols + pad). */
        const int64_t a_rows = e.a_kmajor ? Kx : Mx, a_cols = e.a_kmajor ? Mx : Kx;
        const int64_t b_rows = e.b_kmajor ? Kx : Nx, b_cols = e.b_kmajor ? Nx : Kx;
        const int64_t Hb = H / group;
        const size_t lda = (size_t)(a_cols + pad), ldb = (size_t)(b_cols + pad), ldc = (size_t)(Nx + pad);
        const rn_chunk_operand ao = {base, (size_t)(H * a_rows) * lda, (size_t)a_rows * lda};
        const rn_chunk_operand bo = {base, (size_t)(Hb * b_rows) * ldb, (size_t)b_rows * ldb};
        const rn_chunk_operand co = {base, (size_t)(H * Mx) * ldc, (size_t)Mx * ldc};
        const size_t an = base + (size_t)chunks * ao.chunk_step, bn = base + (size_t)chunks * bo.chunk_step;
        const size_t cn = base + (size_t)chunks * co.chunk_step;
        float *A = random_floats(an, 1.0), *B = random_floats(bn, cases[c].b_scale), *C0 = random_floats(cn, 1.0);
        float *ref = malloc(cn * sizeof *ref), *got = malloc(cn * sizeof *got);
        /* Bounded: per product the largest |B| (slots from b_bound_at), and the kernel's staging
         * of B times 2^-e, 2^e the power of two at or above it, which the reference multiplies
         * by 2^e. */
        const size_t bounds_n = (size_t)(e.b_bound_at + chunks * H);
        float *bounds = calloc(bounds_n, sizeof *bounds), *Bq = malloc(bn * sizeof *Bq);
        memcpy(Bq, B, bn * sizeof *Bq);
        for (int64_t i = 0; bounded && i < chunks; i++)
            for (int64_t h = 0; h < H; h++) {
                const size_t at = bo.base + (size_t)i * bo.chunk_step + (size_t)(h / group) * bo.head_step;
                float m = 0.0f;
                for (size_t j = 0; j < (size_t)b_rows * ldb; j++) m = fmaxf(m, fabsf(B[at + j]));
                bounds[e.b_bound_at + i * H + h] = m;
                int ex = 0;
                frexpf(m, &ex);
                for (size_t j = 0; j < (size_t)b_rows * ldb; j++) Bq[at + j] = ldexpf(B[at + j], -ex);
            }
        uint16_t *bits = malloc((an > bn ? an : bn) * sizeof *bits);
        rn_convert(ST_F32, A, an, k->weights, bits, NULL), rn_convert(k->weights, bits, an, ST_F32, A, NULL);
        rn_convert(ST_F32, Bq, bn, k->weights, bits, NULL), rn_convert(k->weights, bits, bn, ST_F32, Bq, NULL);
        if (!bounded) memcpy(B, Bq, bn * sizeof *B);
        free(bits);
        memcpy(ref, C0, cn * sizeof *ref);
        double max_ref = 0.0, max_bound = 0.0;
        for (int64_t i = 0; i < chunks; i++) {
            const int64_t len = W < n - i * W ? W : n - i * W;
            const int64_t M = e.M ? e.M : len, N = e.N ? e.N : len, K = e.K ? e.K : len;
            for (int64_t h = 0; h < H; h++) {
                const float *a = A + ao.base + (size_t)i * ao.chunk_step + (size_t)h * ao.head_step;
                const float *b = Bq + bo.base + (size_t)i * bo.chunk_step + (size_t)(h / group) * bo.head_step;
                int ex = 0;
                if (bounded) frexpf(bounds[e.b_bound_at + i * H + h], &ex);
                const double b_out = ldexp(1.0, ex);
                const size_t c_at = co.base + (size_t)i * co.chunk_step + (size_t)h * co.head_step;
                for (int64_t r = 0; r < M; r++)
                    for (int64_t col = 0; col < N; col++) {
                        double p = 0.0, bound = 0.0;
                        for (int64_t x = 0; x < K; x++) {
                            /* triangle 2: A is lower triangular by contract */
                            const double av = e.triangle == 2 && x > r ? 0.0
                                              : e.a_kmajor ? a[x * (int64_t)lda + r] : a[r * (int64_t)lda + x];
                            const double bv = e.b_kmajor ? b[x * (int64_t)ldb + col] : b[col * (int64_t)ldb + x];
                            p += av * bv;
                            bound += fabs(av * bv);
                        }
                        p *= b_out;
                        bound *= (double)K * u * b_out;
                        const size_t at = c_at + (size_t)r * ldc + (size_t)col;
                        if (e.accumulate) bound += 2.0 * u * (fabs((double)C0[at]) + fabs(p));
                        ref[at] = (float)(e.accumulate ? (double)C0[at] + p : p);
                        if (fabs((double)ref[at]) > max_ref) max_ref = fabs((double)ref[at]);
                        if (bound > max_bound) max_bound = bound;
                    }
            }
        }
        if (e.triangle == 2)  /* A lower triangular, as the contract says */
            for (int64_t i = 0; i < chunks; i++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t r = 0; r < W; r++)
                        for (int64_t x = r + 1; x < W; x++)
                            A[ao.base + (size_t)i * ao.chunk_step + (size_t)h * ao.head_step + (size_t)(r * (int64_t)lda + x)] = 0.0f;
        guarded ga = guarded_from(rt, A, an * sizeof *A), gb = guarded_from(rt, B, bn * sizeof *B);
        guarded gc = guarded_from(rt, C0, cn * sizeof *C0), gbound = guarded_from(rt, bounds, bounds_n * sizeof *bounds);
        if (bounded) e.b_bound = &gbound.view;
        must(rn_op_chunk_products_mma(rt, k, e, &ga.view, ao, lda, &gb.view, bo, ldb, &gc.view, co, ldc, 0, chunks, H,
                                      group, n, W), rt, "chunk products mma");
        bool intact = guarded_read(rt, &gc, got);
        if (e.triangle == 1)  /* above the diagonal C is unspecified */
            for (int64_t i = 0; i < chunks; i++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t r = 0; r < Mx; r++)
                        for (int64_t col = r + 1; col < Nx; col++) {
                            const size_t at = co.base + (size_t)i * co.chunk_step + (size_t)h * co.head_step +
                                              (size_t)r * ldc + (size_t)col;
                            got[at] = ref[at];
                        }
        char shape[80];
        snprintf(shape, sizeof shape, "%s, 3 chunks of 150 (%s)", cases[c].name, k->mma_variant);
        check("chunk_products_mma", shape, ref, got, cn, max_ref > 0 ? max_bound / max_ref : max_bound, intact);
        guarded_free(&ga), guarded_free(&gb), guarded_free(&gc), guarded_free(&gbound);
        free(A), free(B), free(Bq), free(bounds), free(C0), free(ref), free(got);
    }
}

/* Chunkwise retention of n tokens cut in two at P (a multiple of the chunk): the first P from
 * an empty state, then the rest continuing the state and scale they left (scale_in a buffer of
 * its own, as the engine passes it). The rest's chunks are the whole sequence's later chunks,
 * so its output, state and scale must be the reference's for the whole sequence. */
static void test_retention_continued(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape, bool gemm,
                                     double tol, int64_t chunk, int64_t P, const float *q, const float *kk, const float *v,
                                     int64_t n, const float *decay, const float *ref_o, const float *ref_state,
                                     const float *ref_scale, const char *heads) {
    const int64_t H = shape.heads, G = shape.kv_heads, dk = k->dk, dv = k->dv;
    const size_t st = (size_t)(H * dk * dv), on = (size_t)((n - P) * H * dv);
    float *got_o = malloc(on * sizeof(float)), *got_state = malloc(st * sizeof(float)), got_scale[8];
    guarded gd = guarded_from(rt, decay, (size_t)H * sizeof *decay);
    guarded gs = guarded_alloc(rt, st * sizeof(float));
    guarded scale[2] = {guarded_alloc(rt, (size_t)H * sizeof(float)), guarded_alloc(rt, (size_t)H * sizeof(float))};
    bool intact = true;
    for (int part = 0; part < 2; part++) {
        const int64_t from = part ? P : 0, len = part ? n - P : P;
        rn_retention_sizes z = rn_retention_scratch_size(RN_MODE_CHUNKWISE, gemm, part == 1, len, chunk, H, dk, dv);
        guarded chunk_states = guarded_alloc(rt, z.chunk_states ? z.chunk_states : 4);
        guarded sigma = guarded_alloc(rt, z.sigma ? z.sigma : 4);
        guarded scores = guarded_alloc(rt, z.scores ? z.scores : 4), keys = guarded_alloc(rt, z.keys ? z.keys : 4);
        rn_retention_scratch scratch = {chunk_states.view, sigma.view, scores.view, keys.view};
        guarded gq = guarded_from(rt, q + from * H * dk, (size_t)(len * H * dk) * sizeof(float));
        guarded gk = guarded_from(rt, kk + from * G * dk, (size_t)(len * G * dk) * sizeof(float));
        guarded gv = guarded_from(rt, v + from * G * dv, (size_t)(len * G * dv) * sizeof(float));
        guarded go = guarded_alloc(rt, (size_t)(len * H * dv) * sizeof(float));
        must((gemm ? rn_op_retention_gemm : rn_op_retention)(rt, k, shape, RN_MODE_CHUNKWISE, chunk, &gq.view,
                                                             &gk.view, &gv.view, len, &gd.view, &scratch, &go.view,
                                                             &gs.view, part ? &scale[0].view : NULL,
                                                             &scale[part].view),
             rt, "retention continued");
        intact &= guarded_read(rt, &go, part ? got_o : NULL) & guarded_read(rt, &chunk_states, NULL) &
                  guarded_read(rt, &sigma, NULL) & guarded_read(rt, &scores, NULL) & guarded_read(rt, &keys, NULL);
        guarded_free(&chunk_states), guarded_free(&sigma), guarded_free(&scores), guarded_free(&keys);
        guarded_free(&gq), guarded_free(&gk), guarded_free(&gv), guarded_free(&go);
    }
    char what[96];
    snprintf(what, sizeof what, "chunk %lld%s, %lld then %lld, %s", (long long)chunk, gemm ? " gemm" : "",
             (long long)P, (long long)(n - P), heads);
    check("retention cont", what, ref_o + P * H * dv, got_o, on, tol, intact);
    intact = guarded_read(rt, &gs, got_state);
    check("retention cont state", what, ref_state, got_state, st, tol, intact);
    intact = guarded_read(rt, &scale[1], got_scale);
    check("retention cont scale", what, ref_scale, got_scale, (size_t)H, 1e-6, intact);
    guarded_free(&gd), guarded_free(&gs), guarded_free(&scale[0]), guarded_free(&scale[1]);
    free(got_o), free(got_state);
}

/* gemm_tol: the batched-GEMM form's tolerance, 2e-5 in fp32 (the kernels' always), wider
 * where the matrix engine rounds its operands to half (run_all says how much). */
static void test_retention(rt_runtime *rt, const rn_kernels *k, const float *decay, const float *angle,
                           rn_retention_shape shape, double gemm_tol) {
    const int64_t H = shape.heads, G = shape.kv_heads, dk = k->dk, dv = k->dv, n = 13;
    const size_t qn = (size_t)(n * H * dk), kn = (size_t)(n * G * dk), vn = (size_t)(n * G * dv);
    const size_t on = (size_t)(n * H * dv), st = (size_t)(H * dk * dv);
    float *q = random_floats(qn, 3.0), *kk = random_floats(kn, 3.0), *v = random_floats(vn, 1.0);
    float *ref_o = malloc(on * sizeof(float)), *got_o = malloc(on * sizeof(float));
    float *ref_state = malloc(st * sizeof(float)), *got_state = malloc(st * sizeof(float));
    float ref_scale[8], got_scale[8];
    char heads[48];
    snprintf(heads, sizeof heads, "H %lld/%lld%s, dk %lld, dv %lld", (long long)H, (long long)G,
             shape.plain ? " plain" : "", (long long)dk, (long long)dv);

    guarded gq = guarded_from(rt, q, qn * sizeof *q), gk = guarded_from(rt, kk, kn * sizeof *kk);
    guarded gv = guarded_from(rt, v, vn * sizeof *v), gd = guarded_from(rt, decay, (size_t)H * sizeof *decay);

    struct { rn_mode mode; int64_t chunk; const char *name; } cases[] = {
        {RN_MODE_PARALLEL, 0, "parallel"},
        {RN_MODE_CHUNKWISE, 4, "chunk 4"},
        {RN_MODE_CHUNKWISE, 5, "chunk 5"},
        {RN_MODE_CHUNKWISE, 13, "chunk 13"},
    };
    /* Each case by the kernels, and by batched GEMMs where CLBlast runs (not in quick runs). */
    for (int gemm = 0; gemm < (quick || !k->gemm ? 1 : 2); gemm++)
    for (size_t c = 0; c < 4; c++) {
        ref_retention(cases[c].mode, cases[c].chunk ? cases[c].chunk : n, q, kk, v, n, H, G, dk, dv, decay,
                      shape.plain, ref_o, ref_state, ref_scale);
        rn_retention_sizes z = rn_retention_scratch_size(cases[c].mode, gemm, false, n, cases[c].chunk, H, dk, dv);
        guarded chunk_states = guarded_alloc(rt, z.chunk_states ? z.chunk_states : 4);
        guarded sigma = guarded_alloc(rt, z.sigma ? z.sigma : 4);
        guarded scores = guarded_alloc(rt, z.scores ? z.scores : 4), keys = guarded_alloc(rt, z.keys ? z.keys : 4);
        rn_retention_scratch scratch = {chunk_states.view, sigma.view, scores.view, keys.view};
        guarded go = guarded_alloc(rt, on * sizeof(float)), gs = guarded_alloc(rt, st * sizeof(float));
        guarded gsc = guarded_alloc(rt, (size_t)H * sizeof(float));
        must((gemm ? rn_op_retention_gemm : rn_op_retention)(rt, k, shape, cases[c].mode, cases[c].chunk, &gq.view,
                                                             &gk.view, &gv.view, n, &gd.view, &scratch, &go.view,
                                                             &gs.view, NULL, &gsc.view),
             rt, "retention");
        bool intact = guarded_read(rt, &go, got_o) & guarded_read(rt, &chunk_states, NULL) &
                      guarded_read(rt, &sigma, NULL) & guarded_read(rt, &scores, NULL) & guarded_read(rt, &keys, NULL);
        char what[96];
        snprintf(what, sizeof what, "%s%s, n 13, %s", cases[c].name, gemm ? " gemm" : "", heads);
        const double tol = gemm ? gemm_tol : 2e-5;
        check("retention", what, ref_o, got_o, on, tol, intact);
        intact = guarded_read(rt, &gs, got_state);
        check("retention state", what, ref_state, got_state, st, tol, intact);
        intact = guarded_read(rt, &gsc, got_scale);
        check("retention scale", what, ref_scale, got_scale, (size_t)H, 1e-6, intact);

        /* Recurrent steps continuing from that state: the prefill-then-decode path. */
        if (c == 1 && !gemm) test_retention_steps(rt, k, shape, decay, angle, ref_state, ref_scale, n, heads);
        /* The same sequence cut after whole chunks, its rest continuing the state of the first
         * part: longer than a chunk (chunk 4, 8 + 5) and shorter (chunk 5, 10 + 3). */
        if (c == 1 || c == 2)
            test_retention_continued(rt, k, shape, gemm, tol, cases[c].chunk, 2 * cases[c].chunk, q, kk, v, n, decay, ref_o,
                                     ref_state, ref_scale, heads);
        guarded_free(&chunk_states), guarded_free(&sigma), guarded_free(&go), guarded_free(&gs), guarded_free(&gsc);
        guarded_free(&scores), guarded_free(&keys);
    }
    guarded_free(&gq), guarded_free(&gk), guarded_free(&gv), guarded_free(&gd);
    free(q), free(kk), free(v), free(ref_o), free(got_o), free(ref_state), free(got_state);
}

/* Angles and decays for H heads of dk dimensions: torchscale's (RetNetRelPos); the rotation
 * test reads the same table both ways, as only its layout differs between families. */
static void rel_pos(int64_t H, int64_t dk, float *angle, float *decay) {
    const int64_t P = dk / 2;
    for (int64_t i = 0; i < P; i++) {
        float t = P > 1 ? (float)i / (float)(P - 1) : 0.0f;
        angle[2 * i] = angle[2 * i + 1] = 1.0f / powf(10000.0f, t);
    }
    for (int64_t h = 0; h < H; h++) decay[h] = logf(1.0f - exp2f(-5.0f - (float)h));
}

/* The norms, retention step and argmax that batches on the matrix engine take, built again with
 * their own work-groups (rn_kernels.batch), on the same cases as the main set's; the steps
 * continue a random state (any state and scale: the reference continues the same one). */
static void test_batch_set(rt_runtime *rt, const rn_kernels *batch, const float *decay, const float *angle) {
    emit("  batch work-group %zu", batch->wg);
    test_rms_norm(rt, batch);
    test_argmax(rt, batch);
    const rn_retention_shape shapes[] = {{4, 2, false}, {4, 1, true}};
    const float scale[4] = {1.5f, 2.0f, 3.0f, 5.0f};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        float *state = random_floats((size_t)(shapes[i].heads * batch->dk * batch->dv), 1.0);
        char heads[64];
        snprintf(heads, sizeof heads, "H 4/%lld%s, dk %lld, dv %lld, batch set", (long long)shapes[i].kv_heads,
                 shapes[i].plain ? " plain" : "", (long long)batch->dk, (long long)batch->dv);
        test_retention_steps(rt, batch, shapes[i], decay, angle, state, scale, 13, heads);
        free(state);
    }
}

/* The checks keep their counters in this file's statics: one run at a time per process. */
static pthread_mutex_t selftest_lock = PTHREAD_MUTEX_INITIALIZER;

static void run_all(rt_runtime *rt, rn_tuning tuning, bool quick_shapes) {
    quick = quick_shapes;
    failures = checks = 0;
    rng_state = RNG_SEED;
    emit("  %-18s %-34s %-16s  %-9s  %s", "kernel", "shapes", "max error", "tolerance", "result");
    /* (dk, dv, weights): small heads; a value dimension above the work-group (several columns
     * per work-item); an odd number of rotation pairs; half-precision weight storage. */
    const struct { int64_t dk, dv; st_dtype weights; } builds[] = {
        {16, 24, ST_F32}, {8, 70, ST_F32}, {6, 129, ST_F32}, {16, 24, ST_F16}, {16, 24, ST_BF16},
        {16, 24, ST_Q8_0}, {16, 24, ST_Q4_0}};
    for (size_t s = 0; s < sizeof builds / sizeof builds[0]; s++) {
        rn_kernels k;
        rn_status st = rn_kernels_build(rt, tuning, builds[s].dk, builds[s].dv, builds[s].weights, &k);
        checks++;
        if (st != RN_OK) {
            emit("  kernel build for dk %lld, dv %lld, %s failed: %s: %s  FAIL", (long long)builds[s].dk,
                    (long long)builds[s].dv, st_dtype_name(builds[s].weights), rn_status_str(st), rt->err->message);
            failures++;
            continue;
        }
        if (s == 0) emit("  work-group %zu", k.wg);
        float angle[256], decay[4];
        rel_pos(4, k.dk, angle, decay);
        /* Weight storage only matters to the ops that read weights. */
        test_embed(rt, &k);
        test_linear(rt, &k);
        test_project(rt, &k);
        test_pieces(rt, &k, angle);
        if (builds[s].weights == ST_F32) {
            if (s == 0) {
                test_rms_norm(rt, &k);
                test_glu_residual(rt, &k);
                test_split_columns(rt, &k);
                test_argmax(rt, &k);
            }
            test_group_norm_gate(rt, &k);
            test_theta_shift(rt, &k, angle);
            test_project_rotation(rt, &k, angle);
            test_retention(rt, &k, decay, angle, (rn_retention_shape){3, 3, false}, 2e-5);
            test_retention(rt, &k, decay, angle, (rn_retention_shape){4, 2, false}, 2e-5);
            test_retention(rt, &k, decay, angle, (rn_retention_shape){4, 1, true}, 2e-5);
        }
        rn_kernels_release(&k);
        /* The matrix-engine GEMM for half-precision weights: the device's own instructions where
         * it has them (NVIDIA 8.0+), elsewhere the kernel's portable stand-in. */
        if ((builds[s].weights == ST_F16 || builds[s].weights == ST_BF16) && !quick) {
            rn_tuning mma = tuning;
            mma.precision = RN_PRECISION_AUTO;
            mma.mma_emulate = rt->dev.info.matrix_engine != RT_MATRIX_NV_MMA;
            st = rn_kernels_build(rt, mma, builds[s].dk, builds[s].dv, builds[s].weights, &k);
            checks++;
            if (st != RN_OK) {
                emit("  kernel build with gemm_mma for %s failed: %s: %s  FAIL", st_dtype_name(builds[s].weights),
                     rn_status_str(st), rt->err->message);
                failures++;
                continue;
            }
            if (k.gemm_mma) test_linear_mma(rt, &k);
            if (k.gemm_mma_small) test_project_mma(rt, &k, angle);
            if (k.gemm_mma_small) test_pieces_mma(rt, &k);
            if (k.gemm_mma_batched) {
                test_chunk_products_mma(rt, &k);
                /* Retention with q, k, v and the normalised scores rounded to the half type (unit
                 * roundoff u = 2^-11 for f16, 2^-8 for bf16): each term of an output carries up
                 * to four roundings (q and k in its score, the normalised score, v), and the
                 * terms of these random 13-token sums cancel, which the max |ref| metric
                 * magnifies by up to about 4: 16 u. Measured (PoCL, stand-in): 3.2 u (f16),
                 * 13 u (bf16), the whole window of 13 with the normaliser. */
                const double tol = 16.0 * ldexp(1.0, builds[s].weights == ST_F16 ? -11 : -8);
                test_retention(rt, &k, decay, angle, (rn_retention_shape){4, 2, false}, tol);
                test_retention(rt, &k, decay, angle, (rn_retention_shape){4, 1, true}, tol);
            }
            else emit("  %-18s %s: the device cannot run its 256 work-items  skipped", "linear_mma",
                      st_dtype_name(builds[s].weights));
            if (k.batch) test_batch_set(rt, k.batch, decay, angle);
            rn_kernels_release(&k);
        }
    }
}

rn_status rn_selftest(rn_context *ctx, int quick_shapes, rn_text_sink text_sink, void *user, int *checks_run,
                      int *failures_found) {
    if (!ctx) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(ctx);
    pthread_mutex_lock(&selftest_lock);
    sink = text_sink;
    sink_user = user;
    run_all(&ctx->rt, ctx->tuning, quick_shapes != 0);
    if (checks_run) *checks_run = checks;
    if (failures_found) *failures_found = failures;
    sink = NULL;
    pthread_mutex_unlock(&selftest_lock);
    return rn_context_unlock(ctx, RN_OK);
}
