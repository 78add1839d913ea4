/*
 * mkmodel.c: retnet-mkmodel, writes a random RetNet checkpoint directory.
 *
 *   retnet-mkmodel --out DIR [--config FILE.json] [--seed N] [--dtype f32|f16|bf16]
 *                  [--qk-gain X] [--rel-pos]
 *
 * The weights are random (fixed seed) at torchscale-like scales: useful for tests, benchmarks
 * and checking a loader, never for text.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_writer.h"

/* Without --config: small enough for a test in seconds, with dk = 32, dv = 48. */
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

static void usage(FILE *to) {
    fprintf(to,
            "usage: retnet-mkmodel --out DIR [--config FILE.json] [--seed N]\n"
            "                      [--dtype f32|f16|bf16] [--qk-gain X] [--rel-pos]\n"
            "\n"
            "Writes DIR/config.json and DIR/model.safetensors: a RetNet checkpoint in torchscale's\n"
            "naming with random weights from a fixed seed.\n"
            "\n"
            "  --out DIR          directory to create (parents too)\n"
            "  --config FILE      a config.json to follow (default: a tiny built-in one,\n"
            "                     D=64 Dv=96 H=2 F=128 L=2 V=256, swish)\n"
            "  --seed N           generator seed, an unsigned integer (default 1)\n"
            "  --dtype T          storage dtype: f32 (default), f16 or bf16\n"
            "  --qk-gain X        multiply the q/k init by X > 0 (default 1); a few units make\n"
            "                     parallel retention's normaliser clamp active\n"
            "  --rel-pos          also write the retnet_rel_pos.angle/.decay buffers\n"
            "  -h, --help         this text\n");
}

static int fail_usage(const char *what, const char *arg) {
    fprintf(stderr, "retnet-mkmodel: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    fprintf(stderr, "---> HINT: run retnet-mkmodel --help\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *out = NULL, *config_path = NULL;
    rn_writer_options opts;
    rn_writer_options_default(&opts);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--rel-pos") == 0) {
            opts.write_rel_pos = true;
            continue;
        }
        bool takes_value = strcmp(a, "--out") == 0 || strcmp(a, "--config") == 0 ||
                           strcmp(a, "--seed") == 0 || strcmp(a, "--dtype") == 0 ||
                           strcmp(a, "--qk-gain") == 0;
        if (!takes_value) return fail_usage("unknown argument", a);
        if (i + 1 >= argc) return fail_usage("missing value after", a);
        const char *v = argv[++i];
        if (strcmp(a, "--out") == 0) {
            out = v;
        } else if (strcmp(a, "--config") == 0) {
            config_path = v;
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long seed = strtoull(v, &end, 0);
            /* strtoull accepts "-1" as ULLONG_MAX; a seed is written without a sign */
            if (errno || end == v || *end || v[0] == '-' || v[0] == '+')
                return fail_usage("--seed needs an unsigned integer", v);
            opts.seed = seed;
        } else if (strcmp(a, "--dtype") == 0) {
            if (strcmp(v, "f32") == 0) opts.dtype = ST_F32;
            else if (strcmp(v, "f16") == 0) opts.dtype = ST_F16;
            else if (strcmp(v, "bf16") == 0) opts.dtype = ST_BF16;
            else return fail_usage("--dtype must be f32, f16 or bf16", v);
        } else {
            char *end;
            errno = 0;
            double gain = strtod(v, &end);
            if (errno || end == v || *end || !isfinite(gain) || gain <= 0)
                return fail_usage("--qk-gain needs a finite number > 0", v);
            opts.qk_gain = gain;
        }
    }
    if (!out) return fail_usage("--out DIR is required", NULL);

    rn_config cfg = k_tiny;
    rn_error err = {{0}};
    if (config_path) {
        rn_status s = rn_config_load(config_path, &cfg, &err);
        if (s != RN_OK) {
            fprintf(stderr, "retnet-mkmodel: %s: %s\n", rn_status_str(s), err.message);
            return 1;
        }
    }
    rn_status s = rn_write_random_model(out, &cfg, &opts, &err);
    if (s != RN_OK) {
        fprintf(stderr, "retnet-mkmodel: %s: %s\n", rn_status_str(s), err.message);
        return 1;
    }
    printf("wrote %s: D=%lld Dv=%lld H=%lld F=%lld L=%lld V=%lld, %s, seed %llu%s\n", out,
           (long long)cfg.embed_dim, (long long)cfg.value_embed_dim, (long long)cfg.heads,
           (long long)cfg.ffn_dim, (long long)cfg.layers, (long long)cfg.vocab_size,
           st_dtype_name(opts.dtype), (unsigned long long)opts.seed,
           opts.write_rel_pos ? ", with rel-pos buffers" : "");
    return 0;
}
