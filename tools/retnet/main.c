/* main.c: the retnet command: its usage, the options of the commands that share them, the small
 * commands (devices, info, logits, version, help) and the dispatch to the others. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    "                           --tokens: the prompt is read from standard input, up to end of\n"
    "                           input), printing the text as it is produced; token ids with\n"
    "                           --tokens. Stops at the end-of-sequence token, after N tokens, at\n"
    "                           a --stop string, or on Ctrl-C (also during a long prompt); the\n"
    "                           kernel warm-up time, prefill and decode tokens/s go to standard\n"
    "                           error\n"
    "  tokenize --model DIR (--text TEXT | -f FILE | --decode IDS)\n"
    "                           token ids of a text as a JSON array, or the text of ids\n"
    "  logits --model DIR --tokens IDS --mode parallel|chunkwise|recurrent\n"
    "         [--chunk-size N] [--output FILE]\n"
    "                           logits of every position as JSON\n"
    "                           {\"mode\", \"tokens\", \"logits\": [[V floats] per token]}\n"
    "  perplexity --model DIR -f FILE [--context N]\n"
    "                           perplexity and top-1 agreement on a text (`retnet perplexity --help`)\n"
    "  quantize --model DIR --out DIR --weights q8|q4\n"
    "                           write the checkpoint with 8- or 4-bit weights, to load without\n"
    "                           quantizing again (`retnet quantize --help`)\n"
    "  serve --model DIR [--host H] [--port P] [--parallel N] [--state-dir DIR] [--api-key K]\n"
    "                           an OpenAI-compatible HTTP server with continuous batching and\n"
    "                           conversations kept as sessions (`retnet serve --help`)\n"
    "  bench (--preset NAME | --model DIR) [-p N] [-n N] [--batch B] [--context C] [--json]\n"
    "                           prefill and decode tokens/s against the device's measured\n"
    "                           bandwidth and SGEMM ceilings (`retnet bench --help`)\n"
    "  selftest [--device D]    every kernel against the C reference on the device, op by op: a\n"
    "                           table of kernel, shapes, max error, tolerance and pass/FAIL;\n"
    "                           exit status 1 on any failure (for validating a GPU or driver)\n"
    "  help [COMMAND]           this text, or a command's own (bench, perplexity, quantize, serve)\n"
    "  version                  the version of the command and of the library\n"
    "\n"
    "model and device:\n"
    "  --model DIR        a checkpoint directory: config.json and model.safetensors (or the\n"
    "                     shards of model.safetensors.index.json) of a torchscale RetNetDecoder,\n"
    "                     a syncdoth/Spiral or a flash-linear-attention (fla-hub) RetNet;\n"
    "                     tensors in F32, F16 or BF16, or written by `retnet quantize` (Q8_0/Q4_0)\n"
    "  --weights W        device storage of the weight matrices: f32, f16, bf16, or q8 / q4\n"
    "                     (quantized at load time: blocks of 32 with an fp16 scale, 8.5 and 4.5\n"
    "                     bits a weight; matrices of whole blocks) (default: the checkpoint's own\n"
    "                     precision; f32 when it mixes precisions)\n"
    CLI_PRECISION_HELP
    "  --device D         OpenCL device: P:D indices or a name substring (default: $RETNET_DEVICE,\n"
    "                     else the first GPU, else the first device; see `retnet devices`)\n"
    "  --no-cache         do not use the compiled-program cache ($RETNET_CACHE_DIR, else\n"
    "                     ~/.cache/retnet-cl; PoCL is never cached by us: it caches itself)\n"
    "\n"
    "generation:\n"
    "  -n N               tokens to generate (default 128; 16 with --tokens)\n"
    "  --mode M           retention form of the prompt: chunkwise (default), parallel or\n"
    "                     recurrent; decoding is always recurrent. A prompt continuing a session\n"
    "                     (-i, --state-load) takes chunkwise where parallel is asked for\n"
    "  --chunk-size N     chunk of the chunkwise form (default: the config's recurrent_chunk_size)\n"
    "  --temp T           temperature (default 0.8; 0: greedy; with --repeat-penalty 1 too, the\n"
    "                     argmax is taken on the device and only token ids are read back)\n"
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
    "  --state-save FILE  save the session at the end (written atomically; the folder must\n"
    "                     exist and be writable, which is checked before anything runs)\n"
    "  -h, --help         this text\n"
    "  --version          the version\n"
    "\n"
    "environment: RETNET_DEVICE, RETNET_CACHE_DIR, RETNET_PROGRAM_CACHE=0|1, and for tuning\n"
    "RETNET_WORK_GROUP (work-items of the reducing kernels, a power of two up to 256; default 64\n"
    "on GPUs, 2 elsewhere) and RETNET_PROJECT_MAX_ROWS (rows up to which products take the\n"
    "engine's own kernel instead of SGEMM; default 32); RETNET_MAX_ALLOC_MIB (the largest single\n"
    "buffer to allocate, in MiB, when below the device's own limit: larger weight matrices are\n"
    "held in pieces); RETNET_BATCH_WORK_GROUP (work-items of the norms, retention step and\n"
    "argmax of batches of 8 or more on the matrix engine, a power of two up to 256, or 0 for\n"
    "RETNET_WORK_GROUP's; default 256); RETNET_BUILD_OPTIONS (OpenCL compiler options to add:\n"
    "every program is compiled afresh and its build log printed on standard error).\n";

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

/* The options of the commands parse_args handles, and which of them take each. */
enum { C_DEVICES = 1, C_INFO = 2, C_GENERATE = 4, C_TOKENIZE = 8, C_LOGITS = 16, C_SELFTEST = 32 };
#define C_MODEL (C_INFO | C_GENERATE | C_TOKENIZE | C_LOGITS)
#define C_DEVICE (C_INFO | C_GENERATE | C_LOGITS | C_SELFTEST)

