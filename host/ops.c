/* ops.c: building the kernels and launching them, one function per operation. */
#include "ops.h"

#include "dtype.h"
#include "kernel_sources.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Work-items of the reducing kernels: 64 on GPUs, 2 elsewhere, unless the context's tuning (a
 * power of two up to 256) says otherwise, and never above what the device allows. A CPU
 * runs a work-group as a loop on one core, where every barrier costs a pass over the group:
 * on PoCL (2-core VM) the demo model decodes 648 tokens/s with groups of 2, 541 with 4, 408
 * with 8 and 104 with 64 (`RETNET_WORK_GROUP=N retnet bench --model examples/kjv-retnet`). */
#define RN_DEFAULT_WG 64
#define RN_DEFAULT_WG_CPU 2
#define RN_MAX_WG 256

/* Batches (and prompts) of at least this many rows take the small matrix-engine GEMM where it
 * is built (f16/bf16 precision on NVIDIA 8.0+); fewer the project kernel, which reads each
 * weight once too but multiplies on fp32 ALUs. On an H100 (1.3B, f16, tokens/s, project / small
 * GEMM): batch 2 705 / 586, 4 998 / 975, 8 1137 / 1478 (docs/bench-mma-h100.jsonl). */
#define RN_MMA_ROWS_FROM 5

static size_t floor_pow2(size_t n) {
    size_t p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
}

void rn_kernels_release(rn_kernels *k) {
    cl_kernel *all[] = {&k->embed_tokens,    &k->rms_norm,         &k->group_norm_gate,
                        &k->theta_shift,     &k->glu,              &k->residual,
                        &k->project,         &k->widen,            &k->fill_uniform,
                        &k->retention_weigh_keys, &k->retention_prefix, &k->retention_scores,
                        &k->split_columns,
                        &k->retention_scan,  &k->retention_sigma,  &k->retention_output,
                        &k->retention_step,  &k->gemm_mma,       &k->gemm_mma_operand,
                        &k->gemm_mma_small, &k->gemm_mma_reduce, &k->gemm_mma_batched,
                        &k->argmax_rows};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (*all[i]) clReleaseKernel(*all[i]);
    if (k->program) clReleaseProgram(k->program);
    if (k->batch) {
        rn_kernels_release(k->batch);
        free(k->batch);
    }
    memset(k, 0, sizeof *k);
}

/* Whether the device runs each of `kernels` with groups of `wg` (its own limit, registers,
 * can be below the device's). */
static bool kernels_fit(rt_runtime *rt, const cl_kernel *kernels, size_t count, size_t wg) {
    for (size_t i = 0; i < count; i++)
        if (rt_kernel_max_group(rt, kernels[i]) < wg) return false;
    return true;
}

/* The kernels that reduce in local memory, which must run with RN_WG work-items. */
static bool group_fits(rt_runtime *rt, const rn_kernels *k) {
    const cl_kernel reducing[] = {k->rms_norm,        k->group_norm_gate,  k->project,
                                  k->retention_sigma, k->retention_output, k->retention_step,
                                  k->retention_scores, k->argmax_rows};
    return kernels_fit(rt, reducing, sizeof reducing / sizeof reducing[0], k->wg);
}

/* Constants the kernels share with this file, written into every program's preamble from the
 * C enums so that the two cannot drift apart. */
static int shared_constants(char *out, size_t cap) {
    return snprintf(out, cap,
                    "#define RN_ACT_GELU %d\n#define RN_ACT_SWISH %d\n"
                    "#define RN_PROJECT_PLAIN %d\n#define RN_PROJECT_RESIDUAL %d\n#define RN_PROJECT_GLU %d\n"
                    "#define RN_ARGMAX_DEPTH %d\n"
                    "#define RN_MS_NF %d\n#define RN_MS_MF %d\n#define RN_MS_KC %d\n#define RN_MS_XK %d\n"
                    "#define RN_PREFETCH_AHEAD %d\n",
                    (int)RN_ACT_GELU, (int)RN_ACT_SWISH, (int)RN_PROJECT_PLAIN, (int)RN_PROJECT_RESIDUAL,
                    (int)RN_PROJECT_GLU, RN_ARGMAX_DEPTH, RN_MS_NF, RN_MS_MF, RN_MS_KC, RN_MS_XK, RN_PREFETCH_AHEAD);
}

/* The matrix-engine variant of gemm_mma.cl for weights of type `weights`: writes its preamble
 * defines into `defines` (unless NULL) and returns its name, or returns NULL (and writes nothing)
 * where the products stay fp32. This is the selection point between vendors. */
static const char *mma_select(const rt_device_info *info, rn_tuning t, st_dtype weights, char *defines, size_t cap) {
    if (defines) defines[0] = '\0';
    const bool f16 = weights == ST_F16 && (t.precision == RN_PRECISION_F16 || t.precision == RN_PRECISION_AUTO);
    const bool bf16 = weights == ST_BF16 && (t.precision == RN_PRECISION_BF16 || t.precision == RN_PRECISION_AUTO);
    if (!f16 && !bf16) return NULL;
    if (t.mma_emulate) {
        snprintf(defines, cap, "#define RN_MMA_EMULATE 1\n");
        return f16 ? "emulated f16" : "emulated bf16";
    }
    switch ((rt_matrix_engine)info->matrix_engine) {
    case RT_MATRIX_NV_MMA:  /* compute capability 8.0+: mma.sync with f16 and bf16 inputs */
        snprintf(defines, cap, "#define RN_NV_MMA 1\n");
        return f16 ? "nvidia-mma f16" : "nvidia-mma bf16";
    case RT_MATRIX_INTEL_DPAS:  /* next: intel_sub_group_f16_f16_matrix_mad_k16 in a variant of its own */
    case RT_MATRIX_AMD:         /* next: MFMA/WMMA builtins (not in OpenCL C today: needs clang's) */
    case RT_MATRIX_NONE:
    default:
        return NULL;
    }
}

/* The files and kernels of rn_kernels.batch: all it uses. */
static const char *const batch_files[] = {"norms.cl", "retention_step.cl", "argmax.cl"};
static const char *const batch_kernel_names[] = {"rms_norm", "retention_step", "argmax_rows"};
#define N_NAMES(a) (sizeof(a) / sizeof((a)[0]))

static bool named_in(const char *name, const char *const *names, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strcmp(name, names[i]) == 0) return true;
    return false;
}

/* How retention_step cuts its work (retention_step.cl says why): 4 value columns per work-item
 * where dv allows; the key dimension in up to 16 parts of whole rows, leaving at least 4
 * work-items (64 bytes) per row of the group where the group is large enough; rows loaded 16 at
 * a time (the largest divisor of a part's rows up to 16). At 1.3B, batch 32, groups of 64 on an
 * H100: 16 parts of 16 rows 88.5 us per layer, 8 or 32 parts 103 us; one float per work-item
 * (16 parts, 4 columns a group) was 253 us. */
typedef struct step_shape {
    int64_t vec, split, batch;
} step_shape;

static step_shape step_shape_for(size_t wg, int64_t dk, int64_t dv) {
    step_shape s = {dv % 4 == 0 ? 4 : 1, 1, 1};
    while (s.split < 16 && 2 * s.split * (wg >= 8 ? 4 : 1) <= (int64_t)wg && dk % (2 * s.split) == 0) s.split *= 2;
    for (int64_t r = 1; r <= 16; r++)
        if ((dk / s.split) % r == 0) s.batch = r;
    return s;
}

int rn_kernels_preamble(const rt_device_info *info, rn_tuning tuning, size_t wg, int64_t dk, int64_t dv,
                        st_dtype weights, char *out, size_t cap) {
    const step_shape step = step_shape_for(wg, dk, dv);
    char mma_defines[128];
    mma_select(info, tuning, weights, mma_defines, sizeof mma_defines);
    int used = snprintf(out, cap,
                        "// generated by host/ops.c\n#define RN_WG %zu\n#define RN_DK %lld\n#define RN_DV %lld\n"
                        "#define RN_DV_PER_ITEM %lld\n#define RN_STEP_SPLIT %lld\n#define RN_STEP_VEC %lld\n"
                        "#define RN_STEP_BATCH %lld\n#define RN_WEIGHT_%s 1\n%s%s",
                        wg, (long long)dk, (long long)dv, (long long)((dv + (int64_t)wg - 1) / (int64_t)wg),
                        (long long)step.split, (long long)step.vec, (long long)step.batch, st_dtype_name(weights),
                        /* NVIDIA's OpenCL takes inline PTX (device_fence, common.cl) */
                        info->nv_cc_major > 0 ? "#define RN_NV_PTX 1\n" : "", mma_defines);
    if (used < 0 || (size_t)used >= cap) return used;
    return used + shared_constants(out + used, cap - (size_t)used);
}

