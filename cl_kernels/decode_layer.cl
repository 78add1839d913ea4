// decode_layer.cl: one layer of a single sequence's decoding step in one launch, its products
// and its retention step chained inside the launch.
//
// Decoding one token through a 1.3B layer reads about 100 MB of weights, 35 us at an H100's
// bandwidth, yet as five launches (project x4, retention_step) it took about 75 us: each launch
// pays a fixed cost (dispatch, the ramp of its first loads, the tail of its last groups) that a
// small matrix cannot hide. Here the layer's work is cut into units of one work-group each, in
// the order of its five phases:
//   0. q, k, v, g from the stacked matrix times RMSNorm(x), q and k rotated (project's PLAIN):
//      (qkvg_rows + 1) / 2 units, an output pair each as `project` cuts them;
//   1. the recurrent step (retention_step.cl's arithmetic), RN_STEP_TILE value columns of one
//      head a unit, the head's last group applying the group norm and gate: H * tiles units;
//   2. x += out_proj o (RESIDUAL): (D + 1) / 2 units;
//   3. a = act(fc1 n) * (gate n), n = RMSNorm(x) (GLU): F units;
//   4. x += fc2 a (RESIDUAL): (D + 1) / 2 units.
// A unit waits until every unit of the phase before has counted itself done (phase 2 until every
// head is normalized), but a product's unit first loads the start of its two weight rows
// (RN_LAYER_AHEAD loads a row per work-item), which depend on nothing: the weights keep
// streaming while the phase before finishes, and a phase boundary costs a count's round trip
// instead of a launch. Pre-norm models with unquantized, unpieced matrices only; the host keeps
// the five launches for the rest (host/session.c).
//
// Waiting for other work-groups needs them to run. A group takes its unit from a ticket (one
// atomic), so it only ever waits for units of groups that already run, and a group that runs
// runs to its end on GPUs and on PoCL alike; the order in which a device starts groups does not
// matter. The host builds it only where a group's fenced writes are seen by the groups that
// count after it (rn_kernels.groups_hand_off: NVIDIA, CPUs). A wait that lasts too long
// (RN_SPIN_NS on NVIDIA, RN_SPINS polls elsewhere) gives up: the group writes NaN into x[0],
// so that the step's logits are refused as non-finite rather than wrong.
//
// Activations that other groups wrote in the same launch are read past the compute unit's
// cache, which their writes do not reach: through volatile pointers, and on NVIDIA the
// products' inputs by ld.global.cg (16-byte loads that volatile would cut into words).
//
// global (RN_WG * units), local RN_WG (host/ops.c counts the units).
// x [D]; q [H*dk]; k [kv_heads*dk]; v [kv_heads*dv]; g, o [H*dv]; a [F]; state [H, dk, dv];
// sync [RN_DECODE_LAYER_COUNTS (6) + H] uints, zero before the launch and left zero: [0] the
// tickets, [1] phase 0's units done, [2] heads normalized, [3], [4], [5] phases 2, 3, 4's units
// done, [6 + h] head h's groups of phase 1.

#ifndef RN_SPIN_NS
#define RN_SPIN_NS 1000000000ul
#endif
#ifndef RN_SPINS
#define RN_SPINS (1u << 28)
#endif
#ifndef RN_LAYER_AHEAD
#define RN_LAYER_AHEAD 4
#endif

// A group of eight weights as loaded, widened only when used.
#if defined(RN_WEIGHT_F16)
typedef uint4 raw8_t;
#define RAW8(W, i) (((__global const uint4 *)(W))[i])
#define WIDEN8(r) halves_to_float8(r)
#elif defined(RN_WEIGHT_BF16)
typedef uint4 raw8_t;
#define RAW8(W, i) (((__global const uint4 *)(W))[i])
#define WIDEN8(r) bf16_to_float8(r)
#else
typedef float8 raw8_t;
#define RAW8(W, i) (((__global const float8 *)(W))[i])
#define WIDEN8(r) (r)
#endif

// Eight floats that another group wrote in this launch.
inline float8 load_fresh8(__global const float *p) {
#ifdef RN_NV_PTX
    float a, b, c, d, e, f, g, h;
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(a), "=f"(b), "=f"(c), "=f"(d) : "l"(p));
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(e), "=f"(f), "=f"(g), "=f"(h) : "l"(p + 4));
    return (float8)(a, b, c, d, e, f, g, h);
#else
    return vload8(0, p);
#endif
}

// Polls *count (work-item 0) until it reaches target; whether it did before giving up.
inline int poll_count(__global volatile uint *count, uint target) {
    int done;
#ifdef RN_NV_PTX
    ulong start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        done = *count >= target;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (!done && now - start < RN_SPIN_NS);
#else
    uint spins = 0;
    while (!(done = *count >= target) && ++spins < RN_SPINS) {
    }
#endif
    return done;
}

