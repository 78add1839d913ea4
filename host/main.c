/* main.c: the retnet command. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *usage =
    "usage: retnet <command> [options]\n"
    "\n"
    "commands:\n"
    "  devices                  list the OpenCL devices\n"
    "  info --model DIR         the model's family, config, parameter count and bytes\n"
    "  generate --model DIR [-p TEXT | -f FILE | --tokens IDS] [-n N] [sampling] [-i]\n"
    "                           continue a prompt (text needs DIR/tokenizer.json; no -p, -f or\n"
    "                           --tokens: the prompt is read from standard input), printing the\n"
    "                           text as it is produced; token ids with --tokens. Stops at the\n"
    "                           end-of-sequence token, after N tokens, at a --stop string, or\n"
    "                           on Ctrl-C; prefill and decode tokens/s go to standard error\n"
    "  tokenize --model DIR (--text TEXT | --file FILE | --decode IDS)\n"
    "                           token ids of a text as a JSON array, or the text of ids\n"
    "  logits --model DIR --tokens IDS --mode parallel|chunkwise|recurrent\n"
    "         [--chunk-size N] [--output FILE]\n"
    "                           logits of every position as JSON\n"
    "                           {\"mode\", \"tokens\", \"logits\": [[V floats] per token]}\n"
    "  bench (--preset NAME | --model DIR) [-p N] [-n N] [--batch B] [--context C] [--json]\n"
    "                           prefill and decode tokens/s against the device's measured\n"
    "                           bandwidth and SGEMM ceilings (`retnet bench --help`)\n"
    "  selftest [--device D]    every kernel against the C reference on the device, op by op: a\n"
    "                           table of kernel, shapes, max error, tolerance and pass/FAIL;\n"
    "                           exit status 1 on any failure (for validating a GPU or driver)\n"
    "\n"
    "model and device:\n"
    "  --model DIR        a checkpoint directory: config.json and model.safetensors (or the\n"
    "                     shards of model.safetensors.index.json) of a torchscale RetNetDecoder,\n"
    "                     a syncdoth/Spiral or a flash-linear-attention (fla-hub) RetNet;\n"
    "                     tensors in F32, F16 or BF16\n"
    "  --weights W        device storage of the weight matrices: f32, f16 or bf16 (default: the\n"
    "                     checkpoint's own precision; f32 when it mixes precisions)\n"
    "  --device D         OpenCL device: P:D indices or a name substring (default: $RETNET_DEVICE,\n"
    "                     else the first GPU, else the first device; see `retnet devices`)\n"
    "  --no-cache         do not use the compiled-program cache ($RETNET_CACHE_DIR, else\n"
    "                     ~/.cache/retnet-cl; PoCL is never cached by us: it caches itself)\n"
    "\n"
    "generation:\n"
    "  -n N               tokens to generate (default 128; 16 with --tokens)\n"
    "  --mode M           retention form of the prompt: chunkwise (default), parallel or\n"
    "                     recurrent; decoding is always recurrent\n"
    "  --chunk-size N     chunk of the chunkwise form (default: the config's recurrent_chunk_size)\n"
    "  --temp T           temperature (default 0.8; 0: greedy)\n"
    "  --top-k K          keep the K most likely tokens (default 40; 0: off)\n"
    "  --top-p P          keep the smallest set with probability >= P (default 0.95; 1: off)\n"
    "  --min-p P          drop tokens below P times the most likely one (default 0.05; 0: off)\n"
    "  --repeat-penalty R penalise the last 64 tokens (default 1.1; 1: off)\n"
    "  --seed S           random seed (default 0); a draw depends on the seed and the position\n"
    "  --stop STRING      stop when the output contains STRING (up to 8)\n"
    "  -i                 interactive: read a turn from standard input, answer, repeat; the\n"
    "                     state carries across turns; Ctrl-C stops an answer, not the session\n"
    "  --state-load FILE  resume a session saved with --state-save (same model), then continue\n"
    "                     with the prompt if one is given\n"
    "  --state-save FILE  save the session at the end (written atomically)\n"
    "  -h, --help         this text\n";

int cli_usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "retnet: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun `retnet --help` for usage\n");
    return 2;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->n_generate = -1;
    o->temperature = 0.8;
    o->top_k = 40;
    o->top_p = 0.95;
    o->min_p = 0.05;
    o->repeat_penalty = 1.1;
    o->repeat_last_n = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            exit(0);
        }
        if (!strcmp(a, "--no-cache")) {
            o->no_cache = 1;
            continue;
        }
        if (!strcmp(a, "-i")) {
            o->interactive = 1;
            continue;
        }
        if (a[0] != '-') {
            if (o->command) return cli_usage_error("unexpected argument '%s'", a);
            o->command = a;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("option %s needs a value", a);
        const char *v = argv[++i];
        long l;
        double d;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "--mode")) o->mode = v;
        else if (!strcmp(a, "--output")) o->output = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!strcmp(o->command ? o->command : "", "tokenize")) o->text_file = v;
            else o->prompt_file = v;
        } else if (!strcmp(a, "--text")) o->text = v;
        else if (!strcmp(a, "--decode")) o->decode = v;
        else if (!strcmp(a, "--state-save")) o->state_save = v;
        else if (!strcmp(a, "--state-load")) o->state_load = v;
        else if (!strcmp(a, "--stop")) {
            if (o->n_stops == CLI_MAX_STOPS) return cli_usage_error("at most 8 --stop strings, not '%s'", v);
            if (!*v) return cli_usage_error("--stop needs a non-empty string%s", "");
            o->stops[o->n_stops++] = v;
        } else if (!strcmp(a, "--weights")) {
            if (strcmp(v, "f32") && strcmp(v, "f16") && strcmp(v, "bf16"))
                return cli_usage_error("--weights must be f32, f16 or bf16, not '%s'", v);
            o->weights = v;
        } else if (!strcmp(a, "--chunk-size")) {
            if (!parse_long(v, 1, 1 << 20, &o->chunk_size)) return cli_usage_error("--chunk-size must be 1..1048576, not '%s'", v);
        } else if (!strcmp(a, "-n")) {
            if (!parse_long(v, 0, 1 << 24, &o->n_generate)) return cli_usage_error("-n must be 0..16777216, not '%s'", v);
        } else if (!strcmp(a, "--temp")) {
            if (!parse_double(v, 0, 1e6, &o->temperature)) return cli_usage_error("--temp must be a number >= 0, not '%s'", v);
        } else if (!strcmp(a, "--top-k")) {
            if (!parse_long(v, 0, 1 << 24, &l)) return cli_usage_error("--top-k must be 0..16777216, not '%s'", v);
            o->top_k = l;
        } else if (!strcmp(a, "--top-p")) {
            if (!parse_double(v, 1e-9, 1, &d)) return cli_usage_error("--top-p must be in (0, 1], not '%s'", v);
            o->top_p = d;
        } else if (!strcmp(a, "--min-p")) {
            if (!parse_double(v, 0, 0.999999, &d)) return cli_usage_error("--min-p must be in [0, 1), not '%s'", v);
            o->min_p = d;
        } else if (!strcmp(a, "--repeat-penalty")) {
            if (!parse_double(v, 1e-6, 1e6, &d)) return cli_usage_error("--repeat-penalty must be > 0, not '%s'", v);
            o->repeat_penalty = d;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            o->seed = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') return cli_usage_error("--seed must be an unsigned integer, not '%s'", v);
        } else
            return cli_usage_error("unknown option '%s'", a);
    }
    if (!o->command) return cli_usage_error("%s", "no command given");
    return 0;
}

/* Parses "5,17,3" into a heap array. */
int cli_parse_tokens(const char *s, int32_t **out, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return 0;
    size_t count = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            free(ids);
            return 0;
        }
        ids[count++] = (int32_t)v;
        if (*end == '\0') break;
        p = end + 1;
    }
    *out = ids;
    *n = count;
    return 1;
}

