/* rt_profile.c: timing every launch with OpenCL events, for `--profile`.
 *
 * Off by default: a profiling queue costs a little on some drivers, and the events would pile
 * up. When on, every launch (kernels and CLBlast products) gets an event named after what it
 * ran and tagged with what the caller said it was doing (a layer); rt_profile_drain turns them
 * into durations. */
#include <stdlib.h>

#include "rt.h"

rn_status rt_profile_start(rt_runtime *rt) {
    if (rt->profiling) return RN_OK;
    cl_int rc = clFinish(rt->queue);
    if (rc != CL_SUCCESS) return rt_cl_fail(rt->err, rc, "clFinish");
    cl_command_queue queue = clCreateCommandQueue(rt->context, rt->dev.device, CL_QUEUE_PROFILING_ENABLE, &rc);
    if (rc != CL_SUCCESS) return rt_cl_fail(rt->err, rc, "clCreateCommandQueue(CL_QUEUE_PROFILING_ENABLE)");
    clReleaseCommandQueue(rt->queue);
    rt->queue = queue;
    rt->profiling = true;
    return RN_OK;
}

void rt_profile_tag(rt_runtime *rt, int tag) {
    rt->profile_tag = tag;
}

cl_event *rt_profile_slot(rt_runtime *rt, const char *name) {
    if (!rt->profiling) return NULL;
    if (rt->profile_count == rt->profile_capacity) {
        size_t capacity = rt->profile_capacity ? 2 * rt->profile_capacity : 1024;
        rt_profile_event *grown = realloc(rt->profile, capacity * sizeof *grown);
        if (!grown) return NULL;  /* this launch goes untimed rather than failing */
        rt->profile = grown;
        rt->profile_capacity = capacity;
    }
    rt_profile_event *e = &rt->profile[rt->profile_count++];
    e->name = name;
    e->tag = rt->profile_tag;
    e->event = NULL;
    return &e->event;
}

rn_status rt_profile_drain(rt_runtime *rt, rt_profile_sink sink, void *user) {
    rn_status st = RN_OK;
    cl_int rc = clFinish(rt->queue);
    if (rc != CL_SUCCESS) st = rt_cl_fail(rt->err, rc, "clFinish");
    for (size_t i = 0; i < rt->profile_count; i++) {
        rt_profile_event *e = &rt->profile[i];
        if (!e->event) continue;  /* the launch failed before it had an event */
        cl_ulong start = 0, end = 0;
        if (st == RN_OK) {
            rc = clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL);
            if (rc == CL_SUCCESS)
                rc = clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
            if (rc != CL_SUCCESS) st = rt_cl_fail(rt->err, rc, "clGetEventProfilingInfo");
            else if (sink) sink(user, e->name, e->tag, (double)(end - start) * 1e-9);
        }
        clReleaseEvent(e->event);
    }
    rt->profile_count = 0;
    return st;
}

void rt_profile_release(rt_runtime *rt) {
    if (rt->profile_count && rt->queue) rt_profile_drain(rt, NULL, NULL);
    free(rt->profile);
    rt->profile = NULL;
    rt->profile_capacity = 0;
}
