/* model.c: loading a checkpoint onto the device. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* The tensors of a checkpoint paired with the device buffers they go to. */
typedef struct upload {
    const st_tensor *tensor;
    rt_buffer *buffer;
    const char *what;
} upload;

/* At most 3 + 10 L + 1 entries: embed, embed_norm, final_norm, output, the layers. */
static size_t plan_uploads(const rn_checkpoint *ckpt, rn_model *m, upload *plan) {
    size_t n = 0;
    plan[n++] = (upload){ckpt->embed, &m->embed, "embed_tokens.weight"};
    if (ckpt->embed_norm) plan[n++] = (upload){ckpt->embed_norm, &m->embed_norm, "layernorm_embedding.weight"};
    if (ckpt->final_norm) plan[n++] = (upload){ckpt->final_norm, &m->final_norm, "layer_norm.weight"};
    if (!m->cfg.share_embed) plan[n++] = (upload){ckpt->output, &m->output, "output_projection.weight"};
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        const rn_layer_tensors *t = &ckpt->layers[l];
        rn_layer_weights *w = &m->layers[l];
        plan[n++] = (upload){t->q_proj, &w->q_proj, t->q_proj->name};
        plan[n++] = (upload){t->k_proj, &w->k_proj, t->k_proj->name};
        plan[n++] = (upload){t->v_proj, &w->v_proj, t->v_proj->name};
        plan[n++] = (upload){t->g_proj, &w->g_proj, t->g_proj->name};
        plan[n++] = (upload){t->out_proj, &w->out_proj, t->out_proj->name};
        plan[n++] = (upload){t->retention_norm, &w->retention_norm, t->retention_norm->name};
        plan[n++] = (upload){t->fc1, &w->fc1, t->fc1->name};
        plan[n++] = (upload){t->gate, &w->gate, t->gate->name};
        plan[n++] = (upload){t->fc2, &w->fc2, t->fc2->name};
        plan[n++] = (upload){t->ffn_norm, &w->ffn_norm, t->ffn_norm->name};
    }
    return n;
}

static void release_weights(rn_model *m, upload *plan, size_t n) {
    rt_runtime *rt = &m->ctx->rt;
    for (size_t i = 0; i < n; i++) rt_buffer_free(rt, plan[i].buffer);
    rt_buffer_free(rt, &m->angle);
    rt_buffer_free(rt, &m->decay);
}

/* Refuses a model that cannot fit before anything is allocated: the total against the
 * device's memory and the largest tensor against its largest single allocation. */
static rn_status check_fits(rn_context *ctx, const upload *plan, size_t n, uint64_t *total) {
    const rn_device_info *dev = &ctx->rt.dev.info;
    uint64_t sum = 0, largest = 0;
    const char *largest_name = "";
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = plan[i].tensor->elements * sizeof(float);
        sum += bytes;
        if (bytes > largest) {
            largest = bytes;
            largest_name = plan[i].what;
        }
    }
    *total = sum;
    if (largest > dev->max_alloc_bytes)
        return rn_fail(&ctx->err, RN_ERR_DEVICE_MEMORY,
                       "tensor '%s' needs %.1f MiB in one buffer; '%s' allows %.1f MiB per allocation",
                       largest_name, largest / 1048576.0, dev->name, dev->max_alloc_bytes / 1048576.0);
    if (ctx->rt.bytes_current + sum > dev->global_mem_bytes)
        return rn_fail(&ctx->err, RN_ERR_DEVICE_MEMORY,
                       "the weights need %.1f MiB as fp32; '%s' has %.1f MiB of which %.1f MiB are in use",
                       sum / 1048576.0, dev->name, dev->global_mem_bytes / 1048576.0,
                       ctx->rt.bytes_current / 1048576.0);
    return RN_OK;
}

static const char *file_dtype(const upload *plan, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (plan[i].tensor->dtype != plan[0].tensor->dtype) return "mixed";
    return st_dtype_name(plan[0].tensor->dtype);
}

