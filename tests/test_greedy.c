/*
 * test_greedy.c: rn_session_decode_greedy, greedy decoding with the argmax taken on the device,
 * against the same steps through rn_session_decode_rows on a second session with the argmax
 * taken on the host by the sampler at temperature 0:
 *   1. a batch whose rows sit at different positions, stepped several times with some rows
 *      left out, each step feeding back the device's tokens: the same tokens, positions and
 *      recent tokens, then bitwise the same logits (rn_session_logits, whose rows the greedy
 *      steps left on the device) and the same logits one step later (the same state);
 *   2. an ordinary session: a greedy generation, its state saved to a buffer and restored, and
 *      copied (rn_session_copy, rn_session_copy_row), each holding the current logits;
 *   3. refusals (rows 0 or above the batch, a token outside the vocabulary, NULL next) and a
 *      cancellation leave the session as it was; a model whose logits are NaN fails the step
 *      with RN_ERR_NUMERIC and empties the session, as rn_session_decode_rows does;
 *   4. rn_session_generate_greedy, the steps following each other on the device: more steps
 *      than it lets the host queue ahead, against the host's choices step by step (tokens, positions, recent
 *      tokens, bitwise logits after), its refusals and a cancellation before it starts leaving
 *      the session as it was, and the NaN model failing it as in 3.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "expect.h"
#include "model_writer.h"
#include "retnet.h"

#define V 61
#define B 5

static rn_config test_config(void) {
    rn_config c;
    memset(&c, 0, sizeof c);
    c.embed_dim = 32;
    c.value_embed_dim = 48;
    c.heads = 4;
    c.ffn_dim = 64;
    c.layers = 2;
    c.vocab_size = V;
    c.chunk_size = 16;
    c.activation = RN_ACT_SWISH;
    c.layernorm_eps = 1e-12;
    c.normalize_before = true;
    return c;
}

static int32_t token_at(int64_t i, int64_t salt) {
    return (int32_t)((i * 37 + salt * 11 + 3 + (i % 5 == 0 ? 17 : 0)) % V);
}

/* The host's greedy choice for each of `rows` rows: the sampler at temperature 0, no penalty. */
static rn_status host_greedy(const float *logits, size_t rows, int32_t *next) {
    rn_sampling greedy;
    rn_sampling_default(&greedy);
    greedy.temperature = 0.0f;
    greedy.repeat_penalty = 1.0f;
    rn_sampler *sampler = NULL;
    rn_status st = rn_sampler_init(&greedy, V, &sampler);
    for (size_t r = 0; r < rows && st == RN_OK; r++) st = rn_sampler_sample(sampler, logits + r * V, NULL, 0, 0, next + r);
    rn_sampler_free(sampler);
    return st;
}

/* Two batches of B rows with the same prompts (row b: b + 1 tokens, chunkwise, so positions of
 * both parities), copied in from an ordinary session. */
static rn_status two_batches(rn_model *model, rn_session **greedy, rn_session **rows) {
    rn_session *one = NULL;
    rn_status st = rn_session_init_batch(model, B, greedy);
    if (st == RN_OK) st = rn_session_init_batch(model, B, rows);
    if (st == RN_OK) st = rn_session_init(model, &one);
    for (int b = 0; b < B && st == RN_OK; b++) {
        int32_t prompt[B];
        for (int i = 0; i <= b; i++) prompt[i] = token_at(i, b);
        st = rn_session_reset(one);
        if (st == RN_OK) st = rn_session_prefill(one, prompt, (size_t)b + 1, RN_MODE_CHUNKWISE, 2, NULL);
        if (st == RN_OK) st = rn_session_copy_row(*greedy, (size_t)b, one, 0);
        if (st == RN_OK) st = rn_session_copy_row(*rows, (size_t)b, one, 0);
    }
    rn_session_free(one);
    return st;
}

/* ---- 1. a batch ---------------------------------------------------------------------------- */

