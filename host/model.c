/* model.c: loading a checkpoint onto the device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "engine.h"

/* Weights are converted and uploaded this many elements at a time: the file is mapped, so a
 * model is never held twice in host memory, only this piece of it. */
#define UPLOAD_PIECE ((uint64_t)1 << 22)

void rn_model_options_default(rn_model_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->weights = RN_WEIGHTS_FILE;
}

/* One device buffer of the model: its shape, and whether it is a matrix (stored in the model's
 * weight type) or a vector (fp32). */
typedef struct slot {
    rt_buffer *buffer;
    uint64_t rows, cols;
    bool matrix;
    const char *what;
} slot;

#define MAX_GLOBAL_SLOTS 4
#define SLOTS_PER_LAYER 7

/* The buffers a model of this config needs, allocated or not: the same for a checkpoint and
 * for random weights. */
static size_t plan_slots(rn_model *m, slot *out) {
    const rn_config *c = &m->cfg;
    const uint64_t D = (uint64_t)c->embed_dim, V = (uint64_t)c->vocab_size, F = (uint64_t)c->ffn_dim;
    const uint64_t Dv = (uint64_t)c->value_embed_dim;
    size_t n = 0;
#define SLOT(buf, r, cols_, is_matrix, name) out[n++] = (slot){(buf), (r), (cols_), (is_matrix), (name)}
    SLOT(&m->embed, V, D, true, "token embedding");
    if (c->layernorm_embedding) SLOT(&m->embed_norm, 1, D, false, "embedding norm");
    if (c->normalize_before) SLOT(&m->final_norm, 1, D, false, "final norm");
    if (!c->share_embed) SLOT(&m->output, V, D, true, "output projection");
    for (int64_t l = 0; l < c->layers; l++) {
        rn_layer_weights *w = &m->layers[l];
        SLOT(&w->qkvg, (uint64_t)rn_qkvg_layout(c).total, D, true, "stacked q/k/v/g projections");
        SLOT(&w->out_proj, D, Dv, true, "retention output projection");
        if (c->head_norm_weight) SLOT(&w->head_norm, 1, (uint64_t)c->value_head_dim, false, "head norm");
        SLOT(&w->retention_norm, 1, D, false, "retention norm");
        SLOT(&w->ffn_in, 2 * F, D, true, "stacked FFN fc1/gate");
        SLOT(&w->fc2, D, F, true, "FFN fc2");
        SLOT(&w->ffn_norm, 1, D, false, "FFN norm");
    }
#undef SLOT
    return n;
}

static uint64_t slot_bytes(const rn_model *m, const slot *s) {
    return rn_storage_bytes(s->matrix ? m->weights : ST_F32, s->rows * s->cols);
}

/* A tensor of the checkpoint and where it goes: a buffer, from a row on. */
typedef struct upload {
    const st_tensor *tensor;
    rt_buffer *buffer;
    uint64_t row0;
    bool matrix;
} upload;

static size_t plan_uploads(const rn_checkpoint *ckpt, rn_model *m, upload *plan) {
    const rn_qkvg_rows at = rn_qkvg_layout(&m->cfg);
    size_t n = 0;
#define PLAN(t, buf, row, is_matrix) \
    if (t) plan[n++] = (upload){(t), (buf), (uint64_t)(row), (is_matrix)}
    PLAN(ckpt->embed, &m->embed, 0, true);
    PLAN(ckpt->embed_norm, &m->embed_norm, 0, false);
    PLAN(ckpt->final_norm, &m->final_norm, 0, false);
    if (!m->cfg.share_embed) PLAN(ckpt->output, &m->output, 0, true);
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        const rn_layer_tensors *t = &ckpt->layers[l];
        rn_layer_weights *w = &m->layers[l];
        PLAN(t->q_proj, &w->qkvg, at.q, true);
        PLAN(t->k_proj, &w->qkvg, at.k, true);
        PLAN(t->v_proj, &w->qkvg, at.v, true);
        PLAN(t->g_proj, &w->qkvg, at.g, true);
        PLAN(t->out_proj, &w->out_proj, 0, true);
        PLAN(t->head_norm, &w->head_norm, 0, false);
        PLAN(t->retention_norm, &w->retention_norm, 0, false);
        PLAN(t->fc1, &w->ffn_in, 0, true);
        PLAN(t->gate, &w->ffn_in, m->cfg.ffn_dim, true);
        PLAN(t->fc2, &w->fc2, 0, true);
        PLAN(t->ffn_norm, &w->ffn_norm, 0, false);
    }
