// argmax.cl: greedy decoding's choice made on the device, so that a step reads back one token
// id per row instead of the row's logits (a batch of 32 on a 64k vocabulary: 8 MB a step).
//
// The choice must be the host sampler's at temperature 0 (sampler.c): the largest logit, the
// lowest index among equal ones (IEEE equality: -0 ties with +0). Each work-item scans its
// share of the row (below) in increasing index order, replacing its best only on a strictly
// larger value, so it keeps the lowest index of its share; the shares then meet in a tree in
// local memory where the larger value wins and equal values keep the lower index. Local
// memory rather than subgroup shuffles: PoCL and NVIDIA's OpenCL lack cl_khr_subgroups.
//
// The same pass finds the row's first NaN or infinity, which the host refuses as it refuses
// logits it reads itself (RN_ERR_NUMERIC); the choice of such a row means nothing.

// A row is cut into `parts` slices of whole groups of four, one work-group each (the last
// slice also takes the V % 4 last columns). Within a slice a work-item's share is groups of
// four neighbours, RN_WG groups apart, then one of the last columns; it loads RN_ARGMAX_DEPTH
// groups (a constant the host shares through the preamble) before comparing any. One
// work-group for a whole row (64k logits on 64 work-items: 250 groups each) took 45 us of a
// 1.3B step on an H100, that many load latencies one after another; the host gives each slice
// about one such round of loads instead.
#define AM_DEPTH RN_ARGMAX_DEPTH

// Logit v at column i of a share scanned in increasing column order: a strictly larger value
// (or the share's first) becomes its best, so the best keeps its lowest column.
inline void argmax_take(float v, int i, float *value, int *index, int *bad) {
    if (v > *value || *index == INT_MAX) *value = v, *index = i;
    if (*bad < 0 && !isfinite(v)) *bad = i;
}

// The shares of a work-group met in a tree in local memory; the winner lands in slot 0.
inline void argmax_meet(__local float *best_value, __local int *best_index, __local int *first_bad, int lid) {
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = RN_WG / 2; stride > 0; stride >>= 1) {
        if (lid < stride) {
            const float v = best_value[lid + stride];
            const int j = best_index[lid + stride], b = first_bad[lid + stride];
            if (v > best_value[lid] || (v == best_value[lid] && j < best_index[lid])) {
                best_value[lid] = v;
                best_index[lid] = j;
            }
            if (b >= 0 && (first_bad[lid] < 0 || b < first_bad[lid])) first_bad[lid] = b;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// out[first + row] = {index of the row's largest logit, its lowest non-finite column or -1},
// and the index alone in next[row]: the next step's input, so that greedy steps can follow each
// other on the device without the host in between (0 for a refused row, which stays a valid
// token: that step's results are thrown away), each step's choices kept at its own `first`.
// With parts > 1 each slice's group leaves its winner in slices[row][part] and counts itself
// in done[row] (zero before the launch, and left zero); the row's last group to count meets
// the slices' winners in slice order. That needs the ordering across work-groups that
// retention_step's norm needs (rn_kernels.groups_hand_off); the host asks for one part elsewhere.
// global (RN_WG * parts, rows), local (RN_WG, 1). Any V >= 1.
__kernel void argmax_rows(__global const float *logits,  // [rows, V]
                          __global int *out,             // [first + rows, 2]
                          int first,
                          __global int *next,            // [rows]
                          int V, int parts,
                          __global volatile int *slices, // [rows, parts, 3]: value bits, index, bad
                          __global volatile int *done) { // [rows]
    __local float best_value[RN_WG];
    __local int best_index[RN_WG], first_bad[RN_WG];
    __local int last;
    const int lid = get_local_id(0), part = get_group_id(0);
    const size_t row = get_group_id(1);
    __global const float *x = logits + row * (size_t)V;
    const int groups = V / 4, per_part = (groups + parts - 1) / parts;
    const int g_begin = min(groups, part * per_part), g_end = min(groups, g_begin + per_part);
    // An empty share (V < RN_WG) holds -inf at an index past every real one: it loses to
    // every value of the row, -inf included.
    float value = -INFINITY;
    int index = INT_MAX, bad = -1;
    for (int g0 = g_begin + lid; g0 < g_end; g0 += AM_DEPTH * RN_WG) {
        float4 v[AM_DEPTH];
        for (int d = 0; d < AM_DEPTH; d++) {
            const int g = g0 + d * RN_WG;
            v[d] = g < g_end ? vload4(g, x) : (float4)(0.0f);
        }
        for (int d = 0; d < AM_DEPTH; d++) {
            const int g = g0 + d * RN_WG;
            if (g >= g_end) break;
            argmax_take(v[d].x, 4 * g, &value, &index, &bad);
            argmax_take(v[d].y, 4 * g + 1, &value, &index, &bad);
            argmax_take(v[d].z, 4 * g + 2, &value, &index, &bad);
            argmax_take(v[d].w, 4 * g + 3, &value, &index, &bad);
        }
    }
    if (part == parts - 1)
        for (int i = 4 * groups + lid; i < V; i += RN_WG) argmax_take(x[i], i, &value, &index, &bad);
    best_value[lid] = value;
    best_index[lid] = index;
    first_bad[lid] = bad;
    argmax_meet(best_value, best_index, first_bad, lid);
    if (parts > 1) {
        __global volatile int *mine = slices + 3 * (row * (size_t)parts + (size_t)part);
        if (lid == 0) {
            mine[0] = as_int(best_value[0]);
            mine[1] = best_index[0];
            mine[2] = first_bad[0];
            device_fence();  // the winner before the count
            last = atomic_inc(&done[row]) == parts - 1;
            if (last) atomic_xchg(&done[row], 0);  // every other slice has counted
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!last) return;  // the same in the whole group
        device_fence();  // the count before the other slices' winners
        // Work-item lid meets the slices lid, lid + RN_WG, ... in order: slices come in column
        // order, so a strictly larger value keeps the lowest column.
        value = -INFINITY, index = INT_MAX, bad = -1;
        for (int p = lid; p < parts; p += RN_WG) {
            __global volatile int *theirs = slices + 3 * (row * (size_t)parts + (size_t)p);
            const float v = as_float(theirs[0]);
            const int j = theirs[1], b = theirs[2];
            if (v > value || index == INT_MAX) value = v, index = j;
            if (bad < 0) bad = b;
        }
        best_value[lid] = value;
        best_index[lid] = index;
        first_bad[lid] = bad;
        argmax_meet(best_value, best_index, first_bad, lid);
    }
    if (lid == 0) {
        out[2 * (first + row)] = best_index[0];
        out[2 * (first + row) + 1] = first_bad[0];
        next[row] = first_bad[0] >= 0 ? 0 : best_index[0];
    }
}
