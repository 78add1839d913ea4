/* rt_blas.c: the large matrix products, through CLBlast. */
#include <clblast_c.h>

#include "rt.h"

rn_status rt_gemm_xwt(rt_runtime *rt, size_t M, size_t N, size_t K, const rt_buffer *x,
                      size_t x_offset, const rt_buffer *w, size_t w_offset, rt_buffer *y,
                      size_t y_offset) {
    if (M == 0 || N == 0) return RN_OK;
    CLBlastStatusCode status =
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, M, N, K, 1.0f,
                     x->mem, x_offset, K, w->mem, w_offset, K, 0.0f, y->mem, y_offset, N, &rt->queue,
                     rt_profile_slot(rt, "sgemm"));
    if (status == CLBlastSuccess) return RN_OK;
    bool memory = status == CLBlastTempBufferAllocFailure || status == CLBlastOpenCLOutOfResources ||
                  status == CLBlastOpenCLOutOfHostMemory;
    return rn_fail(rt->err, memory ? RN_ERR_DEVICE_MEMORY : RN_ERR_CLBLAST,
                   "CLBlastSgemm(M=%zu, N=%zu, K=%zu) failed: %s (%d)", M, N, K,
                   rt_clblast_status_name(status), (int)status);
}
