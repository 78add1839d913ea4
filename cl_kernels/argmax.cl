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

// A work-item's share is groups of four neighbours, RN_WG groups apart, and then one of the
// V % 4 last columns; it loads AM_DEPTH groups before comparing any. Decoding one sequence
// leaves one work-group for the whole row (64k logits on 64 work-items: 250 groups each), whose
// time is that many load latencies unless the loads overlap.
#define AM_DEPTH 8

// Logit v at column i of a share scanned in increasing column order: a strictly larger value
// (or the share's first) becomes its best, so the best keeps its lowest column.
inline void argmax_take(float v, int i, float *value, int *index, int *bad) {
    if (v > *value || *index == INT_MAX) *value = v, *index = i;
    if (*bad < 0 && !isfinite(v)) *bad = i;
}

// out[first + row] = {index of the row's largest logit, its lowest non-finite column or -1},
// and the index alone in next[row]: the next step's input, so that greedy steps can follow each
// other on the device without the host in between (0 for a refused row, which stays a valid
// token: that step's results are thrown away), each step's choices kept at its own `first`. One
// work-group of RN_WG work-items per row: global (RN_WG * rows). Any V >= 1.
__kernel void argmax_rows(__global const float *logits,  // [rows, V]
                          __global int *out,             // [first + rows, 2]
                          int first,
                          __global int *next,            // [rows]
                          int V) {
    __local float best_value[RN_WG];
    __local int best_index[RN_WG], first_bad[RN_WG];
    const int lid = get_local_id(0);
    const size_t row = get_group_id(0);
    __global const float *x = logits + row * (size_t)V;
    // An empty share (V < RN_WG) holds -inf at an index past every real one: it loses to
    // every value of the row, -inf included.
    float value = -INFINITY;
    int index = INT_MAX, bad = -1;
    const int groups = V / 4;
    for (int g0 = lid; g0 < groups; g0 += AM_DEPTH * RN_WG) {
        float4 v[AM_DEPTH];
        for (int d = 0; d < AM_DEPTH; d++) {
            const int g = g0 + d * RN_WG;
            v[d] = g < groups ? vload4(g, x) : (float4)(0.0f);
        }
        for (int d = 0; d < AM_DEPTH; d++) {
            const int g = g0 + d * RN_WG;
            if (g >= groups) break;
            argmax_take(v[d].x, 4 * g, &value, &index, &bad);
            argmax_take(v[d].y, 4 * g + 1, &value, &index, &bad);
            argmax_take(v[d].z, 4 * g + 2, &value, &index, &bad);
            argmax_take(v[d].w, 4 * g + 3, &value, &index, &bad);
        }
    }
    for (int i = 4 * groups + lid; i < V; i += RN_WG) argmax_take(x[i], i, &value, &index, &bad);
    best_value[lid] = value;
    best_index[lid] = index;
    first_bad[lid] = bad;
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
    if (lid == 0) {
        out[2 * (first + row)] = best_index[0];
        out[2 * (first + row) + 1] = first_bad[0];
        next[row] = first_bad[0] >= 0 ? 0 : best_index[0];
    }
}
