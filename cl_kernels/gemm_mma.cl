/*
 * gemm_mma.cl: y[M, N] = x[M, K] W[N, K]^T (or y = alpha y + x W^T) on a matrix engine:
 * NVIDIA's mma.sync.m16n8k16 through inline PTX, fp16 or bf16 inputs (the weights' stored type),
 * fp32 accumulation. Built only where the preamble defines RN_NV_MMA (NVIDIA compute
 * capability 8.0+, a precision that allows it, F16 or BF16 weights: host/ops.c) or, for the
 * selftest, RN_MMA_EMULATE; anywhere else this file is empty.
 *
 * x comes rounded to the weights' half type, once per product (gemm_mma_operand), so that both
 * operands travel as halves and are copied straight into local memory by cp.async: no work-item
 * waits on a load, and there is no conversion per work-group.
 *
 * Tiling. A work-group of 256 work-items (8 warps of 32) computes a 128 x 128 tile of y; warp w
 * owns the 64 x 32 piece at rows 64 (w / 4), columns 32 (w % 4): 4 x 4 fragments of 16 x 8, 64
 * fp32 accumulators per work-item (each fragment of A is used 4 times, of B 4 times). K goes in
 * steps of 16 through GM_STAGES stages of local memory, GM_STAGES - 1 steps ahead of the products:
 * one step's products on a whole H100 work-group last about 256 clock cycles, less than a load
 * from memory, so the two stages of the first version (one step ahead, x loaded into registers)
 * left the tensor cores waiting (111 TFLOP/s on prompts). Local rows are 24 halves (48 bytes)
 * apart: the 8 row addresses of one ldmatrix fall into 8 different groups of 4 banks and stay
 * 16-byte aligned, as ldmatrix and cp.async need. Each work-item copies one 16-byte piece of
 * each operand per step. Fragments come out of local memory by ldmatrix.x4: for A the a0..a3 of
 * one 16 x 16 fragment, for B the b0, b1 of two 8-column fragments (W stored row-major [N, K] is
 * exactly mma's .col operand: no transposition anywhere).
 *
 * Edges. Rows of x past M and of W past N are staged as zeros and their outputs never written;
 * K must be a multiple of 8 (the host checks), so every 16-byte piece of a row is wholly inside
 * or outside, and the tail of the last K step is zeros.
 *
 * RN_MMA_EMULATE (selftest only, any device) replaces ldmatrix + mma by the same fragment
 * ownership computed in fp32 from local memory (products of halves are exact in fp32), and
 * cp.async by plain copies, so that the staging, the pipeline's order, the tiling, the edges and
 * the epilogue are tested op by op where PTX cannot run.
 */
#if defined(RN_NV_MMA) || defined(RN_MMA_EMULATE)

