// norms.cl: RMSNorm and the per-head group norm with its swish gate.
//
// Both reduce a row in local memory with RN_WG work-items (group_sum, common.cl); every
// work-item strides over the row, so any row length works.

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w. One work-group per row: global (RN_WG * rows).
// `has_weight` is 0 for the weightless form. x and y may be the same buffer.
//
// Decoding a batch normalises only a few rows (8 to 32), one small group each, so the launch is
// as long as its chain of memory round trips: a scalar loop over 2048 values in steps of 64 took
// 15 us on an H100. Each work-item instead loads RMS_HELD 4-float pieces of the row at once and
// keeps the row's first RN_WG * RMS_HELD pieces for the second pass (at 64 work-items, a whole
// 2048-wide row): one round trip to read, one to write. vload4 needs only float alignment, so
// any row start works; a row length that is not a multiple of 4 ends in scalars.
#define RMS_HELD 8

// Pieces [base, base + RN_WG * RMS_HELD) of a row of `quads` 4-float pieces, this work-item's
// share (zeros past the end).
inline void rms_load(__global const float *row, int base, int quads, int lid, float4 *v) {
    for (int j = 0; j < RMS_HELD; j++) {
        const int q = base + j * RN_WG + lid;
        v[j] = q < quads ? vload4(q, row) : (float4)(0.0f);
    }
}

inline void rms_store(__global float *row, __global const float *w, int base, int quads, int lid, float inv,
                      int has_weight, const float4 *v) {
    for (int j = 0; j < RMS_HELD; j++) {
        const int q = base + j * RN_WG + lid;
        if (q < quads) vstore4(has_weight ? v[j] * inv * vload4(q, w) : v[j] * inv, q, row);
    }
}

__kernel void rms_norm(__global const float *x,   // [rows, dim]
                       __global const float *w,   // [dim]
                       __global float *y,         // [rows, dim]
                       int dim, float eps, int has_weight) {
    __local float scratch[RN_WG];
    const int lid = get_local_id(0), quads = dim / 4, span = RN_WG * RMS_HELD;
    __global const float *xr = x + (size_t)get_group_id(0) * dim;
    __global float *yr = y + (size_t)get_group_id(0) * dim;
    float4 first[RMS_HELD], v[RMS_HELD];
    float sum_sq = 0.0f;
    rms_load(xr, 0, quads, lid, first);
    for (int j = 0; j < RMS_HELD; j++) sum_sq += dot(first[j], first[j]);
    for (int base = span; base < quads; base += span) {
        rms_load(xr, base, quads, lid, v);
        for (int j = 0; j < RMS_HELD; j++) sum_sq += dot(v[j], v[j]);
    }
    for (int i = 4 * quads + lid; i < dim; i += RN_WG) sum_sq += xr[i] * xr[i];
    const float inv = rsqrt(group_sum(sum_sq, scratch) / dim + eps);  // its barriers end every read of x

    rms_store(yr, w, 0, quads, lid, inv, has_weight, first);
    for (int base = span; base < quads; base += span) {
        rms_load(xr, base, quads, lid, v);
        rms_store(yr, w, base, quads, lid, inv, has_weight, v);
    }
    for (int i = 4 * quads + lid; i < dim; i += RN_WG) {
        const float value = xr[i] * inv;
        yr[i] = has_weight ? value * w[i] : value;
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
