/* rt_buffer.c: device buffers with byte accounting, transfers and kernel launches. */
#include <string.h>

#include "rt.h"

rn_status rt_buffer_alloc(rt_runtime *rt, size_t bytes, const char *what, rt_buffer *out) {
    out->mem = NULL;
    out->bytes = 0;
    if (bytes == 0) bytes = 4;  /* OpenCL has no empty buffers; keep one word */
    if (bytes > rt->dev.info.max_alloc_bytes)
        return rn_fail(rt->err, RN_ERR_DEVICE_MEMORY,
                       "%s needs %.1f MiB in one buffer; '%s' allows at most %.1f MiB per allocation",
                       what, bytes / 1048576.0, rt->dev.info.name,
                       rt->dev.info.max_alloc_bytes / 1048576.0);
    if (rt->bytes_current + bytes > rt->dev.info.global_mem_bytes)
        return rn_fail(rt->err, RN_ERR_DEVICE_MEMORY,
                       "%s needs %.1f MiB more; %.1f MiB are in use of the %.1f MiB of '%s'", what,
                       bytes / 1048576.0, rt->bytes_current / 1048576.0,
                       rt->dev.info.global_mem_bytes / 1048576.0, rt->dev.info.name);
    cl_int rc;
    cl_mem mem = clCreateBuffer(rt->context, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    if (rc != CL_SUCCESS) {
        rn_status st = rt_cl_fail(rt->err, rc, "clCreateBuffer");
        rn_error_prefix(rt->err, "%s (%.1f MiB)", what, bytes / 1048576.0);
        return st;
    }
    out->mem = mem;
    out->bytes = bytes;
    rt->bytes_current += bytes;
    if (rt->bytes_current > rt->bytes_peak) rt->bytes_peak = rt->bytes_current;
    /* Drivers allocate lazily: touch the memory now so that a shortage is reported here. */
    rn_status st = rt_buffer_zero(rt, out);
    if (st == RN_OK) st = rt_finish(rt);
    if (st != RN_OK) {
        rn_error_prefix(rt->err, "%s (%.1f MiB)", what, bytes / 1048576.0);
        rt_buffer_free(rt, out);
    }
    return st;
}

void rt_buffer_free(rt_runtime *rt, rt_buffer *buf) {
    if (!buf || !buf->mem) return;
    clReleaseMemObject(buf->mem);
    rt->bytes_current -= buf->bytes;
    buf->mem = NULL;
    buf->bytes = 0;
}

static rn_status check_range(rt_runtime *rt, const rt_buffer *buf, size_t offset, size_t bytes,
                             const char *call) {
    if (offset > buf->bytes || bytes > buf->bytes - offset)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "%s: %zu bytes at offset %zu exceed the buffer's %zu", call, bytes, offset,
                       buf->bytes);
    return RN_OK;
}

rn_status rt_buffer_write(rt_runtime *rt, rt_buffer *buf, size_t offset, const void *src,
                          size_t bytes) {
    rn_status st = check_range(rt, buf, offset, bytes, "clEnqueueWriteBuffer");
    if (st != RN_OK || bytes == 0) return st;
    cl_int rc = clEnqueueWriteBuffer(rt->queue, buf->mem, CL_TRUE, offset, bytes, src, 0, NULL, NULL);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clEnqueueWriteBuffer");
}

rn_status rt_buffer_write_async(rt_runtime *rt, rt_buffer *buf, size_t offset, const void *src, size_t bytes) {
    rn_status st = check_range(rt, buf, offset, bytes, "clEnqueueWriteBuffer");
    if (st != RN_OK || bytes == 0) return st;
    cl_int rc = clEnqueueWriteBuffer(rt->queue, buf->mem, CL_FALSE, offset, bytes, src, 0, NULL, NULL);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clEnqueueWriteBuffer");
}

rn_status rt_buffer_read(rt_runtime *rt, const rt_buffer *buf, size_t offset, void *dst,
                         size_t bytes) {
    rn_status st = check_range(rt, buf, offset, bytes, "clEnqueueReadBuffer");
    if (st != RN_OK || bytes == 0) return st;
    cl_int rc = clEnqueueReadBuffer(rt->queue, buf->mem, CL_TRUE, offset, bytes, dst, 0, NULL, NULL);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clEnqueueReadBuffer");
}

