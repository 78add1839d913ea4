/* cli_bench.c: `retnet bench`, prefill and decode rates against the device's own ceilings.
 *
 * In the manner of llama-bench: each test runs once untimed (kernel compilation, CLBlast's
 * first-call tuning), then `reps` times; rates are the mean and standard deviation over the
 * repetitions. Decoding is greedy generation as the PyTorch peers run it: each step takes the
 * argmax on the device, reads back one token id per sequence (the step's one synchronisation)
 * and feeds it to the next step (rn_session_decode_greedy); --chain-steps times steps chained
 * on the device, the ids read back once at the end (rn_session_generate_greedy), --read-logits
 * steps that read every row's logits back to the host instead (and check them), as sampling on
 * the host needs. Ceilings are measured in the same process: a copy
 * kernel for bandwidth, one large SGEMM for compute; decode is quoted as bytes read per step
 * over time against the bandwidth, prefill as projection FLOPs over time against the SGEMM
 * rate. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "cli.h"

#define MAX_LIST 16

static const char *bench_usage =
    "usage: retnet bench (--preset NAME | --model DIR) [options]\n"
    "\n"
    "Prefill (pp) and decode (tg) rates in tokens/s, mean +- standard deviation over the\n"
    "repetitions after an untimed warm-up, with each rate as a fraction of the device's ceiling\n"
    "measured in the same run: decode as bytes read per step / time over the copy bandwidth,\n"
    "prefill as projection FLOPs / time over the rate of one large SGEMM (and, second, with\n"
    "retention's own products counted too).\n"
    "\n"
    "  --preset NAME      a shape shipped with retnet (tiny, torchscale-1.3b, torchscale-2.7b,\n"
    "                     torchscale-6.7b, fla-1.3b: share/retnet-cl/presets beside the\n"
    "                     program's bin/, or $RETNET_PRESET_DIR) or a config.json path;\n"
    "                     weights are random, made on the device\n"
    "  --model DIR        a checkpoint directory instead\n"
    "  --weights W        f32, f16, bf16, q8 or q4 (default: f16 for presets, the file's for --model)\n"
    CLI_PRECISION_HELP
    "  -p N[,N..]         prefill lengths (default 512; 0: none)\n"
    "  -n N[,N..]         decode lengths (default 128; 0: none)\n"
    "  --batch B[,B..]    sequences decoded together (default 1)\n"
    "  --context C[,C..]  decode after a prefill of C tokens (default 0); batch 1 only\n"
    "  --mode M           prefill form: chunkwise (default) or parallel\n"
    "  --read-logits      decode steps read every sequence's logits back to the host (what\n"
    "                     sampling on the host needs; tests tgN+logits) instead of the default\n"
    "                     greedy steps, which take the argmax on the device, read back one\n"
    "                     token id per sequence and feed it to the next step\n"
    "  --chain-steps      greedy steps chained on the device, each step's ids fed to the next\n"
    "                     there and all read back at the end (rn_session_generate_greedy;\n"
    "                     tests tgN+chain)\n"
    "  -r N               repetitions (default 5)\n"
    "  --startup          also time context + model + first token with an empty and a warm\n"
    "                     program cache\n"
    "  --profile          also time every kernel of decode steps (of the largest --batch) and one prefill by\n"
    "                     OpenCL events: per kernel and per layer, and the gap to wall time\n"
    "  --no-ceilings      skip the bandwidth and SGEMM measurements\n"
    "  --json             JSON Lines on standard output instead of the table\n"
    "  --device D, --no-cache, --seed S   as for the other commands\n"
    "  -h, --help         this text\n"
    "\n"
    "Tuning, by environment: RETNET_WORK_GROUP (work-items of the reducing kernels, a power of\n"
    "two up to 256; default 64 on GPUs, 2 on other devices), RETNET_PROJECT_MAX_ROWS (rows up\n"
    "to which products take the project kernel; default 32, or 4 where the small matrix-engine\n"
    "GEMM takes batches: f16/bf16 on NVIDIA), RETNET_MAX_ALLOC_MIB (the largest single buffer,\n"
    "when below the device's limit), RETNET_BATCH_WORK_GROUP (work-items of the norms,\n"
    "retention step and argmax of batches of 8 or more on the matrix engine; default 256, 0\n"
    "for RETNET_WORK_GROUP's; the JSON lines of those batches carry \"batch_work_group\" where\n"
    "it ran). docs/BENCHMARKS.md has what they measured.\n";

typedef struct bench_options {
    const char *preset, *model, *weights, *device, *mode;
    long pp[MAX_LIST], tg[MAX_LIST], batch[MAX_LIST], context[MAX_LIST];
    int n_pp, n_tg, n_batch, n_context;
    long reps;
    unsigned long long seed;
    int startup, profile, no_ceilings, json, no_cache;
    int read_logits;  /* decode steps read the logits back instead of greedy ids */
    int chain_steps;  /* greedy steps chained on the device (rn_session_generate_greedy) */
} bench_options;

