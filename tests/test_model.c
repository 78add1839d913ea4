/*
 * test_model.c: whole models on OpenCL against the plain-C reference.
 *
 * For each config a random checkpoint is written with tools/model_writer and loaded both ways.
 *   1. every form (parallel, chunkwise, recurrent) against the reference's same form;
 *   2. the forms against each other, on configs where the group norm is not eps-dominated
 *      (eps 1e-12 and unit-size embeddings: the per-form scalars then cancel);
 *   3. parallel or chunkwise prefill followed by recurrent decoding against recurrent decoding
 *      of the whole sequence;
 *   4. API misuse and device-memory accounting: everything freed returns the context to 0 bytes.
 * Lengths are not multiples of the chunk. Tolerance: 1e-4 of the largest logit, the issue's
 * bar; fp32 kernels against the double reference measure 1e-7 to 1e-6 here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_writer.h"
#include "ref.h"
#include "retnet.h"

#define TOL 1e-4

static int failures = 0;

static double rel_error(const float *ref, const float *got, size_t n) {
    double max_ref = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > max_diff) max_diff = d;
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
    }
    return max_ref > 0 ? max_diff / max_ref : max_diff;
}

static void expect_close(const char *what, const float *ref, const float *got, size_t n) {
    double e = rel_error(ref, got, n);
    bool ok = e <= TOL;
    printf("    %-44s rel err %.2e  %s\n", what, e, ok ? "pass" : "FAIL");
    if (!ok) failures++;
}

static void expect_status(const char *what, rn_status got, rn_status want, rn_context *ctx) {
    bool ok = got == want;
    printf("    %-44s %s%s%s\n", what, rn_status_str(got), ok ? "  pass" : "  FAIL, expected ",
           ok ? "" : rn_status_str(want));
    if (!ok) failures++;
    if (got != RN_OK && !*rn_context_last_error(ctx)) {
        printf("    (no error message)  FAIL\n");
        failures++;
    }
}

typedef struct test_config {
    const char *name;
    rn_config cfg;
    double qk_gain;
    st_dtype dtype;
    bool forms_agree;  /* eps small against the retention output: compare forms */
} test_config;

static rn_config base_config(void) {
    rn_config c;
    memset(&c, 0, sizeof c);
    c.embed_dim = 32;
    c.value_embed_dim = 48;
    c.heads = 4;
    c.ffn_dim = 64;
    c.layers = 2;
    c.vocab_size = 61;
    c.chunk_size = 4;
    c.activation = RN_ACT_GELU;
    c.layernorm_eps = 1e-6;
    c.no_scale_embedding = true;
    c.normalize_before = true;
    return c;
}

