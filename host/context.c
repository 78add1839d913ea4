/* context.c: the public context: one device, its runtime, its lock and the last error message. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "kernel_sources.h"

/* The calling thread's copy of its own last failure: the message and the context it happened
 * on; and a buffer for a copy of a context's message when the thread has no failure of its own
 * there. */
static _Thread_local struct {
    uint64_t ctx_id;  /* 0: none */
    char message[RN_ERROR_CAPACITY];
} thread_error;
static _Thread_local char thread_copy[RN_ERROR_CAPACITY];

static atomic_uint_fast64_t next_context_id = 1;

void rn_context_lock(rn_context *ctx) {
    pthread_mutex_lock(&ctx->lock);
}

rn_status rn_context_unlock(rn_context *ctx, rn_status st) {
    if (st != RN_OK) {
        thread_error.ctx_id = ctx->id;
        memcpy(thread_error.message, ctx->err.message, sizeof thread_error.message);
    }
    pthread_mutex_unlock(&ctx->lock);
    return st;
}

rn_status rn_thread_fail(rn_status st, const rn_error *err) {
    if (st != RN_OK) {
        thread_error.ctx_id = 0;
        snprintf(thread_error.message, sizeof thread_error.message, "%s", err ? err->message : "");
    }
    return st;
}

const char *rn_last_error(void) {
    return thread_error.message;
}

const char *rn_version(void) {
    return RN_VERSION;
}

void rn_context_cancel(rn_context *ctx, int cancel) {
    if (ctx) atomic_store(&ctx->cancel, cancel ? 1 : 0);
}

bool rn_context_cancelled(rn_context *ctx, const char *what) {
    if (!atomic_exchange(&ctx->cancel, 0)) return false;
    rn_fail(&ctx->err, RN_ERR_CANCELLED, "%s was cancelled (rn_context_cancel)", what);
    return true;
}

static void public_device_info(const rt_device_info *in, rn_device_info *out) {
    memset(out, 0, sizeof *out);
    memcpy(out->platform, in->platform, sizeof out->platform);
    memcpy(out->vendor, in->vendor, sizeof out->vendor);
    memcpy(out->name, in->name, sizeof out->name);
    memcpy(out->version, in->version, sizeof out->version);
    memcpy(out->driver, in->driver, sizeof out->driver);
    out->is_gpu = in->is_gpu;
    out->compute_units = in->compute_units;
    out->global_mem_bytes = in->global_mem_bytes;
    out->max_alloc_bytes = in->max_alloc_bytes;
    out->local_mem_bytes = in->local_mem_bytes;
    out->max_work_group = in->max_work_group;
    out->has_fp16 = in->has_fp16;
    out->platform_index = in->platform_index;
    out->device_index = in->device_index;
    out->nv_cc_major = in->nv_cc_major;
    out->nv_cc_minor = in->nv_cc_minor;
    out->matrix_engine = in->matrix_engine;
}

void rn_context_options_default(rn_context_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->program_cache = -1;
    opts->batch_work_group = 256;
}

rn_status rn_devices_list(rn_device_info *infos, size_t capacity, size_t *count) {
    if (!count || (capacity && !infos)) return RN_ERR_INVALID_ARGUMENT;
    rt_device_entry entries[RT_MAX_DEVICES];
    size_t n = 0;
    rn_error err = {{0}};
    rn_status st = rt_devices_enumerate(entries, RT_MAX_DEVICES, &n, &err);
    *count = n;
    if (st != RN_OK) return rn_thread_fail(st, &err);
    for (size_t i = 0; i < n && i < capacity; i++) public_device_info(&entries[i].info, &infos[i]);
    return RN_OK;
}

/* A work-group size option: 0 or a power of two up to 256. */
static bool group_size_ok(size_t size) {
    return size <= 256 && (size & (size - 1)) == 0;
}

