// retention_step.cl: one token of each of a batch of sequences in the recurrent form, for
// decoding (the prompt's forms are retention.cl's). A file of its own because two programs
// build it: the model's and the batch set's (host/ops.c), which has no use for the rest of
// retention.cl.

// One token in the recurrent form for each of B sequences at the same position, continuing
// their states; q and k arrive rotated (and k scaled), as the project kernel leaves them.
//
// torchscale's recursion: s_n = s_(n-1) gamma + 1 and
//   state_n = state_(n-1) sqrt(s_(n-1)) gamma / sqrt(s_n) + k_n v_n^T / sqrt(s_n),
//   o_n = q_n state_n;
// plain (fla): state_n = gamma state_(n-1) + k_n v_n^T.
// Each sequence has its own position (positions[B]) and so its own scale per head, kept in two
// slots [B*H] double-buffered by the sequence's own position parity: a token at position p
// reads slot (p + 1) & 1 (the scale of p - 1) and writes slot p & 1, so no work-item can see a
// scale another has already advanced, and sequences at different positions step together.
//
// The kernel is bound by the state, read and written once (it is most of what a batch of
// decoding reads besides the weights), so its shape is the one that streams the state fastest:
//  - a work-item owns RN_STEP_VEC neighbouring value columns (4 where RN_DV allows: 16-byte
//    loads and stores) of RN_STEP_ROWS key rows, and a work-group RN_STEP_TILE such columns,
//    so that the group's accesses to one row are contiguous and whole 32-byte sectors;
//  - the key dimension is cut into RN_STEP_SPLIT parts (a group holds every part of its
//    columns, whose shares of o are added in local memory) so that there are enough
//    work-items at batch 1 too;
//  - rows are loaded RN_STEP_BATCH at a time into registers before any is used, so that many
//    loads are in flight per work-item, the first batch before waiting for q and k.
// RN_STEP_TILE * RN_STEP_SPLIT = RN_WG; the host picks the split (host/ops.c).
// With `norm` set, the step also applies the group norm and gate (group_norm_gate, norms.cl) to
// o, saving that launch (on an H100 about level: 1.3B batch 1 at 535 tokens/s against 531-533): the
// group that finishes a head last, counted in done[B*H] (zero before the launch, and left zero),
// normalizes the head's whole row of o once every group of the head has written its columns.
// The host asks for it where that ordering across groups is stated (NVIDIA: membar.gl) or given
// (CPUs): rn_kernels.groups_hand_off.
// ahead: what the next launch reads first (out_proj's weights), of which the groups ask their
// shares of the first ahead_bytes into L2 (ask_ahead, common.cl).
// global (RN_STEP_TILE * ceil(RN_DV / RN_STEP_VEC / RN_STEP_TILE), RN_STEP_SPLIT, B * H),
// local (RN_STEP_TILE, RN_STEP_SPLIT, 1).
// q [B, H*DK]; k [B, kv_heads*DK]; v [B, kv_heads*DV]; state [B*H, DK, DV]; o, g [B, H*DV].
#define RN_STEP_ROWS (RN_DK / RN_STEP_SPLIT)
#define RN_STEP_TILE (RN_WG / RN_STEP_SPLIT)
#define RN_STEP_COLUMNS (RN_DV / RN_STEP_VEC)
#if RN_STEP_VEC == 4
typedef float4 step_t;
#else
typedef float step_t;
#endif
__kernel void retention_step(__global const float *q, __global const float *k,
                             __global const float *v, __global const float *decays,
                             int H, int kv_heads, int plain, __global float *state,
                             __global const int *positions, __global float *scale0,
                             __global float *scale1, __global float *o, int norm,
                             __global const float *g, __global const float *w, float eps, int has_weight,
                             int has_gate, __global volatile int *done, __global const uchar *ahead,
                             ulong ahead_bytes) {
    __local float q_local[RN_DK], k_local[RN_DK];
    __local step_t shares[RN_STEP_SPLIT][RN_STEP_TILE];
    __local int last;
    const int c = get_global_id(0), part = get_local_id(1), bh = get_global_id(2);
    const int column = get_local_id(0), lid = part * RN_STEP_TILE + column;
    const int sequence = bh / H, h = bh % H;
    const int kvh = h / (H / kv_heads);
    const int a0 = part * RN_STEP_ROWS;
    const bool live = c < RN_STEP_COLUMNS;
    ask_ahead(1, ahead, ahead_bytes);
    __global step_t *st = (__global step_t *)(state + (size_t)bh * RN_DK * RN_DV) + (size_t)a0 * RN_STEP_COLUMNS + c;

    // The scalars of this step, out of the row loop.
    const float gamma = exp(decays[h]);
    const int odd = positions[sequence] & 1;
    const float s_prev = (odd ? scale0 : scale1)[bh];
    const float s = s_prev * gamma + 1.0f;
    const float keep = plain ? gamma : sqrt(s_prev) * gamma / sqrt(s);
    step_t value = 0.0f, out = 0.0f, entry[RN_STEP_BATCH];
    if (live) {
        value = ((__global const step_t *)(v + ((size_t)sequence * kv_heads + kvh) * RN_DV))[c];
        if (!plain) value /= sqrt(s);
    }
    for (int r0 = 0; r0 < RN_STEP_ROWS; r0 += RN_STEP_BATCH) {
        if (live)
            for (int i = 0; i < RN_STEP_BATCH; i++) entry[i] = st[(size_t)(r0 + i) * RN_STEP_COLUMNS];
        if (r0 == 0) {  // the same in every work-item of the group
            __global const float *qh = q + ((size_t)sequence * H + h) * RN_DK;
            __global const float *kh = k + ((size_t)sequence * kv_heads + kvh) * RN_DK;
            for (int a = lid; a < RN_DK; a += RN_WG) {
                q_local[a] = qh[a];
                k_local[a] = kh[a];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (live)
            for (int i = 0; i < RN_STEP_BATCH; i++) {
                const int a = a0 + r0 + i;
                entry[i] = entry[i] * keep + k_local[a] * value;
                st[(size_t)(r0 + i) * RN_STEP_COLUMNS] = entry[i];
                out += q_local[a] * entry[i];
            }
    }
    if (live && c == 0 && part == 0) (odd ? scale1 : scale0)[bh] = s;
    shares[part][column] = out;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (part == 0 && live) {
        step_t sum = 0.0f;
        for (int p = 0; p < RN_STEP_SPLIT; p++) sum += shares[p][column];
        ((__global step_t *)(o + (size_t)bh * RN_DV))[c] = sum;
    }
    if (norm) {
        device_fence();  // o's columns before the count
        barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
        if (lid == 0) {
            last = atomic_inc(&done[bh]) == (int)get_num_groups(0) - 1;
            if (last) atomic_xchg(&done[bh], 0);  // every other group of the head has counted
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (last) {
            device_fence();  // the count before the other groups' columns
            head_norm_gate(o, g, w, o, (size_t)bh * RN_DV, eps, has_weight, has_gate,
                           (__local float *)shares);
        }
    }
    ask_ahead(2, ahead, ahead_bytes);
}
