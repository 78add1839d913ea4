// operands.cl: weights and activations put in the shape the products want: half-precision
// matrices widened for SGEMM, stacked products split into their parts, random weights for
// benchmarks.

// dst = widen(src[offset ..]) over the global range: a stored weight matrix, or rows of one, as
// the fp32 operand CLBlast's SGEMM needs (prefill), done once per matrix and pass.
__kernel void widen(__global const weight_t *src, ulong total, ulong offset, __global float *dst) {
    const size_t i = get_global_id(0);
    dst[i] = LOAD_WEIGHT(src, total, offset + i);
}

// w[at + i] = uniform in [-scale, scale) from a counter-based hash of (seed, from + i): random
// weights made on the device, for benchmarks of model shapes without a checkpoint; `from` is the
// element of the whole matrix that lands at element `at` of this buffer (a matrix in pieces
// draws the same numbers as one in a buffer). One item per element, or per block of 32 for the
// quantized types, which store the quantized draws (from and at then whole blocks).
inline float uniform_at(ulong seed, size_t i, float scale) {
    ulong z = seed + (ulong)i * 0x9e3779b97f4a7c15ul;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ul;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebul;
    z ^= z >> 31;
    const float unit = (float)(z >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
    return (2.0f * unit - 1.0f) * scale;
}

#if defined(WEIGHT_QUANTIZED)
// As models/dtype.c quantizes (rn_quantize_block), on the device. `total` elements in all.
__kernel void fill_uniform(__global uchar *w, ulong seed, float scale, ulong total, ulong from, ulong at) {
    const size_t b = at / 32 + get_global_id(0);
    float x[32], amax = 0.0f, extreme = 0.0f;
    for (int j = 0; j < 32; j++) {
        x[j] = uniform_at(seed, from + get_global_id(0) * 32 + j, scale);
        if (fabs(x[j]) > amax) amax = fabs(x[j]), extreme = x[j];
    }
    __global half *scales = (__global half *)(w + QUANT_BYTES(total));
#if defined(RN_WEIGHT_Q8_0)
    vstore_half_rte(amax / 127.0f, b, scales);
#else
    vstore_half_rte(extreme / -8.0f, b, scales);
#endif
    const float d = vload_half(b, scales), inv = d != 0.0f ? 1.0f / d : 0.0f;
#if defined(RN_WEIGHT_Q8_0)
    for (int j = 0; j < 32; j++) ((__global char *)w)[b * 32 + j] = (char)clamp(rint(x[j] * inv), -127.0f, 127.0f);
#else
    for (int k = 0; k < 16; k++) {
        const int lo = clamp((int)rint(x[2 * k] * inv) + 8, 0, 15), hi = clamp((int)rint(x[2 * k + 1] * inv) + 8, 0, 15);
        w[b * 16 + k] = (uchar)(lo | hi << 4);
    }
#endif
}
#else
__kernel void fill_uniform(__global weight_t *w, ulong seed, float scale, ulong total, ulong from, ulong at) {
    const size_t i = get_global_id(0);
    STORE_WEIGHT(uniform_at(seed, from + i, scale), w, at + i);
}
#endif

// dst [n, width] = columns col0 .. col0 + width of src [n, stride]: one stacked product of a
// prompt (q|k|v|g, or fc1|gate), computed as one SGEMM, handed out to the buffers that the
// next kernels read densely. global (width, n).
__kernel void split_columns(__global const float *src, int stride, int col0, __global float *dst) {
    const size_t j = get_global_id(0), t = get_global_id(1), width = get_global_size(0);
    dst[t * width + j] = src[t * stride + col0 + j];
}