/* What every result line shares. */
typedef struct bench_run {
    const bench_options *o;
    rn_context *ctx;
    rn_model *model;
    rn_model_info info;
    const char *name;
    char device[256];
    double bandwidth_gbps, sgemm_gflops;
    size_t sgemm_n;
    int progress;  /* standard error is a terminal */
} bench_run;

static int parse_list(const char *s, long lo, long hi, long *out, int *count) {
    *count = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || *count == MAX_LIST || (*end && *end != ',')) return 0;
        out[(*count)++] = v;
        s = *end ? end + 1 : end;
    }
    return *count > 0;
}

static int parse_bench(int argc, char **argv, bench_options *o) {
    memset(o, 0, sizeof *o);
    o->pp[0] = 512, o->tg[0] = 128, o->batch[0] = 1, o->context[0] = 0;
    o->n_pp = o->n_tg = o->n_batch = o->n_context = 1;
    o->reps = 5;
    o->mode = "chunkwise";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(bench_usage, stdout);
            exit(0);
        }
        int *flag = !strcmp(a, "--startup") ? &o->startup : !strcmp(a, "--profile") ? &o->profile
                  : !strcmp(a, "--no-ceilings") ? &o->no_ceilings : !strcmp(a, "--json") ? &o->json
                  : !strcmp(a, "--no-cache") ? &o->no_cache : !strcmp(a, "--read-logits") ? &o->read_logits
                  : !strcmp(a, "--chain-steps") ? &o->chain_steps : NULL;
        if (flag) {
            *flag = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("%s needs a value", a);
        const char *v = argv[++i];
        char *end;
        if (!strcmp(a, "--preset")) o->preset = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--mode")) {
            if (strcmp(v, "chunkwise") && strcmp(v, "parallel"))
                return cli_usage_error("--mode must be chunkwise or parallel, not '%s'", v);
            o->mode = v;
        } else if (!strcmp(a, "--precision")) {
            if (!cli_set_precision(v)) return cli_usage_error("--precision must be f32, f16, bf16 or auto, not '%s'", v);
        } else if (!strcmp(a, "--weights")) {
            rn_weights w;
            if (!cli_parse_weights(v, &w)) return cli_usage_error("--weights must be f32, f16, bf16, q8 or q4, not '%s'", v);
            o->weights = v;
        } else if (!strcmp(a, "-p")) {
            if (!parse_list(v, 0, 1 << 20, o->pp, &o->n_pp)) return cli_usage_error("bad -p list '%s'", v);
        } else if (!strcmp(a, "-n")) {
            if (!parse_list(v, 0, 1 << 20, o->tg, &o->n_tg)) return cli_usage_error("bad -n list '%s'", v);
        } else if (!strcmp(a, "--batch")) {
            if (!parse_list(v, 1, 1024, o->batch, &o->n_batch)) return cli_usage_error("bad --batch list '%s'", v);
        } else if (!strcmp(a, "--context")) {
            if (!parse_list(v, 0, 1 << 20, o->context, &o->n_context))
                return cli_usage_error("bad --context list '%s'", v);
        } else if (!strcmp(a, "-r")) {
            if (!cli_parse_long(v, 1, 1000, &o->reps)) return cli_usage_error("bad -r '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, &end, 10);
            if (end == v || *end) return cli_usage_error("bad --seed '%s'", v);
        } else {
            return cli_usage_error("unknown bench option '%s'", a);
        }
    }
    if (!o->preset == !o->model) return cli_usage_error("%s", "give one of --preset NAME or --model DIR");
    if (o->read_logits && o->chain_steps)
        return cli_usage_error("%s", "--chain-steps chains greedy steps; --read-logits times steps that read logits: "
                                     "give one of them");
    return 0;
}

