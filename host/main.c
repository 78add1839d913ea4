/* main.c: the retnet command. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "retnet.h"

static const char *usage =
    "usage: retnet <command> [options]\n"
    "\n"
    "commands:\n"
    "  devices                         list the OpenCL devices\n"
    "  info --model DIR                the model's config, parameter count and bytes\n"
    "  logits --model DIR --tokens IDS --mode parallel|chunkwise|recurrent\n"
    "         [--chunk-size N] [--output FILE]\n"
    "                                  logits of every position as JSON\n"
    "                                  {\"mode\", \"tokens\", \"logits\": [[V floats] per token]}\n"
    "  generate --model DIR --tokens IDS [-n N] [--mode parallel|chunkwise|recurrent]\n"
    "                                  greedy continuation of the prompt, as token ids\n"
    "\n"
    "options:\n"
    "  --model DIR        a checkpoint directory: config.json and model.safetensors (or the\n"
    "                     shards of model.safetensors.index.json) of a torchscale RetNetDecoder,\n"
    "                     a syncdoth/Spiral or a flash-linear-attention (fla-hub) RetNet;\n"
    "                     tensors in F32, F16 or BF16\n"
    "  --weights W        device storage of the weight matrices: f32, f16 or bf16 (default: the\n"
    "                     checkpoint's own precision; f32 when it mixes precisions)\n"
    "  --tokens IDS       comma-separated token ids, e.g. 5,17,3\n"
    "  --mode M           retention form of the prompt (logits: required; generate: chunkwise)\n"
    "  --chunk-size N     chunk of the chunkwise form (default: the config's recurrent_chunk_size)\n"
    "  -n N               tokens to generate (default 16)\n"
    "  --device D         OpenCL device: P:D indices or a name substring (default: $RETNET_DEVICE,\n"
    "                     else the first GPU, else the first device; see `retnet devices`)\n"
    "  --no-cache         do not use the compiled-program cache ($RETNET_CACHE_DIR, else\n"
    "                     ~/.cache/retnet-cl; PoCL is never cached by us: it caches itself)\n"
    "  -h, --help         this text\n";

typedef struct options {
    const char *command, *model, *tokens, *mode, *output, *device, *weights;
    long chunk_size, n_generate;
    int no_cache;
} options;

static int fail_usage(const char *fmt, const char *arg) {
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

static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->n_generate = 16;
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
        if (a[0] != '-') {
            if (o->command) return fail_usage("unexpected argument '%s'", a);
            o->command = a;
            continue;
        }
        if (i + 1 >= argc) return fail_usage("option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "--mode")) o->mode = v;
        else if (!strcmp(a, "--output")) o->output = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--weights")) {
            if (strcmp(v, "f32") && strcmp(v, "f16") && strcmp(v, "bf16"))
                return fail_usage("--weights must be f32, f16 or bf16, not '%s'", v);
            o->weights = v;
        }
        else if (!strcmp(a, "--chunk-size")) {
            if (!parse_long(v, 1, 1 << 20, &o->chunk_size)) return fail_usage("--chunk-size must be 1..1048576, not '%s'", v);
        } else if (!strcmp(a, "-n")) {
            if (!parse_long(v, 0, 1 << 24, &o->n_generate)) return fail_usage("-n must be 0..16777216, not '%s'", v);
        } else
            return fail_usage("unknown option '%s'", a);
    }
    if (!o->command) return fail_usage("%s", "no command given");
    return 0;
}

/* Parses "5,17,3" into a heap array. */
static int parse_tokens(const char *s, int32_t **out, size_t *n) {
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

static int parse_mode(const char *s, rn_mode *mode) {
    if (!s) return 0;
    if (!strcmp(s, "parallel")) *mode = RN_MODE_PARALLEL;
    else if (!strcmp(s, "chunkwise")) *mode = RN_MODE_CHUNKWISE;
    else if (!strcmp(s, "recurrent")) *mode = RN_MODE_RECURRENT;
    else return 0;
    return 1;
}

static const char *mode_name(rn_mode m) {
    return m == RN_MODE_PARALLEL ? "parallel" : m == RN_MODE_CHUNKWISE ? "chunkwise" : "recurrent";
}

static int report(rn_context *ctx, rn_status st, const char *what) {
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

static double seconds(void) {
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
    double elapsed = seconds() - p->start;
    if (elapsed < 1.0 || !isatty(STDERR_FILENO) || total == 0) return;
    int width = 40, filled = (int)(width * (double)done / (double)total);
    fprintf(stderr, "\rloading [%.*s%*s] %5.1f%%  %.0f MiB  %.1f s", filled,
            "########################################", width - filled, "", 100.0 * done / total,
            done / 1048576.0, elapsed);
    p->shown = 1;
    if (done == total) fputc('\n', stderr);
}

static int open_model(const options *o, rn_context **ctx, rn_model **model) {
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
    progress bar = {seconds(), 0};
    load.progress = show_progress;
    load.progress_user = &bar;
    st = rn_model_load(*ctx, o->model, &load, model);
    if (bar.shown && st != RN_OK) fputc('\n', stderr);
    if (st != RN_OK) {
        int rc = report(*ctx, st, "loading the model");
        rn_context_free(*ctx);
        return rc;
    }
    return 0;
}

static int cmd_info(const options *o) {
    rn_context *ctx;
    rn_model *model;
    int rc = open_model(o, &ctx, &model);
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
    fprintf(f, "{\"mode\": \"%s\", \"tokens\": [", mode_name(mode));
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
    if ((o->mode || mode_required) && !parse_mode(o->mode, &r->mode))
        return fail_usage("--mode must be parallel, chunkwise or recurrent, not '%s'", o->mode ? o->mode : "(none)");
    if (!o->tokens || !parse_tokens(o->tokens, &r->ids, &r->n))
        return fail_usage("--tokens must be comma-separated non-negative ids, not '%s'", o->tokens ? o->tokens : "(none)");
    int rc = open_model(o, &r->ctx, &r->model);
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
        rc = report(r->ctx, st, "creating a session");
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
        rc = report(r.ctx, st, "the forward pass");
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

static int32_t argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}


static int cmd_generate(const options *o) {
    run r;
    int rc = run_open(o, 0, RN_MODE_CHUNKWISE, &r);
    if (rc) return rc;
    const size_t V = r.vocab;
    fprintf(stderr, "retnet: %s on %s, prompt of %zu tokens, %s prefill\n", o->model,
            rn_context_device(r.ctx)->name, r.n, mode_name(r.mode));
    double t0 = seconds();
    rn_status st = rn_session_prefill(r.session, r.ids, r.n, r.mode, (size_t)o->chunk_size, r.logits);
    double t1 = seconds();
    long produced = 0;
    if (st == RN_OK && o->n_generate > 0) {
        int32_t next = argmax(r.logits + (r.n - 1) * V, (int64_t)V);
        printf("%d", next);
        fflush(stdout);
        for (produced = 1; produced < o->n_generate && st == RN_OK; produced++) {
            st = rn_session_decode(r.session, next, r.logits);
            if (st == RN_OK) {
                next = argmax(r.logits, (int64_t)V);
                printf(",%d", next);
                fflush(stdout);
            }
        }
        printf("\n");
        fflush(stdout);
    }
    double t2 = seconds();
    if (st != RN_OK)
        rc = report(r.ctx, st, "generation");
    else
        fprintf(stderr, "retnet: prefill %.1f tokens/s, decode %.1f tokens/s\n", r.n / (t1 - t0),
                produced > 1 ? (produced - 1) / (t2 - t1) : 0.0);
    run_close(&r);
    return rc;
}

int main(int argc, char **argv) {
    options o;
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (!strcmp(o.command, "devices")) return cmd_devices();
    if (!strcmp(o.command, "info")) return cmd_info(&o);
    if (!strcmp(o.command, "logits")) return cmd_logits(&o);
    if (!strcmp(o.command, "generate")) return cmd_generate(&o);
    return fail_usage("unknown command '%s'", o.command);
}