int cli_parse_mode(const char *s, rn_mode *mode) {
    if (!s) return 0;
    if (!strcmp(s, "parallel")) *mode = RN_MODE_PARALLEL;
    else if (!strcmp(s, "chunkwise")) *mode = RN_MODE_CHUNKWISE;
    else if (!strcmp(s, "recurrent")) *mode = RN_MODE_RECURRENT;
    else return 0;
    return 1;
}

const char *cli_mode_name(rn_mode m) {
    return m == RN_MODE_PARALLEL ? "parallel" : m == RN_MODE_CHUNKWISE ? "chunkwise" : "recurrent";
}

int cli_report(rn_context *ctx, rn_status st, const char *what) {
    fprintf(stderr, "retnet: %s failed: %s: %s\n", what, rn_status_str(st), rn_context_last_error(ctx));
    return 1;
}

static int cmd_devices(void) {
    rn_device_info infos[64];
    size_t n = 0;
    rn_status st = rn_devices_list(infos, 64, &n);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: %s: no OpenCL platform found; install a driver or PoCL (pocl-opencl-icd)\n",
                rn_status_str(st));
        return 1;
    }
    if (n == 0) {
        fprintf(stderr, "retnet: OpenCL platforms exist but have no devices\n");
        return 1;
    }
    for (size_t i = 0; i < n && i < 64; i++) {
        const rn_device_info *d = &infos[i];
        printf("%u:%u  %s\n", d->platform_index, d->device_index, d->name);
        printf("     platform        %s\n", d->platform);
        printf("     vendor          %s\n", d->vendor);
        printf("     type            %s\n", d->is_gpu ? "GPU" : "other (CPU or accelerator)");
        printf("     compute units   %u\n", d->compute_units);
        printf("     global memory   %.1f MiB\n", d->global_mem_bytes / 1048576.0);
        printf("     max allocation  %.1f MiB\n", d->max_alloc_bytes / 1048576.0);
        printf("     OpenCL C        %s\n", d->version);
        printf("     driver          %s\n", d->driver);
        printf("     fp16            %s\n", d->has_fp16 ? "yes (cl_khr_fp16)" : "no");
    }
    return 0;
}