static int open_model(const bench_options *o, rn_context_options *copts, rn_context **ctx, rn_model **model) {
    char message[4096], path[4096];
    *ctx = NULL;
    *model = NULL;
    const char *preset = o->preset ? cli_preset_path(o->preset, path, sizeof path) : NULL;
    if (o->preset && !preset) return 2;
    rn_status st = rn_context_init(ctx, copts, message, sizeof message);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: %s: %s\n", rn_status_str(st), message);
        return 1;
    }
    rn_model_options mo;
    rn_model_options_default(&mo);
    mo.weights = cli_weights(o->weights, o->preset ? RN_WEIGHTS_F16 : RN_WEIGHTS_FILE);
    st = preset ? rn_model_random(*ctx, preset, &mo, o->seed, model) : rn_model_load(*ctx, o->model, &mo, model);
    if (st != RN_OK) {
        int rc = cli_report(*ctx, st, o->preset ? "making the preset's model" : "loading the model");
        rn_context_free(*ctx);
        *ctx = NULL;
        *model = NULL;
        return rc;
    }
    return 0;
}

/* ---- statistics and output ------------------------------------------------------------------ */

static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) sum += v[i];
    *mean = sum / n;
    for (int i = 0; i < n; i++) sq += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
}

static void progress(const bench_run *r, const char *test, int rep) {
    if (!r->progress) return;
    fprintf(stderr, "\r\033[K[bench] %s: %s %d/%ld", r->name, test, rep, r->o->reps);
    fflush(stderr);
}

static void progress_done(const bench_run *r) {
    if (r->progress) fprintf(stderr, "\r\033[K");
}

/* Bytes a weight takes on the device; the quantized types count their blocks' scales. */
static double dtype_bytes(const char *dtype) {
    return !strcmp(dtype, "F32") ? 4.0 : !strcmp(dtype, "Q8_0") ? 34.0 / 32 : !strcmp(dtype, "Q4_0") ? 18.0 / 32 : 2.0;
}

/* Bytes one decode step of `batch` sequences reads or writes at least: every weight matrix but
 * the embedding once, the embedding rows of its tokens, and every layer's state read and
 * written. Norm vectors and activations are a rounding error and left out. */
static double step_bytes(const rn_model_info *i, long batch) {
    const double elt = dtype_bytes(i->device_dtype), table = (double)i->vocab_size * i->embed_dim * elt;
    const double matrices = (double)i->device_bytes - (i->tied_embeddings ? 0.0 : table);
    const double dk = (double)i->key_embed_dim / i->heads, dv = (double)i->value_embed_dim / i->heads;
    const double state = 2.0 * batch * i->layers * i->heads * dk * dv * sizeof(float);
    return matrices + batch * i->embed_dim * elt + state;
}

/* FLOPs of a prompt's projections: 2 per weight per token, the output projection for the last
 * row only (the one whose logits are kept). Retention's own products are not counted. */
static double prefill_flops(const rn_model_info *i, long n) {
    const double table = (double)i->vocab_size * i->embed_dim;
    const double projections = (double)i->parameters - table * (i->tied_embeddings ? 1.0 : 2.0);
    return 2.0 * n * projections + 2.0 * table;
}