#ifdef RN_WEIGHT_BF16
#define MMA_INSTR "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
/* fp32 to bf16 bits, rounding to nearest even; NaN stays NaN. */
inline uint mma_bf16(float f) {
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
#endif

/* Four fp32 values into four halves at dst (8-byte aligned), rounded to nearest even. */
inline void mma_store4(float4 v, __local uint *dst) {
#ifdef RN_WEIGHT_BF16
    dst[0] = mma_bf16(v.x) | (mma_bf16(v.y) << 16);
    dst[1] = mma_bf16(v.z) | (mma_bf16(v.w) << 16);
#else
    vstore_half4_rte(v, 0, (__local half *)dst);
#endif
}

#ifdef RN_MMA_EMULATE
/* Half i of a local array, widened. */
inline float mma_widen(__local const uint *base, int i) {
#ifdef RN_WEIGHT_BF16
    return as_float((base[i >> 1] >> (16 * (i & 1))) << 16);
#else
    return vload_half(i, (__local const half *)base);
#endif
}
#else
#ifndef MMA_INSTR
#define MMA_INSTR "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
#endif
inline uint mma_local_address(__local const uint *p) {
    return (uint)(size_t)p;
}
/* One m16n8k16 into the four accumulators cc[0..3] of this lane. */
#define MMA_SYNC(cc, a0, a1, a2, a3, b0, b1)                                                         \
    asm volatile(MMA_INSTR "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                     \
                 : "+f"((cc)[0]), "+f"((cc)[1]), "+f"((cc)[2]), "+f"((cc)[3])                          \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
#endif

/* dst[i] = src[i] rounded to the weights' half type (to nearest even), 4 per work-item: a
 * product's activations, once, as gemm_mma's operand. global (count / 4). */
__kernel void gemm_mma_operand(__global const float *src, __global uint *dst) {
    const size_t i = get_global_id(0);
    const float4 v = vload4(i, src);
#ifdef RN_WEIGHT_BF16
    dst[2 * i] = mma_bf16(v.x) | (mma_bf16(v.y) << 16);
    dst[2 * i + 1] = mma_bf16(v.z) | (mma_bf16(v.w) << 16);
#else
    vstore_half4_rte(v, i, (__global half *)dst);
#endif
}

#define GM_BK 16
#define GM_LD 24                        /* halves per local row */
#define GM_TILE (128 * GM_LD / 2)       /* uints per stage of one operand */
#ifndef GM_STAGES
#define GM_STAGES 4                     /* 48 KiB of local memory in all */
#endif

#ifdef RN_NV_MMA
#define GM_COPY(dst, src)                                                                 \
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(mma_local_address(dst)), \
                 "l"(src) : "memory")
#define GM_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
/* Wait until at most GM_STAGES - 2 groups of copies are in flight: the oldest step has landed. */
#define GM_STR2(n) #n
#define GM_STR(n) GM_STR2(n)
#define GM_WAIT_OLDEST() asm volatile("cp.async.wait_group " GM_STR(GM_PENDING) ";" ::: "memory")
#else
#define GM_COPY(dst, src) (*(__local uint4 *)(dst) = *(__global const uint4 *)(src))
#define GM_COMMIT()
#define GM_WAIT_OLDEST()
#endif
#if GM_STAGES == 2
#define GM_PENDING 0
#elif GM_STAGES == 3
#define GM_PENDING 1
#elif GM_STAGES == 4
#define GM_PENDING 2
#endif

/* One 16-byte piece of rows [r0, r0 + 128) of a [rows, K] half matrix, k [k0, k0 + 16), into
 * dst: row tid / 2, halves 8 (tid % 2); zeros past the rows or K. */
inline void gm_stage(__local uint *dst, __global const ushort *src, int r0, int rows, int K, int k0, int tid) {
    const int r = tid >> 1, col = k0 + 8 * (tid & 1);
    __local uint *to = dst + (r * GM_LD + 8 * (tid & 1)) / 2;
    if (r0 + r < rows && col < K)
        GM_COPY(to, src + (size_t)(r0 + r) * (size_t)K + (size_t)col);
    else
        *(__local uint4 *)to = (uint4)(0u);
}

__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void gemm_mma(__global const ushort *x, int M, int K, __global const ushort *w, ulong w_first, int N,
              __global float *y, int ldy, int col0, int accumulate, float alpha) {
    __local uint As[GM_STAGES * GM_TILE] __attribute__((aligned(16)));
    __local uint Bs[GM_STAGES * GM_TILE] __attribute__((aligned(16)));
    const int tid = (int)get_local_id(0), lane = tid & 31, warp = tid >> 5;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    /* Row tiles vary fastest (grid dimension 0): the work-groups running at once share few tiles of
     * W and all of x, so that W crosses from memory about once instead of once per row tile. */
    const int m0 = (int)get_group_id(0) * 128, n0 = (int)get_group_id(1) * 128;
    const int steps = (K + GM_BK - 1) / GM_BK;
    __global const ushort *wt = w + w_first;

    float c[4][4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++) c[i][j][e] = 0.0f;

    /* The first GM_STAGES - 1 steps in flight; one group of copies per step, empty past the
     * end, so that the count of groups in flight says which step has landed. */
    for (int s = 0; s < GM_STAGES - 1; s++) {
        if (s < steps) {
            gm_stage(As + s * GM_TILE, x, m0, M, K, s * GM_BK, tid);
            gm_stage(Bs + s * GM_TILE, wt, n0, N, K, s * GM_BK, tid);
        }
        GM_COMMIT();
    }

    for (int step = 0; step < steps; step++) {
        /* Step `step` has landed for every work-item, and every warp is done with step - 1,
         * whose stage the copies for step + GM_STAGES - 1 now overwrite. */
        GM_WAIT_OLDEST();
        barrier(CLK_LOCAL_MEM_FENCE);
        const int ahead = step + GM_STAGES - 1;
        if (ahead < steps) {
            const int s = ahead % GM_STAGES;
            gm_stage(As + s * GM_TILE, x, m0, M, K, ahead * GM_BK, tid);
            gm_stage(Bs + s * GM_TILE, wt, n0, N, K, ahead * GM_BK, tid);
        }
        GM_COMMIT();

        __local const uint *A = As + (step % GM_STAGES) * GM_TILE, *B = Bs + (step % GM_STAGES) * GM_TILE;
#ifdef RN_NV_MMA
        uint a[4][4], b[4][2];
        for (int i = 0; i < 4; i++) {
            const int row = wm + 16 * i + (lane & 15), col = 8 * (lane >> 4);
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                         : "=r"(a[i][0]), "=r"(a[i][1]), "=r"(a[i][2]), "=r"(a[i][3])
                         : "r"(mma_local_address(A + (row * GM_LD + col) / 2))
                         : "memory");
        }
        for (int j = 0; j < 2; j++) {
            const int n = wn + 16 * j + (lane & 7) + 8 * (lane >> 4), col = 8 * ((lane >> 3) & 1);
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                         : "=r"(b[2 * j][0]), "=r"(b[2 * j][1]), "=r"(b[2 * j + 1][0]), "=r"(b[2 * j + 1][1])
                         : "r"(mma_local_address(B + (n * GM_LD + col) / 2))
                         : "memory");
        }
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) MMA_SYNC(c[i][j], a[i][0], a[i][1], a[i][2], a[i][3], b[j][0], b[j][1]);
#else
        /* The fragments' owners, as mma.sync lays them out: lane = 4 g + t holds rows g and
         * g + 8, columns 2t and 2t + 1 of each 16 x 8 fragment of C. */
        const int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int e = 0; e < 4; e++) {
                    const int row = wm + 16 * i + g + 8 * (e >> 1), n = wn + 8 * j + 2 * t + (e & 1);
                    float sum = 0.0f;
                    for (int q = 0; q < GM_BK; q++)
                        sum += mma_widen(A, row * GM_LD + q) * mma_widen(B, n * GM_LD + q);
                    c[i][j][e] += sum;
                }
