// probe.cl: the copy kernel that measures a device's memory bandwidth (runtime/rt_probe.c).
//
// It needs nothing from the preamble or common.cl: the runtime builds it alone, while the
// model's program compiles it with every other file, so its one name must stay unique.
// float4 per work-item, as clpeak does: wide enough for full-width loads on GPUs and CPUs,
// narrow enough to keep enough work-items in flight. One work-item per float4: global (n4).

__kernel void probe_copy(__global const float4 *src, __global float4 *dst) {
    const size_t i = get_global_id(0);
    dst[i] = src[i];
}
