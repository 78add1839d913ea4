/*
 * test_model.c: whole models on OpenCL against the plain-C reference.
 *
 * For each config a random checkpoint is written with tools/model_writer and loaded both ways.
 *   1. every form (parallel, chunkwise, recurrent) against the reference's same form;
 *   2. the forms against each other, on configs where the group norm is not eps-dominated
 *      (eps 1e-12 and unit-size embeddings: the per-form scalars then cancel);
 *   3. parallel or chunkwise prefill followed by recurrent decoding against recurrent decoding
 *      of the whole sequence;
 *   4. API misuse and device-memory accounting: everything freed returns the context to 0 bytes;
 *   5. the configs whose weights are F16 or BF16 on the device again at that precision, on the
 *      matrix engine (or its portable stand-in where the device has none): prompts' linear
 *      layers and retention products with activations rounded to half.
 * Lengths are not multiples of the chunk. Tolerance: 1e-4 of the largest logit, the issue's
 * bar; fp32 kernels against the double reference measure 1e-7 to 1e-6 here. At half precision
 * (5.) 5e-3 for f16 and 4e-2 for bf16, test_rows' bounds for the same rounding.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "engine.h"  /* part 5 forces the matrix-engine stand-in (rn_tuning.mma_emulate) */
#include "expect.h"
#include "model_writer.h"
#include "ref.h"
#include "retnet.h"

#define TOL 1e-4
static double tol_now = TOL;  /* part 5 widens it */

static void expect_close(const char *what, const float *ref, const float *got, size_t n) {
    double e = rel_error(ref, got, n);
    bool ok = e <= tol_now;
    printf("    %-44s rel err %.2e  %s\n", what, e, ok ? "pass" : "FAIL");
    if (!ok) failures++;
}

typedef struct test_config {
    const char *name;
    rn_config cfg;
    double qk_gain;
    st_dtype dtype;
    bool forms_agree;     /* eps small against the retention output, or fla: compare forms */
    rn_weights storage;   /* device precision of the matrices (RN_WEIGHTS_FILE: as stored) */
    bool fused_mlp;       /* fla: the legacy fused gate_proj */
    bool learned_decay;   /* syncdoth: decays stored in the checkpoint, not the formula's */
} test_config;

static test_config make_config(const char *name, rn_config cfg, double qk_gain, st_dtype dtype,
                               bool forms_agree) {
    return (test_config){.name = name, .cfg = cfg, .qk_gain = qk_gain, .dtype = dtype, .forms_agree = forms_agree};
}