#undef PLAN
    return n;
}

static void release_weights(rn_model *m) {
    rt_runtime *rt = &m->ctx->rt;
    rt_buffer *globals[] = {&m->embed, &m->embed_norm, &m->final_norm, &m->output, &m->angle, &m->decay};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++) rt_buffer_free(rt, globals[i]);
    for (int64_t l = 0; m->layers && l < m->cfg.layers; l++) {
        rn_layer_weights *w = &m->layers[l];
        rt_buffer *all[] = {&w->qkvg, &w->out_proj, &w->head_norm, &w->retention_norm,
                            &w->ffn_in, &w->fc2, &w->ffn_norm};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) rt_buffer_free(rt, all[i]);
    }
}

/* Refuses a model that cannot fit before anything is allocated: the total against the
 * device's memory and the largest buffer against its largest single allocation. */
static rn_status check_fits(rn_model *m, const slot *slots, size_t n) {
    rn_context *ctx = m->ctx;
    const rt_device_info *dev = &ctx->rt.dev.info;
    uint64_t sum = 0, largest = 0;
    const char *largest_name = "";
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = slot_bytes(m, &slots[i]);
        sum += bytes;
        if (bytes > largest) {
            largest = bytes;
            largest_name = slots[i].what;
        }
    }
    m->device_bytes = sum;
    if (largest > dev->max_alloc_bytes)
        return rn_fail(&ctx->err, RN_ERR_DEVICE_MEMORY,
                       "the %s need %.1f MiB in one buffer as %s; '%s' allows %.1f MiB per allocation",
                       largest_name, largest / 1048576.0, st_dtype_name(m->weights), dev->name,
                       dev->max_alloc_bytes / 1048576.0);
    if (ctx->rt.bytes_current + sum > dev->global_mem_bytes)
        return rn_fail(&ctx->err, RN_ERR_DEVICE_MEMORY,
                       "the weights need %.1f MiB as %s; '%s' has %.1f MiB, of which %.1f MiB are in use",
                       sum / 1048576.0, st_dtype_name(m->weights), dev->name,
                       dev->global_mem_bytes / 1048576.0, ctx->rt.bytes_current / 1048576.0);
    return RN_OK;
}

static rn_status allocate_slots(rn_model *m, const slot *slots, size_t n) {
    rn_status st = RN_OK;
    for (size_t i = 0; i < n && st == RN_OK; i++)
        st = rt_buffer_alloc(&m->ctx->rt, (size_t)slot_bytes(m, &slots[i]), slots[i].what, slots[i].buffer);
    return st;
}

/* The checkpoint's own precision: that of its matrices, F32 when they mix. */
static st_dtype file_type(const upload *plan, size_t n, bool *mixed) {
    *mixed = false;
    for (size_t i = 1; i < n; i++)
        if (plan[i].matrix && plan[i].tensor->dtype != plan[0].tensor->dtype) *mixed = true;
    return *mixed ? ST_F32 : plan[0].tensor->dtype;
}

/* A matrix of a quantized checkpoint, already in the device's scheme: its quants and scales
 * copied straight to their places in the buffer's [quants][scales] (rows from u->row0 on). */