#endif
    }

    /* C fragment (i, j) element e: row g + 8 (e / 2), column 2t + e % 2: a work-item's two
     * elements of a row are neighbours, stored as one float2 where y's columns allow. The loops
     * must be unrolled: as loops, c[i][j] was indexed at run time and NVIDIA's compiler kept all
     * 64 accumulators in private memory (ptxas -v: a 256-byte stack frame; unrolled, prompts
     * run about 6 % faster on an H100, docs/BENCHMARKS.md). */
    const int g = lane >> 2, t = lane & 3;
    const bool pairs = ((col0 | ldy) & 1) == 0;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int row = m0 + wm + 16 * i + g + 8 * h, n = n0 + wn + 8 * j + 2 * t;
                if (row >= M || n >= N) continue;
                __global float *out = y + (size_t)row * (size_t)ldy + (size_t)(col0 + n);
                float2 v = (float2)(c[i][j][2 * h], c[i][j][2 * h + 1]);
                if (pairs && n + 1 < N) {
                    if (accumulate) v += alpha * vload2(0, out);
                    vstore2(v, 0, out);
                } else {
                    out[0] = accumulate ? alpha * out[0] + v.x : v.x;
                    if (n + 1 < N) out[1] = accumulate ? alpha * out[1] + v.y : v.y;
                }
            }
}

/*
 * gemm_mma_small: the same product for few rows of x (decoding batches, short prompts: M <= 64 per
 * work-group), where 128 x 128 tiles leave most of the device idle and the time goes into reading W
 * once. The default tile (host/ops.h, RN_MS_*, which builds may change): a work-group of 4 warps
 * owns 128 columns of y (32 per warp: four 8-column fragments; with
 * 64 columns every work-group staged x once for half as many weights, and decoding a 6.7B batch of
 * 32 on an H100 ran at 1,461 tokens/s against 1,605 now) and one slice [split * kper, +kper) of K
 * (split-K: grid dimension 1), so that even N = 2048 gives hundreds of work-groups; its partial
 * sums go to part[split][M][N] and gemm_mma_reduce adds the slices in order and applies the
 * epilogue (a residual of alpha 1 is added into y by atomic adds instead: that saved a launch of
 * 6-7 us at each out_proj and fc2 of a step, +7 % tokens/s at batch 8 and +4 % at batch 32 on an
 * H100, docs/BENCHMARKS.md). Each warp reads its W straight from global memory into registers, a
 * chunk of MS_KC columns of K at a time (16-byte loads, 8 rows x 64 contiguous bytes per warp load:
 * every weight byte is used by exactly one warp, so local memory would only add a copy), all of a
 * chunk's loads issued before any product. x (tiny) is rounded to half into local memory once per
 * chunk and shared by the warps.
 *
 * Fragments without ldmatrix. A dot product does not care in which order its k terms come, so
 * long as x and W agree: lane (g, t) loads W[n + g][k + 8t .. 8t + 7] as one uint4 {w0, w1, w2,
 * w3} and x's rows g and g + 8 at the same columns; then {w0, w1} are its b0, b1 and {x_g.s0,
 * x_g8.s0, x_g.s1, x_g8.s1} its a0..a3 for one m16n8k16 (physical k 2t, 2t + 1, 2t + 8, 2t + 9
 * standing for logical k 8t + 0..3), and w2, w3 with s2, s3 for the next (8t + 4..7). Local rows
 * of x are MS_LD halves (320 bytes, 64 mod 128) apart, so the uint4 reads of 8 lanes (rows g,
 * g + 1, t = 0..3) hit 8 different 16-byte bank groups.
 *
 * RN_MMA_EMULATE computes each m16n8k16 from the 32 lanes' registers exactly as PTX lays them
 * out (through local memory, between barriers), so the fragment assembly is tested too.
 */
/* The tile comes from the preamble (host/ops.h, RN_MS_*), so that the host's grid and slices
 * and the kernel cannot disagree. */