/* The reference sees the weights the device holds: matrices rounded to its storage type. */
static void round_matrices(ref_model *m, st_dtype to) {
    if (to == ST_F32) return;
    const rn_config *c = &m->cfg;
    const int64_t D = c->embed_dim, Dv = c->value_embed_dim, F = c->ffn_dim, V = c->vocab_size;
    const int64_t Dkv = c->kv_heads * c->key_head_dim, Dvkv = c->kv_heads * c->value_head_dim;
    float *buf = malloc((size_t)(V * D > F * D ? V * D : F * D) * sizeof(float));
    struct { float *w; int64_t count; } all[64];
    size_t n = 0;
    all[n++] = (typeof(all[0])){m->embed, V * D};
    if (!c->share_embed) all[n++] = (typeof(all[0])){m->output, V * D};
    for (int64_t l = 0; l < c->layers && n + 8 <= 64; l++) {
        ref_layer *y = &m->layers[l];
        all[n++] = (typeof(all[0])){y->q_proj, c->key_embed_dim * D};
        all[n++] = (typeof(all[0])){y->k_proj, Dkv * D};
        all[n++] = (typeof(all[0])){y->v_proj, Dvkv * D};
        if (y->g_proj) all[n++] = (typeof(all[0])){y->g_proj, Dv * D};
        all[n++] = (typeof(all[0])){y->out_proj, D * Dv};
        all[n++] = (typeof(all[0])){y->fc1, F * D};
        all[n++] = (typeof(all[0])){y->gate, F * D};
        all[n++] = (typeof(all[0])){y->fc2, D * F};
    }
    for (size_t i = 0; i < n; i++) {
        rn_convert(ST_F32, all[i].w, (uint64_t)all[i].count, to, buf, NULL);
        rn_convert(to, buf, (uint64_t)all[i].count, ST_F32, all[i].w, NULL);
    }
    free(buf);
}

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
    opts.fused_mlp = tc->fused_mlp;
    /* A learned decay: slower than the formula's, so it cannot pass for it. */
    float learned[16];
    for (int64_t h = 0; h < tc->cfg.heads && h < 16; h++) learned[h] = logf(1.0f - 0.5f * exp2f(-4.0f - (float)h));
    if (tc->learned_decay) opts.decay = learned;
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
    rn_model_options load;
    rn_model_options_default(&load);
    load.weights = tc->storage;
    rn_status st = rn_model_load(ctx, dir, &load, &model);
    rn_model_info info;
    if (st == RN_OK && ref) {
        rn_model_info_get(model, &info);
        printf("    family %s, file %s, device %s\n", info.family, info.file_dtype, info.device_dtype);
        static const st_dtype types[] = {ST_F32, ST_F16, ST_BF16, ST_Q8_0, ST_Q4_0};
        st_dtype device = ST_F32;
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!strcmp(info.device_dtype, st_dtype_name(types[i]))) device = types[i];
        round_matrices(ref, device);
    }
    if (st != RN_OK || !ref) {
        printf("    loading failed: %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(ctx));
        failures++;
        ref_model_free(ref);
        rn_checkpoint_close(ckpt);
        return;
    }

    /* 40 tokens: more than the engine's project-kernel limit (32 rows), so that prompts take
     * the SGEMM path where the device has one; decoding takes the project kernel. */
    int32_t tokens[40];
    const int64_t n = 40, V = tc->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++) tokens[i] = (int32_t)((i * 37 + 3 + (i % 5 == 0 ? 17 : 0)) % V);
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
        if (st == RN_OK) st = rn_session_prefill(s, tokens, (size_t)n, modes[m], (size_t)tc->cfg.chunk_size, got[m]);
        char what[96];
        snprintf(what, sizeof what, "%s vs reference (%lld tokens, chunk %lld)", names[m], (long long)n,
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
        ref_forward_prefill(ref, tokens, n, n - 5, modes[m], 3, expected);
        st = rn_session_reset(s);
        if (st == RN_OK) st = rn_session_prefill(s, tokens, (size_t)(n - 5), modes[m], 3, step);
        for (int64_t t = n - 5; t < n && st == RN_OK; t++) st = rn_session_decode(s, tokens[t], step + t * V);
        char what[96];
        snprintf(what, sizeof what, "%s prefill (chunk 3) + 5 decoded", names[m]);
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

/* One model written whole and in shards gives identical logits. */
static void run_sharded(rn_context *ctx, const char *dir) {
    printf("  sharded and unsharded copies\n");
    rn_config cfg = base_config();
    cfg.family = RN_FAMILY_SYNCDOTH;
    char whole[96], split[96];
    snprintf(whole, sizeof whole, "%s/whole", dir);
    snprintf(split, sizeof split, "%s/split", dir);
    rn_error err = {{0}};
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    opts.seed = 11;
    bool ok = rn_write_random_model(whole, &cfg, &opts, &err) == RN_OK;
    opts.shards = 3;
    ok = ok && rn_write_random_model(split, &cfg, &opts, &err) == RN_OK;
    const int32_t tokens[9] = {4, 8, 15, 16, 23, 42, 0, 1, 2};
    float a[9 * 61], b[9 * 61];
    const char *dirs[2] = {whole, split};
    float *out[2] = {a, b};
    for (int i = 0; i < 2 && ok; i++) {
        rn_model *m = NULL;
        rn_session *s = NULL;
        ok = rn_model_load(ctx, dirs[i], NULL, &m) == RN_OK && rn_session_init(m, &s) == RN_OK &&
             rn_session_prefill(s, tokens, 9, RN_MODE_CHUNKWISE, 4, out[i]) == RN_OK;
        rn_session_free(s);
        rn_model_free(m);
    }
    bool same = ok && memcmp(a, b, sizeof a) == 0;
    printf("    3 shards vs one file: %s  %s\n", ok ? (same ? "identical logits" : "logits differ") : err.message,
           same ? "pass" : "FAIL");
    if (!same) failures++;
}

/* Values beyond fp16's range, kept as F16 on the device: a named error, not infinities. */
static void run_f16_overflow(rn_context *ctx, const char *dir) {
    printf("  F16 storage of weights beyond its range\n");
    char path[96];
    snprintf(path, sizeof path, "%s/huge", dir);
    rn_config cfg = base_config();
    rn_error err = {{0}};
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    opts.qk_gain = 1e7;  /* q/k weights of order 1e6 */
    if (rn_write_random_model(path, &cfg, &opts, &err) != RN_OK) {
        printf("    writing failed: %s  FAIL\n", err.message);
        failures++;
        return;
    }
    rn_model_options load;
    rn_model_options_default(&load);
    load.weights = RN_WEIGHTS_F16;
    rn_model *m = NULL;
    expect_status("q_proj of order 1e6 as F16", rn_model_load(ctx, path, &load, &m), RN_ERR_LIMIT, ctx);
    bool named = strstr(rn_context_last_error(ctx), "q_proj") != NULL;
    printf("    message names the tensor: %s  %s\n", named ? "yes" : rn_context_last_error(ctx), named ? "pass" : "FAIL");
    if (!named) failures++;
    load.weights = RN_WEIGHTS_BF16;
    expect_status("the same as BF16", rn_model_load(ctx, path, &load, &m), RN_OK, ctx);
    rn_model_free(m);
}

/* Greedy continuation of `s` for n tokens; the first from the session's last logits. */
static rn_status greedy(rn_session *s, int64_t V, int n, int32_t *out) {
    for (int i = 0; i < n; i++) {
        const float *l = rn_session_logits(s);
        int32_t best = 0;
        for (int64_t j = 1; j < V; j++)
            if (l[j] > l[best]) best = (int32_t)j;
        out[i] = best;
        rn_status st = rn_session_decode(s, best, NULL);
        if (st != RN_OK) return st;
    }
    return RN_OK;
}

/* A conversation saved and resumed continues with exactly the tokens of an uninterrupted
 * run; copies diverge from their source only when fed differently; bad files are refused. */
static void run_state_files(rn_context *ctx, const char *dir) {
    printf("  session state: save, load, copy\n");
    char model_dir[96], other_dir[96], path[128];
    snprintf(model_dir, sizeof model_dir, "%s/m1", dir);   /* written by run_config */
    snprintf(other_dir, sizeof other_dir, "%s/m2", dir);
    snprintf(path, sizeof path, "%s/session.state", dir);
    rn_model *m = NULL, *other = NULL;
    rn_session *a = NULL, *b = NULL, *c = NULL, *o = NULL;
    const int32_t prompt[7] = {5, 9, 2, 60, 33, 33, 1};
    int32_t straight[12], resumed[12], copied[12];
    rn_status st = rn_model_load(ctx, model_dir, NULL, &m);
    if (st == RN_OK) st = rn_session_init(m, &a);
    if (st == RN_OK) st = rn_session_prefill(a, prompt, 7, RN_MODE_CHUNKWISE, 3, NULL);
    if (st == RN_OK) st = greedy(a, 61, 4, straight);
    if (st == RN_OK) st = rn_session_save(a, path);
    if (st == RN_OK) st = rn_session_copy(a, &c);
    if (st == RN_OK) st = greedy(a, 61, 8, straight + 4);
    if (st == RN_OK) st = rn_session_init(m, &b);
    if (st == RN_OK) st = rn_session_load(b, path);
    if (st != RN_OK) {
        printf("    %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(ctx));
        failures++;
    } else {
        bool pos = rn_session_position(b) == 11;
        memcpy(resumed, straight, 4 * sizeof *resumed);
        memcpy(copied, straight, 4 * sizeof *copied);
        st = greedy(b, 61, 8, resumed + 4);
        if (st == RN_OK) st = greedy(c, 61, 8, copied + 4);
        bool same = st == RN_OK && !memcmp(straight, resumed, sizeof straight) && !memcmp(straight, copied, sizeof straight);
        printf("    12 greedy tokens, saved after 4: position %s, resumed and copied runs %s  %s\n",
               pos ? "11" : "wrong", same ? "identical" : "differ", pos && same ? "pass" : "FAIL");
        if (!pos || !same) failures++;
        int32_t recent[16];
        size_t nr = rn_session_recent(b, recent, 16);
        bool window = nr == 16 && recent[15] == resumed[11] && recent[0] == prompt[3];
        printf("    recent tokens after resuming: %s  %s\n", window ? "the last 16 fed" : "wrong", window ? "pass" : "FAIL");
        if (!window) failures++;
    }

    /* Refusals: each leaves the session as it was (position 11 + 8 = 19). */
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 200, SEEK_SET);
        int byte = fgetc(f);
        fseek(f, 200, SEEK_SET);
        fputc(byte ^ 0x5a, f);
        fclose(f);
    }
    expect_status("state file with a flipped byte", rn_session_load(b, path), RN_ERR_STATE_FILE, ctx);
    if (f && truncate(path, 100) == 0)
        expect_status("truncated state file", rn_session_load(b, path), RN_ERR_STATE_FILE, ctx);
    expect_status("missing state file", rn_session_load(b, "/nonexistent/state"), RN_ERR_IO, ctx);
    if (rn_model_load(ctx, other_dir, NULL, &other) == RN_OK && rn_session_init(other, &o) == RN_OK &&
        rn_session_save(o, path) == RN_OK)
        expect_status("state of another model", rn_session_load(b, path), RN_ERR_STATE_FILE, ctx);
    bool kept = b && rn_session_position(b) == 19;
    printf("    session unchanged by the refusals: %s\n", kept ? "pass" : "FAIL");
    if (!kept) failures++;
    remove(path);
    rn_session_free(a), rn_session_free(b), rn_session_free(c), rn_session_free(o);
    rn_model_free(m), rn_model_free(other);
}