static rn_status upload_quantized(rn_model *m, const upload *u, uint64_t *done, uint64_t total,
                                  const rn_model_options *opts) {
    rt_runtime *rt = &m->ctx->rt;
    const st_tensor *t = u->tensor;
    const st_dtype q = t->dtype;
    const uint64_t first = u->row0 * t->shape[1];   /* element offset in the buffer */
    const uint64_t elements = rn_storage_elements(q, u->buffer->bytes);
    const uint64_t qbytes = rn_quant_bytes(q, t->elements), sbytes = t->elements / 32 * 2;
    const uint64_t piece = UPLOAD_PIECE * sizeof(float);
    rn_status st = RN_OK;
    for (uint64_t at = 0; st == RN_OK && at < qbytes; at += piece) {
        uint64_t n = qbytes - at < piece ? qbytes - at : piece;
        st = rt_buffer_write(rt, u->buffer, (size_t)(rn_quant_bytes(q, first) + at),
                             (const unsigned char *)t->data + at, (size_t)n);
        *done += n;
        if (opts->progress) opts->progress(opts->progress_user, *done, total);
    }
    for (uint64_t at = 0; st == RN_OK && at < sbytes; at += piece) {
        uint64_t n = sbytes - at < piece ? sbytes - at : piece;
        st = rt_buffer_write(rt, u->buffer, (size_t)(rn_quant_bytes(q, elements) + first / 32 * 2 + at),
                             (const unsigned char *)t->scales + at, (size_t)n);
        *done += n;
        if (opts->progress) opts->progress(opts->progress_user, *done, total);
    }
    return st;
}

static rn_status upload_tensor(rn_model *m, const upload *u, void *staging, uint64_t *done,
                               uint64_t total, const rn_model_options *opts) {
    rt_runtime *rt = &m->ctx->rt;
    const st_tensor *t = u->tensor;
    if (t->scales) return upload_quantized(m, u, done, total, opts);
    const st_dtype to = u->matrix ? m->weights : ST_F32;
    const unsigned from_size = st_dtype_size(t->dtype);
    const uint64_t first = u->row0 * (t->elements / t->shape[0]);  /* element offset in the buffer */
    const unsigned block = rn_block_elements(to);
    if (first % block || t->elements % block)
        return rn_fail(&m->ctx->err, RN_ERR_UNSUPPORTED_CONFIG,
                       "tensor '%s' (%llu elements from element %llu of its buffer) is not whole blocks of %u of %s "
                       "storage", t->name, (unsigned long long)t->elements, (unsigned long long)first, block,
                       st_dtype_name(to));
    rn_status st = RN_OK;
    for (uint64_t at = 0; st == RN_OK && at < t->elements; at += UPLOAD_PIECE) {
        uint64_t count = t->elements - at < UPLOAD_PIECE ? t->elements - at : UPLOAD_PIECE;
        uint64_t bad = 0;
        if (!rn_convert(t->dtype, (const unsigned char *)t->data + at * from_size, count, to, staging, &bad))
            return rn_fail(&m->ctx->err, RN_ERR_LIMIT,
                           "tensor '%s': element %llu is too large for %s storage and would become "
                           "infinite (for Q8_0/Q4_0: its block's scale); load it with --weights bf16 or f32",
                           t->name, (unsigned long long)(at + bad), st_dtype_name(to));
        if (rn_block_elements(to) > 1) {
            /* A piece's quants and scales (rn_convert's layout) go to their places in the
             * buffer's: its quants, then the whole matrix's scales. Rows are whole blocks
             * (model_prepare) and so is a piece. */
            const uint64_t elements = rn_storage_elements(to, u->buffer->bytes), qpiece = rn_quant_bytes(to, count);
            st = rt_buffer_write(rt, u->buffer, (size_t)rn_quant_bytes(to, first + at), staging, (size_t)qpiece);
            if (st == RN_OK)
                st = rt_buffer_write(rt, u->buffer, (size_t)(rn_quant_bytes(to, elements) + (first + at) / 32 * 2),
                                     (unsigned char *)staging + qpiece, (size_t)(count / 32 * 2));
        } else {
            st = rt_buffer_write(rt, u->buffer, (size_t)rn_storage_bytes(to, first + at), staging,
                                 (size_t)rn_storage_bytes(to, count));
        }
        *done += count * from_size;
        if (opts->progress) opts->progress(opts->progress_user, *done, total);
    }
    return st;
}

