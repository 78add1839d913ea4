/*
 * gemm_mma.cl: y[M, N] = x[M, K] W[N, K]^T (or y = alpha y + x W^T) on a matrix engine:
 * NVIDIA's mma.sync.m16n8k16 through inline PTX, fp16 or bf16 inputs (the weights' stored type),
 * fp32 accumulation. Built only where the preamble defines RN_NV_MMA (NVIDIA compute
 * capability 8.0+, a precision that allows it, F16 or BF16 weights: host/ops.c) or, for the
 * selftest, RN_MMA_EMULATE; anywhere else this file is empty.
 *
 * Tiling. A work-group of 256 work-items (8 warps of 32) computes a 128 x 128 tile of y; warp w
 * owns the 64 x 32 piece at rows 64 (w / 4), columns 32 (w % 4): 4 x 4 fragments of 16 x 8, 64
 * fp32 accumulators per work-item, which is what keeps the tensor cores fed from local memory
 * (each fragment of A is used 4 times, of B 4 times). K goes in steps of 32 through two stages
 * of local memory: while the warps multiply stage s, the next step's W tile (half precision, as
 * stored) is copied into stage s ^ 1 by cp.async, and its x tile (fp32) is loaded into
 * registers, rounded to half once and stored into stage s ^ 1 after the products. Local rows
 * are 40 halves (80 bytes) apart rather than 32: the 8 row addresses of one ldmatrix then fall
 * into 8 different groups of 4 banks (no bank conflicts) and stay 16-byte aligned, as ldmatrix
 * and cp.async need. Fragments come out of local memory by ldmatrix.x4, four 8 x 8 blocks: for
 * A the a0..a3 of one 16 x 16 fragment, for B the b0, b1 of two 8-column fragments (W stored
 * row-major [N, K] is exactly mma's .col operand: no transposition anywhere).
 *
 * Edges. Rows of x past M and of W past N are staged as zeros and their outputs never written;
 * K must be a multiple of 8 (the host checks), so every 16-byte piece of a row is wholly inside
 * or outside, and the tail of the last K step is zeros.
 *
 * RN_MMA_EMULATE (selftest only, any device) replaces ldmatrix + mma by the same fragment
 * ownership computed in fp32 from local memory (products of halves are exact in fp32), so that
 * the staging, the tiling, the edges and the epilogue are tested op by op where PTX cannot run.
 */
#if defined(RN_NV_MMA) || defined(RN_MMA_EMULATE)

#define MMA_BM 128
#define MMA_BN 128
#define MMA_BK 32
#define MMA_LD 40  /* halves per local row */
#define MMA_STAGE (MMA_BM * MMA_LD / 2)  /* uints per stage of one operand (BM == BN) */

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
#endif

