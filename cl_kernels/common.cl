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
// LOAD_WEIGHT(p, total, i) reads element i of the matrix at p (flat, row-major, `total`
// elements), LOAD_WEIGHT8(p, total, i) its i-th group of eight, as one 16-byte load (32 for fp32): the group must start 16-byte
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

// The block-quantized types (models/safetensors.h has the layout) hold blocks of 32 elements
// with one fp16 scale d each: a matrix of `total` elements is its quants (int8, or two 4-bit
// codes a byte biased by 8), then its total / 32 scales. The weight macros take the matrix
// base, its total (where the scales start; ignored by the other types) and a flat element
// index: rows are whole blocks (columns a multiple of 32), so a group of eight is one aligned
// load (8 bytes, or 4) and one scale shared by the four groups of a block.
#if defined(RN_WEIGHT_Q8_0) || defined(RN_WEIGHT_Q4_0)
typedef uchar weight_t;
#define WEIGHT_QUANTIZED 1
#if defined(RN_WEIGHT_Q8_0)
#define QUANT_BYTES(total) (total)
#else
#define QUANT_BYTES(total) ((total) / 2)
#endif
inline float q_scale(__global const uchar *p, size_t total, size_t block) {
    return vload_half(block, (__global const half *)(p + QUANT_BYTES(total)));
}
// q_codes8(p, i): group i's eight values before the scale (Q8_0: the int8 quants, Q4_0: the codes
// less 8), exact in floats. No int-to-float conversion instruction (a quarter or an eighth of
// the FMA rate on NVIDIA GPUs, where it bounded the decoding speed): a small unsigned integer u
// put into the low mantissa bits of a float of exponent e reads 2^e + u, exactly, so one
// subtraction of 2^e plus the bias gives the value. A field at bit b of the word takes
// e = 23 - b; fields above bit 15 are shifted down first.
// (Built from eight scalars: a float8 made of two float4 crashes Oclgrind 21.10's
// uninitialized-value checks.)
#if defined(RN_WEIGHT_Q8_0)
inline float8 q_codes8(__global const uchar *p, size_t i) {
    const uint2 w = ((__global const uint2 *)p)[i] ^ (uint2)(0x80808080u);  // each q + 128, 0..255
    const uint a = w.s0, b = w.s0 >> 16, c = w.s1, d = w.s1 >> 16;
    const float e23 = 8388736.0f, e15 = 32896.0f;  // 2^23 + 128, 2^15 + 128
    return as_float8((uint8)((a & 0xffu) | 0x4b000000u, (a & 0xff00u) | 0x47000000u, (b & 0xffu) | 0x4b000000u,
                             (b & 0xff00u) | 0x47000000u, (c & 0xffu) | 0x4b000000u, (c & 0xff00u) | 0x47000000u,
                             (d & 0xffu) | 0x4b000000u, (d & 0xff00u) | 0x47000000u)) -
           (float8)(e23, e15, e23, e15, e23, e15, e23, e15);
}
inline float q_load(__global const uchar *p, size_t total, size_t i) {
    return q_scale(p, total, i >> 5) * (float)((__global const char *)p)[i];
}
#else
inline float8 q_codes8(__global const uchar *p, size_t i) {  // element 2k in the low nibble of byte k
    const uint a = ((__global const uint *)p)[i], b = a >> 16;
    // 2^23, 2^19, 2^15 and 2^11, each plus 8
    const float e23 = 8388616.0f, e19 = 524296.0f, e15 = 32776.0f, e11 = 2056.0f;
    return as_float8((uint8)((a & 0x000fu) | 0x4b000000u, (a & 0x00f0u) | 0x49000000u, (a & 0x0f00u) | 0x47000000u,
                             (a & 0xf000u) | 0x45000000u, (b & 0x000fu) | 0x4b000000u, (b & 0x00f0u) | 0x49000000u,
                             (b & 0x0f00u) | 0x47000000u, (b & 0xf000u) | 0x45000000u)) -
           (float8)(e23, e19, e15, e11, e23, e19, e15, e11);
}
inline float q_load(__global const uchar *p, size_t total, size_t i) {
    const uint code = (p[i >> 1] >> (4 * (i & 1))) & 15u;
    return q_scale(p, total, i >> 5) * (float)((int)code - 8);
}
#endif
inline float8 q_load8(__global const uchar *p, size_t total, size_t i) {  // elements 8i .. 8i + 7
    return q_scale(p, total, i >> 2) * q_codes8(p, i);
}
#define LOAD_WEIGHT(p, total, i) q_load((p), (total), (i))
#define LOAD_WEIGHT8(p, total, i) q_load8((p), (total), (i))
#elif defined(RN_WEIGHT_F16)
typedef half weight_t;
#define LOAD_WEIGHT(p, total, i) vload_half((i), (p))
#define LOAD_WEIGHT8(p, total, i) halves_to_float8(((__global const uint4 *)(p))[i])
#define STORE_WEIGHT(v, p, i) vstore_half_rte((v), (i), (p))
#elif defined(RN_WEIGHT_BF16)
typedef ushort weight_t;
#define LOAD_WEIGHT(p, total, i) as_float((uint)(p)[i] << 16)
#define LOAD_WEIGHT8(p, total, i) bf16_to_float8(((__global const uint4 *)(p))[i])
#define STORE_WEIGHT(v, p, i) ((p)[i] = (ushort)((as_uint(v) + 0x7fffu + ((as_uint(v) >> 16) & 1u)) >> 16))
#else
typedef float weight_t;
#define LOAD_WEIGHT(p, total, i) ((p)[i])
#define LOAD_WEIGHT8(p, total, i) (((__global const float8 *)(p))[i])
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