/* The rotation angles and decays, from the checkpoint's buffers or the config. */
static rn_status upload_positions(rn_model *m, const rn_checkpoint *ckpt, float *staging) {
    rt_runtime *rt = &m->ctx->rt;
    const rn_config *c = &m->cfg;
    float *angle = staging, *decay = staging + c->key_head_dim;
    rn_checkpoint_rel_pos(ckpt, angle, decay);
    rn_status st = rt_buffer_alloc(rt, (size_t)c->key_head_dim * sizeof(float), "rotation angles", &m->angle);
    if (st == RN_OK) st = rt_buffer_write(rt, &m->angle, 0, angle, (size_t)c->key_head_dim * sizeof(float));
    if (st == RN_OK) st = rt_buffer_alloc(rt, (size_t)c->heads * sizeof(float), "decays", &m->decay);
    if (st == RN_OK) st = rt_buffer_write(rt, &m->decay, 0, decay, (size_t)c->heads * sizeof(float));
    return st;
}

static rn_status upload_all(rn_model *m, const rn_checkpoint *ckpt, upload *plan, size_t n,
                            const rn_model_options *opts) {
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < n; i++) total += plan[i].tensor->nbytes;
    void *staging = malloc((size_t)UPLOAD_PIECE * sizeof(float));
    if (!staging)
        return rn_fail(&m->ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for a %llu-element staging buffer",
                       (unsigned long long)UPLOAD_PIECE);
    rn_status st = RN_OK;
    for (size_t i = 0; i < n && st == RN_OK; i++) {
        if (rn_context_cancelled(m->ctx, "loading the model")) st = RN_ERR_CANCELLED;
        else st = upload_tensor(m, &plan[i], staging, &done, total, opts);
    }
    if (st == RN_OK) st = upload_positions(m, ckpt, staging);
    free(staging);
    return st;
}

/* A fingerprint that tells models apart without reading every weight: the config, and each
 * tensor's name, dtype, shape and a few bytes from its start, middle and end. */
static uint64_t fingerprint(const rn_config *c, const upload *plan, size_t n) {
    char shape[512];  /* printed, not hashed raw: a struct's padding bytes are unspecified */
    int len = snprintf(shape, sizeof shape, "%d %lld %lld %lld %lld %lld %lld %lld %lld %lld %d %.17g %d%d%d%d%d%d%d%d%d%d",
                       (int)c->family, (long long)c->embed_dim, (long long)c->value_embed_dim, (long long)c->heads,
                       (long long)c->ffn_dim, (long long)c->layers, (long long)c->vocab_size,
                       (long long)c->key_embed_dim, (long long)c->kv_heads, (long long)c->chunk_size,
                       (int)c->activation, c->layernorm_eps, c->no_scale_embedding, c->layernorm_embedding,
                       c->share_embed, c->normalize_before, c->deepnorm, c->rope_half, c->plain_retention,
                       c->head_norm_weight, c->output_gate, c->use_lm_decay);
    uint64_t h = rn_fnv1a(RN_FNV_OFFSET, shape, (size_t)len);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = plan[i].tensor;
        h = rn_fnv1a(h, t->name, strlen(t->name));
        h = rn_fnv1a(h, &t->dtype, sizeof t->dtype);
        h = rn_fnv1a(h, t->shape, sizeof t->shape);
        const unsigned char *data = t->data;
        /* a quantized checkpoint's matrices: the quants at data, the scales apart */
        const uint64_t bytes = t->scales ? rn_quant_bytes(t->dtype, t->elements) : t->nbytes;
        size_t piece = bytes < 64 ? (size_t)bytes : 64;
        const uint64_t at[3] = {0, bytes / 2 - (bytes / 2 >= piece ? piece / 2 : 0), bytes - piece};
        for (int j = 0; j < 3; j++) h = rn_fnv1a(h, data + at[j], piece);
        if (t->scales) h = rn_fnv1a(h, t->scales, t->elements / 32 * 2 < 64 ? (size_t)(t->elements / 32 * 2) : 64);
    }
    return h;
}