__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void gemm_mma(__global const float *x, int M, int K, __global const ushort *w, ulong w_first, int N,
              __global float *y, int ldy, int col0, int accumulate, float alpha) {
    __local uint As[2 * MMA_STAGE] __attribute__((aligned(16)));
    __local uint Bs[2 * MMA_STAGE] __attribute__((aligned(16)));
    const int tid = (int)get_local_id(0), lane = tid & 31, warp = tid >> 5;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    const int m0 = (int)get_group_id(1) * MMA_BM, n0 = (int)get_group_id(0) * MMA_BN;
    const int steps = (K + MMA_BK - 1) / MMA_BK;
    __global const ushort *wt = w + w_first;

    float c[4][4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++) c[i][j][e] = 0.0f;

    /* This work-item's share of a step: x pieces i = tid + 256 j (j < 4) of 4 floats, row i / 8,
     * column 4 (i % 8); W pieces i = tid + 256 j (j < 2) of 8 halves, row i / 4, column 8 (i % 4). */
    float4 xa[4];
#define MMA_LOAD_X(k0)                                                                    \
    for (int j = 0; j < 4; j++) {                                                         \
        const int i = tid + 256 * j, r = m0 + (i >> 3), col = (k0) + 4 * (i & 7);         \
        xa[j] = r < M && col < K ? vload4(0, x + (size_t)r * (size_t)K + (size_t)col) : (float4)(0.0f); \
    }
#define MMA_STORE_X(s)                                                                    \
    for (int j = 0; j < 4; j++) {                                                         \
        const int i = tid + 256 * j;                                                      \
        mma_store4(xa[j], As + (s) * MMA_STAGE + ((i >> 3) * MMA_LD + 4 * (i & 7)) / 2);  \
    }

    /* W's pieces for the step at k0 into stage s: cp.async where the PTX runs. */
#ifdef RN_NV_MMA
#define MMA_COPY(dst, src)                                                                \
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" ::"r"(mma_local_address(dst)), \
                 "l"(src) : "memory")
#else
#define MMA_COPY(dst, src) (*(__local uint4 *)(dst) = vload4(0, (__global const uint *)(src)))
#endif
#define MMA_STAGE_W(s, k0)                                                                \
    for (int j = 0; j < 2; j++) {                                                         \
        const int i = tid + 256 * j, r = i >> 2, col = (k0) + 8 * (i & 3);                 \
        __local uint *dst = Bs + (s) * MMA_STAGE + (r * MMA_LD + 8 * (i & 3)) / 2;          \
        if (n0 + r < N && col < K)                                                        \
            MMA_COPY(dst, wt + (size_t)(n0 + r) * (size_t)K + (size_t)col);                \
        else                                                                              \
            *(__local uint4 *)dst = (uint4)(0u);                                          \
    }
#ifdef RN_NV_MMA
#define MMA_WAIT() asm volatile("cp.async.wait_all;" ::: "memory")
#else
#define MMA_WAIT()
#endif

    MMA_STAGE_W(0, 0);
    MMA_LOAD_X(0);
    MMA_STORE_X(0);
    MMA_WAIT();
    barrier(CLK_LOCAL_MEM_FENCE);

    for (int step = 0; step < steps; step++) {
        const int s = step & 1;
        const bool more = step + 1 < steps;
        if (more) {
            MMA_STAGE_W(s ^ 1, (step + 1) * MMA_BK);
            MMA_LOAD_X((step + 1) * MMA_BK);
        }
        __local const uint *A = As + s * MMA_STAGE, *B = Bs + s * MMA_STAGE;
        for (int kk = 0; kk < MMA_BK; kk += 16) {
#ifdef RN_NV_MMA
            uint a[4][4], b[4][2];
            for (int i = 0; i < 4; i++) {
                const int row = wm + 16 * i + (lane & 15), col = kk + 8 * (lane >> 4);
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(a[i][0]), "=r"(a[i][1]), "=r"(a[i][2]), "=r"(a[i][3])
                             : "r"(mma_local_address(A + (row * MMA_LD + col) / 2))
                             : "memory");
            }
            for (int j = 0; j < 2; j++) {
                const int n = wn + 16 * j + (lane & 7) + 8 * (lane >> 4), col = kk + 8 * ((lane >> 3) & 1);
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(b[2 * j][0]), "=r"(b[2 * j][1]), "=r"(b[2 * j + 1][0]), "=r"(b[2 * j + 1][1])
                             : "r"(mma_local_address(B + (n * MMA_LD + col) / 2))
                             : "memory");
            }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    asm volatile(MMA_INSTR "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                                 : "+f"(c[i][j][0]), "+f"(c[i][j][1]), "+f"(c[i][j][2]), "+f"(c[i][j][3])
                                 : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]),
                                   "r"(b[j][1]));
#else
            /* The fragments' owners, as mma.sync lays them out: lane = 4 g + t holds rows g and
             * g + 8, columns 2t and 2t + 1 of each 16 x 8 fragment of C. */
            const int g = lane >> 2, t = lane & 3;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    for (int e = 0; e < 4; e++) {
                        const int row = wm + 16 * i + g + 8 * (e >> 1), n = wn + 8 * j + 2 * t + (e & 1);
                        float sum = 0.0f;
                        for (int q = 0; q < 16; q++)
                            sum += mma_widen(A, row * MMA_LD + kk + q) * mma_widen(B, n * MMA_LD + kk + q);
                        c[i][j][e] += sum;
                    }
#endif
        }
        if (more) MMA_STORE_X(s ^ 1);
        MMA_WAIT();
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    /* C fragment (i, j) element e: row g + 8 (e / 2), column 2t + e % 2. */
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 4; e++) {
                const int row = m0 + wm + 16 * i + g + 8 * (e >> 1), n = n0 + wn + 8 * j + 2 * t + (e & 1);
                if (row < M && n < N) {
                    __global float *out = y + (size_t)row * (size_t)ldy + (size_t)(col0 + n);
                    *out = accumulate ? alpha * *out + c[i][j][e] : c[i][j][e];
                }
            }
}

#endif /* RN_NV_MMA || RN_MMA_EMULATE */
