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

// ---- a projection's epilogue, shared by the project kernel (matvec.cl) and the matrix engine's
// reduction (gemm_mma.cl): which output rows one unit of work gives, and how they are written.

// The output rows of unit `block` (a work-group of project, a work-item of gemm_mma_reduce): the
// first rotated / 2 units are q's and k's rotation pairs, (2i, 2i + 1) of a head, or (i, i +
// RN_DK / 2) with half_split; after them two rows a unit, or in GLU mode one (fc1's row and the
// gate's: out1 = out0). Returns whether the unit is a rotation pair.
inline int output_rows(int block, int rotated, int glu, int half_split, int *out0, int *out1) {
    if (block < rotated / 2) {
        const int head = block / (RN_DK / 2), i = block % (RN_DK / 2);
        *out0 = head * RN_DK + (half_split ? i : 2 * i);
        *out1 = *out0 + (half_split ? RN_DK / 2 : 1);
        return 1;
    }
    *out0 = glu ? block : 2 * block;
    *out1 = glu ? *out0 : *out0 + 1;
    return 0;
}

// Output `out` of input row `row` into y0..y3, each [n, its width], split at the ends (q, k, v, g).
inline void store_output(int out, size_t row, float value, int rows, __global float *y0, __global float *y1,
                         __global float *y2, __global float *y3, int end0, int end1, int end2) {
    if (out < end0) y0[row * end0 + out] = value;
    else if (out < end1) y1[row * (end1 - end0) + out - end0] = value;
    else if (out < end2) y2[row * (end2 - end1) + out - end1] = value;
    else y3[row * (rows - end2) + out - end2] = value;
}

// A unit's two sums for input row `row` (out0 < end): in GLU mode act(v0) * v1; residual y0 =
// alpha y0 + v; a rotation pair rotated to the row's position (positions[row] with per_row, else
// pos0 + row * pos_step), k's rows (from q_rows on) scaled by k_scale first; else as they are.
// out1 is written only below `end`, the last output row this unit's piece of W gives.
inline void write_outputs(float v0, float v1, int out0, int out1, int end, int pair, size_t row, int rows,
                          int mode, float alpha, int activation, __global float *y0, __global float *y1,
                          __global float *y2, __global float *y3, int end0, int end1, int end2, int q_rows,
                          __global const float *angle, int pos0, int pos_step, __global const int *positions,
                          int per_row, float k_scale) {
    if (mode == RN_PROJECT_GLU) {
        y0[row * rows + out0] = activate(v0, activation) * v1;
    } else if (mode == RN_PROJECT_RESIDUAL) {
        y0[row * rows + out0] = alpha * y0[row * rows + out0] + v0;
        if (out1 < end) y0[row * rows + out1] = alpha * y0[row * rows + out1] + v1;
    } else if (pair) {
        const float scale = out0 < q_rows ? 1.0f : k_scale;
        const int pos = per_row ? positions[row] : pos0 + (int)row * pos_step;
        const float phi = (float)pos * angle[out0 % RN_DK];
        const float c = cos(phi), s = sin(phi);
        const float x0 = v0 * scale, x1 = v1 * scale;
        store_output(out0, row, x0 * c - x1 * s, rows, y0, y1, y2, y3, end0, end1, end2);
        store_output(out1, row, x1 * c + x0 * s, rows, y0, y1, y2, y3, end0, end1, end2);
    } else {
        store_output(out0, row, v0, rows, y0, y1, y2, y3, end0, end1, end2);
        if (out1 < end) store_output(out1, row, v1, rows, y0, y1, y2, y3, end0, end1, end2);
    }
}

// Sum and max of `value` over the work-group (of RN_WG work-items, in one or two dimensions),
// returned to every work-item. `scratch` holds RN_WG floats. The last barrier keeps the next
// call from overwriting scratch[0] before every work-item has read it.
inline int flat_local_id(void) { return get_local_id(1) * get_local_size(0) + get_local_id(0); }

// (sum_over: the same over a group of `size` work-items, a power of two, lid the caller's id.)
inline float sum_over(float value, __local float *scratch, int lid, int size) {
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = size / 2; stride > 0; stride >>= 1) {
        if (lid < stride) scratch[lid] += scratch[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

#if defined(RN_NV_PTX) && RN_WG % 32 == 0
// The sum of v over the 32 work-items of an NVIDIA warp, in each of them: five shuffles instead of
// five rounds through local memory with a barrier each. (NVIDIA numbers a group's warps by its
// flat local id, so a warp is 32 consecutive flat_local_id values.) Every work-item of the warp
// must call it.
#define RN_WARP_SUMS 1
inline float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        float other;
        asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(other) : "f"(v), "r"(offset));
        v += other;
    }
    return v;
}