size_t rn_kernels_sources(bool batch_only, const char **sources, size_t *lengths, size_t cap) {
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++)  /* common.cl first: the other files use its helpers */
        for (size_t i = 0; i < rn_embedded_kernel_count && n < cap; i++) {
            bool is_common = strcmp(rn_embedded_kernels[i].name, "common.cl") == 0;
            if (is_common != (pass == 0)) continue;
            if (batch_only && !is_common &&
                !named_in(rn_embedded_kernels[i].name, batch_files, N_NAMES(batch_files)))
                continue;
            sources[n] = rn_embedded_kernels[i].source;
            lengths[n++] = rn_embedded_kernels[i].size;
        }
    return n;
}

/* Every kernel with groups of `wg`, or with `batch_only` those of rn_kernels.batch only. */
static rn_status build_with_group(rt_runtime *rt, rn_tuning tuning, int64_t project_rows, int64_t dk, int64_t dv,
                                  st_dtype weights, size_t wg, bool batch_only, rn_kernels *k) {
    memset(k, 0, sizeof *k);
    k->wg = wg;
    k->dk = dk;
    k->dv = dv;
    k->weights = weights;
    const step_shape step = step_shape_for(wg, dk, dv);
    k->step_vec = step.vec;
    k->step_split = step.split;
    k->step_batch = step.batch;
    k->gemm = rt->dev.info.max_work_group >= 64;
    k->project_rows = project_rows;
    k->compute_units = rt->dev.info.compute_units ? rt->dev.info.compute_units : 1;
    /* Where the small matrix-engine GEMM is built, batches from this many rows take it (the
     * project kernel below): unless the tuning sets the project kernel's rows, RN_MMA_ROWS_FROM. */
    k->mma_rows_from = tuning.project_rows > 0 ? tuning.project_rows + 1 : RN_MMA_ROWS_FROM;
    const bool nvidia = rt->dev.info.nv_cc_major > 0;
    k->groups_hand_off = nvidia || !rt->dev.info.is_gpu;
    char preamble[1024];
    const char *mma = mma_select(&rt->dev.info, tuning, weights, NULL, 0);  /* its defines: the preamble's */
    const int used = rn_kernels_preamble(&rt->dev.info, tuning, wg, dk, dv, weights, preamble, sizeof preamble);
    if (used < 0 || (size_t)used >= sizeof preamble)
        return rn_fail(rt->err, RN_ERR_BUILD, "the kernels' preamble does not fit %zu bytes", sizeof preamble);
    const char *sources[32];
    size_t lengths[32];
    const size_t n = rn_kernels_sources(batch_only, sources, lengths, 32);
    /* No fast-math flags: the tests compare NaN/Inf behaviour and 1e-4 agreements. */
    const char *options = strstr(rt->dev.info.version, "OpenCL C 1.0") || strstr(rt->dev.info.version, "OpenCL C 1.1")
                              ? ""
                              : "-cl-std=CL1.2";
    rn_status st = rt_program_build(rt, preamble, sources, lengths, n, options, &k->program);
    if (st != RN_OK) return st;

    struct { cl_kernel *slot; const char *name; } table[] = {
        {&k->embed_tokens, "embed_tokens"},       {&k->rms_norm, "rms_norm"},
        {&k->group_norm_gate, "group_norm_gate"}, {&k->theta_shift, "theta_shift"},
        {&k->glu, "glu"},                         {&k->residual, "residual"},
        {&k->project, "project"},                 {&k->widen, "widen"},
        {&k->fill_uniform, "fill_uniform"},       {&k->retention_weigh_keys, "retention_weigh_keys"},
        {&k->retention_prefix, "retention_prefix"}, {&k->retention_scores, "retention_scores"},
        {&k->split_columns, "split_columns"},
        {&k->retention_scan, "retention_scan"},
        {&k->retention_sigma, "retention_sigma"}, {&k->retention_output, "retention_output"},
        {&k->retention_step, "retention_step"},   {&k->argmax_rows, "argmax_rows"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (batch_only && !named_in(table[i].name, batch_kernel_names, N_NAMES(batch_kernel_names))) continue;
        st = rt_kernel_create(rt, k->program, table[i].name, table[i].slot);
        if (st != RN_OK) {
            rn_kernels_release(k);
            return st;
        }
    }
    if (mma) {
        if ((st = rt_kernel_create(rt, k->program, "gemm_mma", &k->gemm_mma)) != RN_OK ||
            (st = rt_kernel_create(rt, k->program, "gemm_mma_operand", &k->gemm_mma_operand)) != RN_OK) {
            rn_kernels_release(k);
            return st;
        }
        if ((st = rt_kernel_create(rt, k->program, "gemm_mma_small", &k->gemm_mma_small)) != RN_OK ||
            (st = rt_kernel_create(rt, k->program, "gemm_mma_reduce", &k->gemm_mma_reduce)) != RN_OK ||
            (st = rt_kernel_create(rt, k->program, "gemm_mma_batched", &k->gemm_mma_batched)) != RN_OK) {
            rn_kernels_release(k);
            return st;
        }
        /* Their 256 and 128 work-items are fixed (reqd_work_group_size); a device that cannot
         * run them keeps the fp32 path. */
        if (rt_kernel_max_group(rt, k->gemm_mma) < 256) {
            clReleaseKernel(k->gemm_mma);
            clReleaseKernel(k->gemm_mma_operand);
            k->gemm_mma = k->gemm_mma_operand = NULL;
        } else {
            k->mma_variant = mma;
        }
        if (!k->gemm_mma || !k->gemm || rt_kernel_max_group(rt, k->gemm_mma_batched) < 256) {
            clReleaseKernel(k->gemm_mma_batched);  /* it serves the batched-GEMM retention only */
            k->gemm_mma_batched = NULL;
        }
        if (!k->gemm_mma || rt_kernel_max_group(rt, k->gemm_mma_small) < 128) {
            clReleaseKernel(k->gemm_mma_small);
            clReleaseKernel(k->gemm_mma_reduce);
            k->gemm_mma_small = k->gemm_mma_reduce = NULL;
        }
    }
    k->mma_folds_norm = RN_MS_FOLD_NORM && k->gemm_mma_small;
    return RN_OK;
}

/* Local memory of retention_output and retention_step with groups of `wg`: one query and two
 * RN_WG arrays, or q and k and RN_WG shares of up to 4 floats (the larger of the two). */
static uint64_t retention_local_bytes(int64_t dk, size_t wg) {
    return (uint64_t)(2 * dk + 4 * (int64_t)wg) * sizeof(float);
}

/* k->batch (ops.h): rms_norm, retention_step and argmax_rows again, with groups of
 * rn_tuning.batch_work_group where it asks for them, for batches on the matrix engine (a program
 * of their three files only); a device that cannot run them at that size, or fit their local
 * memory, does without (NULL). */
static rn_status build_batch_set(rt_runtime *rt, rn_tuning tuning, int64_t project_rows, int64_t dk, int64_t dv,
                                 st_dtype weights, rn_kernels *k) {
    size_t wg = tuning.batch_work_group > 0 ? (size_t)tuning.batch_work_group : 0;
    if (wg > rt->dev.info.max_work_group) wg = floor_pow2(rt->dev.info.max_work_group);
    if (wg == 0 || wg == k->wg || !k->gemm_mma_small ||  /* only batches on the engine take it */
        retention_local_bytes(dk, wg) > rt->dev.info.local_mem_bytes)
        return RN_OK;
    rn_kernels *batch = calloc(1, sizeof *batch);
    if (!batch) return rn_fail(rt->err, RN_ERR_OUT_OF_HOST_MEMORY, "the batch kernels' table");
    rn_tuning plain = tuning;  /* no matrix-engine kernels, no set of its own */
    plain.precision = RN_PRECISION_F32;
    plain.mma_emulate = false;
    plain.batch_work_group = 0;
    rn_status st = build_with_group(rt, plain, project_rows, dk, dv, weights, wg, true, batch);
    if (st != RN_OK) {
        free(batch);
        rn_kernels_release(k);
        return st;
    }
    const cl_kernel used[] = {batch->rms_norm, batch->retention_step, batch->argmax_rows};
    if (kernels_fit(rt, used, sizeof used / sizeof used[0], wg)) {
        k->batch = batch;
    } else {
        rn_kernels_release(batch);
        free(batch);
    }
    return RN_OK;
}

rn_status rn_kernels_build(rt_runtime *rt, rn_tuning tuning, int64_t dk, int64_t dv, st_dtype weights,
                           rn_kernels *out) {
    /* Local memory per group: the retention kernels' (retention_local_bytes), project's 3 sums *
     * 4 lanes floats per work-item; groups shrink until all fit. */
    size_t cap = rt->dev.info.is_gpu ? RN_DEFAULT_WG : RN_DEFAULT_WG_CPU;
    if (tuning.work_group > RN_MAX_WG)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "a work-group of %zu is above the limit of %d",
                       tuning.work_group, RN_MAX_WG);
    if (tuning.work_group) cap = tuning.work_group;
    /* 32 covers batches of decoding; SGEMM needs more rows to fill its tiles (at 4, batches of
     * 8 and 32 decode at 239 and 958 tokens/s on an H200 against 1398 and 1555: BENCHMARKS.md). */
    const int64_t project_rows = tuning.project_rows > 0 ? tuning.project_rows : 32;
    size_t wg = floor_pow2(rt->dev.info.max_work_group < cap ? rt->dev.info.max_work_group : cap);
    const uint64_t local_bytes = rt->dev.info.local_mem_bytes;
    while (wg > 1 && (retention_local_bytes(dk, wg) > local_bytes || (uint64_t)(12 * wg) * sizeof(float) > local_bytes))
        wg /= 2;
    uint64_t local_needed = retention_local_bytes(dk, 1);
    if (local_needed > local_bytes)
        return rn_fail(rt->err, RN_ERR_LIMIT,
                       "a key head dimension of %lld needs %llu bytes of local memory; '%s' has %llu",
                       (long long)dk, (unsigned long long)local_needed, rt->dev.info.name,
                       (unsigned long long)local_bytes);
    for (;;) {
        rn_status st = build_with_group(rt, tuning, project_rows, dk, dv, weights, wg, false, out);
        if (st != RN_OK) return st;
        if (group_fits(rt, out)) return build_batch_set(rt, tuning, project_rows, dk, dv, weights, out);
        rn_kernels_release(out);
        if (wg == 1)
            return rn_fail(rt->err, RN_ERR_OPENCL, "'%s' cannot run the reducing kernels even with one work-item",
                           rt->dev.info.name);
        wg /= 2;  /* a kernel's own limit (registers) can be below the device's */
    }
}

