/*
 * fuzz_checkpoint: rn_checkpoint_open on a directory whose model.safetensors.index.json is
 * the input. The directory is written once: a valid config.json and two valid shards of a
 * tiny model (model-00001-of-00002.safetensors, model-00002-of-00002.safetensors) whose own
 * index is the seed. A checkpoint that opens must have every tensor the config needs, and
 * finding its tensors by name must give the ones it holds.
 */
#include "checkpoint.h"
#include "fuzz_tiny_model.h"

static char index_path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = fuzz_tiny_model_write(2);
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    /* Checks the directory opens as written before the fuzzing starts. */
    rn_error err;
    err.message[0] = '\0';
    rn_checkpoint *ckpt = NULL;
    rn_status st = rn_checkpoint_open(dir, &ckpt, &err);
    fuzz_check(st == RN_OK && ckpt->indexed, "the tiny model does not open: %s %s", rn_status_str(st),
               err.message);
    rn_checkpoint_close(ckpt);
    /* RN_FUZZ_CHECKPOINT_SEEDS=dir: copy the valid index there (the seed corpus). */
    const char *seeds = getenv("RN_FUZZ_CHECKPOINT_SEEDS");
    if (seeds && *seeds) {
        char *text = NULL;
        size_t size = 0;
        st = rn_read_file(index_path, RN_MAX_INDEX_BYTES, &text, &size, &err);
        fuzz_check(st == RN_OK, "reading %s: %s", index_path, err.message);
        char path[512];
        snprintf(path, sizeof path, "%s/valid-index.json", seeds);
        fuzz_write_file(path, (const uint8_t *)text, size);
        free(text);
        fprintf(stderr, "fuzz_checkpoint: wrote %s\n", path);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(index_path, data, size);
    rn_error err;
    err.message[0] = '\0';
    rn_checkpoint *ckpt = NULL;
    rn_status st = rn_checkpoint_open(fuzz_model_dir, &ckpt, &err);
    if (st != RN_OK) {
        fuzz_check(ckpt == NULL, "rn_checkpoint_open failed with %s but returned a checkpoint", rn_status_str(st));
        fuzz_check(err.message[0] != '\0', "rn_checkpoint_open failed with %s and no message", rn_status_str(st));
        return 0;
    }
    fuzz_check(ckpt->embed && ckpt->output && ckpt->layers, "an opened checkpoint lacks tensors");
    /* a quantized checkpoint's matrices are views of their .qweight/.qscale pairs, not found by name */
    fuzz_check(ckpt->quantized || rn_checkpoint_find(ckpt, ckpt->embed->name) == ckpt->embed,
               "embed not found by its name");
    for (int64_t l = 0; l < ckpt->config.layers; l++) {
        const rn_layer_tensors *lt = &ckpt->layers[l];
        fuzz_check(lt->q_proj && lt->k_proj && lt->v_proj && lt->out_proj && lt->fc1 && lt->gate && lt->fc2,
                   "layer %lld lacks tensors", (long long)l);
        fuzz_check(ckpt->quantized || rn_checkpoint_find(ckpt, lt->q_proj->name) == lt->q_proj,
                   "q_proj not found by its name");
    }
    float angle[64], decay[64];
    if (ckpt->config.key_head_dim <= 64 && ckpt->config.heads <= 64) rn_checkpoint_rel_pos(ckpt, angle, decay);
    rn_checkpoint_close(ckpt);
    return 0;
}
