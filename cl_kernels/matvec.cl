// matvec.cl: the projections of decoding (one to a few rows of input), where a GEMM wastes most
// of its tiles and where the time goes into reading the weights once.
//
// project: y = W x for n input rows, with the neighbouring work folded in so that a decoded
// token needs few launches and the activations make no extra round trips through memory:
//   - an RMSNorm of x before the product (normalize 1: no weight, 2: with `norm`): the sum of
//     squares comes from the same loads, and W (x w / r) = (W (x w)) / r;
//   - mode RN_PROJECT_RESIDUAL: y = alpha y + W x (y is the residual stream);
//   - mode RN_PROJECT_GLU: W holds fc1's `rows` rows and then the gate's; y = act(fc1 x) * gate x;
//   - mode RN_PROJECT_PLAIN: rows [0, end0) go to y0, [end0, end1) to y1, [end1, end2) to y2 and
//     [end2, rows) to y3, each densely as [n, its width] (q, k, v and g from one stacked matrix);
//     with `rotated` > 0 the first `rotated` rows (q then k, whole heads of RN_DK) leave rotated
//     to position pos0 + b * pos_step (input row b), or positions[b] when `per_row` is set (a
//     batch of independent sequences), as theta_shift (rotation.cl) would leave them, the rows
//     past `q_rows` (k) scaled by k_scale first.
//
// One work-group owns two weight rows: two outputs, or in GLU mode one output's fc1 and gate
// rows. In the rotated rows the two are a rotation pair: (2i, 2i+1), or with half_split
// (i, i + RN_DK/2). Its work-items stride along the rows eight columns at a time, so each load
// is one 16-byte (half types) read and neighbouring items read neighbouring bytes. The input
// rows are taken RN_MV_LANES at a time: every weight load serves that many rows, and a larger
// batch re-reads the group's two rows from cache, not from memory. The partial sums of all rows
// and lanes are then reduced together in local memory, one barrier per halving. (Two rows per
// group measured fastest on an H200: four gave 537 tokens/s, eight 380, against 572.)
// A matrix too large for one buffer of the device is held in pieces of whole rows (host/matrix.h):
// one launch per piece, W holding output rows [row0, row0 + held), rows the whole output's.
// ahead: what the next launch reads first (the next product's weights, or after q/k/v/g the
// step's states), of which the groups ask their shares of the first ahead_bytes into L2
// (ask_ahead, common.cl).
// global (RN_WG * groups), local RN_WG. W [held (x2 for GLU), cols] of wtotal elements; x [n, cols].

#define RN_MV_ROWS 2
#define RN_MV_LANES 4
#define RN_MV_SUMS (RN_MV_ROWS + 1)  // per lane: the rows' products, then the sum of squares

// Quantized weights, one input row: each step is one group of eight columns of both rows, its
// scales applied once to each row's dot product (not to the eight weights). The column loop is
// unrolled RN_MV_UNROLL (1, 2 or 4) times, so that each work-item has that many independent
// loads of each row in flight (the loads of a quantized group are only 8 or 4 bytes); 2
// measured fastest on an H100 (6.7B Q4_0: 239 tokens/s, against 223 with 4 and 231 with 1).
// Results differ from the plain loop only by reassociation.
#ifndef RN_MV_UNROLL
#define RN_MV_UNROLL 2
#endif
#define QUANT_STEP(col)                                                                          \
    do {                                                                                         \
        const int c_ = (col);                                                                    \
        const float8 xv_ = ((__global const float8 *)xb)[c_];                                   \
        acc[0][RN_MV_ROWS] += dot8(xv_, xv_);                                                    \
        const float8 xs_ = normalize == 2 ? xv_ * ((__global const float8 *)norm)[c_] : xv_;    \
        for (int j_ = 0; j_ < RN_MV_ROWS; j_++)                                                  \
            acc[0][j_] += q_scale(W, wtotal, (w8[j_] + c_) >> 2) * dot8(q_codes8(W, w8[j_] + c_), xs_); \
    } while (0)
