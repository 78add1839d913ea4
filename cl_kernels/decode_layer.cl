// decode_layer.cl: one layer of a single sequence's decoding step in one launch.
//
// Decoding one token through a 1.3B layer reads about 100 MB of weights, 35 us at an H100's
// bandwidth, yet as five launches (project x4, retention_step) it took about 80 us: each launch
// pays a fixed cost (dispatch, ramp-up, the tail of its last groups) of several microseconds,
// and a small matrix cannot hide it. Here a fixed grid of work-groups, all resident at once,
// runs the layer's five phases and waits between them at a barrier of the whole grid:
//   1. RMSNorm of x, then q, k, v, g from the stacked matrix, q and k rotated (project's PLAIN);
//   2. the recurrent step of every head (retention_step's arithmetic), o written raw;
//   3. the group norm and gate of o, then out_proj, added to x (RESIDUAL);
//   4. RMSNorm of x, then fc1 and the gate, a = act(fc1 x) * (gate x) (GLU);
//   5. fc2, added to x (RESIDUAL).
// Pre-norm models with unquantized, unpieced matrices only; the host keeps the five launches
// for the rest (host/session.c).
//
// A barrier of the whole grid needs every group resident at once, which OpenCL does not
// promise: the host launches one group per compute unit, which NVIDIA GPUs hold at once, or
// one group in all (tests elsewhere); it is off unless asked for (rn_tuning.layer_groups). A barrier
// that waits too long (RN_SPIN_NS on NVIDIA, RN_SPINS polls elsewhere) gives up: its group
// stops and writes NaN into x, so that the step's logits are refused as non-finite rather
// than wrong.
//
// Work: a "team" of RN_TEAM work-items computes two outputs of a product at a time (a rotation
// pair, two rows, or in GLU mode fc1's and the gate's row of one output), its lanes striding
// along the rows eight columns at a time against the normalized input staged in local memory;
// the grid's teams take the outputs in turn, the work-group's teams summing their lanes
// together in local memory (one barrier per halving). Activations written in one phase and
// read in a later one by other groups are read through volatile pointers: a compute unit's
// cache is not coherent with the others' writes.
//
// global (RN_LAYER_WG * groups), local RN_LAYER_WG; the preamble gives RN_LAYER_WG and RN_TEAM.
// x [D]; q [H*dk]; k [kv_heads*dk]; v [kv_heads*dv]; g, o [H*dv]; a [F]; state [H, dk, dv];
// `sync` 3 uints, zero before the first launch and left with sync[0] zero. `local_mem` holds
// 2 RN_LAYER_WG + (H rounded up to 8) + max(D, Dv, F, 2 dk + 4 RN_LAYER_WG) floats.

#define RN_TEAMS (RN_LAYER_WG / RN_TEAM)
#define RN_STEP_COLS 8  // float4 columns of the state per work-group unit of phase 2
#define RN_STEP_PARTS (RN_LAYER_WG / RN_STEP_COLS)
#ifndef RN_SPIN_NS
#define RN_SPIN_NS 1000000000ul
#endif
#ifndef RN_SPINS
#define RN_SPINS (1u << 28)
#endif

typedef struct {
    __global volatile uint *sync;
    __local int *failed;
} grid_t;

// Waits until every group of the grid has arrived; returns 0 (in every work-item of the group)
// when it gave up waiting. The count sync[0] goes back to zero with the last arrival, which
// then advances the generation sync[1] that the others wait on.
inline int grid_sync(grid_t grid) {
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    if (get_local_id(0) == 0 && !*grid.failed) {
        const uint generation = grid.sync[1];
        device_fence();  // this group's writes before its arrival
        if (atomic_inc(&grid.sync[0]) == get_num_groups(0) - 1) {
            atomic_xchg(&grid.sync[0], 0u);
            device_fence();
            atomic_inc(&grid.sync[1]);
        } else {
#ifdef RN_NV_PTX
            ulong start, now;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
            do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
            while (grid.sync[1] == generation && now - start < RN_SPIN_NS);
#else
            uint spins = 0;
            while (grid.sync[1] == generation && ++spins < RN_SPINS) {
            }
#endif
            if (grid.sync[1] == generation) {
                *grid.failed = 1;
                grid.sync[2] = 1;
            }
        }
        device_fence();  // the others' writes before this group's reads
    }
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    return !*grid.failed;
}

