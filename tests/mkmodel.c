/*
 * mkmodel.c: retnet-mkmodel, writes a random RetNet checkpoint directory in any family's layout.
 *
 *   retnet-mkmodel --out DIR [--family torchscale|syncdoth|fla] [--preset fla-1.3b]
 *                  [--config FILE.json] [--seed N] [--dtype f32|f16|bf16] [--shards N]
 *                  [--fused-mlp | --split-mlp] [--kv-heads N] [--qk-gain X] [--rel-pos]
 *                  [--lm-decay] [--tied]
 *
 * The weights are random (fixed seed) at torchscale-like scales: useful for tests, benchmarks
 * and checking a loader, never for text. The directory is opened with the loader afterwards,
 * so what is reported (family, parameters) is what `retnet` will see.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "model_writer.h"

/* Without --config or --preset: small enough for a test in seconds, with dk = 32. */
static const rn_config k_tiny = {
    .embed_dim = 64,
    .value_embed_dim = 96,
    .heads = 2,
    .ffn_dim = 128,
    .layers = 2,
    .vocab_size = 256,
    .chunk_size = 16,
    .activation = RN_ACT_SWISH,
    .layernorm_eps = 1e-6,
    .no_scale_embedding = true,
    .layernorm_embedding = false,
    .share_embed = false,
    .normalize_before = true,
    .deepnorm = false,
};

/* fla's tiny one: dk = 32, dv = 64 (expand_k 1, expand_v 2 as on the hub), MLP 128. */
static const rn_config k_tiny_fla = {
    .family = RN_FAMILY_FLA,
    .embed_dim = 64,
    .key_embed_dim = 64,
    .value_embed_dim = 128,
    .heads = 2,
    .kv_heads = 2,
    .ffn_dim = 128,
    .layers = 2,
    .vocab_size = 256,
    .chunk_size = 512,
    .activation = RN_ACT_SWISH,
    .layernorm_eps = 1e-6,
    .no_scale_embedding = true,
    .normalize_before = true,
    .rope_half = true,
    .plain_retention = true,
    .head_norm_weight = true,
    .output_gate = true,
};

static void usage(FILE *to) {
    fprintf(to,
            "usage: retnet-mkmodel --out DIR [--family torchscale|syncdoth|fla] [--preset fla-1.3b]\n"
            "                      [--config FILE.json] [--seed N] [--dtype f32|f16|bf16]\n"
            "                      [--shards N] [--fused-mlp | --split-mlp] [--kv-heads N]\n"
            "                      [--qk-gain X] [--rel-pos] [--lm-decay] [--tied]\n"
            "\n"
            "Writes DIR/config.json and the weights of a RetNet checkpoint with random weights from\n"
            "a fixed seed, in the exact tensor names and config.json keys of one family, then opens\n"
            "it with the loader and prints what it found.\n"
            "\n"
            "  --out DIR          directory to create (parents too)\n"
            "  --family F         torchscale (default; RetNetConfig keys, bare names),\n"
            "                     syncdoth (HF port, \"model.\" names, lm_head) or\n"
            "                     fla (flash-linear-attention / fla-hub)\n"
            "  --preset fla-1.3b  fla-hub/retnet-1.3B-100B: its config.json, names and shapes\n"
            "                     (D 2048, 24 layers, 8 heads, dk 256, dv 512, MLP 2816,\n"
            "                     vocab 32000, untied), bf16, fused MLP; 1,351,727,104 parameters,\n"
            "                     2.7 GB written tensor by tensor. Other options below still apply\n"
            "  --config FILE      a config.json to follow; its keys give the family (--family may\n"
            "                     still choose syncdoth for a decoder_* config). Default: a tiny\n"
            "                     built-in one, D=64 H=2 L=2 V=256 F=128, Dv=96 (torchscale,\n"
            "                     syncdoth) or dk=32 dv=64 (fla)\n"
            "  --seed N           generator seed, an unsigned integer (default 1)\n"
            "  --dtype T          storage dtype: f32 (default; bf16 with the preset), f16 or bf16\n"
            "  --shards N         write N files model-0000k-of-0000N.safetensors and\n"
            "                     model.safetensors.index.json, tensors dealt out in a shuffled\n"
            "                     order (default: one model.safetensors)\n"
            "  --fused-mlp        fla: one mlp.gate_proj of 2I rows (fla before 2025-02; the\n"
            "                     preset's default) instead of gate_proj + up_proj\n"
            "  --split-mlp        fla: separate gate_proj and up_proj (default without the preset)\n"
            "  --kv-heads N       fla: N key/value heads (grouped queries); N divides the heads\n"
            "  --qk-gain X        multiply the q/k init by X > 0 (default 1); a few units make\n"
            "                     parallel retention's normaliser clamp active\n"
            "  --rel-pos          torchscale/syncdoth: also write the retnet_rel_pos.angle/.decay\n"
            "                     buffers\n"
            "  --lm-decay         syncdoth: use_lm_decay true (decays from linspace(1/32, 1/512))\n"
            "  --tied             tie the output projection to the embedding\n"
            "  -h, --help         this text\n");
}

