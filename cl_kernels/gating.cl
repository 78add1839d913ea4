// gating.cl: the FFN's gated linear unit and the residual connection.

// c = act(a) * b, torchscale's GLU: the activation is on fc1's output (a), the `gate` linear
// (b) is the plain branch.
__kernel void glu(__global const float *a, __global const float *b, __global float *c,
                  int activation) {
    const size_t i = get_global_id(0);
    c[i] = activate(a[i], activation) * b[i];
}

// x = alpha * x + y: the residual, alpha = (2L)^(1/4) with deepnorm, else 1.
__kernel void residual(__global float *x, __global const float *y, float alpha) {
    const size_t i = get_global_id(0);
    x[i] = alpha * x[i] + y[i];
}
