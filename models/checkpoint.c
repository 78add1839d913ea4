/*
 * checkpoint.c: config.json + model.safetensors checked against each other (checkpoint.h).
 *
 * Every tensor the config implies is looked up by its torchscale name. Missing tensors are
 * collected and reported together, so that a user fixing a converter sees the whole list at
 * once; a shape mismatch is reported with both shapes. Nothing here touches tensor data except
 * rn_checkpoint_rel_pos, which widens the two small position buffers.
 */
#include "checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LISTED_MISSING 20
#define NAME_CAP 128   /* "layers.1023.retention.out_proj.weight" is 38 bytes */

/* State of one lookup pass: the missing names so far and the first shape mismatch. */
typedef struct lookup {
    const st_file *file;
    const char *path;             /* model.safetensors, for messages */
    size_t missing;
    char missing_list[2048];
    rn_status shape_status;
    rn_error *err;
    uint64_t parameters;
    uint64_t bytes;
} lookup;

static void format_shape(char *buf, size_t cap, int rank, const uint64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %llu" : "%llu", (unsigned long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Finds `name` and checks its shape against `expect` (rank entries). Absent tensors are added
 * to the missing list when `required`, else give NULL silently. Only the first mismatch is kept
 * in the message, and only if nothing is missing by the end. */
static const st_tensor *want(lookup *lk, const char *name, bool required, bool counted, int rank,
                             uint64_t d0, uint64_t d1) {
    const st_tensor *t = st_find(lk->file, name);
    if (!t) {
        if (required) {
            if (lk->missing < MAX_LISTED_MISSING) {
                size_t used = strlen(lk->missing_list);
                snprintf(lk->missing_list + used, sizeof lk->missing_list - used, "%s%s",
                         lk->missing ? ", " : "", name);
            }
            lk->missing++;
        }
        return NULL;
    }
    uint64_t expect[2] = {d0, d1};
    bool ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++) ok = t->shape[i] == expect[i];
    if (!ok) {
        if (lk->shape_status == RN_OK) {
            char got[96], exp[96];
            format_shape(got, sizeof got, t->rank, t->shape);
            format_shape(exp, sizeof exp, rank, expect);
            lk->shape_status = rn_fail(lk->err, RN_ERR_TENSOR_SHAPE,
                                       "%s: tensor '%s' has shape %s, the config implies %s",
                                       lk->path, name, got, exp);
        }
        return NULL;
    }
    if (counted) rn_add_u64(lk->parameters, t->elements, &lk->parameters);
    rn_add_u64(lk->bytes, t->nbytes, &lk->bytes);
    return t;
}

static void map_tensors(rn_checkpoint *ck, lookup *lk) {
    const rn_config *c = &ck->config;
    uint64_t D = (uint64_t)c->embed_dim, Dv = (uint64_t)c->value_embed_dim;
    uint64_t F = (uint64_t)c->ffn_dim, V = (uint64_t)c->vocab_size;

    ck->embed = want(lk, "embed_tokens.weight", true, true, 2, V, D);             /* [V, D] */
    if (c->layernorm_embedding)
        ck->embed_norm = want(lk, "layernorm_embedding.weight", true, true, 1, D, 0); /* [D] */

    for (int64_t l = 0; l < c->layers; l++) {
        rn_layer_tensors *L = &ck->layers[l];
        char name[NAME_CAP];
#define LAYER(field, suffix, rank, d0, d1)                                            \
    do {                                                                              \
        snprintf(name, sizeof name, "layers.%lld.%s", (long long)l, suffix);         \
        L->field = want(lk, name, true, true, rank, d0, d1);                          \
    } while (0)
        LAYER(q_proj, "retention.q_proj.weight", 2, D, D);       /* [D, D] */
        LAYER(k_proj, "retention.k_proj.weight", 2, D, D);       /* [D, D] */
        LAYER(v_proj, "retention.v_proj.weight", 2, Dv, D);      /* [Dv, D] */
        LAYER(g_proj, "retention.g_proj.weight", 2, Dv, D);      /* [Dv, D] */
        LAYER(out_proj, "retention.out_proj.weight", 2, D, Dv);  /* [D, Dv] */
        LAYER(retention_norm, "retention_layer_norm.weight", 1, D, 0);
        LAYER(fc1, "ffn.fc1.weight", 2, F, D);                   /* [F, D] */
        LAYER(gate, "ffn.gate.weight", 2, F, D);                 /* [F, D] */
        LAYER(fc2, "ffn.fc2.weight", 2, D, F);                   /* [D, F] */
        LAYER(ffn_norm, "final_layer_norm.weight", 1, D, 0);
#undef LAYER
    }

    if (c->normalize_before) ck->final_norm = want(lk, "layer_norm.weight", true, true, 1, D, 0);
    /* Tied: torchscale's state dict carries output_projection.weight as an alias of the
     * embedding (or not at all, after safetensors deduplication); either way it is not read. */
    if (c->share_embed) ck->output = ck->embed;
    else ck->output = want(lk, "output_projection.weight", true, true, 2, V, D); /* [V, D] */

    /* persistent buffers, not parameters */
    ck->angle = want(lk, "retnet_rel_pos.angle", false, false, 1, (uint64_t)c->key_head_dim, 0);
    ck->decay = want(lk, "retnet_rel_pos.decay", false, false, 1, (uint64_t)c->heads, 0);
}

