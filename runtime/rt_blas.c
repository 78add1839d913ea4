/* rt_blas.c: the large matrix products, through CLBlast. */
#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>

#include "rt.h"

/* A failed CLBlast call as an rn_status: its allocation failures are device memory. */
static rn_status blas_fail(rt_runtime *rt, CLBlastStatusCode status, const char *call) {
    bool memory = status == CLBlastTempBufferAllocFailure || status == CLBlastOpenCLOutOfResources ||
                  status == CLBlastOpenCLOutOfHostMemory;
    return rn_fail(rt->err, memory ? RN_ERR_DEVICE_MEMORY : RN_ERR_CLBLAST, "%s failed: %s (%d)", call,
                   rt_clblast_status_name(status), (int)status);
}

rn_status rt_gemm_xwt(rt_runtime *rt, size_t M, size_t N, size_t K, const rt_buffer *x,
                      size_t x_offset, const rt_buffer *w, size_t w_offset, rt_buffer *y,
                      size_t y_offset, size_t y_ld) {
    if (M == 0 || N == 0) return RN_OK;
    CLBlastStatusCode status =
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, M, N, K, 1.0f,
                     x->mem, x_offset, K, w->mem, w_offset, K, 0.0f, y->mem, y_offset, y_ld, &rt->queue,
                     rt_profile_slot(rt, "sgemm"));
    if (status == CLBlastSuccess) return RN_OK;
    char call[96];
    snprintf(call, sizeof call, "CLBlastSgemm(M=%zu, N=%zu, K=%zu)", M, N, K);
    return blas_fail(rt, status, call);
}

rn_status rt_gemm_batched(rt_runtime *rt, bool trans_a, bool trans_b, size_t M, size_t N, size_t K,
                          float beta, const rt_buffer *a, const size_t *a_offsets, size_t a_ld,
                          const rt_buffer *b, const size_t *b_offsets, size_t b_ld, rt_buffer *c,
                          const size_t *c_offsets, size_t c_ld, size_t count) {
    if (M == 0 || N == 0 || count == 0) return RN_OK;
    float *scalars = malloc(2 * count * sizeof *scalars);
    if (!scalars) return rn_fail(rt->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for %zu GEMM scalars", count);
    for (size_t i = 0; i < count; i++) scalars[i] = 1.0f, scalars[count + i] = beta;
    CLBlastStatusCode status = CLBlastSgemmBatched(
        CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
        trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, M, N, K, scalars, a->mem, a_offsets, a_ld, b->mem,
        b_offsets, b_ld, scalars + count, c->mem, c_offsets, c_ld, count, &rt->queue,
        rt_profile_slot(rt, "sgemm_batched"));
    free(scalars);
    if (status == CLBlastSuccess) return RN_OK;
    char call[128];
    snprintf(call, sizeof call, "CLBlastSgemmBatched(M=%zu, N=%zu, K=%zu, %zu products)", M, N, K, count);
    return blas_fail(rt, status, call);
}
