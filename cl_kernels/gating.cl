// gating.cl: the FFN's gated linear unit and the residual connection.

#define RN_ACT_GELU 0
#define RN_ACT_SWISH 1

// c = act(a) * b, torchscale's GLU: the activation is on fc1's output (a), the `gate` linear
// (b) is the plain branch. gelu is the exact erf form, as torch's F.gelu.
__kernel void glu(__global const float *a, __global const float *b, __global float *c,
                  int activation) {
    const size_t i = get_global_id(0);
    const float v = a[i];
    const float act = activation == RN_ACT_GELU ? 0.5f * v * (1.0f + erf(v * M_SQRT1_2_F))
                                                : v / (1.0f + exp(-v));
    c[i] = act * b[i];
}

// x = alpha * x + y: the residual, alpha = (2L)^(1/4) with deepnorm, else 1.
__kernel void residual(__global float *x, __global const float *y, float alpha) {
    const size_t i = get_global_id(0);
    x[i] = alpha * x[i] + y[i];
}
