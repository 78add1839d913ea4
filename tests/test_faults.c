/*
 * test_faults.c: device out of memory is a clean, named failure and the process carries on.
 *
 *   test_faults BIG_MODEL_DIR SMALL_MODEL_DIR
 *
 * Run by tests/faults.sh with POCL_MEMORY_LIMIT set so that BIG's weights do not fit the device.
 * On one context: loading BIG fails with RN_ERR_DEVICE_MEMORY, a message with the bytes needed
 * and available, no model handle and no device memory left allocated; then SMALL loads, a
 * session runs a chunkwise prefill and a recurrent step with finite logits; after freeing
 * session and model the context's device memory is back to 0, and BIG fails the same way again.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retnet.h"

static int failures = 0;

static void expect(int ok, const char *what) {
    printf("  %-64s %s\n", what, ok ? "pass" : "FAIL");
    if (!ok) failures++;
}

static uint64_t device_bytes(const rn_context *ctx) {
    uint64_t current = 0;
    rn_context_memory(ctx, &current, NULL);
    return current;
}

static void load_too_big(rn_context *ctx, const char *dir, const char *when) {
    rn_model *model = (rn_model *)1;  /* must come back NULL */
    rn_status st = rn_model_load(ctx, dir, NULL, &model);
    const char *msg = rn_context_last_error(ctx);
    printf("  %s: %s: %s\n", when, rn_status_str(st), msg);
    char what[128];
    snprintf(what, sizeof what, "%s: RN_ERR_DEVICE_MEMORY", when);
    expect(st == RN_ERR_DEVICE_MEMORY, what);
    snprintf(what, sizeof what, "%s: no model handle", when);
    expect(model == NULL, what);
    if (st == RN_OK && model) rn_model_free(model);
    snprintf(what, sizeof what, "%s: message gives needed and available MiB", when);
    expect(strstr(msg, "need") != NULL && strstr(msg, "MiB") != NULL &&
               (strstr(msg, " has ") != NULL || strstr(msg, "allows") != NULL),
           what);
    snprintf(what, sizeof what, "%s: no device memory left allocated", when);
    expect(device_bytes(ctx) == 0, what);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s BIG_MODEL_DIR SMALL_MODEL_DIR\n", argv[0]);
        return 2;
    }
    char error[512];
    rn_context *ctx = NULL;
    rn_status st = rn_context_init(&ctx, NULL, error, sizeof error);
    if (st != RN_OK) {
        printf("no context: %s: %s\n", rn_status_str(st), error);
        return 1;
    }
    const rn_device_info *dev = rn_context_device(ctx);
    printf("device %s: %.1f MiB global memory, %.1f MiB per allocation\n", dev->name,
           dev->global_mem_bytes / 1048576.0, dev->max_alloc_bytes / 1048576.0);

    load_too_big(ctx, argv[1], "too-big model");

    /* The same context goes on to load and run a model that fits. */
    rn_model *model = NULL;
    st = rn_model_load(ctx, argv[2], NULL, &model);
    if (st != RN_OK) printf("  small model: %s: %s\n", rn_status_str(st), rn_context_last_error(ctx));
    expect(st == RN_OK, "small model loads on the same context");
    if (st == RN_OK) {
        rn_model_info info;
        rn_model_info_get(model, &info);
        expect(device_bytes(ctx) > 0, "its weights are on the device");
        rn_session *session = NULL;
        st = rn_session_init(model, &session);
        expect(st == RN_OK, "session");
        if (st == RN_OK) {
            const int32_t tokens[5] = {1, 7, 42, 3, 9};
            size_t V = (size_t)info.vocab_size;
            float *logits = malloc(6 * V * sizeof(float));
            st = rn_session_prefill(session, tokens, 5, RN_MODE_CHUNKWISE, 2, logits);
            if (st == RN_OK) st = rn_session_decode(session, 11, logits + 5 * V);
            if (st != RN_OK) printf("  forward: %s: %s\n", rn_status_str(st), rn_context_last_error(ctx));
            expect(st == RN_OK, "chunkwise prefill of 5 tokens and one recurrent step");
            int finite = st == RN_OK;
            for (size_t i = 0; finite && i < 6 * V; i++) finite = isfinite(logits[i]);
            expect(finite, "finite logits");
            free(logits);
            rn_session_free(session);
        }
        rn_model_free(model);
    }
    uint64_t peak = 0;
    rn_context_memory(ctx, NULL, &peak);
    printf("  peak device memory %.2f MiB\n", peak / 1048576.0);
    expect(device_bytes(ctx) == 0, "device memory back to 0 after freeing");

    /* And the refusal is repeatable: nothing about the first failure stuck. */
    load_too_big(ctx, argv[1], "too-big model again");
    rn_context_free(ctx);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