// RN_PROJECT_* (the modes) come from the preamble, written by host/ops.c from its C enum.


__kernel void project(__global const weight_t *W, ulong wtotal, int rows, int cols, __global const float *x, int n,
                      __global const float *norm, int normalize, float eps, int mode, float alpha,
                      int activation, __global float *y0, __global float *y1, __global float *y2,
                      __global float *y3, int end0, int end1, int end2, int rotated, int q_rows,
                      __global const float *angle, int pos0, int pos_step,
                      __global const int *positions, int per_row, float k_scale, int half_split, int row0,
                      int held, __global const uchar *ahead, ulong ahead_bytes) {
    __local float sums[RN_MV_SUMS * RN_MV_LANES * RN_WG];
    const int lid = get_local_id(0);
    ask_ahead(1, ahead, ahead_bytes);
    const int glu = mode == RN_PROJECT_GLU;
    const int outs = glu ? 1 : 2;
    const int end = min(rows, row0 + held);  // the output rows this piece of W gives
    const int block = row0 / outs + get_group_id(0);
    int row_of[2];  // the output row of each of the group's two rows
    const int pair = output_rows(block, rotated, glu, half_split, &row_of[0], &row_of[1]);
    // A row past the end reads the last row (no branch in the loop) and is never written. Rows
    // are element offsets into W (a quantized row is no whole number of weight_t); W holds the
    // output rows [row0, row0 + held), in GLU mode those of fc1 and then the same of the gate.
    size_t w[RN_MV_ROWS];
    for (int j = 0; j < RN_MV_ROWS; j++) {
        const int out = min(row_of[j], end - 1) - row0;
        w[j] = (size_t)(glu && j == 1 ? held + out : out) * cols;
    }
    // Groups of eight need rows that start 16-byte aligned: columns a multiple of eight.
    // Other widths (small test shapes) take the scalar loop for every column.
    const int vectors = cols % 8 == 0 ? cols / 8 : 0;
    size_t w8[RN_MV_ROWS];  // the rows in groups of eight
    for (int j = 0; j < RN_MV_ROWS; j++) w8[j] = w[j] / 8;

    for (int b0 = 0; b0 < n; b0 += RN_MV_LANES) {
        const int lanes = min(RN_MV_LANES, n - b0);
        __global const float *xb = x + (size_t)b0 * cols;
        float acc[RN_MV_LANES][RN_MV_SUMS];  // [lane][row], the last "row" the sum of squares
        for (int b = 0; b < RN_MV_LANES; b++)
            for (int j = 0; j < RN_MV_SUMS; j++) acc[b][j] = 0.0f;
#ifdef WEIGHT_QUANTIZED
        if (lanes == 1) {  // decoding one sequence, quantized: QUANT_STEP below
            int c = lid;
            for (; c + (RN_MV_UNROLL - 1) * RN_WG < vectors; c += RN_MV_UNROLL * RN_WG) {
                QUANT_STEP(c);
#if RN_MV_UNROLL > 1
                QUANT_STEP(c + RN_WG);
#endif
#if RN_MV_UNROLL > 2
                QUANT_STEP(c + 2 * RN_WG);
                QUANT_STEP(c + 3 * RN_WG);
#endif
            }
            for (; c < vectors; c += RN_WG) QUANT_STEP(c);
        }
#else
        if (lanes == 1) {  // decoding one sequence: the common case, kept free of lane checks
            for (int c = lid; c < vectors; c += RN_WG) {
                const float8 xv = ((__global const float8 *)xb)[c];
                const float8 xs = normalize == 2 ? xv * ((__global const float8 *)norm)[c] : xv;
                acc[0][RN_MV_ROWS] += dot8(xv, xv);
                for (int j = 0; j < RN_MV_ROWS; j++) acc[0][j] += dot8(LOAD_WEIGHT8(W, wtotal, w8[j] + c), xs);
            }
        }
#endif
        else {
            for (int c = lid; c < vectors; c += RN_WG) {
                const float8 scale = normalize == 2 ? ((__global const float8 *)norm)[c] : (float8)(1.0f);
                float8 wv[RN_MV_ROWS];
                for (int j = 0; j < RN_MV_ROWS; j++) wv[j] = LOAD_WEIGHT8(W, wtotal, w8[j] + c);
                for (int b = 0; b < RN_MV_LANES; b++) {
                    if (b < lanes) {
                        const float8 xv = ((__global const float8 *)(xb + (size_t)b * cols))[c];
                        acc[b][RN_MV_ROWS] += dot8(xv, xv);
                        const float8 xs = xv * scale;
                        for (int j = 0; j < RN_MV_ROWS; j++) acc[b][j] += dot8(wv[j], xs);
                    }
                }
            }
        }
        for (int c = vectors * 8 + lid; c < cols; c += RN_WG) {  // columns not taken eight at a time
            const float s = normalize == 2 ? norm[c] : 1.0f;
            for (int b = 0; b < RN_MV_LANES; b++) {
                if (b < lanes) {
                    const float xv = xb[(size_t)b * cols + c];
                    acc[b][RN_MV_ROWS] += xv * xv;
                    for (int j = 0; j < RN_MV_ROWS; j++) acc[b][j] += LOAD_WEIGHT(W, wtotal, w[j] + c) * xv * s;
                }
            }
        }

        // Reduce the lanes in use, all their sums at once, into sums[v * RN_WG] for sum v.
        const int used = lanes * RN_MV_SUMS;
#ifdef RN_WARP_SUMS
#if RN_MV_LANES * RN_MV_SUMS > RN_WG
#error "project's warp sums take one work-item per sum"
#endif
        // Each warp's sums by shuffles, then one work-item per sum adds the warps' in order: two
        // barriers instead of one per halving (+5 % at batch 1 of 1.3B and 6.7B on the H100, where
        // each group's closing reduction is a large part of its short life; docs/BENCHMARKS.md).
        for (int b = 0; b < RN_MV_LANES; b++)
            if (b < lanes)
                for (int j = 0; j < RN_MV_SUMS; j++)
                    store_warp_sum(acc[b][j], sums + (b * RN_MV_SUMS + j) * RN_WG, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < used) sums[lid * RN_WG] = add_warp_totals(sums + lid * RN_WG);
        barrier(CLK_LOCAL_MEM_FENCE);
#else
        for (int b = 0; b < RN_MV_LANES; b++)
            if (b < lanes)
                for (int j = 0; j < RN_MV_SUMS; j++) sums[(b * RN_MV_SUMS + j) * RN_WG + lid] = acc[b][j];
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int stride = RN_WG / 2; stride > 0; stride >>= 1) {
            if (lid < stride)
                for (int v = 0; v < used; v++) sums[v * RN_WG + lid] += sums[v * RN_WG + lid + stride];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
#endif

        // Work-item b writes lane b's outputs.
        for (int b = lid; b < lanes; b += RN_WG) {
            const size_t row = b0 + b;
            const float inv = normalize ? rsqrt(sums[(b * RN_MV_SUMS + RN_MV_ROWS) * RN_WG] / cols + eps) : 1.0f;
            const float v0 = sums[(b * RN_MV_SUMS) * RN_WG] * inv, v1 = sums[(b * RN_MV_SUMS + 1) * RN_WG] * inv;
            if (row_of[0] < end)
                write_outputs(v0, v1, row_of[0], row_of[1], end, pair, row, rows, mode, alpha, activation, y0, y1,
                              y2, y3, end0, end1, end2, q_rows, angle, pos0, pos_step, positions, per_row, k_scale);
        }
        barrier(CLK_LOCAL_MEM_FENCE);  // the next lanes reuse `sums`
    }
    ask_ahead(2, ahead, ahead_bytes);
}