static const st_dtype device_types[] = {ST_F32 /* unused: RN_WEIGHTS_FILE */, ST_F32, ST_F16, ST_BF16,
                                        ST_Q8_0, ST_Q4_0};

/* Quantized matrices are blocks of 32 consecutive elements of the flat matrix (a block may span
 * two rows): a matrix must be whole blocks, and its rows a multiple of eight long (the kernels
 * read aligned groups of eight). Each tensor uploaded into it must start and end on a block
 * (upload_tensor). */
static rn_status check_blocks(rn_model *m, const slot *slots, size_t n) {
    const unsigned block = rn_block_elements(m->weights);
    for (size_t i = 0; i < n; i++)
        if (slots[i].matrix && block > 1 && ((slots[i].rows * slots[i].cols) % block != 0 || slots[i].cols % 8 != 0))
            return rn_fail(&m->ctx->err, RN_ERR_UNSUPPORTED_CONFIG,
                           "%s storage needs matrices of whole blocks of %u and rows a multiple of 8 long; the %s "
                           "is %llu x %llu",
                           st_dtype_name(m->weights), block, slots[i].what, (unsigned long long)slots[i].rows,
                           (unsigned long long)slots[i].cols);
    return RN_OK;
}

/* A model of this config with its kernels built and every buffer allocated (zero-filled), or
 * nothing at all on failure. */
static rn_status model_prepare(rn_context *ctx, const rn_config *cfg, st_dtype weights, rn_model **out) {
    *out = NULL;
    rn_model *m = calloc(1, sizeof *m);
    slot *slots = NULL;
    if (m) {
        m->ctx = ctx;
        m->cfg = *cfg;
        m->weights = weights;
        m->layers = calloc((size_t)cfg->layers, sizeof *m->layers);
        slots = malloc((MAX_GLOBAL_SLOTS + SLOTS_PER_LAYER * (size_t)cfg->layers) * sizeof *slots);
    }
    if (!m || !m->layers || !slots) {
        if (m) free(m->layers);
        free(m);
        free(slots);
        return rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for the model description");
    }
    size_t n = plan_slots(m, slots);
    rn_status st = check_blocks(m, slots, n);
    if (st == RN_OK) st = check_fits(m, slots, n);
    if (st == RN_OK) st = rn_kernels_build(&ctx->rt, ctx->tuning, cfg->key_head_dim, cfg->value_head_dim, weights, &m->kernels);
    if (st == RN_OK) st = allocate_slots(m, slots, n);
    for (size_t i = 0; i < n; i++) m->parameters += slots[i].rows * slots[i].cols;
    free(slots);
    if (st != RN_OK) {
        release_weights(m);
        rn_kernels_release(&m->kernels);
        free(m->layers);
        free(m);
        return st;
    }
    *out = m;
    return RN_OK;
}

static void rn_model_free_locked(rn_model *m) {
    if (!m) return;
    release_weights(m);
    rn_kernels_release(&m->kernels);
    free(m->layers);
    free(m);
}

static bool valid_weights(rn_context *ctx, const rn_model_options *opts) {
    if ((int)opts->weights >= RN_WEIGHTS_FILE && opts->weights <= RN_WEIGHTS_Q4) return true;
    rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT, "unknown weight storage %d", (int)opts->weights);
    return false;
}

