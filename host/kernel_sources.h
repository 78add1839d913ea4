/*
 * kernel_sources.h: the .cl files of cl_kernels, embedded into the library at build time
 * (cmake/embed_kernels.cmake), looked up by file name. Internal to host/: runtime/ takes
 * kernel text as arguments and never reaches for the table itself.
 */
#ifndef RN_KERNEL_SOURCES_H
#define RN_KERNEL_SOURCES_H

#include <stddef.h>

#include "rn_common.h"

/* The generated table (build/gen/rn_kernels.c); the layout is embed_kernels.cmake's. The
 * model program is built from every entry (ops.c). */
struct rn_embedded_kernel {
    const char *name;
    const char *source;
    size_t size;
};
extern const struct rn_embedded_kernel rn_embedded_kernels[];
extern const size_t rn_embedded_kernel_count;

/* The text and length of the embedded file `name` ("probe.cl"); RN_ERR_INVALID_ARGUMENT,
 * naming the file, when the build embedded no such file. */
rn_status rn_kernel_source(const char *name, const char **source, size_t *size, rn_error *err);

#endif /* RN_KERNEL_SOURCES_H */