// Every barrier of the kernel is reached by every work-item of every unit, whatever its phase,
// and the phases' work sits between them: PoCL miscompiled barriers inside the phases' own
// conditionals (lid-0 work done by every work-item).
__kernel __attribute__((reqd_work_group_size(RN_WG, 1, 1)))
void decode_layer(__global float *x, __global const float *retention_norm, __global const float *ffn_norm,
                  __global const weight_t *qkvg, __global const weight_t *out_proj,
                  __global const weight_t *ffn_in, __global const weight_t *fc2,
                  __global const float *head_norm, __global const float *decays, __global const float *angle,
                  __global const int *positions, __global float *state, __global float *scale0,
                  __global float *scale1, __global float *q, __global float *k, __global float *v,
                  __global float *g, __global float *o, __global float *a, __global volatile uint *sync, int D,
                  int Dv, int F, int H, int kv_heads, int qkvg_rows, int end0, int end1, int end2,
                  int half_split, int plain, int has_gate, int has_weight, int activation, float eps,
                  float alpha, float k_scale) {
    __local float sums[3 * RN_WG], q_local[RN_DK], k_local[RN_DK];
    __local step_t shares[RN_WG];
    __local uint ticket;
    __local int reached, last;
    const int lid = get_local_id(0);
    if (lid == 0) ticket = atomic_inc(&sync[0]);
    barrier(CLK_LOCAL_MEM_FENCE);

    // The unit's phase (0..4; 5: a ticket past the layer's units, the counts not left at zero)
    // and its place in the phase.
    const int tiles = (RN_STEP_COLUMNS + RN_STEP_TILE - 1) / RN_STEP_TILE;
    const int units[5] = {(qkvg_rows + 1) / 2, H * tiles, (D + 1) / 2, F, (D + 1) / 2};
    int phase = 0, unit = (int)ticket;
    while (phase < 5 && unit >= units[phase]) unit -= units[phase++];
    const int step = phase == 1, product = phase != 1 && phase < 5;

    // A product's operands (step: unused).
    const int first = phase == 0, residual = phase == 2 || phase == 4, glu = phase == 3;
    __global const weight_t *W = first ? qkvg : phase == 2 ? out_proj : glu ? ffn_in : fc2;
    __global const float *in = phase == 2 ? o : phase == 4 ? a : x;
    __global float *y0 = first ? q : glu ? a : x;
    const int rows = first ? qkvg_rows : glu ? F : D, cols = phase == 2 ? Dv : phase == 4 ? F : D;
    const int normalize = first || glu, vectors = cols / 8;
    int out0 = 0, out1 = 0, pair = 0;
    if (product) pair = output_rows(unit, first ? end1 : 0, glu, half_split, &out0, &out1);
    const size_t w0 = (size_t)out0 * vectors, w1 = (size_t)(glu ? rows + out0 : min(out1, rows - 1)) * vectors;

    // 1. A product's first weights, which depend on nothing.
    raw8_t ahead0[RN_LAYER_AHEAD], ahead1[RN_LAYER_AHEAD];
#pragma unroll
    for (int i = 0; i < RN_LAYER_AHEAD; i++) {
        const int c = lid + i * RN_WG;
        if (product && c < vectors) {
            ahead0[i] = RAW8(W, w0 + c);
            ahead1[i] = RAW8(W, w1 + c);
        }
    }

    // 2. Wait for the phase before: [1] units of phase 0 done, [2] heads normalized, [3], [4].
    if (lid == 0) {
        const uint target = phase == 1 ? (uint)units[0] : phase == 2 ? (uint)H : phase == 3 ? (uint)units[2]
                            : phase == 4 ? (uint)units[3] : 0u;
        reached = phase < 5 && poll_count(&sync[phase], target);
    }
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    device_fence();  // the count before the reads of what it stands for
    const int fine = reached;

    // 3. The step's q and k of its head into local memory.
    const int h = unit / tiles, column = lid % RN_STEP_TILE, part = lid / RN_STEP_TILE;
    const int kvh = h / (H / kv_heads), c = (unit % tiles) * RN_STEP_TILE + column;
    if (step)
        for (int i = lid; i < RN_DK; i += RN_WG) {
            q_local[i] = ((__global volatile float *)q)[h * RN_DK + i];
            k_local[i] = ((__global volatile float *)k)[kvh * RN_DK + i];
        }
    barrier(CLK_LOCAL_MEM_FENCE);

    // 4. The work: a product's partial sums, or the step's update of its columns of the state
    //    (retention_step.cl's arithmetic) and its share of o.
    if (product) {
        float acc0 = 0.0f, acc1 = 0.0f, sum_sq = 0.0f;
        __global const float *norm = first ? retention_norm : ffn_norm;
#pragma unroll
        for (int i = 0; i < RN_LAYER_AHEAD; i++) {
            const int cc = lid + i * RN_WG;
            if (cc < vectors) {
                const float8 xv = load_fresh8(in + 8 * (size_t)cc);
                sum_sq += dot8(xv, xv);
                const float8 xs = normalize ? xv * vload8(cc, norm) : xv;
                acc0 += dot8(WIDEN8(ahead0[i]), xs);
                acc1 += dot8(WIDEN8(ahead1[i]), xs);
            }
        }
        for (int cc = lid + RN_LAYER_AHEAD * RN_WG; cc < vectors; cc += RN_WG) {
            const float8 xv = load_fresh8(in + 8 * (size_t)cc);
            sum_sq += dot8(xv, xv);
            const float8 xs = normalize ? xv * vload8(cc, norm) : xv;
            acc0 += dot8(WIDEN8(RAW8(W, w0 + cc)), xs);
            acc1 += dot8(WIDEN8(RAW8(W, w1 + cc)), xs);
        }
        sums[lid] = acc0;
        sums[RN_WG + lid] = acc1;
        sums[2 * RN_WG + lid] = sum_sq;
    }
    const int odd = positions[0] & 1;
    const float gamma = step ? exp(decays[h]) : 1.0f;
    const float s_prev = step ? (odd ? scale0 : scale1)[h] : 0.0f;
    const float s = s_prev * gamma + 1.0f;
    if (step) {
        const float keep = plain ? gamma : sqrt(s_prev) * gamma / sqrt(s);
        step_t out = 0.0f;
        if (c < RN_STEP_COLUMNS) {
            step_t value = ((__global const volatile step_t *)(v + (size_t)kvh * RN_DV))[c];
            if (!plain) value /= sqrt(s);
            __global step_t *st = (__global step_t *)(state + (size_t)h * RN_DK * RN_DV) +
                                  (size_t)part * RN_STEP_ROWS * RN_STEP_COLUMNS + c;
            // Rows RN_STEP_BATCH at a time, all loaded before any is used (retention_step.cl's why).
            for (int r0 = 0; r0 < RN_STEP_ROWS; r0 += RN_STEP_BATCH) {
                step_t entry[RN_STEP_BATCH];
                for (int i = 0; i < RN_STEP_BATCH; i++) entry[i] = st[(size_t)(r0 + i) * RN_STEP_COLUMNS];
                for (int i = 0; i < RN_STEP_BATCH; i++) {
                    const int r = part * RN_STEP_ROWS + r0 + i;
                    entry[i] = entry[i] * keep + k_local[r] * value;
                    st[(size_t)(r0 + i) * RN_STEP_COLUMNS] = entry[i];
                    out += q_local[r] * entry[i];
                }
            }
        }
        shares[lid] = out;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    // 5. Sums over the group: a product's three by halving; the step's shares over its parts
    //    (strides of whole tiles).
    for (int stride = RN_WG / 2; stride > 0; stride >>= 1) {
        if (product && lid < stride)
            for (int i = 0; i < 3; i++) sums[i * RN_WG + lid] += sums[i * RN_WG + lid + stride];
        if (step && stride >= RN_STEP_TILE && lid < stride) shares[lid] += shares[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    // 6. The results, then the count: a product's one work-item writes its two outputs and
    //    counts its unit; the step's first part writes its columns of o, and its head's groups
    //    count in (the last one learns it is last).
    if (product && lid == 0) {
        const float inv = normalize ? rsqrt(sums[2 * RN_WG] / cols + eps) : 1.0f;
        const float v0 = sums[0] * inv, v1 = sums[RN_WG] * inv;
        if (residual) {
            __global volatile float *y = y0;
            y[out0] = alpha * y[out0] + v0;
            if (out1 < rows) y[out1] = alpha * y[out1] + v1;
        } else {
            write_outputs(v0, v1, out0, out1, rows, pair, 0, rows, glu ? RN_PROJECT_GLU : RN_PROJECT_PLAIN, 1.0f,
                          activation, y0, k, v, g, end0, end1, end2, end0, angle, 0, 0, positions, 1, k_scale);
        }
        device_fence();  // the outputs before the count
        const uint before = atomic_inc(&sync[phase == 0 ? 1 : phase + 1]);
        if (phase == 4 && before == (uint)units[4] - 1)  // the layer's last unit: every count is final
            for (int i = 0; i < RN_DECODE_LAYER_COUNTS; i++) sync[i] = 0u;
    }
    if (step) {
        if (part == 0 && c < RN_STEP_COLUMNS) ((__global step_t *)(o + (size_t)h * RN_DV))[c] = shares[column];
        if (lid == 0 && c == 0) (odd ? scale1 : scale0)[h] = s;
        device_fence();  // o's columns before the count
    }
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        last = 0;
        if (step) {
            __global volatile int *done = (__global volatile int *)&sync[RN_DECODE_LAYER_COUNTS];
            last = atomic_inc(&done[h]) == tiles - 1;
            if (last) atomic_xchg(&done[h], 0);  // every other group of the head has counted
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    // 7. The head's last group: the group norm and gate of its row of o, then the head's count.
    if (last) {
        device_fence();  // the count before the other groups' columns
        head_norm_gate(o, g, head_norm, o, (size_t)h * RN_DV, eps, has_weight, has_gate, (__local float *)shares);
        device_fence();  // the row before the head's count
    }
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);  // at the top level: PoCL ran the count early inside
    if (lid == 0 && last) atomic_inc(&sync[2]);
    if (!fine && lid == 0) ((__global volatile float *)x)[0] = NAN;
}