/* ---- launches ------------------------------------------------------------------------------ */

#define N_ARGS(a) (sizeof(a) / sizeof((a)[0]))

/* The element count of a stored weight matrix, which a quantized one's kernels need to find its
 * scales after its quants (common.cl); the buffer holds exactly one matrix. 0 otherwise. */
static cl_ulong weight_total(const rn_kernels *k, const rt_buffer *W) {
    return rn_block_elements(k->weights) > 1 ? (cl_ulong)rn_storage_elements(k->weights, W->bytes) : 0u;
}

rn_status rn_op_embed(rt_runtime *rt, const rn_kernels *k, const rt_buffer *tokens, int64_t n,
                      const rt_buffer *E, int64_t row0, int64_t held, int64_t D, float scale, rt_buffer *x) {
    cl_int d = (cl_int)D, first = (cl_int)row0, count = (cl_int)held;
    cl_ulong total = weight_total(k, E);
    rt_arg args[] = {RT_ARG_BUF(tokens), RT_ARG_BUF(E), RT_ARG_VAL(total), RT_ARG_BUF(x), RT_ARG_VAL(d),
                     RT_ARG_VAL(scale), RT_ARG_VAL(first), RT_ARG_VAL(count)};
    size_t global[2] = {(size_t)D, (size_t)n};
    return rt_launch(rt, k->embed_tokens, "embed_tokens", args, N_ARGS(args), 2, global, NULL);
}

rn_status rn_op_rms_norm(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x,
                         const rt_buffer *w, int64_t rows, int64_t dim, float eps, rt_buffer *y) {
    cl_int d = (cl_int)dim, has_weight = w != NULL;
    /* Without a weight the kernel never reads w; any valid buffer fills the slot. */
    rt_arg args[] = {RT_ARG_BUF(x), RT_ARG_BUF(w ? w : x), RT_ARG_BUF(y), RT_ARG_VAL(d),
                     RT_ARG_VAL(eps), RT_ARG_VAL(has_weight)};
    size_t global = k->wg * (size_t)rows, local = k->wg;
    return rt_launch(rt, k->rms_norm, "rms_norm", args, N_ARGS(args), 1, &global, &local);
}

rn_status rn_op_group_norm_gate(rt_runtime *rt, const rn_kernels *k, const rt_buffer *o,
                                const rt_buffer *g, const rt_buffer *w, int64_t n, int64_t H,
                                float eps, rt_buffer *y) {
    cl_int has_weight = w != NULL, has_gate = g != NULL;
    /* Absent operands are never read; any valid buffer fills their slots. */
    rt_arg args[] = {RT_ARG_BUF(o), RT_ARG_BUF(g ? g : o), RT_ARG_BUF(w ? w : o), RT_ARG_BUF(y),
                     RT_ARG_VAL(eps), RT_ARG_VAL(has_weight), RT_ARG_VAL(has_gate)};
    size_t global = k->wg * (size_t)(n * H), local = k->wg;
    return rt_launch(rt, k->group_norm_gate, "group_norm_gate", args, N_ARGS(args), 1, &global, &local);
}

rn_status rn_op_theta_shift(rt_runtime *rt, const rn_kernels *k, rt_buffer *x, int64_t n,
                            int64_t heads, const rt_buffer *angle, int64_t pos0,
                            const rt_buffer *positions, float scale, bool half_split) {
    cl_int width = (cl_int)(heads * k->dk), dk = (cl_int)k->dk, pos = (cl_int)pos0;
    cl_int half = half_split, per_row = positions != NULL;
    /* Without positions the kernel never reads them; any valid buffer fills the slot. */
    rt_arg args[] = {RT_ARG_BUF(x),   RT_ARG_BUF(angle), RT_ARG_VAL(width),  RT_ARG_VAL(dk),
                     RT_ARG_VAL(pos), RT_ARG_BUF(positions ? positions : angle), RT_ARG_VAL(per_row),
                     RT_ARG_VAL(scale), RT_ARG_VAL(half)};
    size_t global[2] = {(size_t)(heads * k->dk / 2), (size_t)n};
    return rt_launch(rt, k->theta_shift, "theta_shift", args, N_ARGS(args), 2, global, NULL);
}

rn_status rn_op_glu(rt_runtime *rt, const rn_kernels *k, const rt_buffer *a, const rt_buffer *b,
                    int64_t count, rn_activation act, rt_buffer *c) {
    cl_int activation = (cl_int)act;
    rt_arg args[] = {RT_ARG_BUF(a), RT_ARG_BUF(b), RT_ARG_BUF(c), RT_ARG_VAL(activation)};
    size_t global = (size_t)count;
    return rt_launch(rt, k->glu, "glu", args, N_ARGS(args), 1, &global, NULL);
}

rn_status rn_op_residual(rt_runtime *rt, const rn_kernels *k, rt_buffer *x, const rt_buffer *y,
                         int64_t count, float alpha) {
    rt_arg args[] = {RT_ARG_BUF(x), RT_ARG_BUF(y), RT_ARG_VAL(alpha)};
    size_t global = (size_t)count;
    return rt_launch(rt, k->residual, "residual", args, N_ARGS(args), 1, &global, NULL);
}

/* argmax_rows' slices of a row of V logits (argmax.cl): about one round of RN_ARGMAX_DEPTH loads
 * of four per work-item each, where the groups may hand their winners on
 * (rn_kernels.groups_hand_off) and the caller lent them room. */
int64_t rn_argmax_parts(const rn_kernels *k, int64_t V, bool has_slices) {
    if (!has_slices || !k->groups_hand_off) return 1;
    const int64_t per_part = (int64_t)k->wg * 4 * RN_ARGMAX_DEPTH;
    const int64_t parts = (V + per_part - 1) / per_part;
    return parts < 1 ? 1 : parts > RN_ARGMAX_MAX_PARTS ? RN_ARGMAX_MAX_PARTS : parts;
}