/* FLOPs of retention's own products in the GEMM form (host/ops.c rn_op_retention_gemm), per
 * layer and head, summed over the chunks: scores 2 len^2 dk, outputs 2 len^2 dv, the chunk's
 * share of the state 2 len dk dv and, after the first chunk, the incoming state's term
 * 2 len dk dv. The parallel form is one chunk of n. */
static double retention_flops(const rn_model_info *i, long n, rn_mode mode) {
    const double dk = (double)i->key_embed_dim / i->heads, dv = (double)i->value_embed_dim / i->heads;
    const long chunk = mode == RN_MODE_CHUNKWISE && i->chunk_size < n ? (long)i->chunk_size : n;
    double sum = 0.0;
    for (long start = 0; start < n; start += chunk) {
        const double len = (double)(n - start < chunk ? n - start : chunk);
        sum += 2.0 * len * len * (dk + dv) + 2.0 * len * dk * dv * (start > 0 ? 2.0 : 1.0);
    }
    return sum * (double)i->heads * (double)i->layers;
}

static void print_header(const bench_run *r) {
    if (r->o->json) {
        if (r->o->no_ceilings)
            printf("{\"test\":\"ceilings\",\"device\":\"%s\",\"bandwidth_gbps\":null,\"sgemm_gflops\":null,"
                   "\"sgemm_n\":null}\n", r->device);
        else
            printf("{\"test\":\"ceilings\",\"device\":\"%s\",\"bandwidth_gbps\":%.1f,\"sgemm_gflops\":%.1f,"
                   "\"sgemm_n\":%zu}\n", r->device, r->bandwidth_gbps, r->sgemm_gflops, r->sgemm_n);
        return;
    }
    printf("device: %s\n", r->device);
    printf("model:  %s, %.4g M parameters, weights %s (%.4g MB on the device)\n", r->name, r->info.parameters / 1e6,
           r->info.device_dtype, r->info.device_bytes / 1e6);
    if (r->o->no_ceilings) printf("ceilings: not measured (--no-ceilings)\n");
    else
        printf("ceilings: copy bandwidth %.1f GB/s, SGEMM %.1f GFLOP/s (n = %zu)\n", r->bandwidth_gbps, r->sgemm_gflops,
               r->sgemm_n);
    printf("\n| %-16s | %-5s | %-18s | %5s | %7s | %20s | %9s | %11s | %9s |\n", "model", "dtype", "test", "batch",
           "context", "t/s", "ms/token", "roofline", "dev MiB");
    printf("| %.16s | %.5s | %.18s | %.5s | %.7s | %.20s | %.9s | %.11s | %.9s |\n", "----------------", "-----",
           "------------------", "-----", "-------", "--------------------", "---------", "-----------", "---------");
}

/* A roofline fraction for JSON: null when there is none (not measured, or not defined). */
static const char *json_fraction(double fraction, char *buf) {
    if (!(fraction > 0)) return "null";
    snprintf(buf, 32, "%.4f", fraction);
    return buf;
}