// A group's sum in two steps around one barrier: each warp leaves its sum of v in
// totals[warp] (store_warp_sum, every work-item calls it), then the warps' sums are added in
// order (add_warp_totals). group_sum and project's closing reduction use them.
inline void store_warp_sum(float v, __local float *totals, int lid) {
    const float warp_total = warp_sum(v);
    if (lid % 32 == 0) totals[lid / 32] = warp_total;
}

inline float add_warp_totals(__local const float *totals) {
    float total = totals[0];
    for (int w = 1; w < RN_WG / 32; w++) total += totals[w];
    return total;
}
#endif

inline float group_sum(float value, __local float *scratch) {
#ifdef RN_WARP_SUMS
    store_warp_sum(value, scratch, flat_local_id());
    barrier(CLK_LOCAL_MEM_FENCE);
    const float total = add_warp_totals(scratch);
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
#else
    return sum_over(value, scratch, flat_local_id(), RN_WG);
#endif
}

inline float group_max(float value, __local float *scratch) {
    const int lid = flat_local_id();
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

// Orders this work-item's global stores before its later atomics, and its earlier atomics before
// its later loads, for work-items of other groups: what lets the last group of a launch to finish
// a piece of work read what the other groups wrote (OpenCL 1.2's mem_fence is not specified
// across groups; on NVIDIA the device-wide fence is said in PTX).
inline void device_fence(void) {
#ifdef RN_NV_PTX
    asm volatile("membar.gl;" ::: "memory");
#else
    mem_fence(CLK_GLOBAL_MEM_FENCE);
#endif
}

// Asks this work-group's share of the first `bytes` of `ahead`, in whole lines of 128 bytes, into
// L2: what the next launch reads first, asked while this launch ramps up or drains
// (RN_PREFETCH_AHEAD, host/ops.h, says when: 1 before the group's own loads, 2 after its sums;
// the caller says which place this is). NVIDIA only; a hint that elsewhere is taken as nothing.
inline void ask_ahead(int when, __global const uchar *ahead, ulong bytes) {
#if defined(RN_NV_PTX) && RN_PREFETCH_AHEAD  /* builds without it compile no prefetch at all */
    if (when != RN_PREFETCH_AHEAD) return;
    const ulong group = get_group_id(0) + get_num_groups(0) * (get_group_id(1) + get_num_groups(1) * get_group_id(2));
    const ulong groups = get_num_groups(0) * get_num_groups(1) * get_num_groups(2);
    const ulong size = get_local_size(0) * get_local_size(1) * get_local_size(2);
    const ulong lid = get_local_id(0) + get_local_size(0) * (get_local_id(1) + get_local_size(1) * get_local_id(2));
    const ulong lines = bytes / 128, from = lines * group / groups, to = lines * (group + 1) / groups;
    for (ulong line = from + lid; line < to; line += size)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(ahead + 128 * line));
#endif
}

// *p += v as one indivisible update, for sums whose terms come from several work-groups at once
// (gemm_mma_small's slices of K adding into a residual). The order of the terms is whatever the
// groups' order is, so the last bit of such a sum can differ from run to run.
inline void add_to_global(__global float *p, float v) {
#ifdef RN_NV_PTX
    asm volatile("red.global.add.f32 [%0], %1;" ::"l"(p), "f"(v) : "memory");
#else
    volatile __global int *bits = (volatile __global int *)p;
    int old = *bits, seen;
    while ((seen = atomic_cmpxchg(bits, old, as_int(as_float(old) + v))) != old) old = seen;
#endif
}

// The group norm and gate of one (token, head) at `base` (norms.cl's group_norm_gate says what),
// by the whole work-group: the body of group_norm_gate, and of retention_step's last group of a
// head, which reads o through a volatile pointer as other groups wrote it.
// Each work-item reads its RN_DV_PER_ITEM values of o once and keeps them for the second pass.
// The loops run the same trips in every work-item, the bound tested inside: PoCL 3.1 ran the
// second loop past the row in two-dimensional groups when each work-item's start was its own.
inline void head_norm_gate(__global const volatile float *o, __global const float *g,
                           __global const float *w, __global float *y, size_t base, float eps, int has_weight,
                           int has_gate, __local float *scratch) {
    const int lid = flat_local_id();
    float held[RN_DV_PER_ITEM], sum_sq = 0.0f;
    for (int j = 0; j < RN_DV_PER_ITEM; j++) {
        const int i = j * RN_WG + lid;
        held[j] = i < RN_DV ? o[base + i] : 0.0f;
        sum_sq += held[j] * held[j];
    }
    const float inv = rsqrt(group_sum(sum_sq, scratch) / RN_DV + eps);
    for (int j = 0; j < RN_DV_PER_ITEM; j++) {
        const int i = j * RN_WG + lid;
        if (i >= RN_DV) break;
        float v = held[j] * inv;
        if (has_weight) v *= w[i];
        if (has_gate) {
            const float gate = g[base + i];
            v *= gate / (1.0f + exp(-gate));
        }
        y[base + i] = v;
    }
}