rn_status rn_op_argmax(rt_runtime *rt, const rn_kernels *k, const rt_buffer *logits, int64_t rows, int64_t V,
                       rt_buffer *choice, int64_t first, rt_buffer *next, const rn_argmax_slices *slices) {
    if (rows < 1 || V < 1 || V > INT32_MAX || logits->bytes / sizeof(float) / (size_t)V < (size_t)rows ||
        first < 0 || first > INT32_MAX - rows || choice->bytes / (2 * sizeof(cl_int)) < (size_t)(first + rows) ||
        next->bytes / sizeof(cl_int) < (size_t)rows)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "argmax of %lld rows of %lld logits into choices from row %lld: the logits hold %zu bytes, "
                       "the choices %zu, the next tokens %zu",
                       (long long)rows, (long long)V, (long long)first, logits->bytes, choice->bytes, next->bytes);
    const int64_t parts = rn_argmax_parts(k, V, slices != NULL);
    if (parts > 1 && (slices->winners->bytes / (3 * sizeof(cl_int)) < (size_t)(rows * parts) ||
                      slices->done->bytes / sizeof(cl_int) < (size_t)rows))
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "argmax of %lld rows in %lld slices: %zu bytes for the slices' winners, %zu for the counters",
                       (long long)rows, (long long)parts, slices->winners->bytes, slices->done->bytes);
    cl_int vocab = (cl_int)V, row0 = (cl_int)first, sliced = (cl_int)parts;
    /* With one part the kernel touches neither scratch buffer: any valid buffer stands in. */
    rt_arg args[] = {RT_ARG_BUF(logits), RT_ARG_BUF(choice), RT_ARG_VAL(row0), RT_ARG_BUF(next), RT_ARG_VAL(vocab),
                     RT_ARG_VAL(sliced), RT_ARG_BUF(parts > 1 ? slices->winners : choice),
                     RT_ARG_BUF(parts > 1 ? slices->done : choice)};
    size_t global[2] = {k->wg * (size_t)parts, (size_t)rows}, local[2] = {k->wg, 1};
    return rt_launch(rt, k->argmax_rows, "argmax_rows", args, N_ARGS(args), 2, global, local);
}

rn_status rn_op_linear(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x, int64_t n,
                       int64_t in, const rt_buffer *W, int64_t row0, int64_t out,
                       rt_buffer *scratch, rt_buffer *y, int64_t ldy, int64_t col0) {
    const size_t offset = (size_t)(row0 * in);
    if (col0 < 0 || col0 + out > ldy)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "a product of %lld columns does not fit columns %lld.. of %lld",
                       (long long)out, (long long)col0, (long long)ldy);
    if (k->weights == ST_F32)
        return rt_gemm_xwt(rt, (size_t)n, (size_t)out, (size_t)in, x, 0, W, offset, y, (size_t)col0, (size_t)ldy);
    size_t count = (size_t)(out * in);
    if (!scratch || scratch->bytes < count * sizeof(float))
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "no fp32 scratch for a %lld x %lld weight",
                       (long long)out, (long long)in);
    cl_ulong first = offset, total = weight_total(k, W);
    rt_arg args[] = {RT_ARG_BUF(W), RT_ARG_VAL(total), RT_ARG_VAL(first), RT_ARG_BUF(scratch)};
    rn_status st = rt_launch(rt, k->widen, "widen", args, N_ARGS(args), 1, &count, NULL);
    if (st != RN_OK) return st;
    return rt_gemm_xwt(rt, (size_t)n, (size_t)out, (size_t)in, x, 0, scratch, 0, y, (size_t)col0, (size_t)ldy);
}

bool rn_mma_takes(const rn_kernels *k, int64_t in) {
    return k->gemm_mma != NULL && in % 8 == 0 && in > 0;
}

rn_status rn_op_engine_operand(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x, int64_t count,
                               rt_buffer *x_half) {
    if (!k->gemm_mma_operand || count < 1 || count % 4 || x->bytes < (size_t)count * sizeof(float) ||
        x_half->bytes < (size_t)count * sizeof(cl_ushort))
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "cannot round %lld activations to half for the matrix engine (%zu bytes in, %zu out%s)",
                       (long long)count, x->bytes, x_half->bytes, k->gemm_mma_operand ? "" : ", no engine built");
    rt_arg args[] = {RT_ARG_BUF(x), RT_ARG_BUF(x_half)};
    size_t global = (size_t)(count / 4);
    return rt_launch(rt, k->gemm_mma_operand, "gemm_mma_operand", args, N_ARGS(args), 1, &global, NULL);
}

rn_status rn_op_linear_mma(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x, int64_t n, int64_t in,
                           const rt_buffer *W, int64_t row0, int64_t out, rt_buffer *y, int64_t ldy, int64_t col0,
                           bool accumulate, float alpha) {
    if (!rn_mma_takes(k, in) || col0 < 0 || col0 + out > ldy || n > INT32_MAX || out > INT32_MAX || ldy > INT32_MAX ||
        x->bytes < (size_t)(n * in) * sizeof(cl_ushort))
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "the matrix-engine GEMM cannot take %lld x %lld -> %lld into columns %lld.. of %lld "
                       "(activations: %zu bytes of halves)",
                       (long long)n, (long long)in, (long long)out, (long long)col0, (long long)ldy, x->bytes);
    cl_int M = (cl_int)n, K = (cl_int)in, N = (cl_int)out, ld = (cl_int)ldy, c0 = (cl_int)col0;
    cl_int acc = accumulate;
    cl_ulong first = (cl_ulong)row0 * (cl_ulong)in;
    rt_arg args[] = {RT_ARG_BUF(x), RT_ARG_VAL(M),     RT_ARG_VAL(K),   RT_ARG_BUF(W),   RT_ARG_VAL(first),
                     RT_ARG_VAL(N), RT_ARG_BUF(y),     RT_ARG_VAL(ld),  RT_ARG_VAL(c0),  RT_ARG_VAL(acc),
                     RT_ARG_VAL(alpha)};
    size_t global[2] = {(size_t)((n + 127) / 128) * 256, (size_t)((out + 127) / 128)}, local[2] = {256, 1};
    return rt_launch(rt, k->gemm_mma, "gemm_mma", args, N_ARGS(args), 2, global, local);
}

/* gemm_mma_small's columns per work-group, K per chunk and the slices of K for a product of
 * `width` columns: enough work-groups for about two per compute unit, slices of whole chunks
 * of 32 (`kper`). Each slice writes its partial sums of the whole output, which the reduction
 * reads back: at batch 32 of a 1.3B model, with four per compute unit, 1.3 GB a step beside
 * the 2.6 GB of weights. Two per compute unit decoded batch 32 3.8 % faster (1.3B) and 5.7 %
 * (6.7B) on an H100, one slower than four (docs/bench-splits-h100.jsonl). */
int64_t rn_mma_slices(const rn_kernels *k, int64_t in, int64_t width, int64_t *kper) {
    const int64_t blocks = (width + RN_MS_COLS - 1) / RN_MS_COLS, steps = (in + 31) / 32;
    int64_t splits = (2 * (int64_t)k->compute_units + blocks - 1) / blocks;
    if (splits > (in + 255) / 256) splits = (in + 255) / 256;
    if (splits < 1) splits = 1;
    int64_t per = (steps + splits - 1) / splits;
    if (RN_MS_XK > 0 && per > RN_MS_XK / 32) per = RN_MS_XK / 32;  /* x of a slice staged at once */
    *kper = 32 * per;
    return (steps + per - 1) / per;
}

/* The slices' partial sums [splits][n][width], then their sums of squares [splits][n] for a
 * folded norm. */
uint64_t rn_mma_partial_bytes(const rn_kernels *k, int64_t n, int64_t in, int64_t width) {
    int64_t kper;
    return (uint64_t)rn_mma_slices(k, in, width, &kper) * (uint64_t)n * ((uint64_t)width + 1) * sizeof(float);
}

/* What a projection does with its output (rn_projection: plain with q/k rotation into up to
 * four outputs, residual, GLU), as the kernels that finish one take it: the `project` kernel and
 * the matrix engine's reduction. Unused slots get any valid buffer: they are never touched. */
typedef struct epilogue {
    cl_int rows, mode, activation, ends[3], rotated, q_rows, pos0, pos_step, half_split, per_row, row0, held;
    float alpha, k_scale;
    const rt_buffer *y[4], *angle, *positions;
} epilogue;

