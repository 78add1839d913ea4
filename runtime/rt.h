/*
 * rt.h: the OpenCL and CLBlast layer. It knows devices, programs, buffers and GEMMs, and
 * nothing about RetNet: another model family could use it unchanged.
 *
 * Every function returns an rn_status and, on failure, writes into the runtime's rn_error the
 * OpenCL call that failed with its symbolic error name (or the CLBlast routine and status).
 */
#ifndef RN_RT_H
#define RN_RT_H

#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rn_common.h"

/* ---- errors ---------------------------------------------------------------------------------- */

/* "CL_OUT_OF_RESOURCES"; "CL_UNKNOWN_ERROR" for codes the table lacks. */
const char *rt_cl_error_name(cl_int code);
/* "CLBlastInvalidDimension"; OpenCL-range codes are named as OpenCL errors. */
const char *rt_clblast_status_name(int status);
/* Records `call` and the name of `code` in err. Allocation failures (-4, -5, -6, -61) map to
 * RN_ERR_DEVICE_MEMORY, everything else to RN_ERR_OPENCL. */
rn_status rt_cl_fail(rn_error *err, cl_int code, const char *call);

/* ---- devices --------------------------------------------------------------------------------- */

/* What the runtime reads of a device. Field for field the public rn_device_info (retnet.h),
 * which the library fills from this one: the runtime does not see the public header. */
typedef struct rt_device_info {
    char platform[128];
    char vendor[128];
    char name[128];
    char version[64];        /* CL_DEVICE_OPENCL_C_VERSION */
    char driver[64];
    int is_gpu;              /* CL_DEVICE_TYPE_GPU */
    uint32_t compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    size_t max_work_group;
    int has_fp16;            /* cl_khr_fp16 */
    uint32_t platform_index;
    uint32_t device_index;
    /* Matrix engines, from the extensions (rt_device.c). */
    int nv_cc_major, nv_cc_minor; /* NVIDIA compute capability (cl_nv_device_attribute_query);
                                     0.0 elsewhere */
    int matrix_engine;       /* an rt_matrix_engine */
} rt_device_info;

/* The matrix instructions a device offers, as detected; which of them have kernels is the
 * library's choice (host/ops.c). Values equal the public rn_matrix_engine's. */
typedef enum rt_matrix_engine {
    RT_MATRIX_NONE = 0,
    RT_MATRIX_NV_MMA = 1,       /* NVIDIA compute capability 8.0+: mma.sync through inline PTX */
    RT_MATRIX_INTEL_DPAS = 2,   /* cl_intel_subgroup_matrix_multiply_accumulate */
    RT_MATRIX_AMD = 3,          /* AMD CDNA (MFMA) or RDNA 3+ (WMMA), by the gfx name */
} rt_matrix_engine;

typedef struct rt_device_entry {
    cl_platform_id platform;
    cl_device_id device;
    rt_device_info info;
} rt_device_entry;

#define RT_MAX_DEVICES 64

/* Every device of every platform, at most RT_MAX_DEVICES. RN_ERR_NO_PLATFORM when there is no
 * platform at all; an empty list is not an error here. */
rn_status rt_devices_enumerate(rt_device_entry *entries, size_t capacity, size_t *count,
                               rn_error *err);

/* Chooses by `spec`: "P:D" indices, or a case-insensitive substring of the device name;
 * NULL or "" means $RETNET_DEVICE when set, else the first GPU, else the first device. The
 * error lists the devices that exist. */
rn_status rt_device_select(const char *spec, rt_device_entry *out, rn_error *err);

/* ---- the runtime: one device, its context and in-order queue ----------------------------- */

typedef enum rt_cache_mode { RT_CACHE_AUTO = -1, RT_CACHE_OFF = 0, RT_CACHE_ON = 1 } rt_cache_mode;

/* A launch being timed (rt_profile.c). */
typedef struct rt_profile_event {
    cl_event event;
    const char *name;        /* static: the kernel's or routine's name */
    int tag;
} rt_profile_event;