static int fail_usage(const char *what, const char *arg) {
    fprintf(stderr, "retnet-mkmodel: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    fprintf(stderr, "---> HINT: run retnet-mkmodel --help\n");
    return 2;
}

static int fail_status(rn_status s, const rn_error *err) {
    fprintf(stderr, "retnet-mkmodel: %s: %s\n", rn_status_str(s), err->message);
    return 1;
}

/* An unsigned integer without a sign; strtoull would take "-1" as ULLONG_MAX. */
static bool parse_unsigned(const char *v, unsigned long long max, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (errno || end == v || *end || v[0] == '-' || v[0] == '+' || x > max) return false;
    *out = x;
    return true;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *out = NULL, *config_path = NULL, *family_name = NULL, *preset = NULL;
    const char *dtype_name = NULL;
    unsigned long long seed = 1, shards = 0, kv_heads = 0;
    double qk_gain = 1.0;
    bool seed_set = false, rel_pos = false, lm_decay = false, tied = false;
    int fused = -1;   /* -1: the default for the config; 0/1: --split-mlp / --fused-mlp */

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--rel-pos") == 0) rel_pos = true;
        else if (strcmp(a, "--lm-decay") == 0) lm_decay = true;
        else if (strcmp(a, "--tied") == 0) tied = true;
        else if (strcmp(a, "--fused-mlp") == 0) fused = 1;
        else if (strcmp(a, "--split-mlp") == 0) fused = 0;
        else {
            static const char *const valued[] = {"--out", "--config", "--seed", "--dtype", "--qk-gain",
                                                 "--family", "--preset", "--shards", "--kv-heads"};
            bool takes_value = false;
            for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
                takes_value |= strcmp(a, valued[k]) == 0;
            if (!takes_value) return fail_usage("unknown argument", a);
            if (i + 1 >= argc) return fail_usage("missing value after", a);
            const char *v = argv[++i];
            if (strcmp(a, "--out") == 0) {
                out = v;
            } else if (strcmp(a, "--config") == 0) {
                config_path = v;
            } else if (strcmp(a, "--family") == 0) {
                if (strcmp(v, "torchscale") != 0 && strcmp(v, "syncdoth") != 0 &&
                    strcmp(v, "fla") != 0)
                    return fail_usage("--family must be torchscale, syncdoth or fla", v);
                family_name = v;
            } else if (strcmp(a, "--preset") == 0) {
                if (strcmp(v, "fla-1.3b") != 0) return fail_usage("unknown preset (fla-1.3b)", v);
                preset = v;
            } else if (strcmp(a, "--seed") == 0) {
                if (!parse_unsigned(v, UINT64_MAX, &seed))
                    return fail_usage("--seed needs an unsigned integer", v);
                seed_set = true;
            } else if (strcmp(a, "--shards") == 0) {
                if (!parse_unsigned(v, 99999, &shards) || shards == 0)
                    return fail_usage("--shards needs an integer in 1..99999", v);
            } else if (strcmp(a, "--kv-heads") == 0) {
                if (!parse_unsigned(v, RN_MAX_HEADS, &kv_heads) || kv_heads == 0)
                    return fail_usage("--kv-heads needs an integer in 1..1024", v);
            } else if (strcmp(a, "--dtype") == 0) {
                if (strcmp(v, "f32") != 0 && strcmp(v, "f16") != 0 && strcmp(v, "bf16") != 0)
                    return fail_usage("--dtype must be f32, f16 or bf16", v);
                dtype_name = v;
            } else {
                char *end;
                errno = 0;
                qk_gain = strtod(v, &end);
                if (errno || end == v || *end || !isfinite(qk_gain) || qk_gain <= 0)
                    return fail_usage("--qk-gain needs a finite number > 0", v);
            }
        }
    }
    if (!out) return fail_usage("--out DIR is required", NULL);
    if (preset && config_path) return fail_usage("--preset and --config exclude each other", NULL);
    if (preset && family_name && strcmp(family_name, "fla") != 0)
        return fail_usage("the fla-1.3b preset is an fla checkpoint, not", family_name);

    /* the config: preset, file or built-in, then the family */
    rn_config cfg = k_tiny;
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    rn_error err = {{0}};
    if (preset) {
        rn_writer_preset_fla_1_3b(&cfg, &opts);
    } else if (config_path) {
        rn_status s = rn_config_load(config_path, &cfg, &err);
        if (s != RN_OK) return fail_status(s, &err);
        if (family_name) {
            bool want_fla = strcmp(family_name, "fla") == 0;
            if (want_fla != (cfg.family == RN_FAMILY_FLA))
                return fail_usage(want_fla ? "--family fla, but the config is not an fla config"
                                           : "the config is an fla config, not", family_name);
            if (!want_fla)
                cfg.family = strcmp(family_name, "syncdoth") == 0 ? RN_FAMILY_SYNCDOTH
                                                                  : RN_FAMILY_TORCHSCALE;
        }
    } else if (family_name && strcmp(family_name, "fla") == 0) {
        cfg = k_tiny_fla;
    } else if (family_name && strcmp(family_name, "syncdoth") == 0) {
        cfg.family = RN_FAMILY_SYNCDOTH;
    }
    bool fla = cfg.family == RN_FAMILY_FLA;
    if (!fla && (fused >= 0 || kv_heads))
        return fail_usage("--fused-mlp, --split-mlp and --kv-heads are fla options; the family is",
                          rn_family_name(cfg.family));
    if (fla && (rel_pos || lm_decay))
        return fail_usage("--rel-pos and --lm-decay are torchscale/syncdoth options; the family is",
                          "fla");
    if (lm_decay && cfg.family != RN_FAMILY_SYNCDOTH)
        return fail_usage("--lm-decay is a syncdoth option (add --family syncdoth)", NULL);

    /* the options on top */
    if (seed_set) opts.seed = seed;
    if (dtype_name)
        opts.dtype = strcmp(dtype_name, "f32") == 0   ? ST_F32
                     : strcmp(dtype_name, "f16") == 0 ? ST_F16
                                                      : ST_BF16;
    opts.qk_gain = qk_gain;
    opts.write_rel_pos = rel_pos;
    opts.shards = (unsigned)shards;
    if (fused >= 0) opts.fused_mlp = fused == 1;
    if (kv_heads) cfg.kv_heads = (int64_t)kv_heads;
    if (lm_decay) cfg.use_lm_decay = true;
    if (tied) cfg.share_embed = true;

    double t0 = seconds_now();
    rn_status s = rn_write_random_model(out, &cfg, &opts, &err);
    if (s != RN_OK) return fail_status(s, &err);
    double written = seconds_now() - t0;

    rn_checkpoint *ck = NULL;
    s = rn_checkpoint_open(out, &ck, &err);
    if (s != RN_OK) {
        fprintf(stderr, "retnet-mkmodel: the loader refuses what was written (a bug):\n");
        return fail_status(s, &err);
    }
    const rn_config *c = &ck->config;
    printf("wrote %s in %.1f s: %s, D=%lld H=%lld kv=%lld dk=%lld dv=%lld F=%lld L=%lld V=%lld%s, "
           "%s, %llu parameters (%llu bytes), %zu file%s%s, seed %llu%s\n",
           out, written, rn_family_name(c->family), (long long)c->embed_dim, (long long)c->heads,
           (long long)c->kv_heads, (long long)c->key_head_dim, (long long)c->value_head_dim,
           (long long)c->ffn_dim, (long long)c->layers, (long long)c->vocab_size,
           c->share_embed ? " tied" : "", st_dtype_name(opts.dtype),
           (unsigned long long)ck->parameters, (unsigned long long)ck->tensor_bytes, ck->n_shards,
           ck->n_shards == 1 ? "" : "s", ck->indexed ? " + index" : "",
           (unsigned long long)opts.seed,
           fla ? (opts.fused_mlp ? ", fused MLP" : ", split MLP")
               : (opts.write_rel_pos ? ", with rel-pos buffers" : ""));
    rn_checkpoint_close(ck);
    return 0;
}
