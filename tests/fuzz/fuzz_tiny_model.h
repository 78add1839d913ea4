/*
 * fuzz_tiny_model.h: the small fixed model the checkpoint and state targets work against,
 * written once per process into a fresh directory under /tmp and removed at exit.
 */
#ifndef RN_FUZZ_TINY_MODEL_H
#define RN_FUZZ_TINY_MODEL_H

#include <dirent.h>
#include <string.h>

#include "fuzz_common.h"
#include "model_writer.h"

/* torchscale, D 16, Dv 16, 2 heads (dk = dv = 8), F 32, 2 layers, V 32: a few kilobytes. */
static inline rn_config fuzz_tiny_config(void) {
    rn_config c;
    memset(&c, 0, sizeof c);
    c.family = RN_FAMILY_TORCHSCALE;
    c.embed_dim = 16;
    c.value_embed_dim = 16;
    c.heads = 2;
    c.ffn_dim = 32;
    c.layers = 2;
    c.vocab_size = 32;
    c.chunk_size = 4;
    c.activation = RN_ACT_GELU;
    c.layernorm_eps = 1e-6;
    c.no_scale_embedding = true;
    c.normalize_before = true;
    return c;
}

static char fuzz_model_dir[64];

/* Removes the directory's files (it has no subdirectories) and the directory. */
static void fuzz_model_dir_remove(void) {
    if (!fuzz_model_dir[0]) return;
    DIR *d = opendir(fuzz_model_dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", fuzz_model_dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(fuzz_model_dir);
    fuzz_model_dir[0] = '\0';
}

/* Writes the tiny model (`shards` as rn_writer_options) into a new directory and returns it. */
static inline const char *fuzz_tiny_model_write(unsigned shards) {
    snprintf(fuzz_model_dir, sizeof fuzz_model_dir, "/tmp/rn-fuzz-model-XXXXXX");
    fuzz_check(mkdtemp(fuzz_model_dir) != NULL, "mkdtemp failed");
    atexit(fuzz_model_dir_remove);
    rn_config cfg = fuzz_tiny_config();
    rn_writer_options opts;
    rn_writer_options_default(&opts);
    opts.seed = 7;
    opts.shards = shards;
    rn_error err;
    err.message[0] = '\0';
    rn_status st = rn_write_random_model(fuzz_model_dir, &cfg, &opts, &err);
    fuzz_check(st == RN_OK, "writing the tiny model: %s %s", rn_status_str(st), err.message);
    return fuzz_model_dir;
}

#endif /* RN_FUZZ_TINY_MODEL_H */