// xl = x / sqrt(mean(x^2) + eps) * w, staged in local memory for the group's teams.
inline void stage_rms_norm(__global const volatile float *x, __global const float *w, int cols, float eps,
                           __local float *xl, __local float *red) {
    const int lid = get_local_id(0);
    float sum_sq = 0.0f;
    for (int i0 = 0; i0 < cols; i0 += RN_LAYER_WG) {
        const int i = i0 + lid;
        const float v = i < cols ? x[i] : 0.0f;
        if (i < cols) xl[i] = v;
        sum_sq += v * v;
    }
    const float inv = rsqrt(sum_over(sum_sq, red, lid, RN_LAYER_WG) / cols + eps);
    for (int i = lid; i < cols; i += RN_LAYER_WG) xl[i] = xl[i] * inv * w[i];
    barrier(CLK_LOCAL_MEM_FENCE);
}

// Sums of each team's lanes (sums[2][RN_LAYER_WG], team-major): lane 0 of each team ends with
// its team's two sums.
inline void team_reduce(float d0, float d1, __local float *sums) {
    const int lid = get_local_id(0), lane = lid % RN_TEAM;
    sums[lid] = d0;
    sums[RN_LAYER_WG + lid] = d1;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = RN_TEAM / 2; stride > 0; stride >>= 1) {
        if (lane < stride) {
            sums[lid] += sums[lid + stride];
            sums[RN_LAYER_WG + lid] += sums[RN_LAYER_WG + lid + stride];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// One product of the layer, y = W xl over `rows` outputs (in GLU mode `rows` outputs of fc1's
// rows and the gate's after them), written as project's `mode` writes it (common.cl's
// write_outputs), except that a residual is read back through a volatile pointer.
inline void layer_product(__global const weight_t *W, int rows, int cols, __local const float *xl, int mode,
                          float alpha, int activation, __global float *y0, __global float *y1, __global float *y2,
                          __global float *y3, int end0, int end1, int end2, int rotated, int q_rows,
                          int half_split, __global const float *angle, __global const int *positions,
                          float k_scale, __local float *sums) {
    const int lid = get_local_id(0), lane = lid % RN_TEAM;
    const int glu = mode == RN_PROJECT_GLU;
    const int units = glu ? rows : (rows + 1) / 2;
    const int teams = RN_TEAMS * get_num_groups(0);
    const int vectors = cols / 8;  // the host checks that every width is a multiple of eight
    for (int first = 0; first < units; first += teams) {
        const int unit = first + get_group_id(0) * RN_TEAMS + lid / RN_TEAM;
        int out0, out1;
        const int pair = output_rows(min(unit, units - 1), rotated, glu, half_split, &out0, &out1);
        const size_t w0 = (size_t)out0 * cols / 8;
        const size_t w1 = (size_t)(glu ? rows + out0 : min(out1, rows - 1)) * cols / 8;
        float d0 = 0.0f, d1 = 0.0f;
        for (int c = lane; c < vectors; c += RN_TEAM) {
            const float8 xv = vload8(c, xl);
            d0 += dot8(LOAD_WEIGHT8(W, 0, w0 + c), xv);
            d1 += dot8(LOAD_WEIGHT8(W, 0, w1 + c), xv);
        }
        team_reduce(d0, d1, sums);
        if (lane == 0 && unit < units) {
            const float v0 = sums[lid], v1 = sums[RN_LAYER_WG + lid];
            if (mode == RN_PROJECT_RESIDUAL) {
                __global volatile float *x = y0;
                x[out0] = alpha * x[out0] + v0;
                if (out1 < rows) x[out1] = alpha * x[out1] + v1;
            } else {
                write_outputs(v0, v1, out0, out1, rows, pair, 0, rows, mode, alpha, activation, y0, y1, y2, y3, end0,
                              end1, end2, q_rows, angle, 0, 0, positions, 1, k_scale);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);  // sums are reused by the next unit
    }
}

// Phase 2: the recurrent step of every head. A unit is RN_STEP_COLS float4 columns of one
// head's state, the work-group's RN_STEP_PARTS parts of the key rows each taking every
// RN_STEP_PARTS-th row; the parts' shares of o are summed in local memory. The shares go
// through vload4/vstore4, not float4 pointers: `scratch` lies in the kernel's local-memory
// argument, whose start NVIDIA's driver need not align to 16 bytes, and a misaligned 16-byte
// local access faults there where PoCL and Oclgrind let it pass.
inline void layer_step(__global const volatile float *q, __global const volatile float *k,
                       __global const volatile float *v, __global const float *decays, int H, int kv_heads,
                       int plain, __global float *state, __global const int *positions, __global float *scale0,
                       __global float *scale1, __global float *o, __local float *scratch) {
    __local float *q_local = scratch, *k_local = scratch + RN_DK;
    __local float *shares = scratch + 2 * RN_DK;
    const int lid = get_local_id(0), column = lid % RN_STEP_COLS, part = lid / RN_STEP_COLS;
    const int tiles = (RN_DV / 4 + RN_STEP_COLS - 1) / RN_STEP_COLS;
    const int odd = positions[0] & 1;
    for (int unit = get_group_id(0); unit < H * tiles; unit += get_num_groups(0)) {
        const int h = unit / tiles, c = (unit % tiles) * RN_STEP_COLS + column;
        const int kvh = h / (H / kv_heads);
        const int live = c < RN_DV / 4;
        for (int a = lid; a < RN_DK; a += RN_LAYER_WG) {
            q_local[a] = q[h * RN_DK + a];
            k_local[a] = k[kvh * RN_DK + a];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const float gamma = exp(decays[h]);
        const float s_prev = (odd ? scale0 : scale1)[h];
        const float s = s_prev * gamma + 1.0f;
        const float keep = plain ? gamma : sqrt(s_prev) * gamma / sqrt(s);
        float4 value = 0.0f, out = 0.0f;
        if (live) {
            const int at = kvh * RN_DV + 4 * c;
            value = (float4)(v[at], v[at + 1], v[at + 2], v[at + 3]);
            if (!plain) value /= sqrt(s);
            __global float4 *st = (__global float4 *)(state + (size_t)h * RN_DK * RN_DV) + c;
            for (int a = part; a < RN_DK; a += RN_STEP_PARTS) {
                const float4 entry = st[(size_t)a * (RN_DV / 4)] * keep + k_local[a] * value;
                st[(size_t)a * (RN_DV / 4)] = entry;
                out += q_local[a] * entry;
            }
        }
        vstore4(out, lid, shares);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int stride = RN_STEP_PARTS / 2; stride > 0; stride >>= 1) {
            if (part < stride) vstore4(vload4(lid, shares) + vload4(lid + stride * RN_STEP_COLS, shares), lid, shares);
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (part == 0 && live) vstore4(vload4(lid, shares), c, o + h * RN_DV);
        if (lid == 0 && unit % tiles == 0) (odd ? scale1 : scale0)[h] = s;
        barrier(CLK_LOCAL_MEM_FENCE);  // q_local, k_local and shares are reused by the next unit
    }
}

// Phase 3's input: xl = gate(g) * w * o / sqrt(mean(o^2) + eps) per head (group_norm_gate's
// arithmetic); each head's sum of squares by one team.
inline void stage_head_norm(__global const volatile float *o, __global const volatile float *g,
                            __global const float *w, int H, float eps, int has_weight, int has_gate,
                            __local float *xl, __local float *sums, __local float *inv) {
    const int lid = get_local_id(0), lane = lid % RN_TEAM;
    for (int first = 0; first < H; first += RN_TEAMS) {
        const int h = first + lid / RN_TEAM;
        float sum_sq = 0.0f;
        if (h < H)
            for (int i = lane; i < RN_DV; i += RN_TEAM) {
                const float v = o[h * RN_DV + i];
                sum_sq += v * v;
            }
        team_reduce(sum_sq, 0.0f, sums);
        if (lane == 0 && h < H) inv[h] = rsqrt(sums[lid] / RN_DV + eps);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = lid; i < H * RN_DV; i += RN_LAYER_WG) {
        float v = o[i] * inv[i / RN_DV];
        if (has_weight) v *= w[i % RN_DV];
        if (has_gate) {
            const float gate = g[i];
            v *= gate / (1.0f + exp(-gate));
        }
        xl[i] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

__kernel __attribute__((reqd_work_group_size(RN_LAYER_WG, 1, 1)))
void decode_layer(__global float *x, __global const float *retention_norm, __global const float *ffn_norm,
                  __global const weight_t *qkvg, __global const weight_t *out_proj,
                  __global const weight_t *ffn_in, __global const weight_t *fc2,
                  __global const float *head_norm, __global const float *decays, __global const float *angle,
                  __global const int *positions, __global float *state, __global float *scale0,
                  __global float *scale1, __global float *q, __global float *k, __global float *v,
                  __global float *g, __global float *o, __global float *a, __global volatile uint *sync,
                  __local float *local_mem, int D, int Dv, int F, int H, int kv_heads, int qkvg_rows,
                  int end0, int end1, int end2, int half_split, int plain, int has_gate, int has_weight,
                  int activation, float eps, float alpha, float k_scale) {
    __local int failed;
    __local float *sums = local_mem, *head_inv = local_mem + 2 * RN_LAYER_WG;
    __local float *xl = head_inv + (H + 7) / 8 * 8;
    if (get_local_id(0) == 0) failed = 0;
    const grid_t grid = {sync, &failed};
    barrier(CLK_LOCAL_MEM_FENCE);

    stage_rms_norm(x, retention_norm, D, eps, xl, sums);
    layer_product(qkvg, qkvg_rows, D, xl, RN_PROJECT_PLAIN, 1.0f, 0, q, k, v, g, end0, end1, end2, end1, end0,
                  half_split, angle, positions, k_scale, sums);
    if (grid_sync(grid)) layer_step(q, k, v, decays, H, kv_heads, plain, state, positions, scale0, scale1, o, xl);
    if (grid_sync(grid)) {
        stage_head_norm(o, g, head_norm, H, eps, has_weight, has_gate, xl, sums, head_inv);
        layer_product(out_proj, D, Dv, xl, RN_PROJECT_RESIDUAL, alpha, 0, x, x, x, x, 0, 0, 0, 0, 0, 0, angle,
                      positions, 1.0f, sums);
    }
    if (grid_sync(grid)) {
        stage_rms_norm(x, ffn_norm, D, eps, xl, sums);
        layer_product(ffn_in, F, D, xl, RN_PROJECT_GLU, 1.0f, activation, a, a, a, a, 0, 0, 0, 0, 0, 0, angle,
                      positions, 1.0f, sums);
    }
    if (grid_sync(grid)) {
        for (int i = get_local_id(0); i < F; i += RN_LAYER_WG) xl[i] = ((__global volatile float *)a)[i];
        barrier(CLK_LOCAL_MEM_FENCE);
        layer_product(fc2, D, F, xl, RN_PROJECT_RESIDUAL, alpha, 0, x, x, x, x, 0, 0, 0, 0, 0, 0, angle, positions,
                      1.0f, sums);
    }
    if (failed && get_local_id(0) == 0) ((__global volatile float *)x)[0] = NAN;
}