typedef struct rt_runtime {
    rt_device_entry dev;
    cl_context context;
    cl_command_queue queue;
    rt_cache_mode cache_mode;
    char *cache_dir;         /* NULL: caching off */
    char *build_options;     /* added to every build, which then skips the cache; NULL: none */
    void (*build_log)(void *user, const char *options, const char *log);  /* with build_options */
    void *build_log_user;
    uint64_t bytes_current;  /* device bytes allocated through rt_buffer_alloc */
    uint64_t bytes_peak;
    rn_error *err;           /* owned by the caller (the host context) */
    bool profiling;          /* the queue times launches: rt_profile_start */
    int profile_tag;
    rt_profile_event *profile;
    size_t profile_count, profile_capacity;
} rt_runtime;

rn_status rt_init(rt_runtime *rt, const char *device_spec, rt_cache_mode cache_mode,
                  const char *cache_dir, rn_error *err);
void rt_release(rt_runtime *rt);
/* Waits for the queue; reports a failure of anything enqueued before. */
rn_status rt_finish(rt_runtime *rt);
/* Hands what is queued to the device without waiting for it. */
rn_status rt_flush(rt_runtime *rt);
/* *done: a new event that completes when everything queued before it has (a marker). */
rn_status rt_marker(rt_runtime *rt, cl_event *done);
/* Waits for *event and releases it (*event becomes NULL; a NULL event is already done). */
rn_status rt_event_wait(rt_runtime *rt, cl_event *event);

/* ---- programs -------------------------------------------------------------------------------- */

/* Builds `preamble` followed by the n sources for the runtime's device with `options`.
 * With the binary cache on, a cached binary keyed by (preamble, sources, options, device,
 * driver, platform version) is tried first; any cache problem falls back to compiling. A
 * failed build returns RN_ERR_BUILD with the options and the build log in the message. */
rn_status rt_program_build(rt_runtime *rt, const char *preamble, const char *const *sources,
                           const size_t *lengths, size_t n, const char *options,
                           cl_program *out);
rn_status rt_kernel_create(rt_runtime *rt, cl_program program, const char *name,
                           cl_kernel *out);

/* ---- buffers --------------------------------------------------------------------------------- */

typedef struct rt_buffer {
    cl_mem mem;
    size_t bytes;
} rt_buffer;

/* Allocates and zero-fills (so that a lazily allocating driver reports out-of-memory here,
 * not at first use). `what` names the buffer in errors. Checked against the device's maximum
 * single allocation before asking the driver. */
rn_status rt_buffer_alloc(rt_runtime *rt, size_t bytes, const char *what, rt_buffer *out);
void rt_buffer_free(rt_runtime *rt, rt_buffer *buf);
rn_status rt_buffer_write(rt_runtime *rt, rt_buffer *buf, size_t offset, const void *src,
                          size_t bytes);
rn_status rt_buffer_read(rt_runtime *rt, const rt_buffer *buf, size_t offset, void *dst,
                         size_t bytes);
/* The same write without waiting for it: `src` must stay as it is until the queue has run the
 * write (a later blocking read or rt_finish). */
rn_status rt_buffer_write_async(rt_runtime *rt, rt_buffer *buf, size_t offset, const void *src, size_t bytes);
rn_status rt_buffer_zero(rt_runtime *rt, rt_buffer *buf);
/* Zeroes `bytes` at `offset` (bytes). */
rn_status rt_buffer_zero_at(rt_runtime *rt, rt_buffer *buf, size_t offset, size_t bytes);
/* Fills the whole buffer with copies of a 1, 2, 4, ... 128-byte pattern. */
rn_status rt_buffer_fill(rt_runtime *rt, rt_buffer *buf, const void *pattern, size_t pattern_size);
rn_status rt_buffer_copy(rt_runtime *rt, const rt_buffer *src, rt_buffer *dst, size_t bytes);
/* Copies `bytes` from src at src_offset to dst at dst_offset (bytes). */
rn_status rt_buffer_copy_at(rt_runtime *rt, const rt_buffer *src, size_t src_offset, rt_buffer *dst,
                            size_t dst_offset, size_t bytes);

/* ---- launches -------------------------------------------------------------------------------- */

/* One kernel argument: a buffer, or a value of the given size. */
typedef struct rt_arg {
    size_t size;
    const void *value;
} rt_arg;

