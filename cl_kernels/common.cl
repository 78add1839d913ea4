// common.cl: helpers every kernel file may use; the host puts this file first.
//
// The preamble the host generates before it defines:
//   RN_WG           work-items per group of the reducing kernels, a power of two within the
//                   device's and the kernels' limits;
//   RN_DK, RN_DV    key and value dimensions of one retention head;
//   RN_DV_PER_ITEM  ceil(RN_DV / RN_WG): value columns each work-item of a retention group owns.

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