static rn_status epilogue_of(rt_runtime *rt, const rn_kernels *k, const rn_projection *p, epilogue *e) {
    e->rows = (cl_int)p->rows;
    e->mode = (cl_int)p->mode;
    e->activation = (cl_int)p->activation;
    for (int i = 0; i < 3; i++) e->ends[i] = (cl_int)(p->mode == RN_PROJECT_PLAIN && p->y[i + 1] ? p->ends[i] : p->rows);
    e->rotated = p->mode == RN_PROJECT_PLAIN ? (cl_int)p->rotated : 0;
    e->q_rows = (cl_int)p->q_rows;
    e->pos0 = (cl_int)p->pos0;
    e->pos_step = (cl_int)p->pos_step;
    e->half_split = p->half_split;
    e->per_row = p->positions != NULL;
    e->alpha = p->alpha;
    e->k_scale = p->k_scale;
    e->row0 = (cl_int)p->row0;
    e->held = (cl_int)(p->held ? p->held : p->rows - p->row0);
    for (int i = 0; i < 4; i++) e->y[i] = p->y[i] ? p->y[i] : p->y[0];
    e->angle = p->angle ? p->angle : p->x;
    e->positions = p->positions ? p->positions : p->x;
    if (e->rotated % k->dk || e->q_rows % k->dk)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "%d rotated rows (%d of q) are not whole heads of %lld",
                       e->rotated, e->q_rows, (long long)k->dk);
    if (p->row0 < 0 || p->row0 % 2 || (p->row0 < e->rotated && p->row0 % k->dk) || e->held < 1 ||
        p->row0 + e->held > p->rows)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "a piece of %d rows from row %lld of %lld cannot be projected",
                       e->held, (long long)p->row0, (long long)p->rows);
    return RN_OK;
}

/* How many bytes of `ahead` (what the next launch reads first) a launch asks into the cache. */
static cl_ulong ahead_bytes(const rt_buffer *ahead) {
    const uint64_t cap = (uint64_t)RN_PREFETCH_MB << 20;
    return RN_PREFETCH_AHEAD && ahead ? (ahead->bytes < cap ? ahead->bytes : cap) : 0;
}

bool rn_mma_folds_norm(const rn_kernels *k, const rn_projection *p) {
    return p->normalize && k->mma_folds_norm && p->mode != RN_PROJECT_RESIDUAL;
}

rn_status rn_op_project_mma(rt_runtime *rt, const rn_kernels *k, const rn_projection *p, rt_buffer *partial) {
    const int64_t held = p->held ? p->held : p->rows - p->row0;
    const int64_t width = p->mode == RN_PROJECT_GLU ? 2 * held : held;
    const bool folds_norm = rn_mma_folds_norm(k, p);
    if (!k->gemm_mma_small || !rn_mma_takes(k, p->cols) || (p->normalize && !folds_norm) || p->n < 1 ||
        p->n > RN_MMA_SMALL_ROWS ||
        width > INT32_MAX || !partial || partial->bytes < rn_mma_partial_bytes(k, p->n, p->cols, width))
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "the small matrix-engine GEMM cannot take %lld rows x %lld -> %lld%s",
                       (long long)p->n, (long long)p->cols, (long long)width, p->normalize ? " with a norm" : "");
    int64_t kper64;
    const cl_int splits = (cl_int)rn_mma_slices(k, p->cols, width, &kper64);
    cl_int M = (cl_int)p->n, K = (cl_int)p->cols, N = (cl_int)width, kper = (cl_int)kper64;
    cl_ulong first = 0;
    /* A residual with alpha 1 is only the sum: the slices add into y themselves, no reduction. */
    const cl_int add_into = p->mode == RN_PROJECT_RESIDUAL && p->alpha == 1.0f;
    cl_int y_ld = (cl_int)p->rows, y_col0 = (cl_int)p->row0;
    cl_int normalize = folds_norm ? (p->norm ? 2 : 1) : 0;
    cl_ulong ss_first = (cl_ulong)splits * (cl_ulong)M * (cl_ulong)N;  /* floats: after the partial sums */
    const rt_buffer *norm = p->norm ? p->norm : p->x;                   /* any buffer where unused */
    const rt_buffer *ahead = p->ahead ? p->ahead : p->W;
    cl_ulong ahead_n = ahead_bytes(p->ahead);
    rt_arg gemm_args[] = {RT_ARG_BUF(p->x),     RT_ARG_VAL(M),        RT_ARG_VAL(K),        RT_ARG_BUF(p->W),
                          RT_ARG_VAL(first),    RT_ARG_VAL(N),        RT_ARG_VAL(kper),     RT_ARG_BUF(partial),
                          RT_ARG_VAL(add_into), RT_ARG_BUF(p->y[0]),  RT_ARG_VAL(y_ld),     RT_ARG_VAL(y_col0),
                          RT_ARG_VAL(normalize), RT_ARG_BUF(norm),    RT_ARG_VAL(ss_first), RT_ARG_BUF(ahead),
                          RT_ARG_VAL(ahead_n)};
    size_t global[3] = {(size_t)((width + RN_MS_COLS - 1) / RN_MS_COLS) * 128, (size_t)splits,
                        (size_t)((M + 16 * RN_MS_MF - 1) / (16 * RN_MS_MF))},
           local[3] = {128, 1, 1};
    epilogue e;
    rn_status st = epilogue_of(rt, k, p, &e);
    if (st == RN_OK)
        st = rt_launch(rt, k->gemm_mma_small, "gemm_mma_small", gemm_args, N_ARGS(gemm_args), 3, global, local);
    if (st != RN_OK || add_into) return st;
    rt_arg args[] = {RT_ARG_BUF(partial),    RT_ARG_VAL(splits),     RT_ARG_VAL(M),          RT_ARG_VAL(N),
                     RT_ARG_VAL(e.rows),     RT_ARG_VAL(e.mode),     RT_ARG_VAL(e.alpha),    RT_ARG_VAL(e.activation),
                     RT_ARG_BUF(e.y[0]),     RT_ARG_BUF(e.y[1]),     RT_ARG_BUF(e.y[2]),     RT_ARG_BUF(e.y[3]),
                     RT_ARG_VAL(e.ends[0]),  RT_ARG_VAL(e.ends[1]),  RT_ARG_VAL(e.ends[2]),  RT_ARG_VAL(e.rotated),
                     RT_ARG_VAL(e.q_rows),   RT_ARG_BUF(e.angle),    RT_ARG_VAL(e.pos0),     RT_ARG_VAL(e.pos_step),
                     RT_ARG_BUF(e.positions), RT_ARG_VAL(e.per_row), RT_ARG_VAL(e.k_scale),  RT_ARG_VAL(e.half_split),
                     RT_ARG_VAL(e.row0),     RT_ARG_VAL(e.held),     RT_ARG_VAL(normalize),  RT_ARG_VAL(ss_first),
                     RT_ARG_VAL(K),          RT_ARG_VAL(p->eps)};
    size_t rglobal[2] = {p->mode == RN_PROJECT_GLU ? (size_t)held : ((size_t)held + 1) / 2, (size_t)p->n};
    return rt_launch(rt, k->gemm_mma_reduce, "gemm_mma_reduce", args, N_ARGS(args), 2, rglobal, NULL);
}

