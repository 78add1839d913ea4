/*
 * test_rows.c: what a server needs of the library, on OpenCL.
 *   1. batch rows as independent sequences: rows at different positions stepped together
 *      (rn_session_decode_rows) against one ordinary session each; rows not stepped left
 *      alone; rn_session_copy_row into, out of and between rows; rn_session_reset_row; the
 *      refusals;
 *   2. chunkwise prompts continuing a session's state: a prompt fed in pieces cut at multiples
 *      of the chunk against one call with the whole prompt, by the retention kernels and by
 *      batched GEMMs (project_max_rows picks); pieces of any length against the reference's
 *      recurrent form;
 *   4. batches and short prompts on the small matrix-engine GEMM (f16 precision, the device's
 *      mma.sync or elsewhere its portable stand-in), against the same f16 model at f32;
 *   3. states in memory: rn_session_save_buffer / rn_session_load_buffer against the file form,
 *      a row of a batch saved and restored, corrupt buffers refused with the session unchanged.
 * The model has eps 1e-12 and a scaled embedding, so that the forms agree (test_model.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"  /* part 4 forces the matrix-engine stand-in (rn_tuning.mma_emulate) */
#include "expect.h"
#include "model_writer.h"
#include "ref.h"
#include "retnet.h"

static void expect_close(const char *what, const float *ref, const float *got, size_t n, double tol) {
    double e = rel_error(ref, got, n);
    bool ok = e <= tol;
    printf("    %-56s rel err %.2e (tol %.0e)  %s\n", what, e, tol, ok ? "pass" : "FAIL");
    if (!ok) failures++;
}

static rn_config test_config(void) {
    rn_config c;
    memset(&c, 0, sizeof c);
    c.embed_dim = 32;
    c.value_embed_dim = 48;
    c.heads = 4;
    c.ffn_dim = 64;
    c.layers = 2;
    c.vocab_size = 61;
    c.chunk_size = 16;
    c.activation = RN_ACT_SWISH;
    c.layernorm_eps = 1e-12;
    c.no_scale_embedding = false;
    c.normalize_before = true;
    return c;
}

static int32_t token_at(int64_t i, int64_t salt) {
    return (int32_t)((i * 37 + salt * 11 + 3 + (i % 5 == 0 ? 17 : 0)) % 61);
}

/* ---- 1. rows ---------------------------------------------------------------------------- */