#define MS_WARPS 4
#define MS_NF RN_MS_NF                   /* 8-column fragments per warp */
#define MS_BN (MS_WARPS * MS_NF * 8)     /* columns per work-group */
#define MS_MF RN_MS_MF                   /* 16-row fragments per work-group */
#define MS_KC RN_MS_KC                   /* K per chunk held in registers */
#if RN_MS_XK                             /* x of the whole slice staged once, no barrier per chunk */
#define MS_LD (RN_MS_XK + 32)            /* halves per local row of x (64 mod 128 bytes) */
#else
#define MS_LD (MS_KC + 32)
#endif
#if MS_KC % 64 || RN_MS_XK % 64 || MS_MF * 16 * MS_LD * 2 > 49152
#error "gemm_mma_small's tile: chunks and slices of x a multiple of 64, x within 48 KiB of local memory"
#endif

#ifdef RN_MMA_EMULATE
/* One m16n8k16 of the warp whose 32 lanes' registers pass through E (6 uints a lane). Every
 * work-item of the group calls it the same number of times (its barriers). */
inline void ms_mma(float *c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1, __local uint *E, int lane) {
    __local uint *mine = E + 6 * lane;
    mine[0] = a0, mine[1] = a1, mine[2] = a2, mine[3] = a3, mine[4] = b0, mine[5] = b1;
    barrier(CLK_LOCAL_MEM_FENCE);
    const int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; e++) {
        const int r = g + 8 * (e >> 1), n = 2 * t + (e & 1);
        float sum = 0.0f;
        for (int k = 0; k < 16; k++) {
            /* A[r][k]: lane 4 (r % 8) + (k % 8) / 2, register a0 + (r >= 8) + 2 (k >= 8);
             * B[k][n]: lane 4 n + (k % 8) / 2, register b0 + (k >= 8); half k % 2 of each. */
            const int la = 4 * (r & 7) + ((k & 7) >> 1), ra = (r >> 3) + 2 * (k >> 3);
            const int lb = 4 * n + ((k & 7) >> 1), rb = 4 + (k >> 3);
            sum += mma_widen(E, 2 * (6 * la + ra) + (k & 1)) * mma_widen(E, 2 * (6 * lb + rb) + (k & 1));
        }
        c[e] += sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define MS_MMA(cc, a0, a1, a2, a3, b0, b1) ms_mma(cc, a0, a1, a2, a3, b0, b1, E, lane)
#else
#define MS_MMA MMA_SYNC
#endif

/* Four of x's values for staging: x[row][col .. col + 3], times the norm's weight where normalize
 * is 2; zeros where `inside` is false (past M or past the slice). */
inline float4 ms_x4(__global const float *x, int K, int row, int col, bool inside, int normalize,
                    __global const float *norm) {
    if (!inside) return (float4)(0.0f);
    const float4 v = vload4(0, x + (size_t)row * (size_t)K + (size_t)col);
    return normalize == 2 ? v * vload4(0, norm + col) : v;
}

/* global (ceil(N / MS_BN) * 128, splits, ceil(M / (16 MS_MF))), local (128, 1, 1); kper a multiple
 * of 32, at most RN_MS_XK where x is staged once.
 * add_into: each slice adds its sums straight into y ([M] rows y_ld apart, columns from y_col0) by
 * atomic adds instead of writing part: a residual y += x W^T, whose epilogue is only that sum,
 * then needs no gemm_mma_reduce launch.
 * normalize (1, or 2 with the weight `norm` [K]): the RMSNorm before the product, folded in as the
 * project kernel folds it: x is multiplied by `norm` as it is staged, and the work-groups of the
 * first column block write their slice's sums of squares of x, part[ss_first + split M + row],
 * from which gemm_mma_reduce scales each output row. (Each work-group summing the whole row
 * instead was slower than the norm's own launch, docs/BENCHMARKS.md.)
 * ahead: what the next launch reads first (the next product's weights, or after q/k/v/g the
 * step's states), of which the groups ask their shares of the first ahead_bytes into L2
 * (ask_ahead, common.cl). */
__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void gemm_mma_small(__global const float *x, int M, int K, __global const ushort *w, ulong w_first, int N,
                    int kper, __global float *part, int add_into, __global float *y, int y_ld, int y_col0,
                    int normalize, __global const float *norm, ulong ss_first, __global const uchar *ahead,
                    ulong ahead_bytes) {
    __local uint Xs[MS_MF * 16 * MS_LD / 2] __attribute__((aligned(16)));
#ifdef RN_MMA_EMULATE
    __local uint Eall[MS_WARPS * 32 * 6];
#endif
    const int tid = (int)get_local_id(0), lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
#ifdef RN_MMA_EMULATE
    __local uint *E = Eall + warp * 32 * 6;
#endif
    const int n0 = (int)get_group_id(0) * MS_BN + warp * (MS_NF * 8);
    const int split = (int)get_group_id(1), m0 = (int)get_group_id(2) * (MS_MF * 16);
    const int k_begin = split * kper, k_end = min(K, k_begin + kper);
    const int rows = min(MS_MF * 16, M - m0), mf = (rows + 15) / 16;
    __global const ushort *wt = w + w_first;
    ask_ahead(1, ahead, ahead_bytes);

    float c[MS_MF][MS_NF][4];
    for (int i = 0; i < MS_MF; i++)
        for (int j = 0; j < MS_NF; j++)
            for (int e = 0; e < 4; e++) c[i][j][e] = 0.0f;

#if RN_MS_XK
    {   /* x's rows [m0, m0 + 16 mf) over the slice, rounded up to whole steps of 32 (zeros past
         * M and past the slice), four loads in flight per work-item. */
        const int quads = ((k_end - k_begin + 31) / 32) * 8, total = mf * 16 * quads;
        for (int base = tid; base < total; base += 4 * MS_WARPS * 32) {
            float4 v[4];
            for (int u = 0; u < 4; u++) {
                const int i = base + u * MS_WARPS * 32, r = i / quads, col = k_begin + 4 * (i % quads);
                v[u] = ms_x4(x, K, m0 + r, col, i < total && r < rows && col < k_end, normalize, norm);
            }
            for (int u = 0; u < 4; u++) {
                const int i = base + u * MS_WARPS * 32;
                if (i < total) mma_store4(v[u], Xs + ((i / quads) * MS_LD + 4 * (i % quads)) / 2);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif
    for (int kc = k_begin; kc < k_end; kc += MS_KC) {
        /* This warp's W for the chunk, all loads in flight together. */
        uint4 wr[MS_NF][MS_KC / 32];
        for (int j = 0; j < MS_NF; j++)
            for (int s = 0; s < MS_KC / 32; s++) {
                const int n = n0 + 8 * j + g, col = kc + 32 * s + 8 * t;
                wr[j][s] = n < N && col < k_end ? *(__global const uint4 *)(wt + (size_t)n * (size_t)K + (size_t)col)
                                                : (uint4)(0u);
            }
#if RN_MS_XK
        const int xcol = kc - k_begin;
#else
        const int xcol = 0;
        /* x's rows [m0, m0 + 16 mf) for the chunk, as halves (zeros past M and past the slice). */
        for (int i = tid; i < mf * 16 * (MS_KC / 4); i += MS_WARPS * 32) {
            const int r = i / (MS_KC / 4), q = i % (MS_KC / 4), col = kc + 4 * q;
            mma_store4(ms_x4(x, K, m0 + r, col, r < rows && col < k_end, normalize, norm),
                       Xs + (r * MS_LD + 4 * q) / 2);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#endif
        const int steps = min(MS_KC / 32, (k_end - kc + 31) / 32);
        for (int s = 0; s < MS_KC / 32; s++) {
            if (s >= steps) break;  /* the same for the whole group */
            for (int i = 0; i < MS_MF; i++) {
                if (i >= mf) break;
                const uint4 lo = *(__local const uint4 *)(Xs + ((16 * i + g) * MS_LD + xcol + 32 * s + 8 * t) / 2);
                const uint4 hi = *(__local const uint4 *)(Xs + ((16 * i + g + 8) * MS_LD + xcol + 32 * s + 8 * t) / 2);
                for (int j = 0; j < MS_NF; j++) {
                    MS_MMA(c[i][j], lo.x, hi.x, lo.y, hi.y, wr[j][s].x, wr[j][s].y);
                    MS_MMA(c[i][j], lo.z, hi.z, lo.w, hi.w, wr[j][s].z, wr[j][s].w);
                }
            }
        }
#if !RN_MS_XK
        barrier(CLK_LOCAL_MEM_FENCE);  /* the next chunk overwrites Xs */
#endif
    }

    /* C fragment (i, j) element e: row 16 i + g + 8 (e / 2), column 8 j + 2t + e % 2. */
    __global float *out = part + (size_t)split * (size_t)M * (size_t)N;
    for (int i = 0; i < MS_MF; i++)
        for (int j = 0; j < MS_NF; j++)
            for (int e = 0; e < 4; e++) {
                const int row = m0 + 16 * i + g + 8 * (e >> 1), n = n0 + 8 * j + 2 * t + (e & 1);
                if (row >= M || n >= N) continue;
                if (add_into) add_to_global(y + (size_t)row * (size_t)y_ld + (size_t)(y_col0 + n), c[i][j][e]);
                else out[(size_t)row * (size_t)N + (size_t)n] = c[i][j][e];
            }

    if (normalize && get_group_id(0) == 0) {  /* the same for the whole group */
        /* The slice's sums of squares of x (fp32, before the norm's weight): warp w takes rows
         * w, w + 4, ..., its lanes every 128th column; the 32 lanes' shares of a row are added
         * in order by one work-item, through local memory ([rows][33]: Xs is free now). Last, so
         * that no work-item's accumulators live across these barriers (PoCL's stand-in wrote
         * outside the partial sums when they did). */
        barrier(CLK_LOCAL_MEM_FENCE);
        __local float *shares = (__local float *)Xs;
        for (int r = warp; r < rows; r += MS_WARPS) {
            float sum = 0.0f;
            for (int col = k_begin + 4 * lane; col < k_end; col += 128) {
                const float4 v = vload4(0, x + (size_t)(m0 + r) * (size_t)K + (size_t)col);
                sum += dot(v, v);
            }
            shares[r * 33 + lane] = sum;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (tid < rows) {
            float sum = 0.0f;
            for (int l = 0; l < 32; l++) sum += shares[tid * 33 + l];
            part[ss_first + (size_t)split * (size_t)M + (size_t)(m0 + tid)] = sum;
        }
    }
    ask_ahead(2, ahead, ahead_bytes);
}

/* The sum over the splits of gemm_mma_small's partial products, part[splits][M][N], with the
 * project kernel's epilogue (matvec.cl: plain into up to four outputs with q and k rotated,
 * residual, GLU), and with `normalize` the RMSNorm's scale of each row from the slices' sums of
 * squares at part[ss_first] (gemm_mma_small). One
 * work-item per output pair (GLU: per output) and input row: global (pairs, M). Here N is the
 * product's width: `held` (the rows [row0, row0 + held) of W it covered), or 2 `held` in GLU mode. */
__kernel void gemm_mma_reduce(__global const float *part, int splits, int M, int N, int rows, int mode, float alpha,
                              int activation, __global float *y0, __global float *y1, __global float *y2,
                              __global float *y3, int end0, int end1, int end2, int rotated, int q_rows,
                              __global const float *angle, int pos0, int pos_step, __global const int *positions,
                              int per_row, float k_scale, int half_split, int row0, int held, int normalize,
                              ulong ss_first, int K, float eps) {
    const int glu = mode == RN_PROJECT_GLU;
    const int block = row0 / (glu ? 1 : 2) + (int)get_global_id(0), row = (int)get_global_id(1);
    const int end = min(rows, row0 + held);  // the product covered output rows [row0, end)
    int out0, out1;
    const int pair = output_rows(block, rotated, glu, half_split, &out0, &out1);
    if (out0 >= end || row >= M) return;
    // Columns of the product: the piece's rows from row0, in GLU mode fc1's then the gate's.
    const int col0 = out0 - row0, col1 = glu ? held + col0 : out1 - row0;
    const bool second = glu || out1 < end;
    float v0 = 0.0f, v1 = 0.0f;
    for (int s = 0; s < splits; s++) {
        __global const float *p = part + ((size_t)s * (size_t)M + (size_t)row) * (size_t)N;
        v0 += p[col0];
        if (second) v1 += p[col1];
    }
    if (normalize) {  /* gemm_mma_small's folded RMSNorm: the row's sum of squares, slice by slice */
        float squares = 0.0f;
        for (int s = 0; s < splits; s++) squares += part[ss_first + (size_t)s * (size_t)M + (size_t)row];
        const float inv = rsqrt(squares / K + eps);
        v0 *= inv;
        v1 *= inv;
    }
    write_outputs(v0, v1, out0, out1, end, pair, (size_t)row, rows, mode, alpha, activation, y0, y1, y2, y3, end0,
                  end1, end2, q_rows, angle, pos0, pos_step, positions, per_row, k_scale);
}

/*
 * gemm_mma_batched: the products of a prompt's retention (host/ops.c, rn_op_retention_gemm), one
 * per (chunk, head) and work-group layer z: C = op(A) op(B) or C += op(A) op(B), op(A) [M, K],
 * op(B) [K, N], where both operands are fp32 activations (queries, keys, values, normalised
 * scores) rounded to half as they are staged (a product's operands are read by a few
 * work-groups only, so a rounded copy first would cost more than it saves). The tiling is
 * gemm_mma's, 128 x 128 tiles of 8 warps of 64 x 32, but K goes in steps of 32 through two
 * stages, the next step loaded into registers during the products and rounded after them.
 *
 * Layouts. An operand is either "row-major" (op(A) stored [M][K], op(B) stored [N][K], which is
 * mma's own .row/.col pair) or "k-major" (A stored [K][M], B stored [K][N]). Row-major operands
 * are staged [128 rows][40 halves] as in gemm_mma and read by ldmatrix; k-major ones are staged
 * as they lie, [32 k][136 halves] (272 bytes: the 8 row addresses of an ldmatrix fall into 8
 * different groups of 4 banks, 16-byte aligned), and read by ldmatrix.trans, which hands each
 * lane the same fragment elements as the row-major copy would. So the global reads are always
 * along a stored row, 16 bytes per work-item, whatever the layout.
 *
 * Batches. Work-group layer z is the product of chunk i = first + z / H and query head
 * h = z % H; operand X of it starts at x_base + i x_chunk + h' x_head (elements), h' = h for A
 * and C, h / group for B (grouped keys and values). A dimension given as 0 is that chunk's
 * length, min(window, n - i window): the last chunk of a prompt may be shorter.
 *
 * triangle: 1 computes only tiles with a column <= some row (the scores: what lies above the
 * diagonal is masked by retention_scores, which never reads it); 2 ends K at the tile's last row
 * (A is lower triangular: the masked scores times the values).
 *
 * b_bound_at >= 0: B's entries are at most b_bound[b_bound_at + chunk * H + h] in magnitude, beyond
 * half's range perhaps (the states entering the chunks grow with the context): B is staged times
 * 2^-e, 2^e the power of two at or above that bound, and the product multiplied by 2^e, so that
 * every staged entry is at most 1. A power of two scales exactly: the staged entries round to half
 * as B's own would (dividing by the bound rounded twice, and OpenCL lets 1 / bound be 2.5 ulp off:
 * on an H100 a bf16 check failed so, docs/BENCHMARKS.md).
 * global (ceil(N / 128) * 256, ceil(M / 128), batches), local (256, 1, 1).
 */
#define MMA_BM 128
#define MMA_BN 128
#define MMA_BK 32
#define MMA_LD 40   /* halves per local row of a row-major operand */
#define MMA_STAGE (MMA_BM * MMA_LD / 2)  /* uints per stage of one operand (BM == BN) */
#define MB_LDT 136  /* halves per local row of a k-major operand */

/* Up to four floats at p (valid of them; zeros after). */
inline float4 mb_load4(__global const float *p, int valid) {
    if (valid >= 4) return vload4(0, p);
    float4 v = (float4)(0.0f);
    if (valid > 0) v.x = p[0];
    if (valid > 1) v.y = p[1];
    if (valid > 2) v.z = p[2];
    return v;
}

/* This work-item's share of one step of an operand: rows [r0, r0 + 128) of op(X) (`rows` of
 * them), k [k0, k0 + 32) of K. Row-major: pieces i = tid + 256 j of 4 floats at row i / 8,
 * k 4 (i % 8); k-major: at k i / 32, row 4 (i % 32). */
inline void mb_load(float4 *reg, __global const float *x, int ld, int kmajor, int r0, int rows, int k0, int K,
                    int tid) {
    for (int j = 0; j < 4; j++) {
        const int i = tid + 256 * j;
        if (!kmajor) {
            const int r = r0 + (i >> 3), k = k0 + 4 * (i & 7);
            reg[j] = mb_load4(x + (size_t)r * (size_t)ld + (size_t)k, r < rows ? clamp(K - k, 0, 4) : 0);
        } else {
            const int k = k0 + (i >> 5), r = r0 + 4 * (i & 31);
            reg[j] = mb_load4(x + (size_t)k * (size_t)ld + (size_t)r, k < K ? clamp(rows - r, 0, 4) : 0);
        }
    }
}

inline void mb_store(const float4 *reg, __local uint *stage, int kmajor, int tid) {
    for (int j = 0; j < 4; j++) {
        const int i = tid + 256 * j;
        if (!kmajor) mma_store4(reg[j], stage + ((i >> 3) * MMA_LD + 4 * (i & 7)) / 2);
        else mma_store4(reg[j], stage + ((i >> 5) * MB_LDT + 4 * (i & 31)) / 2);
    }
}

__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void gemm_mma_batched(__global const float *a, ulong a_base, ulong a_chunk, ulong a_head, int lda, int a_kmajor,
                      __global const float *b, ulong b_base, ulong b_chunk, ulong b_head, int ldb, int b_kmajor,
                      int group, __global float *c, ulong c_base, ulong c_chunk, ulong c_head, int ldc, int M_in,
                      int N_in, int K_in, int first, int H, int n, int window, int accumulate, int triangle,
                      __global const float *b_bound, int b_bound_at) {
    __local uint As[2 * MMA_STAGE] __attribute__((aligned(16)));
    __local uint Bs[2 * MMA_STAGE] __attribute__((aligned(16)));
    const int tid = (int)get_local_id(0), lane = tid & 31, warp = tid >> 5;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    const int m0 = (int)get_group_id(1) * MMA_BM, n0 = (int)get_group_id(0) * MMA_BN;
    const int z = (int)get_group_id(2), chunk = first + z / H, h = z % H;
    const int len = min(window, n - chunk * window);
    const int M = M_in ? M_in : len, N = N_in ? N_in : len;
    const int K = triangle == 2 ? min(K_in ? K_in : len, m0 + MMA_BM) : K_in ? K_in : len;
    /* Uniform per group: a tile wholly outside, or (triangle 1) above the diagonal. */
    if (m0 >= M || n0 >= N || (triangle == 1 && n0 > m0 + MMA_BM - 1)) return;
    a += a_base + (ulong)chunk * a_chunk + (ulong)h * a_head;
    b += b_base + (ulong)chunk * b_chunk + (ulong)(h / group) * b_head;
    c += c_base + (ulong)chunk * c_chunk + (ulong)h * c_head;
    const int steps = (K + MMA_BK - 1) / MMA_BK;
    const float bound = b_bound_at >= 0 ? b_bound[b_bound_at + chunk * H + h] : 0.0f;
    int bound_exp = 0;
    if (bound > 0.0f) frexp(bound, &bound_exp);
    const float b_in = ldexp(1.0f, -bound_exp), b_out = ldexp(1.0f, bound_exp);

    float acc[4][4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    float4 ra[4], rb[4];
    mb_load(ra, a, lda, a_kmajor, m0, M, 0, K, tid);
    mb_load(rb, b, ldb, b_kmajor, n0, N, 0, K, tid);
    for (int j = 0; j < 4; j++) rb[j] *= b_in;
    mb_store(ra, As, a_kmajor, tid);
    mb_store(rb, Bs, b_kmajor, tid);
    barrier(CLK_LOCAL_MEM_FENCE);

    for (int step = 0; step < steps; step++) {
        const int s = step & 1;
        const bool more = step + 1 < steps;
        if (more) {
            mb_load(ra, a, lda, a_kmajor, m0, M, (step + 1) * MMA_BK, K, tid);
            mb_load(rb, b, ldb, b_kmajor, n0, N, (step + 1) * MMA_BK, K, tid);
            for (int j = 0; j < 4; j++) rb[j] *= b_in;
        }
        __local const uint *A = As + s * MMA_STAGE, *B = Bs + s * MMA_STAGE;
        for (int kk = 0; kk < MMA_BK; kk += 16) {
#ifdef RN_NV_MMA
            uint fa[4][4], fb[4][2];
            const int q = lane >> 3, r = lane & 7;
            for (int i = 0; i < 4; i++) {
                if (!a_kmajor) {
                    const int row = wm + 16 * i + (lane & 15), col = kk + 8 * (lane >> 4);
                    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                                 : "=r"(fa[i][0]), "=r"(fa[i][1]), "=r"(fa[i][2]), "=r"(fa[i][3])
                                 : "r"(mma_local_address(A + (row * MMA_LD + col) / 2))
                                 : "memory");
                } else {  /* block q: rows 8 (q % 2) of the fragment, k 8 (q / 2) */
                    const int k = kk + 8 * (q >> 1) + r, m = wm + 16 * i + 8 * (q & 1);
                    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                                 : "=r"(fa[i][0]), "=r"(fa[i][1]), "=r"(fa[i][2]), "=r"(fa[i][3])
                                 : "r"(mma_local_address(A + (k * MB_LDT + m) / 2))
                                 : "memory");
                }
            }
            for (int j = 0; j < 2; j++) {
                if (!b_kmajor) {
                    const int col_n = wn + 16 * j + (lane & 7) + 8 * (lane >> 4), col = kk + 8 * ((lane >> 3) & 1);
                    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                                 : "=r"(fb[2 * j][0]), "=r"(fb[2 * j][1]), "=r"(fb[2 * j + 1][0]), "=r"(fb[2 * j + 1][1])
                                 : "r"(mma_local_address(B + (col_n * MMA_LD + col) / 2))
                                 : "memory");
                } else {  /* block q: columns 8 (q / 2), k 8 (q % 2) */
                    const int k = kk + 8 * (q & 1) + r, col_n = wn + 16 * j + 8 * (q >> 1);
                    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                                 : "=r"(fb[2 * j][0]), "=r"(fb[2 * j][1]), "=r"(fb[2 * j + 1][0]), "=r"(fb[2 * j + 1][1])
                                 : "r"(mma_local_address(B + (k * MB_LDT + col_n) / 2))
                                 : "memory");
                }
            }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    MMA_SYNC(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1]);
#else
            const int g = lane >> 2, t = lane & 3;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    for (int e = 0; e < 4; e++) {
                        const int row = wm + 16 * i + g + 8 * (e >> 1), col_n = wn + 8 * j + 2 * t + (e & 1);
                        float sum = 0.0f;
                        for (int p = 0; p < 16; p++) {
                            const int k = kk + p;
                            sum += mma_widen(A, a_kmajor ? k * MB_LDT + row : row * MMA_LD + k) *
                                   mma_widen(B, b_kmajor ? k * MB_LDT + col_n : col_n * MMA_LD + k);
                        }
                        acc[i][j][e] += sum;
                    }
#endif
        }
        if (more) {
            mb_store(ra, As + (s ^ 1) * MMA_STAGE, a_kmajor, tid);
            mb_store(rb, Bs + (s ^ 1) * MMA_STAGE, b_kmajor, tid);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++) {
                const int row = m0 + wm + 16 * i + g + 8 * (e >> 1), col_n = n0 + wn + 8 * j + 2 * t + (e & 1);
                if (row < M && col_n < N) {
                    __global float *out = c + (size_t)row * (size_t)ldc + (size_t)col_n;
                    const float v = b_out * acc[i][j][e];
                    *out = accumulate ? *out + v : v;
                }
            }
}

#endif /* RN_NV_MMA || RN_MMA_EMULATE */