rn_status rn_op_project(rt_runtime *rt, const rn_kernels *k, const rn_projection *p) {
    cl_int cols = (cl_int)p->cols, n = (cl_int)p->n;
    cl_int normalize = p->normalize ? (p->norm ? 2 : 1) : 0;
    float eps = p->eps;
    epilogue e;
    rn_status st = epilogue_of(rt, k, p, &e);
    if (st != RN_OK) return st;
    const rt_buffer *norm = p->norm ? p->norm : p->x;  /* absent: never read */
    const rt_buffer *ahead = p->ahead ? p->ahead : p->W;
    cl_ulong wtotal = weight_total(k, p->W), ahead_n = ahead_bytes(p->ahead);
    rt_arg args[] = {RT_ARG_BUF(p->W),      RT_ARG_VAL(wtotal),    RT_ARG_VAL(e.rows),     RT_ARG_VAL(cols),
                     RT_ARG_BUF(p->x),      RT_ARG_VAL(n),         RT_ARG_BUF(norm),       RT_ARG_VAL(normalize),
                     RT_ARG_VAL(eps),       RT_ARG_VAL(e.mode),    RT_ARG_VAL(e.alpha),    RT_ARG_VAL(e.activation),
                     RT_ARG_BUF(e.y[0]),    RT_ARG_BUF(e.y[1]),    RT_ARG_BUF(e.y[2]),     RT_ARG_BUF(e.y[3]),
                     RT_ARG_VAL(e.ends[0]), RT_ARG_VAL(e.ends[1]), RT_ARG_VAL(e.ends[2]),  RT_ARG_VAL(e.rotated),
                     RT_ARG_VAL(e.q_rows),  RT_ARG_BUF(e.angle),   RT_ARG_VAL(e.pos0),     RT_ARG_VAL(e.pos_step),
                     RT_ARG_BUF(e.positions), RT_ARG_VAL(e.per_row), RT_ARG_VAL(e.k_scale), RT_ARG_VAL(e.half_split),
                     RT_ARG_VAL(e.row0),    RT_ARG_VAL(e.held),    RT_ARG_BUF(ahead),      RT_ARG_VAL(ahead_n)};
    /* Two weight rows per work-group (matvec.cl): two outputs, or one in GLU mode. */
    size_t groups = p->mode == RN_PROJECT_GLU ? (size_t)e.held : ((size_t)e.held + 1) / 2;
    size_t global = k->wg * groups, local = k->wg;
    return rt_launch(rt, k->project, "project", args, N_ARGS(args), 1, &global, &local);
}

rn_status rn_op_split_columns(rt_runtime *rt, const rn_kernels *k, const rt_buffer *src, int64_t n,
                              int64_t stride, int64_t col0, int64_t width, rt_buffer *dst) {
    cl_int s = (cl_int)stride, c = (cl_int)col0;
    rt_arg args[] = {RT_ARG_BUF(src), RT_ARG_VAL(s), RT_ARG_VAL(c), RT_ARG_BUF(dst)};
    size_t global[2] = {(size_t)width, (size_t)n};
    return rt_launch(rt, k->split_columns, "split_columns", args, N_ARGS(args), 2, global, NULL);
}

rn_status rn_op_fill_uniform(rt_runtime *rt, const rn_kernels *k, rt_buffer *w, uint64_t count,
                             uint64_t seed, float scale, uint64_t from, uint64_t at) {
    cl_ulong s = seed, total = weight_total(k, w), first = from, to = at;
    if (count == 0) return RN_OK;
    rt_arg args[] = {RT_ARG_BUF(w),          RT_ARG_VAL(s),     RT_ARG_VAL(scale),
                     RT_ARG_VAL(total),      RT_ARG_VAL(first), RT_ARG_VAL(to)};
    size_t global = (size_t)(count / rn_block_elements(k->weights));  /* one item per block */
    return rt_launch(rt, k->fill_uniform, "fill_uniform", args, N_ARGS(args), 1, &global, NULL);
}

/* Whether the form keeps chunks with incoming states: the chunkwise form over more than one
 * chunk, or continuing a sequence (whose first chunk has the sequence's state coming in). */
static bool is_chunked(rn_mode mode, int64_t chunk, int64_t n, bool has_state) {
    return mode == RN_MODE_CHUNKWISE && (chunk < n || has_state);
}

rn_retention_sizes rn_retention_scratch_size(rn_mode mode, bool gemm, bool has_state, int64_t n, int64_t chunk,
                                             int64_t H, int64_t dk, int64_t dv) {
    /* The parallel form is one window with no incoming state. The kernels then keep nothing;
     * the GEMM form treats it as one chunk of n. */
    const bool chunked = is_chunked(mode, chunk, n, has_state);
    const int64_t window = chunked ? chunk : n, chunks = chunked ? (n + chunk - 1) / chunk : gemm ? 1 : 0;
    rn_retention_sizes z = {0};
    z.chunk_states = (uint64_t)(chunked ? chunks : 0) * (uint64_t)(H * dk * dv) * sizeof(float);
    z.sigma = (uint64_t)(chunked ? chunks : 0) * (uint64_t)H * sizeof(float) * (gemm ? 2 : 1);
    if (gemm) {
        z.scores = (uint64_t)chunks * (uint64_t)H * (uint64_t)window * (uint64_t)window * sizeof(float);
        z.keys = (uint64_t)(H * n * dk) * sizeof(float);
    }
    return z;
}

rn_status rn_op_retention(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape,
                          rn_mode mode, int64_t chunk, const rt_buffer *q, const rt_buffer *kk,
                          const rt_buffer *v, int64_t n, const rt_buffer *decays,
                          rn_retention_scratch *scratch, rt_buffer *o, rt_buffer *state,
                          const rt_buffer *scale_in, rt_buffer *scale) {
    cl_int has_state = scale_in != NULL;
    if (has_state && mode != RN_MODE_CHUNKWISE)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "only the chunkwise form continues a state");
    const bool chunked = is_chunked(mode, chunk, n, has_state);
    const int64_t H = shape.heads;
    cl_int n_tokens = (cl_int)n, window = (cl_int)(chunked ? chunk : n), record = chunked;
    cl_int heads = (cl_int)H, kv_heads = (cl_int)shape.kv_heads, plain = shape.plain;
    /* Unused buffer slots still need a valid cl_mem. */
    const rt_buffer *states = chunked ? &scratch->chunk_states : o;
    const rt_buffer *sigma = chunked ? &scratch->sigma : o;

    rt_arg scan_args[] = {RT_ARG_BUF(kk),       RT_ARG_BUF(v),         RT_ARG_BUF(decays),
                          RT_ARG_VAL(n_tokens), RT_ARG_VAL(window),    RT_ARG_VAL(record),
                          RT_ARG_VAL(kv_heads), RT_ARG_VAL(plain),     RT_ARG_BUF(states),
                          RT_ARG_BUF(state),    RT_ARG_VAL(has_state), RT_ARG_BUF(scale_in ? scale_in : scale),
                          RT_ARG_BUF(scale)};
    size_t scan_global[2] = {(size_t)(k->dk * k->dv), (size_t)H};
    rn_status st = rt_launch(rt, k->retention_scan, "retention_scan", scan_args, N_ARGS(scan_args), 2,
                             scan_global, NULL);
    if (st != RN_OK) return st;

    if (chunked && !shape.plain) {
        size_t chunks = (size_t)((n + chunk - 1) / chunk);
        cl_int bound = 0;
        rt_arg sigma_args[] = {RT_ARG_BUF(states), RT_ARG_BUF(decays), RT_ARG_VAL(heads),
                               RT_ARG_VAL(window), RT_ARG_VAL(bound), RT_ARG_BUF(sigma)};
        size_t global = k->wg * chunks * (size_t)H, local = k->wg;
        st = rt_launch(rt, k->retention_sigma, "retention_sigma", sigma_args, N_ARGS(sigma_args), 1,
                       &global, &local);
        if (st != RN_OK) return st;
    }

    /* torchscale clamps the parallel form's normaliser at 5e4 and leaves chunkwise's open. */
    float cap = mode == RN_MODE_PARALLEL ? 5e4f : 0.0f;
    rt_arg out_args[] = {RT_ARG_BUF(q),      RT_ARG_BUF(kk),       RT_ARG_BUF(v),
                         RT_ARG_BUF(decays), RT_ARG_BUF(states),   RT_ARG_BUF(sigma),
                         RT_ARG_VAL(heads),  RT_ARG_VAL(kv_heads), RT_ARG_VAL(window),
                         RT_ARG_VAL(cap),    RT_ARG_VAL(plain),    RT_ARG_VAL(has_state),
                         RT_ARG_BUF(o)};
    size_t global = k->wg * (size_t)(n * H), local = k->wg;
    return rt_launch(rt, k->retention_output, "retention_output", out_args, N_ARGS(out_args), 1,
                     &global, &local);
}