/* Misuse through the public API: named errors, the session left usable. */
static void run_misuse(rn_context *ctx, const char *dir) {
    printf("  API misuse\n");
    rn_model *model = NULL;
    if (rn_model_load(ctx, dir, NULL, &model) != RN_OK) {
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
    expect_status("missing model directory", rn_model_load(ctx, "/nonexistent/model", NULL, &missing), RN_ERR_IO, ctx);
    rn_model_options q8;
    rn_model_options_default(&q8);
    q8.weights = RN_WEIGHTS_Q8;  /* vocabulary 61: the embedding, 61 x 32, is whole blocks; a
                                    qkvg of 32 + 32 + 48 + 48 rows of 32 too: this one loads */
    expect_status("Q8 with rows of 48 columns", rn_model_load(ctx, dir, &q8, &missing), RN_OK, ctx);
    rn_model_free(missing);
    missing = NULL;
    /* Dv 44: rows of the output projection 44 long, not groups of eight: refused by name. */
    char odd[512];
    snprintf(odd, sizeof odd, "%s-dv44", dir);
    rn_config c = base_config();
    c.value_embed_dim = 44;
    rn_writer_options wo;
    rn_writer_options_default(&wo);
    rn_error err = {{0}};
    if (rn_write_random_model(odd, &c, &wo, &err) == RN_OK)
        expect_status("Q8 with rows of 44 columns", rn_model_load(ctx, odd, &q8, &missing), RN_ERR_UNSUPPORTED_CONFIG,
                      ctx);
    else
        printf("    writing the Dv 44 model failed: %s  FAIL\n", err.message), failures++;
    rn_session_free(s);
    rn_model_free(model);
}

/* Prompt progress and cancellation (rn_session_set_progress, rn_context_cancel), on a prompt
 * long enough for the SGEMM path (40 tokens) and the same in the recurrent form. */
typedef struct progress_log {
    uint64_t calls, last_done, total;
    int monotone;
    rn_context *cancel_at_half;  /* set: the callback cancels once half the prompt is done */
} progress_log;

static void log_progress(void *user, uint64_t done, uint64_t total) {
    progress_log *p = user;
    if (done < p->last_done) p->monotone = 0;
    p->calls++;
    p->last_done = done;
    p->total = total;
    if (p->cancel_at_half && 2 * done >= total) {
        rn_context_cancel(p->cancel_at_half, 1);
        p->cancel_at_half = NULL;
    }
}

static void run_cancel(rn_context *ctx, const char *dir) {
    printf("  progress and cancellation\n");
    rn_model *model = NULL;
    rn_session *s = NULL;
    if (rn_model_load(ctx, dir, NULL, &model) != RN_OK || rn_session_init(model, &s) != RN_OK) {
        printf("    load failed  FAIL\n");
        failures++;
        rn_model_free(model);
        return;
    }
    int32_t tokens[40];
    for (int i = 0; i < 40; i++) tokens[i] = (i * 7 + 3) % 61;
    for (int m = 0; m < 3; m++) {
        const rn_mode mode = m == 0 ? RN_MODE_CHUNKWISE : m == 1 ? RN_MODE_PARALLEL : RN_MODE_RECURRENT;
        const char *name = m == 0 ? "chunkwise" : m == 1 ? "parallel" : "recurrent";
        char what[96];
        progress_log log = {.monotone = 1};
        rn_session_set_progress(s, log_progress, &log);
        rn_session_reset(s);
        snprintf(what, sizeof what, "%s: prompt done", name);
        expect_status(what, rn_session_prefill(s, tokens, 40, mode, 0, NULL), RN_OK, ctx);
        snprintf(what, sizeof what, "%s: progress rises to 40 of 40 (%llu calls)", name, (unsigned long long)log.calls);
        expect_true(what, log.calls >= 2 && log.monotone && log.last_done == 40 && log.total == 40);

        /* A request made before the call stops it at the first check (after the first layer, or
         * before the first token): nothing of the prompt is kept. */
        rn_session_reset(s);
        rn_context_cancel(ctx, 1);
        snprintf(what, sizeof what, "%s: cancelled before it starts", name);
        expect_status(what, rn_session_prefill(s, tokens, 40, mode, 0, NULL), RN_ERR_CANCELLED, ctx);
        snprintf(what, sizeof what, "%s: position after (%llu)", name, (unsigned long long)rn_session_position(s));
        expect_true(what, rn_session_position(s) == 0);

        /* Cancelled by the progress callback half way; the request is consumed, so the same
         * prompt then runs to the end. */
        rn_session_reset(s);
        progress_log half = {.monotone = 1, .cancel_at_half = ctx};
        rn_session_set_progress(s, log_progress, &half);
        snprintf(what, sizeof what, "%s: cancelled half way", name);
        expect_status(what, rn_session_prefill(s, tokens, 40, mode, 0, NULL), RN_ERR_CANCELLED, ctx);
        snprintf(what, sizeof what, "%s: stopped before the end (%llu of 40)", name, (unsigned long long)half.last_done);
        expect_true(what, half.last_done < 40);
        rn_session_reset(s);
        snprintf(what, sizeof what, "%s: the next prompt runs", name);
        expect_status(what, rn_session_prefill(s, tokens, 40, mode, 0, NULL), RN_OK, ctx);
    }
    rn_session_set_progress(s, NULL, NULL);
    /* A step not taken leaves the session as it was. */
    uint64_t before = rn_session_position(s);
    rn_context_cancel(ctx, 1);
    expect_status("decode step cancelled", rn_session_decode(s, 5, NULL), RN_ERR_CANCELLED, ctx);
    expect_true("position unchanged by the cancelled step", rn_session_position(s) == before);
    rn_context_cancel(ctx, 1);
    rn_context_cancel(ctx, 0);
    expect_status("a withdrawn request stops nothing", rn_session_decode(s, 5, NULL), RN_OK, ctx);
    rn_model *again = NULL;
    rn_context_cancel(ctx, 1);
    expect_status("model load cancelled", rn_model_load(ctx, dir, NULL, &again), RN_ERR_CANCELLED, ctx);
    expect_true("no model after a cancelled load", again == NULL);
    rn_session_free(s);
    rn_model_free(model);
}

/* Batched decoding against the same sequences decoded one session each: three sequences with
 * their own tokens, eight steps; every step's logits of every sequence must agree. The batch
 * runs its products with several input rows per weight read (the project kernel's lanes) and
 * one recurrent step over all states, so this checks that no sequence leaks into another.
 * Tolerance 1e-5 relative: the same operations in the same order per sequence, so in practice
 * equal; the margin covers a driver fusing differently between the two launch shapes. Then
 * what a batch refuses. */
static void run_batch(rn_context *ctx, const char *dir) {
    printf("  batched decoding (3 sequences)\n");
    enum { B = 3, STEPS = 8 };
    rn_model *model = NULL;
    if (rn_model_load(ctx, dir, NULL, &model) != RN_OK) {
        printf("    load failed  FAIL\n");
        failures++;
        return;
    }
    rn_model_info info;
    rn_model_info_get(model, &info);
    const size_t V = (size_t)info.vocab_size;
    rn_session *batch = NULL, *single[B] = {NULL};
    rn_status st = rn_session_init_batch(model, B, &batch);
    for (int b = 0; b < B && st == RN_OK; b++) st = rn_session_init(model, &single[b]);
    float *got = malloc(B * V * sizeof(float)), *want = malloc(B * V * sizeof(float));
    double worst = 0.0;
    for (int t = 0; t < STEPS && st == RN_OK; t++) {
        int32_t tokens[B];
        for (int b = 0; b < B; b++) tokens[b] = (int32_t)((t * 13 + b * 29 + 5) % (int)V);
        st = rn_session_decode_batch(batch, tokens, got);
        for (int b = 0; b < B && st == RN_OK; b++) st = rn_session_decode(single[b], tokens[b], want + b * V);
        if (st == RN_OK) {
            double e = rel_error(want, got, B * V);
            if (e > worst) worst = e;
        }
    }
    if (st != RN_OK) {
        printf("    decoding failed: %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(ctx));
        failures++;
    } else {
        bool ok = worst <= 1e-5;
        printf("    8 steps, each sequence vs its own session  rel err %.2e  %s\n", worst, ok ? "pass" : "FAIL");
        if (!ok) failures++;
    }
    int32_t one = 1;
    expect_status("rn_session_decode on a batch", rn_session_decode(batch, one, NULL), RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("prefill on a batch", rn_session_prefill(batch, &one, 1, RN_MODE_PARALLEL, 0, NULL),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("save of a batch", rn_session_save(batch, "/tmp/never-written.state"), RN_ERR_INVALID_ARGUMENT, ctx);
    rn_session *none = NULL;
    expect_status("a batch of 0", rn_session_init_batch(model, 0, &none), RN_ERR_INVALID_ARGUMENT, ctx);
    rn_session_free(batch);
    for (int b = 0; b < B; b++) rn_session_free(single[b]);
    free(got), free(want);
    rn_model_free(model);
}

static void expect_within(const char *what, const float *ref, const float *got, size_t n, double tol) {
    double e = rel_error(ref, got, n);
    bool ok = e <= tol;
    printf("    %-44s rel err %.2e  %s (tol %.0e)\n", what, e, ok ? "pass" : "FAIL", tol);
    if (!ok) failures++;
}

/* A device whose largest allocation is below the size of the model's largest matrix and of a
 * 40-token prompt's activations (a context's max_allocation stands for it): the matrices load in
 * pieces of rows and chunkwise prompts run in passes of whole chunks, each continuing the state.
 * Against the same model on the device's own limit: recurrent decoding (the same kernels row for
 * row) exactly, chunkwise prompts within 1e-5 (their SGEMMs and retention sum in other orders);
 * chunkwise also against the reference (TOL). A parallel prompt larger than one buffer allows is
 * refused by name; a random model fills its pieces with the numbers it would hold in one. */
static void run_small_allocation(const char *dir) {
    printf("  a device with a small largest allocation\n");
    rn_context *full = NULL, *small = NULL;
    char message[1024];
    rn_status st = rn_context_init(&full, NULL, message, sizeof message);
    if (st != RN_OK) {
        printf("    no device: %s  FAIL\n", message);
        failures++;
        return;
    }
    /* Each largest allocation is below the stacked q/k/v/g matrix (every case's largest, 160 x
     * 32: 20 KiB in F32, 10 in F16, 2.8 in Q4_0) and 30 rows of the widest activation (the FFN's
     * 64 floats): at least two pieces, and passes of whole chunks. */
    const struct { const char *name; rn_config cfg; rn_weights storage; st_dtype dtype; uint64_t cap; } cases[] = {
        {"F32, tied", base_config(), RN_WEIGHTS_FILE, ST_F32, 7 * 1024},
        {"Q4_0, Dv 40 (blocks across rows)", base_config(), RN_WEIGHTS_Q4, ST_F16, 1536},
        {"F16, swish, untied", base_config(), RN_WEIGHTS_FILE, ST_F16, 4 * 1024},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rn_config cfg = cases[i].cfg;
        cfg.share_embed = i == 0;
        if (i == 1) cfg.value_embed_dim = 40;
        if (i == 2) cfg.activation = RN_ACT_SWISH;
        const int64_t n = 40, V = cfg.vocab_size, chunk = 4;
        const size_t count = (size_t)(n * V);
        rn_error err = {{0}};
        rn_writer_options wopts;
        rn_writer_options_default(&wopts);
        wopts.seed = 11;
        wopts.dtype = cases[i].dtype;
        char sub[96];
        snprintf(sub, sizeof sub, "%s/small%zu", dir, i);
        if (rn_write_random_model(sub, &cfg, &wopts, &err) != RN_OK) {
            printf("    writing the model failed: %s  FAIL\n", err.message);
            failures++;
            continue;
        }
        const uint64_t cap = cases[i].cap;
        rn_context_options copts;
        rn_context_options_default(&copts);
        copts.max_allocation = cap;
        st = rn_context_init(&small, &copts, message, sizeof message);
        rn_model_options load;
        rn_model_options_default(&load);
        load.weights = cases[i].storage;
        rn_model *mf = NULL, *ms = NULL;
        rn_session *sf = NULL, *ss = NULL;
        if (st == RN_OK) st = rn_model_load(full, sub, &load, &mf);
        if (st == RN_OK) st = rn_model_load(small, sub, &load, &ms);
        if (st == RN_OK) st = rn_session_init(mf, &sf);
        if (st == RN_OK) st = rn_session_init(ms, &ss);
        printf("   %s, largest allocation %llu bytes\n", cases[i].name, (unsigned long long)cap);
        const bool set_up = st == RN_OK;
        if (!set_up) {
            printf("    setting up: %s: %s  FAIL\n", rn_status_str(st), small ? rn_context_last_error(small) : message);
            failures++;
        }
        int32_t tokens[40];
        for (int64_t t = 0; t < n; t++) tokens[t] = (int32_t)((t * 37 + 3) % V);
        float *a = calloc(count, sizeof(float)), *b = calloc(count, sizeof(float)), *want = malloc(count * sizeof *want);
        if (st == RN_OK) {
            st = rn_session_prefill(sf, tokens, (size_t)n, RN_MODE_RECURRENT, 0, a);
            if (st == RN_OK) st = rn_session_prefill(ss, tokens, (size_t)n, RN_MODE_RECURRENT, 0, b);
            if (st == RN_OK) expect_within("recurrent, in pieces vs one buffer", a, b, count, 0.0);
        }
        if (st == RN_OK) {
            rn_checkpoint *ckpt = NULL;
            ref_model *ref = NULL;
            if (rn_checkpoint_open(sub, &ckpt, &err) == RN_OK) ref = ref_model_from_checkpoint(ckpt);
            if (ref) round_matrices(ref, i == 1 ? ST_Q4_0 : cases[i].dtype);
            if (ref) ref_forward(ref, tokens, n, RN_MODE_CHUNKWISE, chunk, want);
            st = rn_session_reset(sf);
            if (st == RN_OK) st = rn_session_reset(ss);
            if (st == RN_OK) st = rn_session_prefill(sf, tokens, (size_t)n, RN_MODE_CHUNKWISE, (size_t)chunk, a);
            if (st == RN_OK) st = rn_session_prefill(ss, tokens, (size_t)n, RN_MODE_CHUNKWISE, (size_t)chunk, b);
            if (st == RN_OK) {
                expect_within("chunkwise in passes vs one pass", a, b, count, 1e-5);
                if (ref) expect_close("chunkwise in passes vs reference", want, b, count);
                else printf("    no reference  FAIL\n"), failures++;
            }
            ref_model_free(ref);
            rn_checkpoint_close(ckpt);
        }
        if (st == RN_OK) {
            rn_session_reset(ss);
            expect_status("a parallel prompt larger than one buffer", rn_session_prefill(ss, tokens, (size_t)n,
                          RN_MODE_PARALLEL, 0, b), RN_ERR_DEVICE_MEMORY, small);
        }
        if (set_up && st != RN_OK) {
            printf("    %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(small));
            failures++;
        }
        free(a), free(b), free(want);
        rn_session_free(sf), rn_session_free(ss);
        rn_model_free(mf), rn_model_free(ms);
        rn_context_free(small);
        small = NULL;
    }
    /* Random weights: the tiny preset (its largest matrices 1024 x 64 in F16, 128 KiB) in pieces
     * of 32 KiB decodes exactly as in one buffer. */
    rn_context_options copts;
    rn_context_options_default(&copts);
    copts.max_allocation = 48 * 1024;
    st = rn_context_init(&small, &copts, message, sizeof message);
    rn_model *mf = NULL, *ms = NULL;
    rn_session *sf = NULL, *ss = NULL;
    if (st == RN_OK) st = rn_model_random(full, RN_PRESET_DIR "/tiny.json", NULL, 5, &mf);
    if (st == RN_OK) st = rn_model_random(small, RN_PRESET_DIR "/tiny.json", NULL, 5, &ms);
    if (st == RN_OK) st = rn_session_init(mf, &sf);
    if (st == RN_OK) st = rn_session_init(ms, &ss);
    float a[1024], b[1024];
    if (st == RN_OK) st = rn_session_decode(sf, 7, a);
    if (st == RN_OK) st = rn_session_decode(ss, 7, b);
    if (st == RN_OK) expect_within("random tiny preset, in pieces vs one buffer", a, b, 1024, 0.0);
    else printf("    random tiny preset: %s: %s  FAIL\n", rn_status_str(st), small ? rn_context_last_error(small) : message), failures++;
    rn_session_free(sf), rn_session_free(ss);
    rn_model_free(mf), rn_model_free(ms);
    rn_context_free(small);
    rn_context_free(full);
}

/* rn_model_random on the tiny preset: the parameter count models/presets/README.md gives, and
 * a finite token; a missing config file is RN_ERR_IO. */
static void run_random(rn_context *ctx) {
    printf("  random model from a preset\n");
    rn_model *model = NULL;
    rn_status st = rn_model_random(ctx, RN_PRESET_DIR "/tiny.json", NULL, 7, &model);
    expect_status("tiny preset", st, RN_OK, ctx);
    if (st == RN_OK) {
        rn_model_info info;
        rn_model_info_get(model, &info);
        bool ok = info.parameters == 361024 && !strcmp(info.device_dtype, "F16");
        printf("    %llu parameters, %s  %s\n", (unsigned long long)info.parameters, info.device_dtype,
               ok ? "pass" : "FAIL");
        if (!ok) failures++;
        rn_session *s = NULL;
        float *logits = malloc((size_t)info.vocab_size * sizeof(float));
        st = rn_session_init(model, &s);
        if (st == RN_OK) st = rn_session_decode(s, 3, logits);  /* a non-finite logit is RN_ERR_NUMERIC */
        expect_status("decoding a token", st, RN_OK, ctx);
        rn_session_free(s);
        free(logits);
        rn_model_free(model);
    }
    rn_model *missing = NULL;
    expect_status("missing preset", rn_model_random(ctx, "/nonexistent/preset.json", NULL, 1, &missing), RN_ERR_IO,
                  ctx);
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

    test_config configs[20];
    size_t n = 0;
    configs[n] = make_config("gelu, tied output, unscaled embedding", base_config(), 1.0, ST_F32, false);
    configs[n].cfg.share_embed = true;
    n++;
    configs[n] = make_config("swish, untied, scaled embedding + embedding norm, q/k x4", base_config(), 4.0,
                               ST_F32, false);
    configs[n].cfg.activation = RN_ACT_SWISH;
    configs[n].cfg.no_scale_embedding = false;
    configs[n].cfg.layernorm_embedding = true;
    n++;
    configs[n] = make_config("post-norm, deepnorm, swish, 3 layers", base_config(), 1.0, ST_F32, false);
    configs[n].cfg.activation = RN_ACT_SWISH;
    configs[n].cfg.normalize_before = false;
    configs[n].cfg.deepnorm = true;
    configs[n].cfg.layers = 3;
    n++;
    configs[n] = make_config("dv != dk (D 48, Dv 80, H 2), F16 weights", base_config(), 2.0, ST_F16, false);
    configs[n].cfg.embed_dim = 48;
    configs[n].cfg.value_embed_dim = 80;
    configs[n].cfg.heads = 2;
    configs[n].cfg.chunk_size = 5;
    n++;
    configs[n] = make_config("BF16 weights, eps 1e-12, scaled embedding (forms agree)", base_config(), 1.0,
                               ST_BF16, true);
    configs[n].cfg.layernorm_eps = 1e-12;
    configs[n].cfg.no_scale_embedding = false;
    n++;
    configs[n] = make_config("one chunk longer than the prompt (chunk 64)", base_config(), 1.0, ST_F32, false);
    configs[n].cfg.chunk_size = 64;
    n++;
    configs[n] = make_config("F32 file kept as F16 on the device", base_config(), 2.0, ST_F32, false);
    configs[n].storage = RN_WEIGHTS_F16;
    n++;
    configs[n] = make_config("F16 file kept as BF16 on the device", base_config(), 1.0, ST_F16, false);
    configs[n].storage = RN_WEIGHTS_BF16;
    n++;
    /* Quantized at load time: every matrix's rows a multiple of 32 (Dv 64). The reference sees
     * the dequantized weights, so the tolerances are those of fp32. */
    configs[n] = make_config("F32 file kept as Q8_0 (Dv 64), swish", base_config(), 2.0, ST_F32, false);
    configs[n].cfg.value_embed_dim = 64;
    configs[n].cfg.activation = RN_ACT_SWISH;
    configs[n].storage = RN_WEIGHTS_Q8;
    n++;
    /* Dv 40: the output projection's rows are 40 long, so its blocks span rows. */
    configs[n] = make_config("F16 file kept as Q4_0 (Dv 40: blocks across rows), untied", base_config(), 1.0,
                             ST_F16, false);
    configs[n].cfg.value_embed_dim = 40;
    configs[n].storage = RN_WEIGHTS_Q4;
    n++;
    configs[n] = make_config("syncdoth: model. names, lm_head, learned decays", base_config(), 2.0, ST_F32, false);
    configs[n].cfg.family = RN_FAMILY_SYNCDOTH;
    configs[n].cfg.activation = RN_ACT_SWISH;
    configs[n].cfg.no_scale_embedding = false;
    configs[n].cfg.layernorm_embedding = true;
    configs[n].learned_decay = true;
    n++;
    /* fla: no per-form scalars, so its forms agree whatever eps. */
    rn_config fla = base_config();
    fla.family = RN_FAMILY_FLA;
    fla.key_embed_dim = 32;   /* expand_k 1 */
    fla.value_embed_dim = 64; /* expand_v 2 */
    fla.kv_heads = 4;
    fla.ffn_dim = 256;        /* hidden_ratio 2 rounds D * 4/3 up to a multiple of 256 */
    fla.activation = RN_ACT_SWISH;
    fla.rope_half = fla.plain_retention = fla.head_norm_weight = fla.output_gate = true;
    fla.key_head_dim = 8;
    fla.value_head_dim = 16;
    configs[n] = make_config("fla: separate MLP, head norm weight, BF16", fla, 2.0, ST_BF16, true);
    n++;
    configs[n] = make_config("fla: grouped heads (4 query, 2 key/value), fused MLP", fla, 2.0, ST_F32, true);
    configs[n].cfg.kv_heads = 2;
    configs[n].fused_mlp = true;
    n++;
    configs[n] = make_config("fla: no output gate, no head norm weight, tied", fla, 1.0, ST_F16, true);
    configs[n].cfg.output_gate = false;
    configs[n].cfg.head_norm_weight = false;
    configs[n].cfg.share_embed = true;
    n++;

    for (size_t i = 0; i < n; i++) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s/m%zu", dir, i);
        run_config(ctx, &configs[i], sub);
    }
    run_sharded(ctx, dir);
    run_state_files(ctx, dir);
    run_f16_overflow(ctx, dir);
    char first[64];
    snprintf(first, sizeof first, "%s/m0", dir);
    run_misuse(ctx, first);
    run_cancel(ctx, first);
    run_batch(ctx, first);
    run_random(ctx);
    run_small_allocation(dir);

    /* 5. The half-precision configs on the matrix engine, at the precision of their weights. */
    for (int half = 0; half < 2; half++) {
        const st_dtype type = half ? ST_BF16 : ST_F16;
        printf("at --precision %s, on the matrix engine (or its stand-in), against the same reference\n",
               half ? "bf16" : "f16");
        rn_context_options options;
        rn_context_options_default(&options);
        options.precision = half ? RN_PRECISION_BF16 : RN_PRECISION_F16;
        rn_context *engine = NULL;
        if (rn_context_init(&engine, &options, message, sizeof message) != RN_OK) {
            printf("  context: %s  FAIL\n", message);
            failures++;
            continue;
        }
        if (rn_context_device(engine)->matrix_engine == 0) engine->tuning.mma_emulate = true;
        tol_now = half ? 4e-2 : 5e-3;
        for (size_t i = 0; i < n; i++) {
            const rn_weights want = half ? RN_WEIGHTS_BF16 : RN_WEIGHTS_F16;
            if (configs[i].storage == want || (configs[i].storage == RN_WEIGHTS_FILE && configs[i].dtype == type)) {
                char sub[64];
                snprintf(sub, sizeof sub, "%s/h%d-%zu", dir, half, i);
                run_config(engine, &configs[i], sub);
            }
        }
        tol_now = TOL;
        rn_context_free(engine);
    }

    uint64_t current, peak;
    rn_context_memory(ctx, &current, &peak);
    printf("  device memory after freeing everything: %llu bytes (peak %llu)  %s\n", (unsigned long long)current,
           (unsigned long long)peak, current == 0 ? "pass" : "FAIL");
    if (current != 0) failures++;
    rn_context_free(ctx);

    return expect_finish(dir);
}