static const struct command_name {
    const char *name;
    int bit;
} commands[] = {{"devices", C_DEVICES}, {"info", C_INFO},     {"generate", C_GENERATE},
                {"tokenize", C_TOKENIZE}, {"logits", C_LOGITS}, {"selftest", C_SELFTEST}};

typedef struct option_spec {
    const char *name, *alias;
    int takes_value;
    int commands;  /* C_* bits of the commands that accept it */
} option_spec;

static const option_spec option_specs[] = {
    {"--model", NULL, 1, C_MODEL},          {"--device", NULL, 1, C_DEVICE},
    {"--weights", NULL, 1, C_DEVICE & ~C_SELFTEST}, {"--no-cache", NULL, 0, C_DEVICE},
    {"--precision", NULL, 1, C_DEVICE & ~C_SELFTEST},
    {"--tokens", NULL, 1, C_GENERATE | C_LOGITS}, {"--mode", NULL, 1, C_GENERATE | C_LOGITS},
    {"--chunk-size", NULL, 1, C_GENERATE | C_LOGITS}, {"--output", NULL, 1, C_LOGITS},
    {"--prompt", "-p", 1, C_GENERATE},      {"--file", "-f", 1, C_GENERATE | C_TOKENIZE},
    {"--text", NULL, 1, C_TOKENIZE},        {"--decode", NULL, 1, C_TOKENIZE},
    {"--state-save", NULL, 1, C_GENERATE},  {"--state-load", NULL, 1, C_GENERATE},
    {"--stop", NULL, 1, C_GENERATE},        {"-n", NULL, 1, C_GENERATE},
    {"--temp", NULL, 1, C_GENERATE},        {"--top-k", NULL, 1, C_GENERATE},
    {"--top-p", NULL, 1, C_GENERATE},       {"--min-p", NULL, 1, C_GENERATE},
    {"--repeat-penalty", NULL, 1, C_GENERATE}, {"--seed", NULL, 1, C_GENERATE},
    {"-i", NULL, 0, C_GENERATE},
};

