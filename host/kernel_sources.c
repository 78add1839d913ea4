/* kernel_sources.c: finding one embedded cl_kernels file by name (kernel_sources.h). */
#include "kernel_sources.h"

#include <string.h>

rn_status rn_kernel_source(const char *name, const char **source, size_t *size, rn_error *err) {
    *source = NULL;
    *size = 0;
    for (size_t i = 0; i < rn_embedded_kernel_count; i++)
        if (strcmp(rn_embedded_kernels[i].name, name) == 0) {
            *source = rn_embedded_kernels[i].source;
            *size = rn_embedded_kernels[i].size;
            return RN_OK;
        }
    return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "no kernel file '%s' was embedded at build time", name);
}