double cli_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A progress bar on a terminal, for loads that take more than a second. */
typedef struct progress {
    double start;
    int shown;
} progress;

static void show_progress(void *user, uint64_t done, uint64_t total) {
    progress *p = user;
    double elapsed = cli_seconds() - p->start;
    if (elapsed < 1.0 || !isatty(STDERR_FILENO) || total == 0) return;
    int width = 40, filled = (int)(width * (double)done / (double)total);
    fprintf(stderr, "\rloading [%.*s%*s] %5.1f%%  %.0f MiB  %.1f s", filled,
            "########################################", width - filled, "", 100.0 * done / total,
            done / 1048576.0, elapsed);
    p->shown = 1;
    if (done == total) fputc('\n', stderr);
}

int cli_open_model(const options *o, rn_context **ctx, rn_model **model) {
    if (!o->model) {
        fprintf(stderr, "retnet: --model DIR is required\n");
        return 2;
    }
    rn_context_options opts;
    rn_context_options_default(&opts);
    opts.device = o->device;
    if (o->no_cache) opts.program_cache = 0;
    char message[4096];
    rn_status st = rn_context_init(ctx, &opts, message, sizeof message);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: %s: %s\n", rn_status_str(st), message);
        return 1;
    }
    rn_model_options load;
    rn_model_options_default(&load);
    if (o->weights)
        load.weights = !strcmp(o->weights, "f16") ? RN_WEIGHTS_F16 : !strcmp(o->weights, "bf16") ? RN_WEIGHTS_BF16
                                                                                                  : RN_WEIGHTS_F32;
    progress bar = {cli_seconds(), 0};
    load.progress = show_progress;
    load.progress_user = &bar;
    st = rn_model_load(*ctx, o->model, &load, model);
    if (bar.shown && st != RN_OK) fputc('\n', stderr);
    if (st != RN_OK) {
        int rc = cli_report(*ctx, st, "loading the model");
        rn_context_free(*ctx);
        return rc;
    }
    return 0;
}

static int cmd_info(const options *o) {
    rn_context *ctx;
    rn_model *model;
    int rc = cli_open_model(o, &ctx, &model);
    if (rc) return rc;
    rn_model_info i;
    rn_model_info_get(model, &i);
    printf("model             %s\n", o->model);
    printf("family            %s\n", i.family);
    printf("device            %s\n", rn_context_device(ctx)->name);
    printf("decoder_embed_dim %lld\n", (long long)i.embed_dim);
    printf("decoder_value_embed_dim %lld\n", (long long)i.value_embed_dim);
    printf("decoder_retention_heads %lld (key head dim %lld, value head dim %lld, key/value heads %lld)\n",
           (long long)i.heads, (long long)(i.key_embed_dim / i.heads), (long long)(i.value_embed_dim / i.heads),
           (long long)i.kv_heads);
    printf("decoder_ffn_embed_dim %lld\n", (long long)i.ffn_dim);
    printf("decoder_layers    %lld\n", (long long)i.layers);
    printf("vocab_size        %lld\n", (long long)i.vocab_size);
    printf("activation_fn     %s\n", i.activation == RN_ACT_GELU ? "gelu" : "swish");
    printf("layernorm_eps     %g\n", i.layernorm_eps);
    printf("embedding         %s%s\n", i.scale_embedding ? "scaled by sqrt(D)" : "unscaled",
           i.layernorm_embedding ? ", then RMSNorm" : "");
    printf("output projection %s\n", i.tied_embeddings ? "tied to the embedding" : "separate");
    printf("norm placement    %s%s\n", i.normalize_before ? "pre-norm" : "post-norm", i.deepnorm ? ", deepnorm" : "");
    printf("recurrent_chunk_size %lld\n", (long long)i.chunk_size);
    printf("parameters        %llu (%.2f M, %.2f B)\n", (unsigned long long)i.parameters, i.parameters / 1e6,
           i.parameters / 1e9);
    printf("file tensors      %llu bytes, %s\n", (unsigned long long)i.file_bytes, i.file_dtype);
    printf("device weights    %llu bytes, matrices as %s, norms as F32\n", (unsigned long long)i.device_bytes,
           i.device_dtype);
    rn_model_free(model);
    rn_context_free(ctx);
    return 0;
}