static const option_spec *find_option(const char *a) {
    for (size_t i = 0; i < sizeof option_specs / sizeof option_specs[0]; i++)
        if (!strcmp(a, option_specs[i].name) || (option_specs[i].alias && !strcmp(a, option_specs[i].alias)))
            return &option_specs[i];
    return NULL;
}

static int command_bit(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].bit;
    return 0;
}

/* The command comes first; every option is checked against it: an unknown option, or one the
 * command does not take, is named as such, and only a known option can lack its value. */
static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->n_generate = -1;
    rn_sampling defaults;  /* the library's, which --help quotes */
    rn_sampling_default(&defaults);
    o->temperature = defaults.temperature;
    o->top_k = defaults.top_k;
    o->top_p = defaults.top_p;
    o->min_p = defaults.min_p;
    o->repeat_penalty = defaults.repeat_penalty;
    o->repeat_last_n = defaults.repeat_last_n;
    o->command = argv[1];
    const int bit = command_bit(o->command);
    if (!bit) return cli_usage_error("unknown command '%s'", o->command);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            exit(0);
        }
        if (a[0] != '-' || !a[1]) return cli_usage_error("unexpected argument '%s'", a);
        const option_spec *spec = find_option(a);
        if (!spec) return cli_usage_error("unknown option '%s'", a);
        if (!(spec->commands & bit)) {
            fprintf(stderr, "retnet: %s does not take %s\n", o->command, a);
            return cli_usage_error("%s", "(see the options listed for it)");
        }
        if (!spec->takes_value) {
            if (!strcmp(spec->name, "--no-cache")) o->no_cache = 1;
            else o->interactive = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("option %s needs a value", a);
        const char *v = argv[++i];
        const char *name = spec->name;
        long l;
        double d;
        if (!strcmp(name, "--model")) o->model = v;
        else if (!strcmp(name, "--tokens")) o->tokens = v;
        else if (!strcmp(name, "--mode")) o->mode = v;
        else if (!strcmp(name, "--output")) o->output = v;
        else if (!strcmp(name, "--device")) o->device = v;
        else if (!strcmp(name, "--prompt")) o->prompt = v;
        else if (!strcmp(name, "--file")) {
            if (bit == C_TOKENIZE) o->text_file = v;
            else o->prompt_file = v;
        } else if (!strcmp(name, "--text")) o->text = v;
        else if (!strcmp(name, "--decode")) o->decode = v;
        else if (!strcmp(name, "--state-save")) o->state_save = v;
        else if (!strcmp(name, "--state-load")) o->state_load = v;
        else if (!strcmp(name, "--stop")) {
            if (o->n_stops == CLI_MAX_STOPS) return cli_usage_error("at most 8 --stop strings, not '%s'", v);
            if (!*v) return cli_usage_error("--stop needs a non-empty string%s", "");
            o->stops[o->n_stops++] = v;
        } else if (!strcmp(name, "--precision")) {
            if (!cli_set_precision(v)) return cli_usage_error("--precision must be f32, f16, bf16 or auto, not '%s'", v);
        } else if (!strcmp(name, "--weights")) {
            rn_weights w;
            if (!cli_parse_weights(v, &w)) return cli_usage_error("--weights must be f32, f16, bf16, q8 or q4, not '%s'", v);
            o->weights = v;
        } else if (!strcmp(name, "--chunk-size")) {
            if (!cli_parse_long(v, 1, 1 << 20, &o->chunk_size)) return cli_usage_error("--chunk-size must be 1..1048576, not '%s'", v);
        } else if (!strcmp(name, "-n")) {
            if (!cli_parse_long(v, 0, 1 << 24, &o->n_generate)) return cli_usage_error("-n must be 0..16777216, not '%s'", v);
        } else if (!strcmp(name, "--temp")) {
            if (!parse_double(v, 0, 1e6, &o->temperature)) return cli_usage_error("--temp must be a number >= 0, not '%s'", v);
        } else if (!strcmp(name, "--top-k")) {
            if (!cli_parse_long(v, 0, 1 << 24, &l)) return cli_usage_error("--top-k must be 0..16777216, not '%s'", v);
            o->top_k = l;
        } else if (!strcmp(name, "--top-p")) {
            if (!parse_double(v, 1e-9, 1, &d)) return cli_usage_error("--top-p must be in (0, 1], not '%s'", v);
            o->top_p = d;
        } else if (!strcmp(name, "--min-p")) {
            if (!parse_double(v, 0, 0.999999, &d)) return cli_usage_error("--min-p must be in [0, 1), not '%s'", v);
            o->min_p = d;
        } else if (!strcmp(name, "--repeat-penalty")) {
            if (!parse_double(v, 1e-6, 1e6, &d)) return cli_usage_error("--repeat-penalty must be > 0, not '%s'", v);
            o->repeat_penalty = d;
        } else if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            o->seed = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') return cli_usage_error("--seed must be an unsigned integer, not '%s'", v);
        }
    }
    return 0;
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
        static const char *engines[] = {"none", "NVIDIA mma.sync (tensor cores): --precision f16/bf16/auto",
                                        "Intel subgroup matrix multiply (detected; no kernels yet)",
                                        "AMD MFMA/WMMA (detected; no kernels yet)"};
        if (d->nv_cc_major) printf("     compute cap.    %d.%d\n", d->nv_cc_major, d->nv_cc_minor);
        printf("     matrix engine   %s\n", d->matrix_engine >= 0 && d->matrix_engine < 4 ? engines[d->matrix_engine] : "?");
    }
    return 0;
}