static rn_status rn_model_load_locked(rn_context *ctx, const char *dir, const rn_model_options *opts,
                        rn_model **out) {
    if (!ctx || !dir || !out) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    rn_model_options defaults;
    if (!opts) {
        rn_model_options_default(&defaults);
        opts = &defaults;
    }
    if (!valid_weights(ctx, opts)) return RN_ERR_INVALID_ARGUMENT;
    rn_checkpoint *ckpt = NULL;
    rn_status st = rn_checkpoint_open(dir, &ckpt, &ctx->err);
    if (st != RN_OK) return st;

    rn_model *m = NULL;
    const rn_config *c = &ckpt->config;
    upload *plan = malloc((size_t)(4 + 11 * c->layers) * sizeof *plan);
    if (!plan) {
        st = rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for the model description");
        goto fail;
    }
    /* The weight type comes from the tensors before the model exists: plan against a shell. */
    rn_model shell = {.ctx = ctx, .cfg = *c};
    rn_layer_weights *shell_layers = calloc((size_t)c->layers, sizeof *shell_layers);
    if (!shell_layers) {
        st = rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for the model description");
        goto fail;
    }
    shell.layers = shell_layers;
    size_t n = plan_uploads(ckpt, &shell, plan);
    free(shell_layers);
    bool mixed;
    st_dtype own = file_type(plan, n, &mixed);
    if (ckpt->quantized && opts->weights != RN_WEIGHTS_FILE && device_types[opts->weights] != ckpt->quantization) {
        st = rn_fail(&ctx->err, RN_ERR_UNSUPPORTED_CONFIG,
                     "the checkpoint is quantized (%s) and loads only as such: %s weights would need its original "
                     "(load it without a weights setting, or quantize the original checkpoint)",
                     st_dtype_name(ckpt->quantization), st_dtype_name(device_types[opts->weights]));
        goto fail;
    }
    st = model_prepare(ctx, c, opts->weights == RN_WEIGHTS_FILE ? own : device_types[opts->weights], &m);
    if (st != RN_OK) goto fail;
    m->file_dtype = mixed ? "mixed" : st_dtype_name(own);
    n = plan_uploads(ckpt, m, plan);
    st = upload_all(m, ckpt, plan, n, opts);
    if (st == RN_OK) st = rt_finish(&ctx->rt);
    if (st != RN_OK) goto fail;

    m->parameters = ckpt->parameters;
    m->file_bytes = ckpt->tensor_bytes;
    m->fingerprint = fingerprint(&m->cfg, plan, n);
    free(plan);
    rn_checkpoint_close(ckpt);
    *out = m;
    return RN_OK;

fail:
    rn_model_free_locked(m);
    free(plan);
    rn_error_prefix(&ctx->err, "loading '%s'", dir);
    rn_checkpoint_close(ckpt);
    return st;
}

/* Random weights on the device: matrices uniform with unit output variance for unit inputs
 * (|w| < sqrt(3 / cols)), norm weights 1. Nothing crosses the bus but the angles and decays. */
