// embedding.cl: token embedding lookup.
//
// x[t, :] = scale * E[tokens[t], :], scale = sqrt(D) unless no_scale_embedding. Token ids are
// checked against the vocabulary on the host before upload, so the kernel trusts them.
// E holds the rows [row0, row0 + held) of the matrix (all of it, or one of its pieces:
// host/matrix.h); tokens outside them are another launch's. One work-item per element: global (D, n).

__kernel void embed_tokens(__global const int *tokens,   // [n]
                           __global const weight_t *E,   // [held, D], etotal = held D elements
                           ulong etotal,
                           __global float *x,            // [n, D]
                           int D, float scale, int row0, int held) {
    const int col = get_global_id(0);
    const int t = get_global_id(1);
    const int token = tokens[t] - row0;
    if (token < 0 || token >= held) return;
    x[(size_t)t * D + col] = scale * LOAD_WEIGHT(E, etotal, (size_t)token * D + col);
}