static rn_status chunk_products(rt_runtime *rt, bool ta, bool tb, size_t M, size_t N, size_t K, float beta,
                                const rt_buffer *a, rn_chunk_operand ao, size_t a_ld, const rt_buffer *b,
                                rn_chunk_operand bo, size_t b_ld, rt_buffer *c, rn_chunk_operand co, size_t c_ld,
                                int64_t first, int64_t last, int64_t H, int64_t group) {
    size_t count = (size_t)((last - first) * H);
    if (count == 0) return RN_OK;
    size_t *offsets = malloc(3 * count * sizeof *offsets);
    if (!offsets) return rn_fail(rt->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for GEMM offsets");
    size_t j = 0;
    for (int64_t i = first; i < last; i++)
        for (int64_t h = 0; h < H; h++, j++) {
            /* a and c follow the query head h, b its key/value head (`group` query heads each) */
            offsets[j] = ao.base + (size_t)i * ao.chunk_step + (size_t)h * ao.head_step;
            offsets[count + j] = bo.base + (size_t)i * bo.chunk_step + (size_t)(h / group) * bo.head_step;
            offsets[2 * count + j] = co.base + (size_t)i * co.chunk_step + (size_t)h * co.head_step;
        }
    rn_status st = rt_gemm_batched(rt, ta, tb, M, N, K, beta, a, offsets, a_ld, b, offsets + count, b_ld, c,
                                   offsets + 2 * count, c_ld, count);
    free(offsets);
    return st;
}

rn_status rn_op_chunk_products_mma(rt_runtime *rt, const rn_kernels *k, rn_engine_product e, const rt_buffer *a,
                                   rn_chunk_operand ao, size_t a_ld, const rt_buffer *b, rn_chunk_operand bo,
                                   size_t b_ld, rt_buffer *c, rn_chunk_operand co, size_t c_ld, int64_t first,
                                   int64_t last, int64_t H, int64_t group, int64_t n, int64_t window) {
    if (last <= first) return RN_OK;
    if (!k->gemm_mma_batched || group < 1 || H % group || window < 1 || n > INT32_MAX || a_ld > INT32_MAX ||
        b_ld > INT32_MAX || c_ld > INT32_MAX || e.M > INT32_MAX || e.N > INT32_MAX || e.K > INT32_MAX)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "the matrix engine cannot take these retention products (%lld x %lld x %lld, window %lld)",
                       (long long)e.M, (long long)e.N, (long long)e.K, (long long)window);
    cl_ulong ab = ao.base, ac = ao.chunk_step, ah = ao.head_step, bb = bo.base, bc = bo.chunk_step, bh = bo.head_step;
    cl_ulong cb = co.base, cc = co.chunk_step, ch = co.head_step;
    cl_int lda = (cl_int)a_ld, ldb = (cl_int)b_ld, ldc = (cl_int)c_ld, akm = e.a_kmajor, bkm = e.b_kmajor;
    cl_int grp = (cl_int)group, M = (cl_int)e.M, N = (cl_int)e.N, K = (cl_int)e.K, f = (cl_int)first;
    cl_int heads = (cl_int)H, tokens = (cl_int)n, win = (cl_int)window, acc = e.accumulate, tri = e.triangle;
    cl_int bound_at = e.b_bound ? (cl_int)e.b_bound_at : -1;
    const rt_buffer *bound = e.b_bound ? e.b_bound : b;  /* unused: any valid buffer */
    rt_arg args[] = {RT_ARG_BUF(a),      RT_ARG_VAL(ab),  RT_ARG_VAL(ac),     RT_ARG_VAL(ah),  RT_ARG_VAL(lda),
                     RT_ARG_VAL(akm),    RT_ARG_BUF(b),   RT_ARG_VAL(bb),     RT_ARG_VAL(bc),  RT_ARG_VAL(bh),
                     RT_ARG_VAL(ldb),    RT_ARG_VAL(bkm), RT_ARG_VAL(grp),    RT_ARG_BUF(c),   RT_ARG_VAL(cb),
                     RT_ARG_VAL(cc),     RT_ARG_VAL(ch),  RT_ARG_VAL(ldc),    RT_ARG_VAL(M),   RT_ARG_VAL(N),
                     RT_ARG_VAL(K),      RT_ARG_VAL(f),   RT_ARG_VAL(heads),  RT_ARG_VAL(tokens), RT_ARG_VAL(win),
                     RT_ARG_VAL(acc),    RT_ARG_VAL(tri),  RT_ARG_BUF(bound), RT_ARG_VAL(bound_at)};
    const int64_t rows = e.M ? e.M : window, cols = e.N ? e.N : window;
    size_t global[3] = {(size_t)((cols + 127) / 128) * 256, (size_t)((rows + 127) / 128), (size_t)((last - first) * H)};
    size_t local[3] = {256, 1, 1};
    return rt_launch(rt, k->gemm_mma_batched, "gemm_mma_batched", args, N_ARGS(args), 3, global, local);
}