rn_status rn_checkpoint_open(const char *dir, rn_checkpoint **out, rn_error *err) {
    rn_status status = RN_OK;
    rn_checkpoint *ck = NULL;
    char *config_path = NULL, *model_path = NULL;

    if (!dir || !out) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_checkpoint_open: NULL argument");
    *out = NULL;

    struct stat st;
    if (stat(dir, &st) != 0)
        return rn_fail(err, RN_ERR_IO, "%s: cannot open the model directory: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rn_fail(err, RN_ERR_IO, "%s: not a directory (a checkpoint is a directory holding "
                       "config.json and model.safetensors)", dir);

    ck = calloc(1, sizeof *ck);
    config_path = rn_path_join(dir, "config.json");
    model_path = rn_path_join(dir, "model.safetensors");
    if (!ck || !config_path || !model_path) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
        goto fail;
    }
    if ((status = rn_config_load(config_path, &ck->config, err)) != RN_OK) goto fail;
    if ((status = st_open(model_path, &ck->file, err)) != RN_OK) goto fail;

    ck->layers = calloc((size_t)ck->config.layers, sizeof *ck->layers);
    if (!ck->layers) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for %lld layers", dir,
                         (long long)ck->config.layers);
        goto fail;
    }

    lookup lk = {.file = ck->file, .path = model_path, .err = err};
    map_tensors(ck, &lk);
    if (lk.missing > 0) {
        status = rn_fail(err, RN_ERR_MISSING_TENSOR, "%s: %zu tensor%s missing: %s%s", model_path,
                         lk.missing, lk.missing == 1 ? "" : "s", lk.missing_list,
                         lk.missing > MAX_LISTED_MISSING ? ", ..." : "");
        goto fail;
    }
    if (lk.shape_status != RN_OK) {
        status = lk.shape_status;   /* the message is already in err */
        goto fail;
    }
    ck->parameters = lk.parameters;
    ck->tensor_bytes = lk.bytes;

    free(config_path);
    free(model_path);
    *out = ck;
    return RN_OK;

fail:
    free(config_path);
    free(model_path);
    rn_checkpoint_close(ck);
    return status;
}

void rn_checkpoint_close(rn_checkpoint *ckpt) {
    if (!ckpt) return;
    st_close(ckpt->file);
    free(ckpt->layers);
    free(ckpt);
}

void rn_checkpoint_rel_pos(const rn_checkpoint *ckpt, float *angle, float *decay) {
    const rn_config *c = &ckpt->config;
    int64_t dk = c->key_head_dim, H = c->heads;

    if (ckpt->angle) {
        st_to_f32(ckpt->angle->dtype, ckpt->angle->data, (uint64_t)dk, angle);
    } else {
        /* torch.linspace(0, 1, P) then 1 / 10000**t, in fp32. t_i = i/(P-1), computed the way
         * torch's CPU linspace does: a float step, counted up from 0 in the first half and down
         * from 1 in the second. The naive i/(P-1) is a few ulps off, and pow amplifies that by
         * ln(10000); this form matches torch's buffers on the fixtures, though torch's own pow
         * may still differ by an ulp, which is why a checkpoint's buffer wins when present. */
        int64_t P = dk / 2;
        float step = P > 1 ? 1.0f / (float)(P - 1) : 0.0f;
        for (int64_t i = 0; i < P; i++) {
            float t = P == 1 || i < P / 2 ? step * (float)i : 1.0f - step * (float)(P - 1 - i);
            float theta = 1.0f / powf(10000.0f, t);
            angle[2 * i] = theta;
            angle[2 * i + 1] = theta;
        }
    }

    if (ckpt->decay) {
        st_to_f32(ckpt->decay->dtype, ckpt->decay->data, (uint64_t)H, decay);
    } else {
        /* log(1 - 2^(-5-h)) in fp32; from h = 20 on, 1 - 2^(-5-h) rounds to 1 and the head
         * does not decay, as in torchscale */
        for (int64_t h = 0; h < H; h++) decay[h] = logf(1.0f - exp2f((float)(-5 - h)));
    }
}