rn_status rt_buffer_fill(rt_runtime *rt, rt_buffer *buf, const void *pattern, size_t pattern_size) {
    if (buf->bytes == 0) return RN_OK;
    if (pattern_size == 0 || buf->bytes % pattern_size != 0)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "a %zu-byte pattern does not tile a %zu-byte buffer",
                       pattern_size, buf->bytes);
    cl_int rc = clEnqueueFillBuffer(rt->queue, buf->mem, pattern, pattern_size, 0, buf->bytes, 0, NULL, NULL);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clEnqueueFillBuffer");
}

rn_status rt_buffer_zero(rt_runtime *rt, rt_buffer *buf) {
    const cl_uchar zero = 0;
    cl_int rc = clEnqueueFillBuffer(rt->queue, buf->mem, &zero, 1, 0, buf->bytes, 0, NULL, NULL);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clEnqueueFillBuffer");
}

rn_status rt_buffer_zero_at(rt_runtime *rt, rt_buffer *buf, size_t offset, size_t bytes) {
    if (offset > buf->bytes || bytes > buf->bytes - offset)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "zeroing %zu bytes at offset %zu of %zu", bytes, offset,
                       buf->bytes);
    if (bytes == 0) return RN_OK;
    const cl_uchar zero = 0;
    cl_int rc = clEnqueueFillBuffer(rt->queue, buf->mem, &zero, 1, offset, bytes, 0, NULL, NULL);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clEnqueueFillBuffer");
}

rn_status rt_buffer_copy_at(rt_runtime *rt, const rt_buffer *src, size_t src_offset, rt_buffer *dst,
                            size_t dst_offset, size_t bytes) {
    if (src_offset > src->bytes || bytes > src->bytes - src_offset || dst_offset > dst->bytes ||
        bytes > dst->bytes - dst_offset)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT,
                       "copy of %zu bytes from offset %zu of %zu to offset %zu of %zu", bytes, src_offset,
                       src->bytes, dst_offset, dst->bytes);
    if (bytes == 0) return RN_OK;
    cl_int rc = clEnqueueCopyBuffer(rt->queue, src->mem, dst->mem, src_offset, dst_offset, bytes, 0, NULL,
                                    rt_profile_slot(rt, "copy"));
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clEnqueueCopyBuffer");
}

rn_status rt_buffer_copy(rt_runtime *rt, const rt_buffer *src, rt_buffer *dst, size_t bytes) {
    return rt_buffer_copy_at(rt, src, 0, dst, 0, bytes);
}

rn_status rt_launch(rt_runtime *rt, cl_kernel kernel, const char *name, const rt_arg *args,
                    size_t n_args, cl_uint dims, const size_t *global, const size_t *local) {
    for (size_t i = 0; i < n_args; i++) {
        cl_int rc = clSetKernelArg(kernel, (cl_uint)i, args[i].size, args[i].value);
        if (rc != CL_SUCCESS) {
            rn_status st = rt_cl_fail(rt->err, rc, "clSetKernelArg");
            rn_error_prefix(rt->err, "kernel '%s' argument %zu", name, i);
            return st;
        }
    }
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0) return RN_OK;  /* nothing to do; OpenCL rejects empty ranges */
    /* On devices that allow only a few work-items per group, choose one-item groups rather
     * than leave the choice to the driver: PoCL 3.1's chooser aborts below its preferred
     * multiple of 8 on 2-D ranges. Elsewhere the driver knows best. */
    const size_t ones[3] = {1, 1, 1};
    if (!local && rt->dev.info.max_work_group < 8) local = ones;
    cl_int rc = clEnqueueNDRangeKernel(rt->queue, kernel, dims, NULL, global, local, 0, NULL,
                                       rt_profile_slot(rt, name));
    if (rc != CL_SUCCESS) {
        rn_status st = rt_cl_fail(rt->err, rc, "clEnqueueNDRangeKernel");
        rn_error_prefix(rt->err, "kernel '%s'", name);
        return st;
    }
    return RN_OK;
}

size_t rt_kernel_max_group(rt_runtime *rt, cl_kernel kernel) {
    size_t n = 0;
    if (clGetKernelWorkGroupInfo(kernel, rt->dev.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof n, &n, NULL) !=
            CL_SUCCESS ||
        n == 0)
        n = 1;
    return n;
}
