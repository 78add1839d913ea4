// common.cl: helpers every kernel file may use; the host puts this file first.
//
// The preamble the host generates before it defines:
//   RN_WG           work-items per group of the reducing kernels, a power of two within the
//                   device's and the kernels' limits;
//   RN_DK, RN_DV    key and value dimensions of one retention head;
//   RN_DV_PER_ITEM  ceil(RN_DV / RN_WG): value columns each work-item of a retention group owns;
//   RN_WEIGHT_F32, RN_WEIGHT_F16, RN_WEIGHT_BF16, RN_WEIGHT_Q8_0 or RN_WEIGHT_Q4_0: how the
//                   weight matrices are stored.

// Weight matrices are stored as fp32, fp16 or bf16 and widened to fp32 as they are read, so
// nothing needs cl_khr_fp16: vload_half is core OpenCL C, and bf16 is the top half of an fp32.
// LOAD_WEIGHT(p, i) reads element i of the matrix at p (flat, row-major), LOAD_WEIGHT8(p, i) its
// i-th group of eight, as one 16-byte load (32 for fp32): the group must start 16-byte
// aligned, which the callers ensure (columns a multiple of eight). fp16 goes
// through a private copy to vload_half8, which compilers turn into register conversions (a
// vload_half8 from global memory may be split into eight 2-byte loads); exact for every half.
// STORE_WEIGHT rounds to nearest (vstore_half alone would round towards zero).
inline float8 bf16_to_float8(uint4 packed) {
    return as_float8((uint8)(packed.s0 << 16, packed.s0 & 0xffff0000u, packed.s1 << 16, packed.s1 & 0xffff0000u,
                             packed.s2 << 16, packed.s2 & 0xffff0000u, packed.s3 << 16, packed.s3 & 0xffff0000u));
}

inline float8 halves_to_float8(uint4 packed) {
    return vload_half8(0, (const __private half *)&packed);
}

// The block-quantized types (models/safetensors.h has the layout) are blocks of 32 elements: an
// fp16 scale d and 32 int8 (Q8_0, 34 bytes) or 32 nibbles biased by 8 (Q4_0, 18 bytes). Rows are
// whole blocks (columns a multiple of 32), so element i of a matrix is element i % 32 of block
// i / 32 whatever its row, and a group of eight never straddles two blocks. Loads are bytes
// (vload8 of char), which need no alignment; the scale is 2-byte aligned.
inline float q_scale(__global const uchar *p, size_t block, uint block_bytes) {
    return vload_half(0, (__global const half *)(p + block * block_bytes));
}

#if defined(RN_WEIGHT_Q8_0)
typedef uchar weight_t;
inline float q8_load(__global const uchar *p, size_t i) {
    const size_t b = i >> 5;
    return q_scale(p, b, 34) * (float)((__global const char *)p)[b * 34 + 2 + (i & 31)];
}
inline float8 q8_load8(__global const uchar *p, size_t i) {  // elements 8i .. 8i + 7
    const size_t b = i >> 2;
    const char8 q = vload8(0, (__global const char *)p + b * 34 + 2 + (i & 3) * 8);
    return q_scale(p, b, 34) * convert_float8(q);
}
#define LOAD_WEIGHT(p, i) q8_load((p), (i))
#define LOAD_WEIGHT8(p, i) q8_load8((p), (i))
#elif defined(RN_WEIGHT_Q4_0)
typedef uchar weight_t;
inline float q4_load(__global const uchar *p, size_t i) {
    const size_t b = i >> 5;
    const uint j = i & 31, byte = p[b * 18 + 2 + (j & 15)];
    return q_scale(p, b, 18) * (float)((int)(j < 16 ? byte & 15u : byte >> 4) - 8);
}
inline float8 q4_load8(__global const uchar *p, size_t i) {
    const size_t b = i >> 2;
    const uint m = i & 3;
    const uchar8 bytes = vload8(0, p + b * 18 + 2 + (m & 1) * 8);
    const uchar8 nibbles = m < 2 ? bytes & (uchar8)15 : bytes >> (uchar8)4;
    return q_scale(p, b, 18) * (convert_float8(nibbles) - 8.0f);
}
#define LOAD_WEIGHT(p, i) q4_load((p), (i))
#define LOAD_WEIGHT8(p, i) q4_load8((p), (i))
#elif defined(RN_WEIGHT_F16)
typedef half weight_t;
#define LOAD_WEIGHT(p, i) vload_half((i), (p))
#define LOAD_WEIGHT8(p, i) halves_to_float8(((__global const uint4 *)(p))[i])
#define STORE_WEIGHT(v, p, i) vstore_half_rte((v), (i), (p))
#elif defined(RN_WEIGHT_BF16)
typedef ushort weight_t;
#define LOAD_WEIGHT(p, i) as_float((uint)(p)[i] << 16)
#define LOAD_WEIGHT8(p, i) bf16_to_float8(((__global const uint4 *)(p))[i])
#define STORE_WEIGHT(v, p, i) ((p)[i] = (ushort)((as_uint(v) + 0x7fffu + ((as_uint(v) >> 16) & 1u)) >> 16))
#else
typedef float weight_t;
#define LOAD_WEIGHT(p, i) ((p)[i])
#define LOAD_WEIGHT8(p, i) (((__global const float8 *)(p))[i])
#define STORE_WEIGHT(v, p, i) ((p)[i] = (v))
#endif

inline float dot8(float8 a, float8 b) {
    return dot(a.lo, b.lo) + dot(a.hi, b.hi);
}

// The FFN's activations: gelu is the exact erf form, as torch's F.gelu. RN_ACT_* come from the
// preamble (host/ops.c writes them from the C enum).
inline float activate(float v, int activation) {
    return activation == RN_ACT_GELU ? 0.5f * v * (1.0f + erf(v * M_SQRT1_2_F)) : v / (1.0f + exp(-v));
}

// Sum and max of `value` over the work-group, returned to every work-item. `scratch` holds
// RN_WG floats. The last barrier keeps the next call from overwriting scratch[0] before every
// work-item has read it.
inline float group_sum(float value, __local float *scratch) {
    const int lid = get_local_id(0);
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = RN_WG / 2; stride > 0; stride >>= 1) {
        if (lid < stride) scratch[lid] += scratch[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

inline float group_max(float value, __local float *scratch) {
    const int lid = get_local_id(0);
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = RN_WG / 2; stride > 0; stride >>= 1) {
        if (lid < stride) scratch[lid] = fmax(scratch[lid], scratch[lid + stride]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float best = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return best;
}
