// matvec.cl: y = W x for decoding, where a GEMM with one row wastes most of its tiles (on
// PoCL CLBlast's SGEMM with M = 1 is 20-30x slower than this).
//
// One work-group per output row; its work-items stride along the row so that neighbouring
// items read neighbouring weights (coalesced), then reduce in local memory.
// global (RN_WG * rows). W [rows, cols], x [cols], y [rows].

__kernel void matvec(__global const weight_t *W, __global const float *x, __global float *y,
                     int cols) {
    __local float scratch[RN_WG];
    const int lid = get_local_id(0);
    const size_t row = get_group_id(0);
    __global const weight_t *w = W + row * cols;
    float sum = 0.0f;
    for (int c = lid; c < cols; c += RN_WG) sum += LOAD_WEIGHT(w, c) * x[c];
    sum = group_sum(sum, scratch);
    if (lid == 0) y[row] = sum;
}

// dst = widen(src) over `count` elements: a stored weight matrix as the fp32 operand CLBlast's
// SGEMM needs (prefill), done once per matrix and pass, not per product.
__kernel void widen(__global const weight_t *src, __global float *dst) {
    const size_t i = get_global_id(0);
    dst[i] = LOAD_WEIGHT(src, i);
}
