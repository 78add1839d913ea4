/* context.c: the public context: one device, its runtime, and the last error message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

void rn_context_options_default(rn_context_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->program_cache = -1;
}

rn_status rn_devices_list(rn_device_info *infos, size_t capacity, size_t *count) {
    if (!count || (capacity && !infos)) return RN_ERR_INVALID_ARGUMENT;
    rt_device_entry entries[RT_MAX_DEVICES];
    size_t n = 0;
    rn_status st = rt_devices_enumerate(entries, RT_MAX_DEVICES, &n, NULL);
    *count = n;
    if (st != RN_OK) return st;
    for (size_t i = 0; i < n && i < capacity; i++) infos[i] = entries[i].info;
    return RN_OK;
}

rn_status rn_context_init(rn_context **out, const rn_context_options *opts,
                          char *error_message, size_t error_capacity) {
    if (error_message && error_capacity) error_message[0] = '\0';
    if (!out) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    rn_context_options defaults;
    if (!opts) {
        rn_context_options_default(&defaults);
        opts = &defaults;
    }
    rn_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return RN_ERR_OUT_OF_HOST_MEMORY;
    rt_cache_mode mode = opts->program_cache < 0 ? RT_CACHE_AUTO
                         : opts->program_cache ? RT_CACHE_ON : RT_CACHE_OFF;
    rn_status st = rt_init(&ctx->rt, opts->device, mode, opts->cache_dir, &ctx->err);
    if (st != RN_OK) {
        if (error_message && error_capacity)
            snprintf(error_message, error_capacity, "%s", ctx->err.message);
        free(ctx);
        return st;
    }
    *out = ctx;
    return RN_OK;
}

void rn_context_free(rn_context *ctx) {
    if (!ctx) return;
    rt_release(&ctx->rt);
    free(ctx);
}

const char *rn_context_last_error(const rn_context *ctx) {
    return ctx ? ctx->err.message : "no context";
}

const rn_device_info *rn_context_device(const rn_context *ctx) {
    return ctx ? &ctx->rt.dev.info : NULL;
}

void rn_context_memory(const rn_context *ctx, uint64_t *current_bytes, uint64_t *peak_bytes) {
    if (current_bytes) *current_bytes = ctx ? ctx->rt.bytes_current : 0;
    if (peak_bytes) *peak_bytes = ctx ? ctx->rt.bytes_peak : 0;
}