static int write_logits(FILE *f, rn_mode mode, const int32_t *ids, size_t n, const float *logits,
                        int64_t vocab) {
    fprintf(f, "{\"mode\": \"%s\", \"tokens\": [", cli_mode_name(mode));
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i]);
    fprintf(f, "], \"logits\": [");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s[", i ? ",\n  " : "\n  ");
        for (int64_t j = 0; j < vocab; j++) fprintf(f, "%s%.9g", j ? ", " : "", logits[i * (size_t)vocab + (size_t)j]);
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    return ferror(f) ? 1 : 0;
}

/* What `logits` and `generate` share: a prompt, a loaded model, a session and room for the
 * prompt's logits. */
typedef struct run {
    rn_mode mode;
    int32_t *ids;
    size_t n;
    rn_context *ctx;
    rn_model *model;
    rn_session *session;
    size_t vocab;
    float *logits;  /* [n, vocab] */
} run;

static void run_close(run *r) {
    rn_session_free(r->session);
    free(r->logits);
    free(r->ids);
    rn_model_free(r->model);
    rn_context_free(r->ctx);
}

/* Parses the prompt options and loads the model; returns an exit code, 0 when ready. `mode`
 * is the default when --mode is absent and not required. */
static int run_open(const options *o, int mode_required, rn_mode default_mode, run *r) {
    memset(r, 0, sizeof *r);
    r->mode = default_mode;
    if ((o->mode || mode_required) && !cli_parse_mode(o->mode, &r->mode))
        return cli_usage_error("--mode must be parallel, chunkwise or recurrent, not '%s'", o->mode ? o->mode : "(none)");
    if (!o->tokens || !cli_parse_tokens(o->tokens, &r->ids, &r->n))
        return cli_usage_error("--tokens must be comma-separated non-negative ids, not '%s'", o->tokens ? o->tokens : "(none)");
    int rc = cli_open_model(o, &r->ctx, &r->model);
    if (rc) {
        free(r->ids);
        return rc;
    }
    rn_model_info info;
    rn_model_info_get(r->model, &info);
    r->vocab = (size_t)info.vocab_size;
    r->logits = malloc(r->n * r->vocab * sizeof *r->logits);
    rn_status st = r->logits ? rn_session_init(r->model, &r->session) : RN_ERR_OUT_OF_HOST_MEMORY;
    if (st != RN_OK) {
        rc = cli_report(r->ctx, st, "creating a session");
        run_close(r);
        return rc;
    }
    return 0;
}

static int cmd_logits(const options *o) {
    run r;
    int rc = run_open(o, 1, RN_MODE_PARALLEL, &r);
    if (rc) return rc;
    rn_status st = rn_session_prefill(r.session, r.ids, r.n, r.mode, (size_t)o->chunk_size, r.logits);
    if (st != RN_OK) {
        rc = cli_report(r.ctx, st, "the forward pass");
    } else if (o->output) {
        /* Written beside the target and renamed, so a failure leaves no half file. */
        size_t len = strlen(o->output) + 8;
        char *tmp = malloc(len);
        FILE *f = tmp ? (snprintf(tmp, len, "%s.part", o->output), fopen(tmp, "w")) : NULL;
        if (!f) {
            fprintf(stderr, "retnet: cannot write '%s': %s\n", o->output, strerror(errno));
            rc = 1;
        } else {
            rc = write_logits(f, r.mode, r.ids, r.n, r.logits, (int64_t)r.vocab);
            if (fclose(f) != 0 || rc || rename(tmp, o->output) != 0) {
                fprintf(stderr, "retnet: writing '%s' failed\n", o->output);
                remove(tmp);
                rc = 1;
            }
        }
        free(tmp);
    } else {
        rc = write_logits(stdout, r.mode, r.ids, r.n, r.logits, (int64_t)r.vocab);
    }
    run_close(&r);
    return rc;
}

int cli_read_text(const char *path, char **text, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "retnet: cannot open '%s': %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n - 1 == 0) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    int failed = !buf || ferror(f);
    if (f != stdin) fclose(f);
    if (failed) {
        fprintf(stderr, "retnet: reading '%s' failed\n", path);
        free(buf);
        return 1;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

int cmd_selftest(const options *o);  /* cli_selftest.c */

int main(int argc, char **argv) {
    options o;
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 1, argv + 1);
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (!strcmp(o.command, "devices")) return cmd_devices();
    if (!strcmp(o.command, "info")) return cmd_info(&o);
    if (!strcmp(o.command, "logits")) return cmd_logits(&o);
    if (!strcmp(o.command, "generate")) return cmd_generate(&o);
    if (!strcmp(o.command, "tokenize")) return cmd_tokenize(&o);
    if (!strcmp(o.command, "selftest")) return cmd_selftest(&o);
    return cli_usage_error("unknown command '%s'", o.command);
}