static void run_config(rn_context *ctx, const test_config *tc, const char *dir) {
    printf("  %s\n", tc->name);
    rn_error err = {{0}};
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    opts.seed = 7;
    opts.qk_gain = tc->qk_gain;
    opts.dtype = tc->dtype;
    if (rn_write_random_model(dir, &tc->cfg, &opts, &err) != RN_OK) {
        printf("    writing the model failed: %s  FAIL\n", err.message);
        failures++;
        return;
    }
    rn_checkpoint *ckpt = NULL;
    if (rn_checkpoint_open(dir, &ckpt, &err) != RN_OK) {
        printf("    reading it back failed: %s  FAIL\n", err.message);
        failures++;
        return;
    }
    ref_model *ref = ref_model_from_checkpoint(ckpt);
    rn_model *model = NULL;
    rn_status st = rn_model_load(ctx, dir, &model);
    if (st != RN_OK || !ref) {
        printf("    loading failed: %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(ctx));
        failures++;
        ref_model_free(ref);
        rn_checkpoint_close(ckpt);
        return;
    }

    const int32_t tokens[11] = {3, 60, 0, 17, 17, 42, 8, 59, 1, 30, 12};
    const int64_t n = 11, V = tc->cfg.vocab_size;
    const size_t count = (size_t)(n * V);
    float *want[3], *got[3];
    const rn_mode modes[3] = {RN_MODE_PARALLEL, RN_MODE_CHUNKWISE, RN_MODE_RECURRENT};
    const char *names[3] = {"parallel", "chunkwise", "recurrent"};
    rn_session *s = NULL;
    st = rn_session_init(model, &s);
    for (int m = 0; m < 3; m++) {
        want[m] = malloc(count * sizeof(float));
        got[m] = calloc(count, sizeof(float));
        ref_forward(ref, tokens, n, modes[m], tc->cfg.chunk_size, want[m]);
        if (st == RN_OK) st = rn_session_reset(s);
        if (st == RN_OK) st = rn_session_prefill(s, tokens, (size_t)n, modes[m], 0, got[m]);
        char what[96];
        snprintf(what, sizeof what, "%s vs reference (11 tokens, chunk %lld)", names[m],
                 (long long)tc->cfg.chunk_size);
        if (st != RN_OK) {
            printf("    %s: %s: %s  FAIL\n", what, rn_status_str(st), rn_context_last_error(ctx));
            failures++;
        } else {
            expect_close(what, want[m], got[m], count);
        }
    }
    if (tc->forms_agree && st == RN_OK) {
        expect_close("chunkwise vs parallel (OpenCL)", got[0], got[1], count);
        expect_close("recurrent vs parallel (OpenCL)", got[0], got[2], count);
    }

    /* Prefill 7 tokens, then decode 4: against the reference doing the same, and, where the
     * forms agree, against the recurrent pass over all 11. (Elsewhere a layer's prefill output
     * differs from the recurrent one by the eps effect, and so does the next layer's state.) */
    for (int m = 0; m < 2 && st == RN_OK; m++) {
        float *step = malloc(count * sizeof(float)), *expected = malloc(count * sizeof(float));
        ref_forward_prefill(ref, tokens, n, 7, modes[m], 3, expected);
        st = rn_session_reset(s);
        if (st == RN_OK) st = rn_session_prefill(s, tokens, 7, modes[m], 3, step);
        for (int64_t t = 7; t < n && st == RN_OK; t++) st = rn_session_decode(s, tokens[t], step + t * V);
        char what[96];
        snprintf(what, sizeof what, "%s prefill (chunk 3) + 4 decoded", names[m]);
        if (st != RN_OK) {
            printf("    %s: %s: %s  FAIL\n", what, rn_status_str(st), rn_context_last_error(ctx));
            failures++;
        } else {
            expect_close(what, expected, step, count);
            if (tc->forms_agree) {
                snprintf(what, sizeof what, "%s prefill + decoded vs all recurrent", names[m]);
                expect_close(what, want[2] + 7 * V, step + 7 * V, (size_t)(4 * V));
            }
        }
        free(step), free(expected);
    }
    for (int m = 0; m < 3; m++) free(want[m]), free(got[m]);
    rn_session_free(s);
    rn_model_free(model);
    ref_model_free(ref);
    rn_checkpoint_close(ckpt);
}

/* Misuse through the public API: named errors, the session left usable. */
static void run_misuse(rn_context *ctx, const char *dir) {
    printf("  API misuse\n");
    rn_model *model = NULL;
    if (rn_model_load(ctx, dir, &model) != RN_OK) {
        printf("    load failed  FAIL\n");
        failures++;
        return;
    }
    rn_session *s = NULL;
    rn_session_init(model, &s);
    int32_t bad[2] = {1, 61};
    float logits[61];
    expect_status("token id = vocab_size", rn_session_prefill(s, bad, 2, RN_MODE_PARALLEL, 0, NULL),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("negative token id", rn_session_decode(s, -1, logits), RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("decode after refusals", rn_session_decode(s, 5, logits), RN_OK, ctx);
    expect_status("parallel prefill after decoding", rn_session_prefill(s, bad, 1, RN_MODE_PARALLEL, 0, NULL),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("unknown mode", rn_session_prefill(s, bad, 1, (rn_mode)7, 0, NULL), RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("NULL session", rn_session_decode(NULL, 1, logits), RN_ERR_INVALID_ARGUMENT, ctx);
    rn_model *missing = NULL;
    expect_status("missing model directory", rn_model_load(ctx, "/nonexistent/model", &missing), RN_ERR_IO, ctx);
    rn_session_free(s);
    rn_model_free(model);
}

int main(void) {
    char dir[] = "/tmp/retnet-test-model-XXXXXX";
    if (!mkdtemp(dir)) return 2;
    rn_context *ctx = NULL;
    char message[1024];
    rn_status st = rn_context_init(&ctx, NULL, message, sizeof message);
    if (st != RN_OK) {
        printf("no device: %s: %s\n", rn_status_str(st), message);
        return 1;
    }
    printf("device: %s\n", rn_context_device(ctx)->name);

    test_config configs[6];
    size_t n = 0;
    configs[n] = (test_config){"gelu, tied output, unscaled embedding", base_config(), 1.0, ST_F32, false};
    configs[n].cfg.share_embed = true;
    n++;
    configs[n] = (test_config){"swish, untied, scaled embedding + embedding norm, q/k x4", base_config(), 4.0,
                               ST_F32, false};
    configs[n].cfg.activation = RN_ACT_SWISH;
    configs[n].cfg.no_scale_embedding = false;
    configs[n].cfg.layernorm_embedding = true;
    n++;
    configs[n] = (test_config){"post-norm, deepnorm, swish, 3 layers", base_config(), 1.0, ST_F32, false};
    configs[n].cfg.activation = RN_ACT_SWISH;
    configs[n].cfg.normalize_before = false;
    configs[n].cfg.deepnorm = true;
    configs[n].cfg.layers = 3;
    n++;
    configs[n] = (test_config){"dv != dk (D 48, Dv 80, H 2), F16 weights", base_config(), 2.0, ST_F16, false};
    configs[n].cfg.embed_dim = 48;
    configs[n].cfg.value_embed_dim = 80;
    configs[n].cfg.heads = 2;
    configs[n].cfg.chunk_size = 5;
    n++;
    configs[n] = (test_config){"BF16 weights, eps 1e-12, scaled embedding (forms agree)", base_config(), 1.0,
                               ST_BF16, true};
    configs[n].cfg.layernorm_eps = 1e-12;
    configs[n].cfg.no_scale_embedding = false;
    n++;
    configs[n] = (test_config){"one chunk longer than the prompt (chunk 64)", base_config(), 1.0, ST_F32, false};
    configs[n].cfg.chunk_size = 64;
    n++;

    for (size_t i = 0; i < n; i++) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s/m%zu", dir, i);
        run_config(ctx, &configs[i], sub);
    }
    char first[64];
    snprintf(first, sizeof first, "%s/m0", dir);
    run_misuse(ctx, first);

    uint64_t current, peak;
    rn_context_memory(ctx, &current, &peak);
    printf("  device memory after freeing everything: %llu bytes (peak %llu)  %s\n", (unsigned long long)current,
           (unsigned long long)peak, current == 0 ? "pass" : "FAIL");
    if (current != 0) failures++;
    rn_context_free(ctx);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