static rn_status upload_all(rn_model *m, const rn_checkpoint *ckpt, upload *plan, size_t n) {
    rt_runtime *rt = &m->ctx->rt;
    uint64_t largest = 0;
    for (size_t i = 0; i < n; i++)
        if (plan[i].tensor->elements > largest) largest = plan[i].tensor->elements;
    /* One staging buffer, the size of the largest tensor, reused for every widening. */
    float *staging = malloc((size_t)largest * sizeof(float));
    if (!staging)
        return rn_fail(&m->ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory to stage %.1f MiB",
                       largest * 4 / 1048576.0);
    rn_status st = RN_OK;
    for (size_t i = 0; i < n && st == RN_OK; i++) {
        const st_tensor *t = plan[i].tensor;
        size_t bytes = (size_t)t->elements * sizeof(float);
        st = rt_buffer_alloc(rt, bytes, plan[i].what, plan[i].buffer);
        if (st == RN_OK) {
            st_to_f32(t->dtype, t->data, t->elements, staging);
            st = rt_buffer_write(rt, plan[i].buffer, 0, staging, bytes);
        }
    }
    if (st == RN_OK) {
        const rn_config *c = &m->cfg;
        float *angle = staging, *decay = staging + c->key_head_dim;
        rn_checkpoint_rel_pos(ckpt, angle, decay);
        st = rt_buffer_alloc(rt, (size_t)c->key_head_dim * sizeof(float), "rotation angles", &m->angle);
        if (st == RN_OK) st = rt_buffer_write(rt, &m->angle, 0, angle, (size_t)c->key_head_dim * sizeof(float));
        if (st == RN_OK) st = rt_buffer_alloc(rt, (size_t)c->heads * sizeof(float), "decays", &m->decay);
        if (st == RN_OK) st = rt_buffer_write(rt, &m->decay, 0, decay, (size_t)c->heads * sizeof(float));
    }
    free(staging);
    return st;
}

rn_status rn_model_load(rn_context *ctx, const char *dir, rn_model **out) {
    if (!ctx || !dir || !out) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    rn_checkpoint *ckpt = NULL;
    rn_status st = rn_checkpoint_open(dir, &ckpt, &ctx->err);
    if (st != RN_OK) return st;

    rn_model *m = calloc(1, sizeof *m);
    upload *plan = NULL;
    size_t n = 0;
    if (m) {
        m->ctx = ctx;
        m->cfg = ckpt->config;
        m->layers = calloc((size_t)m->cfg.layers, sizeof *m->layers);
        plan = malloc((size_t)(4 + 10 * m->cfg.layers) * sizeof *plan);
    }
    if (!m || !m->layers || !plan) {
        st = rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for the model description");
        goto fail;
    }
    n = plan_uploads(ckpt, m, plan);
    st = check_fits(ctx, plan, n, &m->device_bytes);
    if (st != RN_OK) goto fail;
    st = rn_kernels_build(&ctx->rt, m->cfg.key_head_dim, m->cfg.value_head_dim, &m->kernels);
    if (st != RN_OK) goto fail;
    st = upload_all(m, ckpt, plan, n);
    if (st != RN_OK) goto fail;
    st = rt_finish(&ctx->rt);
    if (st != RN_OK) goto fail;

    m->parameters = ckpt->parameters;
    m->file_bytes = ckpt->tensor_bytes;
    m->file_dtype = file_dtype(plan, n);
    free(plan);
    rn_checkpoint_close(ckpt);
    *out = m;
    return RN_OK;

fail:
    if (m) {
        if (plan) release_weights(m, plan, n);
        rn_kernels_release(&m->kernels);
        free(m->layers);
        free(m);
    }
    free(plan);
    rn_error_prefix(&ctx->err, "loading '%s'", dir);
    rn_checkpoint_close(ckpt);
    return st;
}

void rn_model_free(rn_model *m) {
    if (!m) return;
    rt_runtime *rt = &m->ctx->rt;
    rt_buffer_free(rt, &m->embed);
    rt_buffer_free(rt, &m->embed_norm);
    rt_buffer_free(rt, &m->final_norm);
    rt_buffer_free(rt, &m->output);
    rt_buffer_free(rt, &m->angle);
    rt_buffer_free(rt, &m->decay);
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        rn_layer_weights *w = &m->layers[l];
        rt_buffer *all[] = {&w->q_proj, &w->k_proj, &w->v_proj, &w->g_proj, &w->out_proj,
                            &w->retention_norm, &w->fc1, &w->gate, &w->fc2, &w->ffn_norm};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) rt_buffer_free(rt, all[i]);
    }
    rn_kernels_release(&m->kernels);
    free(m->layers);
    free(m);
}

rn_status rn_model_info_get(const rn_model *m, rn_model_info *info) {
    if (!m || !info) return RN_ERR_INVALID_ARGUMENT;
    const rn_config *c = &m->cfg;
    memset(info, 0, sizeof *info);
    info->embed_dim = c->embed_dim;
    info->value_embed_dim = c->value_embed_dim;
    info->heads = c->heads;
    info->ffn_dim = c->ffn_dim;
    info->layers = c->layers;
    info->vocab_size = c->vocab_size;
    info->chunk_size = c->chunk_size;
    info->activation = c->activation;
    info->layernorm_eps = c->layernorm_eps;
    info->scale_embedding = !c->no_scale_embedding;
    info->layernorm_embedding = c->layernorm_embedding;
    info->tied_embeddings = c->share_embed;
    info->normalize_before = c->normalize_before;
    info->deepnorm = c->deepnorm;
    info->parameters = m->parameters;
    info->file_bytes = m->file_bytes;
    info->device_bytes = m->device_bytes;
    info->file_dtype = m->file_dtype;
    return RN_OK;
}