/* roofline_all: prefill counting retention's products too (0 for decoding). */
static void print_result(const bench_run *r, const char *test, long n, long batch, long context, const double *rates,
                         int reps, double roofline, double roofline_all, double extra, uint64_t device_bytes) {
    double mean, sd, ms[1000], ms_mean, ms_sd;
    const bool decoding = !strcmp(test, "tg");
    mean_sd(rates, reps, &mean, &sd);
    for (int i = 0; i < reps; i++) ms[i] = 1000.0 / rates[i];
    mean_sd(ms, reps, &ms_mean, &ms_sd);
    if (r->o->json) {
        char json_a[32], json_b[32], groups[48] = "";
        if (decoding && batch >= RN_BATCH_GROUP_ROWS && r->info.batch_work_group)  /* the batch set ran */
            snprintf(groups, sizeof groups, ",\"batch_work_group\":%d", r->info.batch_work_group);
        printf("{\"test\":\"%s\",\"model\":\"%s\",\"weights\":\"%s\",\"precision\":\"%s\",\"device\":\"%s\",\"n\":%ld,\"batch\":%ld,"
               "\"context\":%ld,\"reps\":%d,\"tokens_per_s\":%.3f,\"tokens_per_s_sd\":%.3f,\"ms_per_token\":%.5f,"
               "\"ms_per_token_sd\":%.5f,\"%s\":%.6g,\"roofline\":%s,\"roofline_with_retention\":%s,"
               "\"device_bytes\":%llu%s%s}\n",
               test, r->name, r->info.device_dtype, cli_precision_name(), r->device, n, batch, context, reps, mean, sd, ms_mean, ms_sd,
               decoding ? "bytes_per_step" : "flops", extra, json_fraction(roofline, json_a),
               json_fraction(roofline_all, json_b), (unsigned long long)device_bytes,
               !decoding ? "" : r->o->read_logits ? ",\"step\":\"logits\"" : r->o->chain_steps ? ",\"step\":\"greedy, chained\""
                                                                 : ",\"step\":\"greedy\"",
               groups);
        fflush(stdout);
        return;
    }
    char name[32], rate[32], roof[16];
    snprintf(name, sizeof name, "%s%ld%s", test, n,
             !decoding ? "" : r->o->read_logits ? "+logits" : r->o->chain_steps ? "+chain" : "");
    snprintf(rate, sizeof rate, "%.1f +- %.1f", mean, sd);
    if (roofline > 0 && roofline_all > 0)
        snprintf(roof, sizeof roof, "%.1f/%.1f%%", 100.0 * roofline, 100.0 * roofline_all);
    else if (roofline > 0) snprintf(roof, sizeof roof, "%.1f %%", 100.0 * roofline);
    else snprintf(roof, sizeof roof, "-");
    printf("| %-16s | %-5s | %-18s | %5ld | %7ld | %20s | %9.4f | %11s | %9.1f |\n", r->name, r->info.device_dtype, name,
           batch, context, rate, ms_mean, roof, device_bytes / 1048576.0);
    fflush(stdout);
}

/* ---- the tests ------------------------------------------------------------------------------ */

static int32_t *make_tokens(long n, int64_t vocab) {
    int32_t *t = malloc((size_t)(n ? n : 1) * sizeof *t);
    for (long i = 0; t && i < n; i++) t[i] = (int32_t)((i * 7919 + 13) % vocab);
    return t;
}

static rn_mode prefill_mode(const bench_options *o) {
    return !strcmp(o->mode, "parallel") ? RN_MODE_PARALLEL : RN_MODE_CHUNKWISE;
}

static int bench_prefill(bench_run *r, long n) {
    rn_session *s = NULL;
    int32_t *tokens = make_tokens(n, r->info.vocab_size);
    double rates[1000];
    rn_status st = tokens ? rn_session_init(r->model, &s) : RN_ERR_OUT_OF_HOST_MEMORY;
    for (long rep = -1; st == RN_OK && rep < r->o->reps; rep++) {
        progress(r, "prefill", (int)rep + 1);
        st = rn_session_reset(s);
        double t0 = cli_seconds();
        if (st == RN_OK) st = rn_session_prefill(s, tokens, (size_t)n, prefill_mode(r->o), 0, NULL);
        if (rep >= 0) rates[rep] = n / (cli_seconds() - t0);
    }
    progress_done(r);
    rn_session_free(s);
    free(tokens);
    if (st != RN_OK) return cli_report(r->ctx, st, "prefill");
    double mean, sd;
    mean_sd(rates, (int)r->o->reps, &mean, &sd);
    double flops = prefill_flops(&r->info, n), all = flops + retention_flops(&r->info, n, prefill_mode(r->o));
    double roofline = r->sgemm_gflops > 0 ? flops / (n / mean) / 1e9 / r->sgemm_gflops : 0.0;
    double roofline_all = r->sgemm_gflops > 0 ? all / (n / mean) / 1e9 / r->sgemm_gflops : 0.0;
    uint64_t current;
    rn_context_memory(r->ctx, &current, NULL);
    print_result(r, "pp", n, 1, 0, rates, (int)r->o->reps, roofline, roofline_all, flops, current);
    return 0;
}