rn_status rn_op_retention_gemm(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape,
                               rn_mode mode, int64_t chunk, const rt_buffer *q, const rt_buffer *kk,
                               const rt_buffer *v, int64_t n, const rt_buffer *decays,
                               rn_retention_scratch *scratch, rt_buffer *o, rt_buffer *state,
                               const rt_buffer *scale_in, rt_buffer *scale) {
    cl_int has_state = scale_in != NULL;
    if (has_state && mode != RN_MODE_CHUNKWISE)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "only the chunkwise form continues a state");
    const bool chunked = is_chunked(mode, chunk, n, has_state);
    const int64_t H = shape.heads, G = shape.heads / shape.kv_heads, dk = k->dk, dv = k->dv;
    const int64_t C = chunked ? chunk : n, chunks = (n + C - 1) / C, last = n - (chunks - 1) * C;
    const size_t qw = (size_t)(H * dk), kw = (size_t)(shape.kv_heads * dk), vw = (size_t)(shape.kv_heads * dv);
    const size_t ow = (size_t)(H * dv), entry = (size_t)(dk * dv), cc = (size_t)(C * C);
    cl_int n_tokens = (cl_int)n, window = (cl_int)C, kv_heads = (cl_int)shape.kv_heads, plain = shape.plain;
    cl_int heads = (cl_int)H, n_chunks = (cl_int)chunks;
    rn_status st;

    /* The continued sequence's state enters chunk 0: retention_prefix finds it there (and turns
     * it into U_0) before the products below overwrite `state` with the last chunk's share. */
    if (has_state && (st = rt_buffer_copy(rt, state, &scratch->chunk_states, (size_t)H * entry * sizeof(float))) != RN_OK)
        return st;

    /* Each chunk's share of the state after it: dU = (w K)^T V, into chunk_states[i + 1] for all
     * but the last chunk, whose share goes to `state` (retention_prefix then adds them up). */
    rt_arg weigh[] = {RT_ARG_BUF(kk), RT_ARG_BUF(decays), RT_ARG_VAL(n_tokens), RT_ARG_VAL(window),
                      RT_ARG_VAL(kv_heads), RT_ARG_BUF(&scratch->keys)};
    size_t weigh_global[3] = {(size_t)dk, (size_t)n, (size_t)H};
    if ((st = rt_launch(rt, k->retention_weigh_keys, "retention_weigh_keys", weigh, N_ARGS(weigh), 3, weigh_global,
                        NULL)) != RN_OK)
        return st;
    const rn_chunk_operand keys = {0, (size_t)C * (size_t)dk, (size_t)(n * dk)};
    const rn_chunk_operand values = {0, (size_t)C * vw, (size_t)dv};
    const rn_chunk_operand next_state = {(size_t)H * entry, (size_t)H * entry, entry};
    const rn_chunk_operand final_state = {0, 0, entry};
    const bool engine = k->gemm_mma_batched != NULL;
    if (engine) {
        const rn_engine_product share = {.a_kmajor = true, .b_kmajor = true, .M = dk, .N = dv, .K = 0};
        if ((st = rn_op_chunk_products_mma(rt, k, share, &scratch->keys, keys, (size_t)dk, v, values, vw,
                                           &scratch->chunk_states, next_state, (size_t)dv, 0, chunks - 1, H, G, n,
                                           C)) != RN_OK ||
            (st = rn_op_chunk_products_mma(rt, k, share, &scratch->keys, keys, (size_t)dk, v, values, vw, state,
                                           final_state, (size_t)dv, chunks - 1, chunks, H, G, n, C)) != RN_OK)
            return st;
    } else {
        if ((st = chunk_products(rt, true, false, (size_t)dk, (size_t)dv, (size_t)C, 0.0f, &scratch->keys, keys,
                                 (size_t)dk, v, values, vw, &scratch->chunk_states, next_state, (size_t)dv, 0,
                                 chunks - 1, H, G)) != RN_OK)
            return st;
        const rn_chunk_operand last_keys = {(size_t)(chunks - 1) * (size_t)C * (size_t)dk, 0, (size_t)(n * dk)};
        const rn_chunk_operand last_values = {(size_t)(chunks - 1) * (size_t)C * vw, 0, (size_t)dv};
        if ((st = chunk_products(rt, true, false, (size_t)dk, (size_t)dv, (size_t)last, 0.0f, &scratch->keys,
                                 last_keys, (size_t)dk, v, last_values, vw, state, final_state, (size_t)dv, 0, 1, H,
                                 G)) != RN_OK)
            return st;
    }
    const rt_buffer *states = chunked ? &scratch->chunk_states : state;  /* any valid buffer */
    rt_arg prefix[] = {RT_ARG_BUF(states), RT_ARG_VAL(n_chunks), RT_ARG_VAL(n_tokens), RT_ARG_VAL(window),
                       RT_ARG_VAL(plain), RT_ARG_BUF(decays), RT_ARG_BUF(state), RT_ARG_VAL(has_state),
                       RT_ARG_BUF(scale_in ? scale_in : scale), RT_ARG_BUF(scale)};
    size_t prefix_global[2] = {entry, (size_t)H};
    if ((st = rt_launch(rt, k->retention_prefix, "retention_prefix", prefix, N_ARGS(prefix), 2, prefix_global,
                        NULL)) != RN_OK)
        return st;
    /* The engine's cross term needs the states' bounds, which come with sigma (plain too). */
    if (chunked && (!shape.plain || engine)) {
        cl_int bound = engine;
        rt_arg sigma_args[] = {RT_ARG_BUF(&scratch->chunk_states), RT_ARG_BUF(decays), RT_ARG_VAL(heads),
                               RT_ARG_VAL(window), RT_ARG_VAL(bound), RT_ARG_BUF(&scratch->sigma)};
        size_t global = k->wg * (size_t)(chunks * H), local = k->wg;
        if ((st = rt_launch(rt, k->retention_sigma, "retention_sigma", sigma_args, N_ARGS(sigma_args), 1, &global,
                            &local)) != RN_OK)
            return st;
    }

    /* Scores S = Q K^T per chunk and head (full chunks, then the last), the cross term Q U_i
     * into o (chunks after the first, and the first too when it continues a state), then
     * retention_scores, then o += S' V. */
    const rn_chunk_operand queries = {0, (size_t)C * qw, (size_t)dk};
    const rn_chunk_operand raw_keys = {0, (size_t)C * kw, (size_t)dk};
    const rn_chunk_operand scores = {0, (size_t)H * cc, cc};
    const rn_chunk_operand outputs = {0, (size_t)C * ow, (size_t)dv};
    const rn_chunk_operand entering = {0, (size_t)H * entry, entry};
    const rn_engine_product score_product = {.M = 0, .N = 0, .K = dk, .triangle = 1};
    if (engine && (st = rn_op_chunk_products_mma(rt, k, score_product, q, queries, qw, kk, raw_keys, kw,
                                                 &scratch->scores, scores, (size_t)C, 0, chunks, H, G, n, C)) != RN_OK)
        return st;
    for (int part = 0; part < 2; part++) {  /* full chunks, then the last one (len `last`) */
        const int64_t first = part ? chunks - 1 : 0, end = part ? chunks : chunks - 1;
        const size_t len = (size_t)(part ? last : C);
        if (!engine && (st = chunk_products(rt, false, true, len, len, (size_t)dk, 0.0f, q, queries, qw, kk, raw_keys,
                                            kw, &scratch->scores, scores, (size_t)C, first, end, H, G)) != RN_OK)
            return st;
        if (!engine && chunked &&
            (st = chunk_products(rt, false, false, len, (size_t)dv, (size_t)dk, 0.0f, q, queries, qw,
                                 &scratch->chunk_states, entering, (size_t)dv, o, outputs, ow,
                                 first > 0 || has_state ? first : 1, end, H, 1)) != RN_OK)
            return st;
    }
    if (engine && chunked) {
        /* The states' bounds follow the chunks' sigmas in the same buffer (retention_sigma). */
        const rn_engine_product cross = {.b_kmajor = true, .M = 0, .N = dv, .K = dk, .b_bound = &scratch->sigma,
                                         .b_bound_at = chunks * H};
        if ((st = rn_op_chunk_products_mma(rt, k, cross, q, queries, qw, &scratch->chunk_states, entering, (size_t)dv,
                                           o, outputs, ow, has_state ? 0 : 1, chunks, H, 1, n, C)) != RN_OK)
            return st;
    }
    float cap = mode == RN_MODE_PARALLEL ? 5e4f : 0.0f;
    const rt_buffer *sigma = chunked ? &scratch->sigma : o;
    rt_arg score_args[] = {RT_ARG_BUF(&scratch->scores), RT_ARG_BUF(decays), RT_ARG_BUF(sigma), RT_ARG_VAL(heads),
                           RT_ARG_VAL(window), RT_ARG_VAL(cap), RT_ARG_VAL(plain), RT_ARG_VAL(has_state),
                           RT_ARG_BUF(o)};
    size_t global = k->wg * (size_t)(n * H), local = k->wg;
    if ((st = rt_launch(rt, k->retention_scores, "retention_scores", score_args, N_ARGS(score_args), 1, &global,
                        &local)) != RN_OK)
        return st;
    if (engine) {
        const rn_engine_product weigh_values = {.b_kmajor = true, .accumulate = true, .M = 0, .N = dv, .K = 0,
                                                .triangle = 2};
        return rn_op_chunk_products_mma(rt, k, weigh_values, &scratch->scores, scores, (size_t)C, v, values, vw, o,
                                        outputs, ow, 0, chunks, H, G, n, C);
    }
    for (int part = 0; part < 2; part++) {
        const int64_t first = part ? chunks - 1 : 0, end = part ? chunks : chunks - 1;
        const size_t len = (size_t)(part ? last : C);
        if ((st = chunk_products(rt, false, false, len, (size_t)dv, len, 1.0f, &scratch->scores, scores, (size_t)C,
                                 v, values, vw, o, outputs, ow, first, end, H, G)) != RN_OK)
            return st;
    }
    return RN_OK;
}

rn_status rn_op_retention_step(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape,
                               int64_t batch, const rt_buffer *q,
                               const rt_buffer *kk, const rt_buffer *v, const rt_buffer *decays,
                               const rt_buffer *positions, rt_buffer *state, rt_buffer *scale0,
                               rt_buffer *scale1, rt_buffer *o, const rn_step_norm *norm,
                               const rt_buffer *ahead) {
    cl_int heads = (cl_int)shape.heads, kv_heads = (cl_int)shape.kv_heads, plain = shape.plain;
    cl_int normalize = norm != NULL, has_gate = norm && norm->gate, has_weight = norm && norm->weight;
    float eps = norm ? norm->eps : 0.0f;
    cl_ulong ahead_n = ahead_bytes(ahead);
    if (norm && norm->done->bytes / sizeof(cl_int) < (size_t)(batch * shape.heads))
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "retention step of %lld heads: %zu bytes of counters",
                       (long long)(batch * shape.heads), norm->done->bytes);
    /* Operands the kernel does not read take any valid buffer. */
    rt_arg args[] = {RT_ARG_BUF(q),         RT_ARG_BUF(kk),     RT_ARG_BUF(v),
                     RT_ARG_BUF(decays),    RT_ARG_VAL(heads),  RT_ARG_VAL(kv_heads),
                     RT_ARG_VAL(plain),     RT_ARG_BUF(state),  RT_ARG_BUF(positions),
                     RT_ARG_BUF(scale0),    RT_ARG_BUF(scale1), RT_ARG_BUF(o),
                     RT_ARG_VAL(normalize), RT_ARG_BUF(has_gate ? norm->gate : o),
                     RT_ARG_BUF(has_weight ? norm->weight : o), RT_ARG_VAL(eps), RT_ARG_VAL(has_weight),
                     RT_ARG_VAL(has_gate),  RT_ARG_BUF(norm ? norm->done : o), RT_ARG_BUF(ahead ? ahead : o),
                     RT_ARG_VAL(ahead_n)};
    const size_t tile = k->wg / (size_t)k->step_split;  /* RN_STEP_TILE */
    size_t columns = ((size_t)(k->dv / k->step_vec) + tile - 1) / tile * tile;
    size_t global[3] = {columns, (size_t)k->step_split, (size_t)(batch * shape.heads)};
    size_t local[3] = {tile, (size_t)k->step_split, 1};
    return rt_launch(rt, k->retention_step, "retention_step", args, N_ARGS(args), 3, global, local);
}