rn_status rn_context_init(rn_context **out, const rn_context_options *opts,
                          char *error_message, size_t error_capacity) {
    if (error_message && error_capacity) error_message[0] = '\0';
    if (!out) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    rn_error err = {{0}};
    rn_context_options defaults;
    if (!opts) {
        rn_context_options_default(&defaults);
        opts = &defaults;
    }
    if (!group_size_ok(opts->work_group))
        rn_fail(&err, RN_ERR_INVALID_ARGUMENT, "work_group must be 0 or a power of two up to 256, not %zu",
                opts->work_group);
    else if (opts->batch_work_group < 0 || !group_size_ok((size_t)opts->batch_work_group))
        rn_fail(&err, RN_ERR_INVALID_ARGUMENT, "batch_work_group must be 0 or a power of two up to 256, not %d",
                opts->batch_work_group);
    else if ((int)opts->precision < RN_PRECISION_F32 || (int)opts->precision > RN_PRECISION_AUTO)
        rn_fail(&err, RN_ERR_INVALID_ARGUMENT, "unknown precision %d", (int)opts->precision);
    if (err.message[0]) {
        if (error_message && error_capacity) snprintf(error_message, error_capacity, "%s", err.message);
        return rn_thread_fail(RN_ERR_INVALID_ARGUMENT, &err);
    }
    rn_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return RN_ERR_OUT_OF_HOST_MEMORY;
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
        if (error_message && error_capacity) snprintf(error_message, error_capacity, "pthread_mutex_init failed");
        free(ctx);
        return RN_ERR_OUT_OF_HOST_MEMORY;
    }
    ctx->tuning.work_group = opts->work_group;
    ctx->tuning.project_rows = (int64_t)opts->project_max_rows;
    ctx->tuning.precision = opts->precision;
    ctx->tuning.batch_work_group = opts->batch_work_group;
    atomic_init(&ctx->cancel, 0);
    ctx->id = atomic_fetch_add(&next_context_id, 1);
    rt_cache_mode mode = opts->program_cache < 0 ? RT_CACHE_AUTO
                         : opts->program_cache ? RT_CACHE_ON : RT_CACHE_OFF;
    rn_status st = rt_init(&ctx->rt, opts->device, mode, opts->cache_dir, &ctx->err);
    if (st == RN_OK && opts->build_options && *opts->build_options) {
        ctx->rt.build_log = opts->build_log;
        ctx->rt.build_log_user = opts->build_log_user;
        if (!(ctx->rt.build_options = strdup(opts->build_options))) {
            rt_release(&ctx->rt);
            st = rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for the build options");
        }
    }
    if (st != RN_OK) {
        if (error_message && error_capacity)
            snprintf(error_message, error_capacity, "%s", ctx->err.message);
        rn_thread_fail(st, &ctx->err);
        pthread_mutex_destroy(&ctx->lock);
        free(ctx);
        return st;
    }
    /* A lower limit of the caller's stands for the device's from here on: every allocation,
     * the model's plan of pieces and the listing of the device see it. */
    if (opts->max_allocation && opts->max_allocation < ctx->rt.dev.info.max_alloc_bytes)
        ctx->rt.dev.info.max_alloc_bytes = opts->max_allocation;
    public_device_info(&ctx->rt.dev.info, &ctx->info);
    *out = ctx;
    return RN_OK;
}

void rn_context_free(rn_context *ctx) {
    if (!ctx) return;
    rt_release(&ctx->rt);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

/* This thread's own last failure on `ctx` when it has one; otherwise a copy, taken under the
 * lock, of the context's message (the last failure of any thread on it). Either way the text
 * is in this thread's own buffer, which no other thread writes. */
const char *rn_context_last_error(const rn_context *ctx) {
    if (!ctx) return "no context";
    if (thread_error.ctx_id == ctx->id) return thread_error.message;
    rn_context *c = (rn_context *)ctx;  /* the lock is not part of the value */
    pthread_mutex_lock(&c->lock);
    memcpy(thread_copy, c->err.message, sizeof thread_copy);
    pthread_mutex_unlock(&c->lock);
    return thread_copy;
}

const rn_device_info *rn_context_device(const rn_context *ctx) {
    return ctx ? &ctx->info : NULL;
}

void rn_context_memory(const rn_context *ctx, uint64_t *current_bytes, uint64_t *peak_bytes) {
    rn_context *c = (rn_context *)ctx;  /* the lock is not part of the value */
    if (c) pthread_mutex_lock(&c->lock);
    if (current_bytes) *current_bytes = ctx ? ctx->rt.bytes_current : 0;
    if (peak_bytes) *peak_bytes = ctx ? ctx->rt.bytes_peak : 0;
    if (c) pthread_mutex_unlock(&c->lock);
}

rn_status rn_context_profile_start(rn_context *ctx) {
    if (!ctx) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rt_profile_start(&ctx->rt));
}

rn_status rn_context_profile_drain(rn_context *ctx, rn_profile_sink sink, void *user) {
    if (!ctx) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rt_profile_drain(&ctx->rt, sink, user));
}

rn_status rn_context_ceilings(rn_context *ctx, double budget_s, double *bandwidth_gbps, double *sgemm_gflops,
                              size_t *sgemm_n) {
    if (!ctx) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(ctx);
    rn_status st = RN_OK;
    if (bandwidth_gbps) {
        const char *source;
        size_t size;
        st = rn_kernel_source("probe.cl", &source, &size, &ctx->err);
        if (st == RN_OK) st = rt_measure_bandwidth(&ctx->rt, source, size, bandwidth_gbps);
    }
    size_t n = 0;
    if (st == RN_OK && sgemm_gflops) st = rt_measure_sgemm(&ctx->rt, budget_s, sgemm_gflops, &n);
    if (sgemm_n) *sgemm_n = n;
    return rn_context_unlock(ctx, st);
}
