/*
 * test_long_run.c: 100,000 tokens of recurrent decoding on a tiny model.
 *
 * A random checkpoint (D 32, H 4, L 1, V 64, fixed seed) decodes a stream of tokens from a
 * fixed-seed generator one at a time through the public API. Along the way:
 *   - every logit is finite (rn_session_decode also refuses non-finite ones: RN_ERR_NUMERIC)
 *     and max |logit| stays below a bound;
 *   - every 10,000 tokens the session is saved (rn_session_save) and the recurrent state read
 *     back from the file: it must be finite and bounded, i.e. not grow once the slowest decay
 *     has forgotten the start: max |state| at any later point within 2x its value at 10,000;
 *   - at 1,000, 10,000, 50,000 and 100,000 tokens the logits of the last position are compared
 *     with a chunkwise prefill of the same whole sequence from scratch in a second session:
 *     max |difference| / max |logit| <= 1e-4.
 *
 * The model is of the fla family: its retention has no per-form normalisation (o = sum of
 * gamma^(n-m) (q.k) v, then the head norm), so the recurrent and chunkwise forms compute the
 * same function by construction and differ by rounding only. torchscale's forms differ by the
 * group norm's eps acting on differently scaled outputs and agree only as eps -> 0 (1e-12);
 * fla needs no such tuning, so a difference here is accumulated rounding, which is what a long
 * run must show does not grow.
 *
 * Usage: test_long_run [TOKENS]   (default 100000; the checkpoints above it are skipped)
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device_model.h"

#define TOL 1e-4
#define CHUNK 64                /* the chunkwise prefill's chunk: 1,563 chunk boundaries at 100k */
#define LOGIT_BOUND 1e3
#define SAVE_EVERY 10000
#define STATE_HEADER_BYTES 56   /* state.c: magic, order, version, fingerprint, position, 6 u32 */