static void run_batch(rn_context *ctx, rn_model *model) {
    printf("  a batch of %d rows at different positions\n", B);
    rn_session *greedy = NULL, *rows = NULL;
    rn_status st = two_batches(model, &greedy, &rows);
    /* Rows stepped per step: all, then fewer (the others wait, as in continuous batching). */
    const size_t active[] = {B, B, 3, B, 2, 1, B};
    const size_t steps = sizeof active / sizeof active[0];
    int32_t tokens[B], want[B], got[B];
    for (int b = 0; b < B; b++) tokens[b] = token_at(40, b);
    float logits[B * V];
    bool same_tokens = true;
    for (size_t t = 0; t < steps && st == RN_OK; t++) {
        const size_t n = active[t];
        st = rn_session_decode_rows(rows, n, tokens, logits);
        if (st == RN_OK) st = host_greedy(logits, n, want);
        if (st == RN_OK) st = rn_session_decode_greedy(greedy, n, tokens, got);
        for (size_t b = 0; b < n && st == RN_OK; b++) {
            if (got[b] != want[b]) {
                printf("    step %zu row %zu: device chose %d, the host %d\n", t, b, got[b], want[b]);
                same_tokens = false;
            }
            tokens[b] = want[b];  /* a greedy generation feeds its choice back */
        }
        /* After the third step, read the greedy batch's logits once (then some rows are on the
         * device again, some not, when the next steps run). */
        if (st == RN_OK && t == 2) {
            const float *kept = rn_session_logits(greedy);
            same_tokens = same_tokens && kept && !memcmp(kept, rn_session_logits(rows), sizeof logits);
        }
    }
    if (st != RN_OK) {
        printf("    stepping failed: %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(ctx));
        failures++;
    }
    expect_true("device choices equal the host's of the same logits, 7 steps", st == RN_OK && same_tokens);
    bool same_positions = true;
    for (size_t b = 0; b < B; b++)
        same_positions = same_positions && rn_session_row_position(greedy, b) == rn_session_row_position(rows, b) &&
                         rn_session_row_position(greedy, b) == b + 1 + (b < 1 ? 7 : b < 2 ? 6 : b < 3 ? 5 : 4);
    expect_true("row positions equal, and each row's prompt + its steps", same_positions);
    const float *g = rn_session_logits(greedy), *r = rn_session_logits(rows);
    expect_true("rn_session_logits after greedy steps: every row current (bitwise)",
                g && r && !memcmp(g, r, sizeof logits));
    /* One more step with logits on both: the same state behind them. */
    float a[B * V], c[B * V];
    for (int b = 0; b < B; b++) tokens[b] = token_at(90, b);
    st = rn_session_decode_batch(rows, tokens, a);
    if (st == RN_OK) st = rn_session_decode_batch(greedy, tokens, c);
    expect_true("the next step's logits are equal (bitwise)", st == RN_OK && !memcmp(a, c, sizeof a));
    rn_session_free(greedy), rn_session_free(rows);
}

/* ---- 2. an ordinary session ------------------------------------------------------------------ */

static void run_single(rn_context *ctx, rn_model *model) {
    printf("  an ordinary session: generation, save and restore, copies\n");
    rn_session *greedy = NULL, *plain = NULL, *restored = NULL, *copy = NULL, *batch = NULL;
    rn_status st = rn_session_init(model, &greedy);
    if (st == RN_OK) st = rn_session_init(model, &plain);
    if (st == RN_OK) st = rn_session_init(model, &restored);
    if (st == RN_OK) st = rn_session_init_batch(model, 2, &batch);
    const int32_t prompt[] = {5, 17, 33, 2, 60, 9};
    if (st == RN_OK) st = rn_session_prefill(greedy, prompt, 6, RN_MODE_CHUNKWISE, 0, NULL);
    if (st == RN_OK) st = rn_session_prefill(plain, prompt, 6, RN_MODE_CHUNKWISE, 0, NULL);
    /* Generate as `retnet generate` does: the first token from the prompt's logits. */
    int32_t token = 0, next = 0, from_host[12], from_device[12];
    if (st == RN_OK) st = host_greedy(rn_session_logits(plain), 1, &token);
    from_host[0] = from_device[0] = token;
    float logits[V];
    for (int i = 1; i < 12 && st == RN_OK; i++) {
        st = rn_session_decode(plain, from_host[i - 1], logits);
        if (st == RN_OK) st = host_greedy(logits, 1, &from_host[i]);
        if (st == RN_OK) st = rn_session_decode_greedy(greedy, 1, &from_device[i - 1], &next);
        from_device[i] = next;
    }
    expect_true("11 greedy steps: the host's tokens", st == RN_OK && !memcmp(from_host, from_device, sizeof from_host));
    int32_t recent_a[256], recent_b[256];
    const size_t na = rn_session_recent(greedy, recent_a, 256), nb = rn_session_recent(plain, recent_b, 256);
    expect_true("position and recent tokens equal",
                rn_session_position(greedy) == 17 && rn_session_position(plain) == 17 && na == nb &&
                    !memcmp(recent_a, recent_b, na * sizeof *recent_a));
    /* A state saved right after a greedy step holds its logits, read back for it. */
    const size_t bytes = rn_session_state_bytes(greedy);
    unsigned char *state = malloc(bytes);
    if (st == RN_OK) st = rn_session_save_buffer(greedy, state, bytes);
    if (st == RN_OK) st = rn_session_load_buffer(restored, state, bytes);
    expect_true("a state saved after a greedy step restores its logits",
                st == RN_OK && !memcmp(rn_session_logits(restored), logits, sizeof logits));
    free(state);
    /* So does a copy, and a row copied into a batch, each right after a greedy step. */
    if (st == RN_OK) st = rn_session_decode_greedy(greedy, 1, &from_device[11], &next);
    if (st == RN_OK) st = rn_session_decode(plain, from_host[11], logits);
    if (st == RN_OK) st = rn_session_copy(greedy, &copy);
    expect_true("rn_session_copy after a greedy step holds its logits",
                st == RN_OK && !memcmp(rn_session_logits(copy), logits, sizeof logits));
    if (st == RN_OK) st = rn_session_decode_greedy(greedy, 1, &next, &token);
    if (st == RN_OK) st = rn_session_decode(plain, next, logits);
    if (st == RN_OK) st = rn_session_copy_row(batch, 1, greedy, 0);
    expect_true("rn_session_copy_row after a greedy step holds its logits",
                st == RN_OK && !memcmp(rn_session_logits(batch) + V, logits, sizeof logits) &&
                    !memcmp(rn_session_logits(greedy), logits, sizeof logits));
    if (st != RN_OK) {
        printf("    failed: %s: %s  FAIL\n", rn_status_str(st), rn_context_last_error(ctx));
        failures++;
    }
    rn_session_free(greedy), rn_session_free(plain), rn_session_free(restored), rn_session_free(copy);
    rn_session_free(batch);
}

/* ---- 3. refusals, cancellation, non-finite logits ------------------------------------------- */

static void run_refusals(rn_context *ctx, rn_model *model) {
    printf("  refusals and cancellation leave the session as it was\n");
    rn_session *greedy = NULL, *rows = NULL;
    rn_status st = two_batches(model, &greedy, &rows);
    int32_t tokens[B + 1] = {1, 2, 3, 4, 5, 6}, next[B + 1] = {-7, -7, -7, -7, -7, -7};
    if (st == RN_OK) st = rn_session_decode_greedy(greedy, B, tokens, next);  /* rows on the device */
    if (st == RN_OK) st = rn_session_decode_rows(rows, B, tokens, NULL);
    expect_status("a greedy step", st, RN_OK, ctx);
    const int32_t before = next[0];
    expect_status("0 rows", rn_session_decode_greedy(greedy, 0, tokens, next), RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("6 rows of a batch of 5", rn_session_decode_greedy(greedy, B + 1, tokens, next),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("NULL next", rn_session_decode_greedy(greedy, B, tokens, NULL), RN_ERR_INVALID_ARGUMENT, ctx);
    const int32_t bad[B] = {1, 2, V, 4, 5};
    expect_status("a token outside the vocabulary", rn_session_decode_greedy(greedy, B, bad, next),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    rn_context_cancel(ctx, 1);
    expect_status("cancelled", rn_session_decode_greedy(greedy, B, tokens, next), RN_ERR_CANCELLED, ctx);
    bool same = next[0] == before;
    for (size_t b = 0; b < B; b++) same = same && rn_session_row_position(greedy, b) == rn_session_row_position(rows, b);
    const float *g = rn_session_logits(greedy), *r = rn_session_logits(rows);
    expect_true("positions, next and logits as before",
                same && g && r && !memcmp(g, r, (size_t)B * V * sizeof(float)));
    rn_session_free(greedy), rn_session_free(rows);
}

/* ---- 4. steps following each other on the device ------------------------------------------ */

static void run_generate(rn_context *ctx, rn_model *model) {
    enum { ROWS = 4, STEPS = 26 };  /* past the library's second wait for the device (GREEDY_AHEAD 8) */
    printf("  rn_session_generate_greedy: %d rows, %d steps\n", ROWS, STEPS);
    rn_session *greedy = NULL, *rows = NULL;
    rn_status st = two_batches(model, &greedy, &rows);
    int32_t first[ROWS], tokens[ROWS], want[STEPS * ROWS], out[STEPS * ROWS];
    for (int b = 0; b < ROWS; b++) first[b] = tokens[b] = token_at(60, b);
    float logits[B * V];
    for (int t = 0; t < STEPS && st == RN_OK; t++) {
        st = rn_session_decode_rows(rows, ROWS, tokens, logits);
        if (st == RN_OK) st = host_greedy(logits, ROWS, want + t * ROWS);
        memcpy(tokens, want + t * ROWS, sizeof tokens);
    }
    size_t done = 99;
    memset(out, 0xff, sizeof out);
    if (st == RN_OK) st = rn_session_generate_greedy(greedy, ROWS, first, STEPS, out, &done);
    expect_status("generating", st, RN_OK, ctx);
    expect_true("every step's choices equal the host's", st == RN_OK && done == STEPS && !memcmp(out, want, sizeof out));
    bool same = true;
    for (size_t b = 0; b < B; b++) {
        int32_t a[16], c[16];
        const size_t na = rn_session_recent(greedy, a, 16), nc = rn_session_recent(rows, c, 16);
        same = same && rn_session_row_position(greedy, b) == rn_session_row_position(rows, b) && na == nc &&
               !memcmp(a, c, na * sizeof *a);
    }
    const float *g = rn_session_logits(greedy), *r = rn_session_logits(rows);
    expect_true("positions, recent tokens and logits after (bitwise)",
                same && g && r && !memcmp(g, r, sizeof logits));

    /* Refusals and a cancellation: nothing runs, nothing moves. */
    const uint64_t at = rn_session_row_position(greedy, 0);
    const int32_t bad[ROWS] = {1, V, 2, 3};
    expect_status("0 rows", rn_session_generate_greedy(greedy, 0, first, 2, out, &done), RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("6 rows of a batch of 5", rn_session_generate_greedy(greedy, B + 1, first, 2, out, &done),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("0 steps", rn_session_generate_greedy(greedy, ROWS, first, 0, out, &done), RN_ERR_INVALID_ARGUMENT,
                  ctx);
    expect_status("NULL out", rn_session_generate_greedy(greedy, ROWS, first, 2, NULL, &done),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    expect_status("a token outside the vocabulary", rn_session_generate_greedy(greedy, ROWS, bad, 2, out, &done),
                  RN_ERR_INVALID_ARGUMENT, ctx);
    rn_context_cancel(ctx, 1);
    expect_status("cancelled before it starts", rn_session_generate_greedy(greedy, ROWS, first, 2, out, &done),
                  RN_ERR_CANCELLED, ctx);
    expect_true("no step ran: done 0, position as before", done == 0 && rn_session_row_position(greedy, 0) == at);
    rn_session_free(greedy), rn_session_free(rows);
}

/* Overwrites every value of the safetensors tensor whose name ends in `suffix` outside the
 * layers (the final norm) with NaN. */
static bool poison_tensor(const char *path, const char *suffix) {
    FILE *f = fopen(path, "r+b");
    if (!f) return false;
    uint64_t header_len = 0;
    bool ok = fread(&header_len, 8, 1, f) == 1 && header_len < (1u << 20);
    char *header = ok ? calloc(1, (size_t)header_len + 1) : NULL;
    ok = header && fread(header, 1, (size_t)header_len, f) == header_len;
    const char *key = NULL;
    for (const char *at = header; ok && (at = strstr(at, suffix)) != NULL; at++) {
        const char *open = at;
        while (open > header && open[-1] != '"') open--;
        if (!strstr(open, "layers.") || strstr(open, "layers.") > at) {
            key = at;
            break;
        }
    }
    const char *offsets = key ? strstr(key, "\"data_offsets\":[") : NULL;
    unsigned long long begin = 0, end = 0;
    ok = offsets && sscanf(offsets, "\"data_offsets\":[%llu,%llu]", &begin, &end) == 2 && end > begin;
    const float nan = NAN;
    for (unsigned long long at = begin; ok && at < end; at += sizeof nan)
        ok = fseek(f, (long)(8 + header_len + at), SEEK_SET) == 0 && fwrite(&nan, sizeof nan, 1, f) == 1;
    free(header);
    return fclose(f) == 0 && ok;
}

static void run_non_finite(rn_context *ctx, const char *dir) {
    printf("  non-finite logits\n");
    char path[160], file[200];
    snprintf(path, sizeof path, "%s/nan", dir);
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    rn_config cfg = test_config();
    rn_error err = {{0}};
    rn_model *model = NULL;
    rn_session *s = NULL;
    rn_status st = rn_write_random_model(path, &cfg, NULL, &err);
    bool poisoned = st == RN_OK && poison_tensor(file, "layer_norm.weight\"");
    expect_true("the final norm's weights made NaN", poisoned);
    if (poisoned) st = rn_model_load(ctx, path, NULL, &model);
    if (poisoned && st == RN_OK) st = rn_session_init_batch(model, 2, &s);
    const int32_t prompt[2] = {3, 4};
    int32_t next[2] = {-7, -7};
    if (poisoned && st == RN_OK) {
        st = rn_session_decode_greedy(s, 2, prompt, next);
        expect_status("a greedy step over NaN logits", st, RN_ERR_NUMERIC, ctx);
        const char *said = rn_context_last_error(ctx);
        expect_true("the message names the logit",
                    strstr(said, "non-finite logit") && strstr(said, "nan at row 0, column 0"));
        expect_true("next untouched, the session emptied (as decode_rows leaves it)",
                    next[0] == -7 && rn_session_row_position(s, 0) == 0 && rn_session_row_position(s, 1) == 0 &&
                        rn_session_logits(s) && rn_session_logits(s)[0] == 0.0f);
        expect_status("rn_session_decode_rows over NaN logits", rn_session_decode_rows(s, 2, prompt, NULL),
                      RN_ERR_NUMERIC, ctx);
        int32_t out[2 * 5];
        size_t done = 99;
        expect_status("rn_session_generate_greedy over NaN logits", rn_session_generate_greedy(s, 2, prompt, 5, out, &done),
                      RN_ERR_NUMERIC, ctx);
        said = rn_context_last_error(ctx);
        expect_true("the message names the step, the session emptied",
                    strstr(said, "non-finite logit at row 0, column 0, in greedy step 1 of 5") && done == 0 &&
                        rn_session_row_position(s, 0) == 0);
    } else if (st != RN_OK) {
        printf("    setting up: %s: %s  FAIL\n", rn_status_str(st), err.message[0] ? err.message : rn_context_last_error(ctx));
        failures++;
    }
    rn_session_free(s);
    rn_model_free(model);
}

int main(void) {
    char dir[] = "/tmp/retnet-test-greedy-XXXXXX";
    if (!mkdtemp(dir)) return 2;
    char path[96];
    snprintf(path, sizeof path, "%s/model", dir);
    rn_config cfg = test_config();
    rn_error err = {{0}};
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    opts.seed = 21;
    rn_status st = rn_write_random_model(path, &cfg, &opts, &err);
    if (st != RN_OK) {
        printf("writing the model failed: %s\n", err.message);
        return 1;
    }
    rn_context *ctx = NULL;
    char message[1024];
    st = rn_context_init(&ctx, NULL, message, sizeof message);
    if (st != RN_OK) {
        printf("no device: %s: %s\n", rn_status_str(st), message);
        return 1;
    }
    printf("device: %s\n", rn_context_device(ctx)->name);
    rn_model *model = NULL;
    st = rn_model_load(ctx, path, NULL, &model);
    if (st != RN_OK) {
        printf("loading failed: %s: %s\n", rn_status_str(st), rn_context_last_error(ctx));
        return 1;
    }
    run_batch(ctx, model);
    run_single(ctx, model);
    run_refusals(ctx, model);
    run_generate(ctx, model);
    run_non_finite(ctx, dir);
    rn_model_free(model);
    uint64_t current, peak;
    rn_context_memory(ctx, &current, &peak);
    expect_true("device memory after freeing everything is 0", current == 0);
    rn_context_free(ctx);
    return expect_finish(dir);
}
