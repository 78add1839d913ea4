/*
 * device_model.h: what the device tests share to get started: a random checkpoint of `cfg`
 * written under `dir`, the default OpenCL device, and the model loaded on it. Prints the
 * reason and returns false on any failure.
 */
#ifndef RN_DEVICE_MODEL_H
#define RN_DEVICE_MODEL_H

#include <stdbool.h>
#include <stdio.h>

#include "model_writer.h"
#include "retnet.h"

static inline bool device_model_open(const char *dir, const rn_config *cfg, uint64_t seed,
                                     rn_context **ctx, rn_model **model) {
    *ctx = NULL;
    *model = NULL;
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    opts.seed = seed;
    rn_error err = {{0}};
    if (rn_write_random_model(dir, cfg, &opts, &err) != RN_OK) {
        printf("writing the model failed: %s\n", err.message);
        return false;
    }
    char message[1024];
    rn_status st = rn_context_init(ctx, NULL, message, sizeof message);
    if (st != RN_OK) {
        printf("no device: %s: %s\n", rn_status_str(st), message);
        return false;
    }
    printf("device: %s\n", rn_context_device(*ctx)->name);
    st = rn_model_load(*ctx, dir, NULL, model);
    if (st != RN_OK) {
        printf("loading failed: %s: %s\n", rn_status_str(st), rn_context_last_error(*ctx));
        return false;
    }
    return true;
}

#endif /* RN_DEVICE_MODEL_H */