/* Largest absolute difference; 0 means bitwise equal (no NaNs here: logits are checked finite). */
static double max_abs(const float *a, const float *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

/* Rows of a batch of `B` stepped `active` at a time against one ordinary session per
 * sequence. Sequence i is first prefilled with `i % 5 + 3 * (i % 2)` tokens on an ordinary
 * session (chunkwise, so positions of both parities) and copied into row i. Returns the worst
 * absolute difference of the rows' logits over `steps` steps. */
static double rows_against_singles(rn_context *ctx, rn_model *model, int B, int active, int steps, bool *ok) {
    const size_t V = 61;
    rn_session *batch = NULL, **single = calloc((size_t)B, sizeof *single);
    rn_status st = rn_session_init_batch(model, (size_t)B, &batch);
    for (int b = 0; b < B && st == RN_OK; b++) {
        st = rn_session_init(model, &single[b]);
        int32_t prompt[8];
        const size_t len = (size_t)(b % 5 + 3 * (b % 2));
        for (size_t i = 0; i < len; i++) prompt[i] = token_at((int64_t)i, b);
        if (st == RN_OK && len) st = rn_session_prefill(single[b], prompt, len, RN_MODE_CHUNKWISE, 4, NULL);
        if (st == RN_OK) st = rn_session_copy_row(batch, (size_t)b, single[b], 0);
    }
    float *got = malloc((size_t)B * V * sizeof(float)), *want = malloc((size_t)B * V * sizeof(float));
    double worst = 0.0;
    for (int t = 0; t < steps && st == RN_OK; t++) {
        int32_t *tokens = malloc((size_t)B * sizeof *tokens);
        for (int b = 0; b < active; b++) tokens[b] = token_at(t + 50, b);
        st = rn_session_decode_rows(batch, (size_t)active, tokens, got);
        for (int b = 0; b < active && st == RN_OK; b++) st = rn_session_decode(single[b], tokens[b], want + b * V);
        if (st == RN_OK) {
            double d = max_abs(want, got, (size_t)active * V);
            if (d > worst) worst = d;
            /* each row's kept logits are its own */
            d = max_abs(want, rn_session_logits(batch), (size_t)active * V);
            if (d > worst) worst = d;
        }
        free(tokens);
    }
    *ok = st == RN_OK;
    if (st != RN_OK) printf("    stepping failed: %s: %s\n", rn_status_str(st), rn_context_last_error(ctx));
    for (int b = 0; b < B && *ok; b++)
        if (rn_session_row_position(batch, (size_t)b) != rn_session_position(single[b])) {
            printf("    row %d at position %llu, its session at %llu\n", b,
                   (unsigned long long)rn_session_row_position(batch, (size_t)b),
                   (unsigned long long)rn_session_position(single[b]));
            *ok = false;
        }
    rn_session_free(batch);
    for (int b = 0; b < B; b++) rn_session_free(single[b]);
    free(single), free(got), free(want);
    return worst;
}

/* One decoding step of `s` (an ordinary session) on a copy, so that `s` stays as it is. */
static rn_status peek(rn_session *s, int32_t token, float *logits) {
    rn_session *copy = NULL;
    rn_status st = rn_session_copy(s, &copy);
    if (st == RN_OK) st = rn_session_decode(copy, token, logits);
    rn_session_free(copy);
    return st;
}

static void run_rows(rn_context *ctx, rn_model *model, rn_model *other) {
    printf("  batch rows\n");
    const size_t V = 61;
    bool ok;
    /* Rows at positions 0..7 of both parities, three of four stepped; then a batch above the
     * project kernel's 32 rows, which takes SGEMM and the rotation kernel. */
    double d = rows_against_singles(ctx, model, 4, 3, 6, &ok);
    printf("    3 of 4 rows at their own positions, 6 steps: max |diff| %.3g\n", d);
    /* The same kernels over the same rows, one row or three: on PoCL the logits are equal bit
     * for bit. A device that fused differently between the launch shapes could differ in the
     * last bits, hence the bar of 1e-5 absolute on logits of order 1 rather than 0. */
    expect_true("rows vs single sessions (bitwise on PoCL, bar 1e-5)", ok && d <= 1e-5);
    if (d != 0.0) printf("    (not bitwise equal on this device)\n");
    d = rows_against_singles(ctx, model, 36, 34, 2, &ok);
    printf("    34 of 36 rows (SGEMM), 2 steps: max |diff| %.3g\n", d);
    expect_true("rows through SGEMM vs single sessions (1e-4 absolute)", ok && d <= 1e-4);

    /* Copy in, step some rows, copy out, move a row, reset one. */
    rn_session *batch = NULL, *a = NULL, *b = NULL, *c = NULL, *out = NULL;
    rn_status st = rn_session_init_batch(model, 3, &batch);
    if (st == RN_OK) st = rn_session_init(model, &a);
    if (st == RN_OK) st = rn_session_init(model, &b);
    if (st == RN_OK) st = rn_session_init(model, &c);
    if (st == RN_OK) st = rn_session_init(model, &out);
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = token_at(i, 9);
    if (st == RN_OK) st = rn_session_prefill(a, prompt, 9, RN_MODE_CHUNKWISE, 0, NULL);
    if (st == RN_OK) st = rn_session_prefill(b, prompt + 3, 4, RN_MODE_RECURRENT, 0, NULL);
    if (st == RN_OK) st = rn_session_prefill(c, prompt + 5, 13, RN_MODE_PARALLEL, 0, NULL);
    if (st == RN_OK) st = rn_session_copy_row(batch, 0, a, 0);
    if (st == RN_OK) st = rn_session_copy_row(batch, 1, b, 0);
    if (st == RN_OK) st = rn_session_copy_row(batch, 2, c, 0);
    expect_status("three sessions copied into rows", st, RN_OK, ctx);
    if (st != RN_OK) goto done;
    expect_true("copied rows keep positions and logits",
                rn_session_row_position(batch, 2) == 13 && rn_session_row_position(batch, 1) == 4 &&
                    max_abs(rn_session_logits(batch), rn_session_logits(a), V) == 0.0);
    float *got = malloc(3 * V * sizeof(float)), *want = malloc(3 * V * sizeof(float));
    int32_t step[3] = {5, 6, 7};
    st = rn_session_decode_rows(batch, 2, step, got);
    if (st == RN_OK) st = rn_session_decode(a, step[0], want);
    if (st == RN_OK) st = rn_session_decode(b, step[1], want + V);
    expect_status("rows [0, 2) stepped", st, RN_OK, ctx);
    expect_true("row 2 not stepped keeps its position", rn_session_row_position(batch, 2) == 13);
    /* Row 2 untouched: copied out, it continues exactly as c does. */
    if (st == RN_OK) st = rn_session_copy_row(out, 0, batch, 2);
    float *x = malloc(V * sizeof(float)), *y = malloc(V * sizeof(float));
    int32_t r_out[256], r_c[256];
    if (st == RN_OK) {
        size_t n_out = rn_session_recent(out, r_out, 256), n_c = rn_session_recent(c, r_c, 256);
        expect_true("row copied out: position, recent tokens, logits",
                    rn_session_position(out) == 13 && n_out == n_c && !memcmp(r_out, r_c, n_c * sizeof *r_c) &&
                        max_abs(rn_session_logits(out), rn_session_logits(c), V) == 0.0);
    }
    if (st == RN_OK) st = peek(out, 11, x);
    if (st == RN_OK) st = peek(c, 11, y);
    if (st == RN_OK) expect_close("row not stepped, copied out, decodes as before", y, x, V, 1e-5);
    /* Row 1 copied out after its step continues as b. */
    if (st == RN_OK) st = rn_session_copy_row(out, 0, batch, 1);
    if (st == RN_OK) st = peek(out, 12, x);
    if (st == RN_OK) st = peek(b, 12, y);
    if (st == RN_OK) expect_close("stepped row copied out decodes as its session", y, x, V, 1e-5);
    /* Row 0 finishes: the last active row (2) moves into its place, then rows [0, 2) step. */
    if (st == RN_OK) st = rn_session_copy_row(batch, 0, batch, 2);
    if (st == RN_OK) st = rn_session_decode_rows(batch, 2, step, got);
    if (st == RN_OK) st = rn_session_decode(c, step[0], want);
    if (st == RN_OK) st = rn_session_decode(b, step[1], want + V);
    expect_status("row moved between rows, then stepped", st, RN_OK, ctx);
    if (st == RN_OK) expect_close("moved row and the row beside it vs their sessions", want, got, 2 * V, 1e-5);
    /* Reset row 1: it decodes as a fresh session. */
    rn_session *fresh = NULL;
    if (st == RN_OK) st = rn_session_reset_row(batch, 1);
    expect_true("reset row is at position 0, other rows kept",
                rn_session_row_position(batch, 1) == 0 && rn_session_row_position(batch, 0) == 14);
    if (st == RN_OK) st = rn_session_init(model, &fresh);
    if (st == RN_OK) st = rn_session_decode_rows(batch, 2, step, got);
    if (st == RN_OK) st = rn_session_decode(fresh, step[1], want + V);
    if (st == RN_OK) expect_close("reset row vs a fresh session", want + V, got + V, V, 1e-5);
    rn_session_free(fresh);

    /* Refusals leave everything as it was. */
    const uint64_t before = rn_session_row_position(batch, 0);
    expect_status("copy_row to a row out of range", rn_session_copy_row(batch, 3, a, 0), RN_ERR_INVALID_ARGUMENT,
                  ctx);
    expect_status("copy_row from a row out of range", rn_session_copy_row(batch, 0, a, 1), RN_ERR_INVALID_ARGUMENT,
                  ctx);
    rn_session *stranger = NULL;
    if (rn_session_init(other, &stranger) == RN_OK) {
        expect_status("copy_row from another model", rn_session_copy_row(batch, 0, stranger, 0),
                      RN_ERR_INVALID_ARGUMENT, ctx);
        rn_session_free(stranger);
    }
    expect_status("decode_rows of 0 rows", rn_session_decode_rows(batch, 0, step, got), RN_ERR_INVALID_ARGUMENT,
                  ctx);
    int32_t four[4] = {1, 2, 3, 4};
    expect_status("decode_rows of 4 rows in a batch of 3", rn_session_decode_rows(batch, 4, four, got),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    int32_t bad[2] = {1, 61};
    expect_status("decode_rows with a token outside the vocabulary", rn_session_decode_rows(batch, 2, bad, got),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("reset_row out of range", rn_session_reset_row(batch, 3), RN_ERR_INVALID_ARGUMENT, ctx);
    expect_true("refusals left the batch as it was", rn_session_row_position(batch, 0) == before);
    expect_true("row_position out of range is 0", rn_session_row_position(batch, 3) == 0);
    expect_status("rn_session_decode_rows on an ordinary session (1 row)", rn_session_decode_rows(a, 1, step, x),
                  RN_OK, ctx);
    expect_status("reset_row of an ordinary session", rn_session_reset_row(a, 0), RN_OK, ctx);
    expect_true("its position is 0", rn_session_position(a) == 0);
    free(got), free(want), free(x), free(y);
done:
    rn_session_free(batch), rn_session_free(a), rn_session_free(b), rn_session_free(c), rn_session_free(out);
}

/* ---- 2. chunkwise prompts continuing a state ------------------------------------------------ */

/* Feeds tokens[0, n) in pieces of the given lengths, chunkwise with chunk 16, into logits. */
static rn_status feed(rn_session *s, const int32_t *tokens, const size_t *pieces, size_t count, float *logits) {
    rn_status st = rn_session_reset(s);
    size_t at = 0;
    for (size_t i = 0; i < count && st == RN_OK; i++) {
        st = rn_session_prefill(s, tokens + at, pieces[i], RN_MODE_CHUNKWISE, 16, logits + at * 61);
        at += pieces[i];
    }
    return st;
}

static void run_continued(rn_context *ctx, rn_model *model, const ref_model *ref, const char *path_name) {
    printf("  chunkwise prompts continuing a state (%s)\n", path_name);
    enum { N = 144, V = 61 };
    int32_t tokens[N + 3];
    for (int i = 0; i < N + 3; i++) tokens[i] = token_at(i, 4);
    float *whole = malloc((N + 3) * V * sizeof(float)), *pieces = malloc((N + 3) * V * sizeof(float));
    float *reference = malloc(N * V * sizeof(float));
    rn_session *s = NULL;
    rn_status st = rn_session_init(model, &s);
    const size_t one[1] = {N};
    if (st == RN_OK) st = feed(s, tokens, one, 1, whole);
    for (int t = 0; t < 3 && st == RN_OK; t++) st = rn_session_decode(s, tokens[N + t], whole + (N + t) * V);
    expect_status("the whole prompt in one call, then 3 decoded", st, RN_OK, ctx);
    /* Cut at multiples of the chunk: the same chunks, states and scalars as the whole prompt; only
     * the state's round trip through U / sqrt(S) between pieces rounds differently, which the
     * group norm carries to the logits at the 1e-7 level. 1e-5 of the largest logit bounds it
     * with room and is far below what a wrong chunk boundary or scalar gives (1e-3 and up). */
    const struct { size_t n; size_t len[3]; const char *name; } cuts[] = {
        {3, {48, 48, 48}, "3 pieces of 48 (chunk 16)"},
        {3, {16, 32, 96}, "pieces of 16, 32, 96"},
        {2, {128, 16, 0}, "pieces of 128, 16"},
    };
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0] && st == RN_OK; c++) {
        st = feed(s, tokens, cuts[c].len, cuts[c].n, pieces);
        for (int t = 0; t < 3 && st == RN_OK; t++) st = rn_session_decode(s, tokens[N + t], pieces + (N + t) * V);
        if (st != RN_OK) break;
        char what[96];
        snprintf(what, sizeof what, "%s, then 3 decoded, vs whole", cuts[c].name);
        expect_close(what, whole, pieces, (N + 3) * V, 1e-5);
        expect_true("position after the pieces", rn_session_position(s) == N + 3);
    }
    /* Cut anywhere: the chunks differ from the whole prompt's, so the per-form scalars do;
     * against the reference's recurrent form with the forms-agree bar of test_model.c (1e-4). */
    ref_forward(ref, tokens, N, RN_MODE_RECURRENT, 16, reference);
    const size_t odd[3] = {10, 45, 89};
    if (st == RN_OK) st = feed(s, tokens, odd, 3, pieces);
    if (st == RN_OK) expect_close("pieces of 10, 45, 89 vs reference recurrent", reference, pieces, N * V, 1e-4);
    if (st == RN_OK) expect_close("(the whole prompt vs reference recurrent)", reference, whole, N * V, 1e-4);
    if (st == RN_OK) {
        float dummy[V];
        expect_status("parallel on a session holding tokens", rn_session_prefill(s, tokens, 4, RN_MODE_PARALLEL, 0, dummy),
                      RN_ERR_INVALID_ARGUMENT, ctx);
        expect_true("refused: position kept", rn_session_position(s) == N);
    }
    if (st != RN_OK) {
        printf("    failed: %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(ctx));
        failures++;
    }
    rn_session_free(s);
    free(whole), free(pieces), free(reference);
}

/* ---- 3. states in memory ------------------------------------------------------------------- */

static void run_buffers(rn_context *ctx, rn_model *model, rn_model *other, const char *dir) {
    printf("  session state in memory\n");
    enum { V = 61 };
    rn_session *s = NULL, *t = NULL, *batch = NULL;
    rn_status st = rn_session_init(model, &s);
    if (st == RN_OK) st = rn_session_init(model, &t);
    if (st == RN_OK) st = rn_session_init_batch(model, 2, &batch);
    if (st != RN_OK) {
        expect_status("sessions", st, RN_OK, ctx);
        return;
    }
    const size_t bytes = rn_session_state_bytes(s);
    int32_t tokens[300];
    for (int i = 0; i < 300; i++) tokens[i] = token_at(i, 2);
    st = rn_session_prefill(s, tokens, 300, RN_MODE_CHUNKWISE, 0, NULL);
    expect_true("state size the same at positions 0 and 300", st == RN_OK && rn_session_state_bytes(s) == bytes);
    expect_true("no state size for a batch", rn_session_state_bytes(batch) == 0);
    unsigned char *buf = malloc(bytes), *file = malloc(bytes + 16);
    expect_status("save_buffer", rn_session_save_buffer(s, buf, bytes), RN_OK, ctx);
    char path[256];
    snprintf(path, sizeof path, "%s/s.state", dir);
    size_t file_bytes = 0;
    if (rn_session_save(s, path) == RN_OK) {
        FILE *f = fopen(path, "rb");
        if (f) {
            file_bytes = fread(file, 1, bytes + 16, f);
            fclose(f);
        }
    }
    expect_true("the buffer holds the file's bytes", file_bytes == bytes && !memcmp(buf, file, bytes));
    expect_status("save_buffer one byte short", rn_session_save_buffer(s, buf, bytes - 1), RN_ERR_INVALID_ARGUMENT,
                  ctx);
    expect_status("save_buffer of a batch", rn_session_save_buffer(batch, buf, bytes), RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("load_buffer", rn_session_load_buffer(t, buf, bytes), RN_OK, ctx);
    float x[V], y[V];
    int32_t rs[256], rt_[256];
    expect_true("loaded: position, recent tokens, logits",
                rn_session_position(t) == 300 && rn_session_recent(t, rt_, 256) == 256 &&
                    rn_session_recent(s, rs, 256) == 256 && !memcmp(rs, rt_, sizeof rs) &&
                    !memcmp(rn_session_logits(s), rn_session_logits(t), sizeof x));
    st = rn_session_decode(s, 7, x);
    if (st == RN_OK) st = rn_session_decode(t, 7, y);
    expect_true("loaded session decodes bit for bit as the saved one", st == RN_OK && !memcmp(x, y, sizeof x));

    /* Corrupt buffers: refused, the session as it was. */
    const uint64_t at = rn_session_position(t);
    memcpy(x, rn_session_logits(t), sizeof x);
    unsigned char *bad = malloc(bytes);
    memcpy(bad, buf, bytes);
    bad[bytes / 2] ^= 0x10;
    expect_status("a flipped byte", rn_session_load_buffer(t, bad, bytes), RN_ERR_STATE_FILE, ctx);
    expect_status("truncated by one byte", rn_session_load_buffer(t, buf, bytes - 1), RN_ERR_STATE_FILE, ctx);
    expect_status("header only", rn_session_load_buffer(t, buf, 56), RN_ERR_STATE_FILE, ctx);
    expect_status("empty", rn_session_load_buffer(t, buf, 0), RN_ERR_STATE_FILE, ctx);
    expect_status("a trailing byte", rn_session_load_buffer(t, file, bytes + 1), RN_ERR_STATE_FILE, ctx);
    memcpy(bad, buf, bytes);
    bad[12] = 9;  /* the version */
    expect_status("an unknown format version", rn_session_load_buffer(t, bad, bytes), RN_ERR_STATE_FILE, ctx);
    rn_session *stranger = NULL;
    if (rn_session_init(other, &stranger) == RN_OK) {
        unsigned char *theirs = malloc(rn_session_state_bytes(stranger));
        if (rn_session_save_buffer(stranger, theirs, rn_session_state_bytes(stranger)) == RN_OK)
            expect_status("another model's state", rn_session_load_buffer(t, theirs, rn_session_state_bytes(stranger)),
                          RN_ERR_STATE_FILE, ctx);
        free(theirs);
        rn_session_free(stranger);
    }
    expect_true("refusals left the session as it was",
                rn_session_position(t) == at && !memcmp(x, rn_session_logits(t), sizeof x));

    /* A row of a batch (its own scale, at an odd position) out to a buffer and back in. */
    rn_session *u = NULL;
    st = rn_session_reset(s);
    if (st == RN_OK) st = rn_session_prefill(s, tokens, 5, RN_MODE_CHUNKWISE, 0, NULL);
    if (st == RN_OK) st = rn_session_copy_row(batch, 1, s, 0);
    int32_t two[2] = {3, 4};
    if (st == RN_OK) st = rn_session_decode_rows(batch, 2, two, NULL);  /* row 0 at 1, row 1 at 6 */
    if (st == RN_OK) st = rn_session_init(model, &u);
    if (st == RN_OK) st = rn_session_copy_row(u, 0, batch, 1);
    if (st == RN_OK) st = rn_session_save_buffer(u, buf, bytes);
    if (st == RN_OK) st = rn_session_reset(t);
    if (st == RN_OK) st = rn_session_load_buffer(t, buf, bytes);
    if (st == RN_OK) st = rn_session_copy_row(batch, 0, t, 0);
    if (st == RN_OK) st = rn_session_decode(s, 4, y);  /* s is the sequence row 1 holds */
    float rows[2 * V];
    int32_t next[2] = {9, 9};
    if (st == RN_OK) st = rn_session_decode(s, 9, y);
    if (st == RN_OK) st = rn_session_decode_rows(batch, 2, next, rows);
    expect_status("a row saved, loaded and copied back", st, RN_OK, ctx);
    if (st == RN_OK) {
        expect_close("the row restored decodes as its sequence", y, rows, V, 1e-5);
        expect_close("and as the row it was copied from", rows + V, rows, V, 0.0);
    }
    rn_session_free(u);
    free(buf), free(file), free(bad);
    rn_session_free(s), rn_session_free(t), rn_session_free(batch);
}

/* ---- 4. the small matrix-engine GEMM ------------------------------------------------------ */

/* Logits of `B` sequences decoded together for `steps` steps from a prompt of `len` tokens
 * each (one session per sequence, copied into the batch's rows), into out [steps][B][V]. */
static rn_status batch_logits(rn_model *model, int B, size_t len, int steps, float *out) {
    const size_t V = 61;
    rn_session *batch = NULL, *one = NULL;
    rn_status st = rn_session_init_batch(model, (size_t)B, &batch);
    if (st == RN_OK) st = rn_session_init(model, &one);
    for (int b = 0; b < B && st == RN_OK; b++) {
        int32_t prompt[64];
        for (size_t i = 0; i < len; i++) prompt[i] = token_at((int64_t)i, b);
        st = rn_session_reset(one);
        if (st == RN_OK) st = rn_session_prefill(one, prompt, len, RN_MODE_CHUNKWISE, 16, NULL);
        if (st == RN_OK) st = rn_session_copy_row(batch, (size_t)b, one, 0);
    }
    int32_t tokens[64];
    for (int t = 0; t < steps && st == RN_OK; t++) {
        for (int b = 0; b < B; b++) tokens[b] = token_at(t + 70, b);
        st = rn_session_decode_batch(batch, tokens, out + (size_t)t * (size_t)B * V);
    }
    rn_session_free(batch), rn_session_free(one);
    return st;
}

/* The matrix engine at `precision` (F16 or BF16, the file's weight type), whole-model, against
 * f32 products of the same weights: batches through gemm_mma_small, 20- and 40-token prompts
 * through gemm_mma and (40, chunks of 16) retention's products on the engine. Tolerance: f16
 * 5e-3, measured 2.8e-4 on PoCL's stand-in (room for other accumulation orders and seeds);
 * bf16 keeps 3 fewer bits of every rounded operand, so 8 times that (measured 2.0e-3). */
static void run_mma_rows(const char *path, rn_precision precision, double tol) {
    const char *type = precision == RN_PRECISION_BF16 ? "bf16" : "f16";
    printf("4. the matrix engine (%s), against f32 products of the same %s weights\n", type, type);
    rn_context *exact = NULL, *engine = NULL;
    rn_context_options options;
    rn_context_options_default(&options);
    char message[1024];
    rn_status st = rn_context_init(&exact, &options, message, sizeof message);
    options.precision = precision;
    /* A size that is not a power of two is refused, naming the option. */
    options.batch_work_group = 3;
    rn_context *refused = NULL;
    const rn_status bad = rn_context_init(&refused, &options, message, sizeof message);
    expect_true("batch_work_group 3 refused by name",
                bad == RN_ERR_INVALID_ARGUMENT && !refused && strstr(message, "batch_work_group") != NULL);
    /* Batches of 8 rows and more take the norms, retention step and argmax built with their own
     * groups: of 16 here, unlike PoCL's main set's 2, or of RETNET_BATCH_WORK_GROUP where set
     * (256, the default, on a GPU): the cases below check their results. */
    const char *batch_wg = getenv("RETNET_BATCH_WORK_GROUP");
    options.batch_work_group = batch_wg && *batch_wg ? atoi(batch_wg) : 16;
    if (st == RN_OK) st = rn_context_init(&engine, &options, message, sizeof message);
    if (st != RN_OK) {
        printf("    contexts: %s: %s  FAIL\n", rn_status_str(st), message);
        failures++;
        return;
    }
    /* Devices without the instructions run the kernel's stand-in, as the selftest does. */
    if (rn_context_device(engine)->matrix_engine == 0) engine->tuning.mma_emulate = true;
    rn_model *a = NULL, *b = NULL;
    st = rn_model_load(exact, path, NULL, &a);
    if (st == RN_OK) st = rn_model_load(engine, path, NULL, &b);
    expect_true("model loaded at f32 and with the engine", st == RN_OK && b->kernels.gemm_mma_small &&
                                                            b->kernels.gemm_mma_batched);
    expect_true("the batch kernels built with their own groups",
                st == RN_OK && b->kernels.batch && b->kernels.batch->wg == (size_t)options.batch_work_group);
    rn_model_info info_a = {0}, info_b = {0};
    if (st == RN_OK) rn_model_info_get(a, &info_a), rn_model_info_get(b, &info_b);
    expect_true("rn_model_info gives their groups, and 0 at f32",
                info_b.batch_work_group == options.batch_work_group && info_a.batch_work_group == 0);
    /* Batches below, at and above the project kernel's rows; prompts of 20 (engine) and 40 tokens. */
    const struct { int B; size_t len; } cases[] = {{2, 3}, {8, 20}, {33, 40}, {64, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && st == RN_OK; i++) {
        const int B = cases[i].B, steps = 3;
        const size_t count = (size_t)steps * (size_t)B * 61;
        float *want = malloc(count * sizeof *want), *got = malloc(count * sizeof *got);
        st = batch_logits(a, B, cases[i].len, steps, want);
        if (st == RN_OK) st = batch_logits(b, B, cases[i].len, steps, got);
        char what[96];
        snprintf(what, sizeof what, "batch of %d after prompts of %zu, 3 steps", B, cases[i].len);
        if (st == RN_OK) expect_close(what, want, got, count, tol);
        else {
            printf("    %s: %s: %s  FAIL\n", what, rn_status_str(st), rn_context_last_error(engine));
            failures++;
        }
        free(want), free(got);
    }
    rn_model_free(a), rn_model_free(b);
    rn_context_free(exact), rn_context_free(engine);
}

int main(void) {
    char dir[] = "/tmp/retnet-test-rows-XXXXXX";
    if (!mkdtemp(dir)) return 2;
    char path[96], other_path[96];
    snprintf(path, sizeof path, "%s/model", dir);
    snprintf(other_path, sizeof other_path, "%s/other", dir);
    rn_config cfg = test_config();
    rn_error err = {{0}};
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    opts.seed = 11;
    opts.dtype = ST_F32;
    rn_status st = rn_write_random_model(path, &cfg, &opts, &err);
    opts.seed = 12;
    if (st == RN_OK) st = rn_write_random_model(other_path, &cfg, &opts, &err);
    rn_checkpoint *ckpt = NULL;
    if (st == RN_OK) st = rn_checkpoint_open(path, &ckpt, &err);
    if (st != RN_OK) {
        printf("writing the models failed: %s\n", err.message);
        return 1;
    }
    ref_model *ref = ref_model_from_checkpoint(ckpt);

    /* Two contexts: the default one takes batched GEMMs for prompts over 32 tokens where
     * CLBlast runs; the other sends every prompt through the project and retention kernels. */
    rn_context *ctx = NULL, *kernels_ctx = NULL;
    rn_context_options options;
    rn_context_options_default(&options);
    char message[1024];
    st = rn_context_init(&ctx, &options, message, sizeof message);
    options.project_max_rows = 4096;
    if (st == RN_OK) st = rn_context_init(&kernels_ctx, &options, message, sizeof message);
    if (st != RN_OK) {
        printf("no device: %s: %s\n", rn_status_str(st), message);
        return 1;
    }
    printf("device: %s\n", rn_context_device(ctx)->name);
    rn_model *model = NULL, *other = NULL, *kernels_model = NULL;
    st = rn_model_load(ctx, path, NULL, &model);
    if (st == RN_OK) st = rn_model_load(ctx, other_path, NULL, &other);
    if (st == RN_OK) st = rn_model_load(kernels_ctx, path, NULL, &kernels_model);
    if (st != RN_OK || !ref) {
        printf("loading failed: %s: %s\n", rn_status_str(st), rn_context_last_error(ctx));
        return 1;
    }

    run_rows(ctx, model, other);
    run_continued(ctx, model, ref, "batched GEMMs above 32 tokens where CLBlast runs");
    run_continued(kernels_ctx, kernels_model, ref, "retention kernels");
    run_buffers(ctx, model, other, dir);

    for (int half = 0; half < 2; half++) {
        char half_path[96];
        snprintf(half_path, sizeof half_path, "%s/%s", dir, half ? "bf16" : "f16");
        opts.seed = 13;
        opts.dtype = half ? ST_BF16 : ST_F16;
        if (rn_write_random_model(half_path, &cfg, &opts, &err) == RN_OK)
            run_mma_rows(half_path, half ? RN_PRECISION_BF16 : RN_PRECISION_F16, half ? 4e-2 : 5e-3);
        else {
            printf("writing the %s model failed: %s  FAIL\n", half ? "bf16" : "f16", err.message);
            failures++;
        }
    }

    rn_model_free(model), rn_model_free(other), rn_model_free(kernels_model);
    uint64_t current, peak;
    rn_context_memory(ctx, &current, &peak);
    expect_true("device memory after freeing everything is 0", current == 0);
    rn_context_free(ctx), rn_context_free(kernels_ctx);
    ref_model_free(ref);
    rn_checkpoint_close(ckpt);
    return expect_finish(dir);
}
