// norms.cl: RMSNorm and the per-head group norm with its swish gate.
//
// Both reduce a row in local memory with RN_WG work-items (group_sum, common.cl); every
// work-item strides over the row, so any row length works.

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w. One work-group per row: global (RN_WG * rows).
// `has_weight` is 0 for the weightless form. x and y may be the same buffer.
__kernel void rms_norm(__global const float *x,   // [rows, dim]
                       __global const float *w,   // [dim]
                       __global float *y,         // [rows, dim]
                       int dim, float eps, int has_weight) {
    __local float scratch[RN_WG];
    const int lid = get_local_id(0);
    const size_t row = (size_t)get_group_id(0) * dim;
    float sum_sq = 0.0f;
    for (int i = lid; i < dim; i += RN_WG) sum_sq += x[row + i] * x[row + i];
    const float inv = rsqrt(group_sum(sum_sq, scratch) / dim + eps);
    for (int i = lid; i < dim; i += RN_WG) {
        const float v = x[row + i] * inv;
        y[row + i] = has_weight ? v * w[i] : v;
    }
}

// y = gate(g) * w * o / sqrt(mean(o^2) + eps) per (token, head) over the head's dv values.
// torchscale's group norm is RMSNorm without weight (has_weight 0); fla's has a [dv] weight
// shared by the heads. The gate is silu(g), or 1 without an output gate (has_gate 0).
// One work-group per (token, head): global (RN_WG * n * H). o, g, y: [n, H * dv]; y may be o.
__kernel void group_norm_gate(__global const float *o, __global const float *g,
                              __global const float *w, __global float *y, float eps,
                              int has_weight, int has_gate) {
    __local float scratch[RN_WG];
    head_norm_gate(o, g, w, y, (size_t)get_group_id(0) * RN_DV, eps, has_weight, has_gate, scratch);
}
