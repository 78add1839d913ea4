/*
 * test_presets.c: every shape preset in models/presets parses with rn_config_load and gives
 * the shapes and parameter count models/presets/README.md states.
 *
 *   test_presets PRESETS_DIR
 *
 * A .json file in the folder that the table below does not know fails the test, so a new
 * preset comes with its expected shapes. No device, no weights: the count is computed from the
 * config the way the checkpoint's tensors would add up (tools/model_writer.c's list).
 */
#define _POSIX_C_SOURCE 200809L   /* opendir */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

typedef struct preset {
    const char *file;
    rn_family family;
    int64_t D, Dv, H, F, L, V, dk, dv;
    uint64_t parameters;   /* as in README.md */
} preset;

static const preset k_presets[] = {
    {"torchscale-1.3b.json", RN_FAMILY_TORCHSCALE, 2048, 3456, 8, 3456, 24, 64000, 256, 432,
     1482786816ull},
    {"torchscale-2.7b.json", RN_FAMILY_TORCHSCALE, 2560, 4280, 10, 4280, 32, 64000, 256, 428,
     2850982400ull},
    {"torchscale-6.7b.json", RN_FAMILY_TORCHSCALE, 4096, 6912, 16, 6912, 32, 64000, 256, 432,
     7034114048ull},
    {"fla-1.3b.json", RN_FAMILY_FLA, 2048, 4096, 8, 2816, 24, 32000, 256, 512, 1351727104ull},
    {"tiny.json", RN_FAMILY_TORCHSCALE, 64, 128, 2, 128, 4, 1024, 32, 64, 361024ull},
};
#define N_PRESETS (sizeof k_presets / sizeof k_presets[0])

static int failures = 0;

static void expect(int ok, const char *file, const char *what) {
    printf("  %-22s %-44s %s\n", file, what, ok ? "pass" : "FAIL");
    if (!ok) failures++;
}

/* Weights of every tensor the family's checkpoint holds for this config. */
static uint64_t parameters(const rn_config *c) {
    const uint64_t D = (uint64_t)c->embed_dim, K = (uint64_t)c->key_embed_dim;
    const uint64_t Dv = (uint64_t)c->value_embed_dim, F = (uint64_t)c->ffn_dim;
    const uint64_t V = (uint64_t)c->vocab_size, G = (uint64_t)(c->heads / c->kv_heads);
    uint64_t layer = K * D + K / G * D + Dv / G * D + D * Dv   /* q, k, v, out */
                     + (c->output_gate ? Dv * D : 0)           /* g */
                     + (c->head_norm_weight ? (uint64_t)c->value_head_dim : 0)
                     + 2 * D                                    /* the two block norms */
                     + 3 * F * D;                               /* the gated FFN */
    return (uint64_t)c->layers * layer + V * D * (c->share_embed ? 1 : 2) +
           (c->normalize_before ? D : 0) + (c->layernorm_embedding ? D : 0);
}

static void check(const char *dir, const preset *p) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, p->file);
    rn_config c;
    rn_error err = {{0}};
    rn_status st = rn_config_load(path, &c, &err);
    if (st != RN_OK) printf("  %s: %s\n", rn_status_str(st), err.message);
    expect(st == RN_OK, p->file, "parses");
    if (st != RN_OK) return;
    expect(c.family == p->family, p->file, rn_family_name(p->family));
    expect(c.embed_dim == p->D && c.value_embed_dim == p->Dv, p->file, "embed and value embed dims");
    expect(c.heads == p->H && c.key_head_dim == p->dk && c.value_head_dim == p->dv, p->file,
           "heads and head dims");
    expect(c.ffn_dim == p->F && c.layers == p->L && c.vocab_size == p->V, p->file,
           "ffn dim, layers, vocab");
    uint64_t n = parameters(&c);
    char what[64];
    snprintf(what, sizeof what, "%llu parameters", (unsigned long long)n);
    expect(n == p->parameters, p->file, what);
}

/* Every .json in the folder must be one the table knows. */
static void no_strangers(const char *dir) {
    DIR *d = opendir(dir);
    expect(d != NULL, dir, "opens");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
        int known = 0;
        for (size_t i = 0; i < N_PRESETS; i++) known |= strcmp(e->d_name, k_presets[i].file) == 0;
        expect(known, e->d_name, "has expected shapes in test_presets.c");
    }
    closedir(d);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PRESETS_DIR\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < N_PRESETS; i++) check(argv[1], &k_presets[i]);
    no_strangers(argv[1]);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