/* One decode step of `batch` sequences from step[batch]: greedy, the device's choices then fed
 * back through `step` (next: scratch of batch ids), or with --read-logits every row's logits
 * read back to the session, the tokens kept. */
static rn_status decode_one(const bench_run *r, rn_session *s, long batch, int32_t *step, int32_t *next) {
    if (r->o->read_logits) return rn_session_decode_rows(s, (size_t)batch, step, NULL);
    rn_status st = rn_session_decode_greedy(s, (size_t)batch, step, next);
    if (st == RN_OK) memcpy(step, next, (size_t)batch * sizeof *step);
    return st;
}

/* n decode steps of `batch` sequences after a prefill of `context` tokens (batch 1). */
static int bench_decode(bench_run *r, long n, long batch, long context) {
    rn_session *s = NULL;
    int32_t *tokens = make_tokens(context > batch ? context : batch, r->info.vocab_size);
    int32_t *step = malloc((size_t)batch * sizeof *step), *next = malloc((size_t)batch * sizeof *next);
    const bool chained = r->o->chain_steps;
    /* every step's choices, where the steps are chained */
    int32_t *chosen = chained ? malloc((size_t)(n > 0 ? n : 1) * (size_t)batch * sizeof *chosen) : NULL;
    double rates[1000];
    uint64_t during = 0;
    rn_status st = !tokens || !step || !next || (chained && !chosen) ? RN_ERR_OUT_OF_HOST_MEMORY
                 : batch == 1 ? rn_session_init(r->model, &s)
                              : rn_session_init_batch(r->model, (size_t)batch, &s);
    for (long rep = -1; st == RN_OK && rep < r->o->reps; rep++) {
        progress(r, "decode", (int)rep + 1);
        st = rn_session_reset(s);
        if (st == RN_OK && context > 0) st = rn_session_prefill(s, tokens, (size_t)context, prefill_mode(r->o), 0, NULL);
        long steps = rep < 0 && n > 8 ? 8 : n;  /* the warm-up only needs every kernel once */
        if (st == RN_OK) memcpy(step, tokens, (size_t)batch * sizeof *step);
        double t0 = cli_seconds();
        if (chained) {
            if (st == RN_OK && steps > 0) st = rn_session_generate_greedy(s, (size_t)batch, step, (size_t)steps, chosen, NULL);
        } else {
            for (long i = 0; st == RN_OK && i < steps; i++) st = decode_one(r, s, batch, step, next);
        }
        if (rep >= 0) rates[rep] = (double)batch * steps / (cli_seconds() - t0);
        if (st == RN_OK) rn_context_memory(r->ctx, &during, NULL);
    }
    progress_done(r);
    rn_session_free(s);
    free(tokens), free(step), free(next), free(chosen);
    if (st != RN_OK) return cli_report(r->ctx, st, "decoding");
    double mean, sd;
    mean_sd(rates, (int)r->o->reps, &mean, &sd);
    double bytes = step_bytes(&r->info, batch), step_s = batch / mean;
    double roofline = r->bandwidth_gbps > 0 ? bytes / step_s / 1e9 / r->bandwidth_gbps : 0.0;
    print_result(r, "tg", n, batch, context, rates, (int)r->o->reps, roofline, 0.0, bytes, during);
    return 0;
}

/* ---- profile -------------------------------------------------------------------------------- */

#define MAX_KERNELS 32

typedef struct profile_table {
    struct { const char *name; double seconds; long calls; } kernel[MAX_KERNELS];
    int n_kernels;
    double total;
    int64_t layers;
} profile_table;

static void profile_sink(void *user, const char *kernel, int layer, double seconds) {
    profile_table *t = user;
    (void)layer;
    t->total += seconds;
    int i = 0;
    while (i < t->n_kernels && strcmp(t->kernel[i].name, kernel)) i++;
    if (i == t->n_kernels) {
        if (i == MAX_KERNELS) return;
        t->kernel[t->n_kernels++].name = kernel;
    }
    t->kernel[i].seconds += seconds;
    t->kernel[i].calls++;
}