static rn_status fill_random(rn_model *m, uint64_t seed) {
    rt_runtime *rt = &m->ctx->rt;
    slot *slots = malloc((MAX_GLOBAL_SLOTS + SLOTS_PER_LAYER * (size_t)m->cfg.layers) * sizeof *slots);
    if (!slots) return rn_fail(&m->ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for the model description");
    size_t n = plan_slots(m, slots);
    rn_status st = RN_OK;
    const float one = 1.0f;
    for (size_t i = 0; i < n && st == RN_OK; i++) {
        if (slots[i].matrix)
            st = rn_op_fill_uniform(rt, &m->kernels, slots[i].buffer, slots[i].rows * slots[i].cols,
                                    seed + i * 0x632be59bd9b4e019ull, sqrtf(3.0f / (float)slots[i].cols));
        else
            st = rt_buffer_fill(rt, slots[i].buffer, &one, sizeof one);
    }
    free(slots);
    float positions[2 * 4096];
    if (st == RN_OK && m->cfg.key_head_dim + m->cfg.heads > 2 * 4096)
        st = rn_fail(&m->ctx->err, RN_ERR_LIMIT, "%lld key dimensions and %lld heads are more than a random model takes",
                     (long long)m->cfg.key_head_dim, (long long)m->cfg.heads);
    rn_checkpoint none = {.config = m->cfg};  /* no stored angle or decay buffers: from the config */
    if (st == RN_OK) st = upload_positions(m, &none, positions);
    return st;
}

static rn_status rn_model_random_locked(rn_context *ctx, const char *config_path, const rn_model_options *opts,
                                        uint64_t seed, rn_model **out) {
    if (!ctx || !config_path || !out) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    rn_model_options defaults;
    if (!opts) {
        rn_model_options_default(&defaults);
        opts = &defaults;
    }
    if (!valid_weights(ctx, opts)) return RN_ERR_INVALID_ARGUMENT;
    rn_config cfg;
    rn_status st = rn_config_load(config_path, &cfg, &ctx->err);
    rn_model *m = NULL;
    if (st == RN_OK)
        st = model_prepare(ctx, &cfg, opts->weights == RN_WEIGHTS_FILE ? ST_F16 : device_types[opts->weights], &m);
    if (st == RN_OK) st = fill_random(m, seed);
    if (st == RN_OK) st = rt_finish(&ctx->rt);
    if (st != RN_OK) {
        rn_model_free_locked(m);
        rn_error_prefix(&ctx->err, "random model of '%s'", config_path);
        return st;
    }
    m->file_dtype = "random";
    m->fingerprint = fingerprint(&m->cfg, NULL, 0) ^ rn_fnv1a(RN_FNV_OFFSET, &seed, sizeof seed);
    *out = m;
    return RN_OK;
}

static const char *family_name(rn_family f) {
    return f == RN_FAMILY_FLA ? "fla" : f == RN_FAMILY_SYNCDOTH ? "syncdoth" : "torchscale";
}

static rn_status rn_model_info_get_locked(const rn_model *m, rn_model_info *info) {
    if (!m || !info) return RN_ERR_INVALID_ARGUMENT;
    const rn_config *c = &m->cfg;
    *info = (rn_model_info){
        .family = family_name(c->family),
        .embed_dim = c->embed_dim,
        .value_embed_dim = c->value_embed_dim,
        .heads = c->heads,
        .ffn_dim = c->ffn_dim,
        .layers = c->layers,
        .vocab_size = c->vocab_size,
        .chunk_size = c->chunk_size,
        .activation = c->activation,
        .layernorm_eps = c->layernorm_eps,
        .scale_embedding = !c->no_scale_embedding,
        .layernorm_embedding = c->layernorm_embedding,
        .tied_embeddings = c->share_embed,
        .normalize_before = c->normalize_before,
        .deepnorm = c->deepnorm,
        .parameters = m->parameters,
        .file_bytes = m->file_bytes,
        .device_bytes = m->device_bytes,
        .file_dtype = m->file_dtype,
        .device_dtype = st_dtype_name(m->weights),
        .kv_heads = c->kv_heads,
        .key_embed_dim = c->key_embed_dim,
    };
    return RN_OK;
}

/* ---- the public calls: each holds the context's lock throughout (engine.h) ------------------ */

rn_status rn_model_load(rn_context *ctx, const char *dir, const rn_model_options *opts,
                        rn_model **out) {
    if (!ctx) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_model_load_locked(ctx, dir, opts, out));
}

rn_status rn_model_random(rn_context *ctx, const char *config_path, const rn_model_options *opts,
                          uint64_t seed, rn_model **out) {
    if (!ctx) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_model_random_locked(ctx, config_path, opts, seed, out));
}

void rn_model_free(rn_model *m) {
    if (!m) return;
    rn_context *ctx = m->ctx;
    rn_context_lock(ctx);
    rn_model_free_locked(m);
    rn_context_unlock(ctx, RN_OK);
}

rn_status rn_model_info_get(const rn_model *m, rn_model_info *info) {
    if (!m) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(m->ctx);
    return rn_context_unlock(m->ctx, rn_model_info_get_locked(m, info));
}