#define RT_ARG_BUF(b) ((rt_arg){sizeof(cl_mem), &(b)->mem})
#define RT_ARG_VAL(v) ((rt_arg){sizeof(v), &(v)})
#define RT_ARG_LOCAL(bytes) ((rt_arg){(bytes), NULL})

/* Sets the arguments and enqueues `kernel` over `global` items in groups of `local` (NULL:
 * the driver picks). Every global size must be a multiple of its local size. */
rn_status rt_launch(rt_runtime *rt, cl_kernel kernel, const char *name, const rt_arg *args,
                    size_t n_args, cl_uint dims, const size_t *global, const size_t *local);

/* The largest work-group this kernel can run with on the device. */
size_t rt_kernel_max_group(rt_runtime *rt, cl_kernel kernel);

/* ---- profiling (rt_profile.c) -------------------------------------------------------------- */

/* Re-opens the queue with profiling on; from then on every launch is timed. */
rn_status rt_profile_start(rt_runtime *rt);
/* Labels the launches that follow (a layer index; -1 for none). */
void rt_profile_tag(rt_runtime *rt, int tag);
/* The event slot for a launch named `name`, or NULL when not profiling. */
cl_event *rt_profile_slot(rt_runtime *rt, const char *name);
typedef void (*rt_profile_sink)(void *user, const char *name, int tag, double seconds);
/* Waits for the queue, hands every timed launch to `sink` (may be NULL) and forgets them. */
rn_status rt_profile_drain(rt_runtime *rt, rt_profile_sink sink, void *user);
void rt_profile_release(rt_runtime *rt);

/* ---- BLAS ------------------------------------------------------------------------------------ */

/* y[M, N] = x[M, K] * w[N, K]^T, row-major, fp32, through CLBlast. Offsets in elements; y's
 * rows y_ld elements apart (N or more: y may be columns of a wider matrix). */
rn_status rt_gemm_xwt(rt_runtime *rt, size_t M, size_t N, size_t K, const rt_buffer *x,
                      size_t x_offset, const rt_buffer *w, size_t w_offset, rt_buffer *y,
                      size_t y_offset, size_t y_ld);

/* count products C_i = op(A_i) op(B_i) + beta C_i, row-major fp32, each matrix at its own
 * offset (elements) in one buffer: op(X) = X^T when trans_x. M x N results, K inner. */
rn_status rt_gemm_batched(rt_runtime *rt, bool trans_a, bool trans_b, size_t M, size_t N, size_t K,
                          float beta, const rt_buffer *a, const size_t *a_offsets, size_t a_ld,
                          const rt_buffer *b, const size_t *b_offsets, size_t b_ld, rt_buffer *c,
                          const size_t *c_offsets, size_t c_ld, size_t count);

/* ---- ceilings -------------------------------------------------------------------------------- */

/* The device's memory bandwidth in GB/s (1e9 bytes per second), counting read plus written
 * bytes as clpeak does: a float4 copy kernel (`probe_copy` in `copy_source`, the text of
 * cl_kernels/probe.cl, which the caller passes in because the embedded sources live in host/)
 * over two buffers of min(512 MiB, max_alloc / 2, global / 8), the best of 5 timed samples
 * after a warm-up. Takes about a second on a CPU. Checks that the copy took place. */
rn_status rt_measure_bandwidth(rt_runtime *rt, const char *copy_source, size_t copy_len,
                               double *gb_per_s);

/* fp32 compute in GFLOP/s (2 n^3 / seconds) of one square rt_gemm_xwt: n starts at 512 and
 * doubles while a call takes under budget_s / 8 and three n x n matrices fit (each within
 * max_alloc, together within global / 4 and the memory still free), up to 8192. Every size
 * gets an untimed call first (CLBlast compiles on first use); the best of 3 timed calls at the
 * last size counts, and a few entries of its product must equal the host's exactly. Each call
 * at the final size takes at most about budget_s, so the whole takes a few budgets. */
rn_status rt_measure_sgemm(rt_runtime *rt, double budget_s, double *gflops, size_t *size_used);

#endif /* RN_RT_H */