static int failures = 0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The largest |value| of the recurrent states in a state file (state.c's layout), or -1 when
 * the file is not the size that layout gives, or +inf for a non-finite value. */
static double state_max(const char *path, const rn_model_info *info, uint64_t position) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    bool read_ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    const size_t H = (size_t)info->heads, dk = (size_t)(info->key_embed_dim / info->heads);
    const size_t dv = (size_t)(info->value_embed_dim / info->heads), V = (size_t)info->vocab_size;
    const size_t n_recent = position < 256 ? (size_t)position : 256;
    const size_t per_layer = H * dk * dv + H;
    const size_t states_at = STATE_HEADER_BYTES + n_recent * 4 + V * 4;
    const size_t want = states_at + (size_t)info->layers * per_layer * 4 + 8;
    if (!read_ok || (size_t)size != want) {
        free(buf);
        return -1;
    }
    double max = 0;
    for (size_t l = 0; l < (size_t)info->layers; l++)
        for (size_t i = 0; i < H * dk * dv; i++) {
            float x;
            memcpy(&x, buf + states_at + (l * per_layer + i) * 4, 4);
            if (!isfinite(x)) max = INFINITY;
            else if (fabs(x) > max) max = fabs(x);
        }
    free(buf);
    return max;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  /* progress shows as it happens, also in a log */
    long total = argc > 1 ? atol(argv[1]) : 100000;
    if (total < 1) total = 1;
    char dir[] = "/tmp/rn_long_run_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    rn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.family = RN_FAMILY_FLA;
    cfg.embed_dim = 32;
    cfg.key_embed_dim = 32;
    cfg.value_embed_dim = 32;
    cfg.heads = 4;
    cfg.kv_heads = 4;
    cfg.key_head_dim = 8;
    cfg.value_head_dim = 8;
    cfg.ffn_dim = 64;
    cfg.layers = 1;
    cfg.vocab_size = 64;
    cfg.chunk_size = 64;      /* (fla's config.json has no chunk size: the prefill passes it) */
    cfg.activation = RN_ACT_SWISH;
    cfg.layernorm_eps = 1e-6;
    cfg.normalize_before = true;
    cfg.no_scale_embedding = true;
    cfg.rope_half = cfg.plain_retention = cfg.head_norm_weight = cfg.output_gate = true;
    char model_dir[64], state_path[64];
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    snprintf(state_path, sizeof state_path, "%s/state.bin", dir);
    rn_context *ctx;
    rn_model *model;
    if (!device_model_open(model_dir, &cfg, 2024, &ctx, &model)) return 1;
    rn_session *rec = NULL, *pre = NULL;
    rn_status st = rn_session_init(model, &rec);
    if (st == RN_OK) st = rn_session_init(model, &pre);
    if (st != RN_OK) {
        printf("setup failed: %s: %s\n", rn_status_str(st), rn_context_last_error(ctx));
        return 1;
    }
    rn_model_info info;
    rn_model_info_get(model, &info);
    const size_t V = (size_t)info.vocab_size;
    printf("model: %s, D %lld, H %lld, L %lld, V %lld; %ld tokens\n", info.family, (long long)info.embed_dim, (long long)info.heads, (long long)info.layers,
           (long long)info.vocab_size, total);

    int32_t *tokens = malloc((size_t)total * sizeof *tokens);
    float *logits = malloc(V * sizeof *logits);
    uint64_t seed = 0x853c49e6748fea9bull;
    for (long i = 0; i < total; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((seed >> 33) % V);
    }

    const long checks[] = {1000, 10000, 50000, 100000};
    size_t next_check = 0;
    double max_logit = 0, state_at_10k = -1, state_peak = 0, worst_rel = 0, decode_seconds = 0;
    long reached = 0;
    double t0 = now();
    for (long i = 0; i < total && st == RN_OK; i++) {
        double t = now();
        st = rn_session_decode(rec, tokens[i], logits);
        decode_seconds += now() - t;
        if (st != RN_OK) {
            printf("  decode at token %ld: %s: %s  FAIL\n", i, rn_status_str(st), rn_context_last_error(ctx));
            failures++;
            break;
        }
        reached = i + 1;
        for (size_t v = 0; v < V; v++) {
            double a = fabs((double)logits[v]);
            if (!(a <= LOGIT_BOUND)) {
                printf("  logit %g at token %ld, column %zu: not finite or above %g  FAIL\n", (double)logits[v], i,
                       v, LOGIT_BOUND);
                failures++;
                st = RN_ERR_NUMERIC;
                break;
            }
            if (a > max_logit) max_logit = a;
        }
        if (reached % SAVE_EVERY == 0 || reached == total) {
            rn_status saved = rn_session_save(rec, state_path);
            double m = saved == RN_OK ? state_max(state_path, &info, (uint64_t)reached) : -1;
            if (reached == SAVE_EVERY) state_at_10k = m;
            if (m > state_peak) state_peak = m;
            bool ok = m >= 0 && isfinite(m) && (state_at_10k < 0 || m <= 2 * state_at_10k);
            printf("  %6ld tokens: max |state| %.4g, max |logit| so far %.4g, %.0f tokens/s  %s\n", reached, m,
                   max_logit, reached / decode_seconds, ok ? "pass" : "FAIL");
            if (!ok) failures++;
        }
        if (next_check < sizeof checks / sizeof checks[0] && reached == checks[next_check]) {
            next_check++;
            double t1 = now();
            rn_status ps = rn_session_reset(pre);
            if (ps == RN_OK) ps = rn_session_prefill(pre, tokens, (size_t)reached, RN_MODE_CHUNKWISE, CHUNK, NULL);
            double prefill_seconds = now() - t1;
            if (ps != RN_OK) {
                printf("  chunkwise prefill of %ld tokens: %s: %s  FAIL\n", reached, rn_status_str(ps),
                       rn_context_last_error(ctx));
                failures++;
                continue;
            }
            const float *ref = rn_session_logits(pre);
            double max_ref = 0, max_diff = 0;
            for (size_t v = 0; v < V; v++) {
                double d = fabs((double)logits[v] - (double)ref[v]);
                if (!(d <= max_diff)) max_diff = d;
                if (fabs((double)ref[v]) > max_ref) max_ref = fabs((double)ref[v]);
            }
            double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
            if (!(rel <= worst_rel)) worst_rel = rel;
            bool ok = rel <= TOL;
            printf("  %6ld tokens: recurrent vs chunkwise prefill (chunk %lld, %.1f s): rel err %.2e  %s\n", reached,
                   (long long)CHUNK, prefill_seconds, rel, ok ? "pass" : "FAIL");
            if (!ok) failures++;
        }
    }
    double elapsed = now() - t0;
    printf("reached %ld of %ld tokens in %.1f s (decoding %.0f tokens/s); max |logit| %.4g, peak max |state| %.4g, "
           "worst recurrent-vs-chunkwise rel err %.2e\n",
           reached, total, elapsed, reached / decode_seconds, max_logit, state_peak, worst_rel);
    if (reached != total) failures++;

    free(tokens);
    free(logits);
    rn_session_free(rec);
    rn_session_free(pre);
    rn_model_free(model);
    rn_context_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