static void print_profile(const bench_run *r, const char *what, const profile_table *t, double wall, long units) {
    FILE *f = r->o->json ? stderr : stdout;
    fprintf(f, "\nprofile of %s (%ld %s): device time %.3f ms per %s, wall %.3f ms; gap (launch, sync, idle) %.3f ms\n",
            what, units, units == 1 ? "run" : "steps", 1e3 * t->total / units, units == 1 ? "run" : "step",
            1e3 * wall / units, 1e3 * (wall - t->total) / units);
    /* Some drivers (Mesa 22.3's rusticl) hand out placeholder event timestamps: no table of them. */
    if (t->total < 1e-3 * wall) {
        fprintf(f, "(the device's event timestamps cover under 0.1%% of the wall time: it does not time kernels)\n");
        return;
    }
    fprintf(f, "| %-18s | %9s | %12s | %12s | %6s |\n", "kernel", "calls/run", "us per run", "us per layer", "share");
    fprintf(f, "| ------------------ | --------- | ------------ | ------------ | ------ |\n");
    for (int i = 0; i < t->n_kernels; i++)
        fprintf(f, "| %-18s | %9.1f | %12.1f | %12.2f | %5.1f%% |\n", t->kernel[i].name,
                (double)t->kernel[i].calls / units, 1e6 * t->kernel[i].seconds / units,
                1e6 * t->kernel[i].seconds / units / (double)t->layers, 100.0 * t->kernel[i].seconds / t->total);
}

static int bench_profile(bench_run *r) {
    rn_status st = rn_context_profile_start(r->ctx);
    rn_session *s = NULL;
    /* Decoding steps a batch of the largest --batch sequences; the prefill is one sequence's. */
    long steps = 16, n = r->o->pp[0] > 0 ? r->o->pp[0] : 0, batch = 1;
    for (int i = 0; i < r->o->n_batch; i++)
        if (r->o->batch[i] > batch) batch = r->o->batch[i];
    const long count = n > steps * batch ? n : steps * batch;
    int32_t *tokens = make_tokens(count, r->info.vocab_size), *next = malloc((size_t)batch * sizeof *next);
    if (st == RN_OK) st = tokens && next ? rn_session_init_batch(r->model, (size_t)batch, &s) : RN_ERR_OUT_OF_HOST_MEMORY;
    /* The steps the decode rates time (decode_one): greedy, or with --read-logits reading them. */
    if (st == RN_OK) st = decode_one(r, s, batch, tokens, next);  /* warm */
    if (st == RN_OK) st = rn_context_profile_drain(r->ctx, NULL, NULL);
    profile_table decode = {.layers = r->info.layers}, prefill = {.layers = r->info.layers};
    double t0 = cli_seconds();
    for (long i = 0; st == RN_OK && i < steps; i++) st = decode_one(r, s, batch, tokens, next);
    double wall = cli_seconds() - t0;
    if (st == RN_OK) st = rn_context_profile_drain(r->ctx, profile_sink, &decode);
    char what[64];
    snprintf(what, sizeof what, "decoding, batch %ld, %s steps", batch, r->o->read_logits ? "logits" : "greedy");
    if (st == RN_OK) print_profile(r, what, &decode, wall, steps);
    if (st == RN_OK && n > 0 && batch > 1) {
        rn_session_free(s);
        s = NULL;
        st = rn_session_init(r->model, &s);
    }
    if (st == RN_OK && n > 0) {
        st = rn_session_reset(s);
        if (st == RN_OK) st = rn_context_profile_drain(r->ctx, NULL, NULL);
        t0 = cli_seconds();
        if (st == RN_OK) st = rn_session_prefill(s, tokens, (size_t)n, prefill_mode(r->o), 0, NULL);
        wall = cli_seconds() - t0;
        if (st == RN_OK) st = rn_context_profile_drain(r->ctx, profile_sink, &prefill);
        snprintf(what, sizeof what, "a %ld-token prefill", n);
        if (st == RN_OK) print_profile(r, what, &prefill, wall, 1);
    }
    rn_session_free(s);
    free(tokens), free(next);
    return st == RN_OK ? 0 : cli_report(r->ctx, st, "profiling");
}