static void human_bytes(uint64_t bytes, char *out, size_t cap) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) v /= 1024.0, u++;
    if (u == 0) snprintf(out, cap, "%llu B", (unsigned long long)bytes);
    else snprintf(out, cap, "%.1f %s (%llu bytes)", v, units[u], (unsigned long long)bytes);
}

static void human_count(uint64_t n, char *out, size_t cap) {
    if (n >= 1000000000ull) snprintf(out, cap, "%llu (%.2f B)", (unsigned long long)n, n / 1e9);
    else if (n >= 1000000ull) snprintf(out, cap, "%llu (%.2f M)", (unsigned long long)n, n / 1e6);
    else snprintf(out, cap, "%llu", (unsigned long long)n);
}

/* One line of `info`: a label, the value, and the config key it comes from in the model's own
 * family (fla-hub's config.json names things differently from torchscale's). */
static void info_line(const char *label, const char *key, const char *fmt, ...) {
    char value[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(value, sizeof value, fmt, args);
    va_end(args);
    if (key) printf("%-20s %-34s %s\n", label, value, key);
    else printf("%-20s %s\n", label, value);
}

static int cmd_info(const options *o) {
    rn_context *ctx;
    rn_model *model;
    int rc = cli_open_model(o, &ctx, &model);
    if (rc) return rc;
    rn_model_info i;
    rn_model_info_get(model, &i);
    const int fla = !strcmp(i.family, "fla");
    char buf[128];
    info_line("model", NULL, "%s", o->model);
    info_line("family", NULL, "%s", i.family);
    info_line("device", NULL, "%s", rn_context_device(ctx)->name);
    printf("%-20s %-34s %s\n", "", "", "config.json key");
    info_line("embedding dim", fla ? "hidden_size" : "decoder_embed_dim", "%lld", (long long)i.embed_dim);
    info_line("value dim", fla ? "hidden_size * expand_v" : "decoder_value_embed_dim", "%lld",
              (long long)i.value_embed_dim);
    info_line("key dim", fla ? "hidden_size * expand_k" : "(= embedding dim)", "%lld", (long long)i.key_embed_dim);
    info_line("heads", fla ? "num_heads" : "decoder_retention_heads", "%lld (head dims: key %lld, value %lld)",
              (long long)i.heads, (long long)(i.key_embed_dim / i.heads), (long long)(i.value_embed_dim / i.heads));
    info_line("key/value heads", fla ? "num_kv_heads" : NULL, "%lld", (long long)i.kv_heads);
    info_line("FFN dim", fla ? "intermediate_size" : "decoder_ffn_embed_dim", "%lld", (long long)i.ffn_dim);
    info_line("layers", fla ? "num_hidden_layers" : "decoder_layers", "%lld", (long long)i.layers);
    info_line("vocabulary", "vocab_size", "%lld", (long long)i.vocab_size);
    info_line("activation", fla ? "hidden_act" : "activation_fn", "%s", i.activation == RN_ACT_GELU ? "gelu" : "swish");
    info_line("norm eps", fla ? "norm_eps" : "layernorm_eps", "%g", i.layernorm_eps);
    info_line("chunk size", fla ? NULL : "recurrent_chunk_size", "%lld", (long long)i.chunk_size);
    info_line("embedding", NULL, "%s%s", i.scale_embedding ? "scaled by sqrt(D)" : "unscaled",
              i.layernorm_embedding ? ", then RMSNorm" : "");
    info_line("output projection", NULL, "%s", i.tied_embeddings ? "tied to the embedding" : "separate");
    info_line("norm placement", NULL, "%s%s", i.normalize_before ? "pre-norm" : "post-norm",
              i.deepnorm ? ", deepnorm" : "");
    human_count(i.parameters, buf, sizeof buf);
    info_line("parameters", NULL, "%s", buf);
    human_bytes(i.file_bytes, buf, sizeof buf);
    info_line("file tensors", NULL, "%s, %s", buf, i.file_dtype);
    human_bytes(i.device_bytes, buf, sizeof buf);
    info_line("device weights", NULL, "%s, matrices as %s, norms as F32", buf, i.device_dtype);
    if (i.batch_work_group) {
        char what[32];
        snprintf(what, sizeof what, "batches of %d+", RN_BATCH_GROUP_ROWS);
        info_line(what, NULL, "norms, retention step and argmax in groups of %d (RETNET_BATCH_WORK_GROUP)",
                  i.batch_work_group);
    }
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

static int cmd_version(void) {
    printf("retnet %s (library %s)\n", RN_CLI_VERSION, rn_version());
    return 0;
}

/* `retnet help [COMMAND]`: the commands with their own options print their own help. */
static int cmd_help(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[2], "bench")) return cmd_bench(2, (char *[]){"bench", "--help", NULL});
    if (argc > 2 && !strcmp(argv[2], "perplexity")) return cmd_perplexity(2, (char *[]){"perplexity", "--help", NULL});
    if (argc > 2 && !strcmp(argv[2], "quantize")) return cmd_quantize(2, (char *[]){"quantize", "--help", NULL});
    if (argc > 2 && !strcmp(argv[2], "serve")) return cmd_serve(2, (char *[]){"serve", "--help", NULL});
    fputs(usage, stdout);
    return 0;
}

int main(int argc, char **argv) {
    /* Results reach a pipe line by line, as they reach a terminal. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *command = argv[1];
    if (!strcmp(command, "-h") || !strcmp(command, "--help") || !strcmp(command, "help")) return cmd_help(argc, argv);
    if (!strcmp(command, "--version") || !strcmp(command, "version")) return cmd_version();
    if (!strcmp(command, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(command, "perplexity")) return cmd_perplexity(argc - 1, argv + 1);
    if (!strcmp(command, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(command, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (command[0] == '-') return cli_usage_error("the command comes first, before options such as '%s'", command);
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (!strcmp(o.command, "devices")) return cmd_devices();
    if (!strcmp(o.command, "info")) return cmd_info(&o);
    if (!strcmp(o.command, "logits")) return cmd_logits(&o);
    if (!strcmp(o.command, "generate")) return cmd_generate(&o);
    if (!strcmp(o.command, "tokenize")) return cmd_tokenize(&o);
    return cmd_selftest(&o);
}