/* ---- start-up ------------------------------------------------------------------------------- */

/* Context, model and one decoded token, with our program cache in a fresh directory: first
 * empty (every kernel compiled), then warm (the binaries read back). A driver's own cache
 * (PoCL's, NVIDIA's) is not ours to empty, so the "empty" figure may still be helped by it. */
static int bench_startup(bench_run *r) {
    char dir[] = "/tmp/retnet-bench-cacheXXXXXX";
    if (!mkdtemp(dir)) {
        perror("retnet: mkdtemp");
        return 1;
    }
    double seconds[2] = {0, 0};
    int rc = 0;
    for (int warm = 0; warm < 2 && !rc; warm++) {
        rn_context_options copts;
        cli_context_options(r->o->device, 0, &copts);
        copts.program_cache = 1;
        copts.cache_dir = dir;
        double t0 = cli_seconds();
        rn_context *ctx;
        rn_model *model;
        rc = open_model(r->o, &copts, &ctx, &model);
        if (rc) break;
        rn_session *s = NULL;
        rn_status st = rn_session_init(model, &s);
        if (st == RN_OK) st = rn_session_decode(s, 1, NULL);
        seconds[warm] = cli_seconds() - t0;
        if (st != RN_OK) rc = cli_report(ctx, st, "the first token");
        rn_session_free(s);
        rn_model_free(model);
        rn_context_free(ctx);
    }
    char command[sizeof dir + 16];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "retnet: could not remove %s\n", dir);
    if (rc) return rc;
    if (r->o->json)
        printf("{\"test\":\"startup\",\"model\":\"%s\",\"device\":\"%s\",\"empty_cache_s\":%.4f,\"warm_cache_s\":%.4f}\n",
               r->name, r->device, seconds[0], seconds[1]);
    else
        printf("\nstart-up to the first token: %.3f s with an empty program cache, %.3f s with a warm one\n",
               seconds[0], seconds[1]);
    return 0;
}

/* ---- the command ---------------------------------------------------------------------------- */

int cmd_bench(int argc, char **argv) {
    bench_options o;
    int rc = parse_bench(argc, argv, &o);
    if (rc) return rc;
    bench_run r = {.o = &o, .name = o.preset ? o.preset : o.model, .progress = isatty(2)};
    rn_context_options copts;
    cli_context_options(o.device, o.no_cache, &copts);
    rc = open_model(&o, &copts, &r.ctx, &r.model);
    if (rc) return rc;
    rn_model_info_get(r.model, &r.info);
    snprintf(r.device, sizeof r.device, "%s", rn_context_device(r.ctx)->name);
    if (!o.no_ceilings) {
        if (r.progress) fprintf(stderr, "[bench] measuring the device's ceilings");
        rn_status st = rn_context_ceilings(r.ctx, 0.5, &r.bandwidth_gbps, &r.sgemm_gflops, &r.sgemm_n);
        progress_done(&r);
        if (st != RN_OK) rc = cli_report(r.ctx, st, "measuring the ceilings");
    }
    if (!rc) print_header(&r);
    for (int i = 0; !rc && i < o.n_pp; i++)
        if (o.pp[i] > 0) rc = bench_prefill(&r, o.pp[i]);
    for (int c = 0; !rc && c < o.n_context; c++)
        for (int b = 0; !rc && b < o.n_batch; b++)
            for (int i = 0; !rc && i < o.n_tg; i++) {
                if (o.tg[i] <= 0 || (o.context[c] > 0 && o.batch[b] > 1)) continue;
                rc = bench_decode(&r, o.tg[i], o.batch[b], o.context[c]);
            }
    if (!rc && o.profile) rc = bench_profile(&r);
    rn_model_free(r.model);
    rn_context_free(r.ctx);
    if (!rc && o.startup) rc = bench_startup(&r);
    return rc;
}
