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

/* One device buffer or matrix of the model: its shape, and whether it is a matrix (stored in the
 * model's weight type, perhaps in pieces) or a vector (fp32, one buffer). */
typedef struct slot {
    rt_buffer *buffer;                 /* a vector */
    rn_matrix *matrix;                 /* a matrix */
    uint64_t rows, cols;
    bool halves;                       /* a GLU pair (matrix.h) */
    bool rotated;                      /* its first rows are q and k, rotated in pairs within a head */
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
#define VECTOR(buf, cols_, name) out[n++] = (slot){.buffer = (buf), .rows = 1, .cols = (cols_), .what = (name)}
#define MATRIX(mat, r, cols_, ...) out[n++] = (slot){.matrix = (mat), .rows = (r), .cols = (cols_), __VA_ARGS__}
    MATRIX(&m->embed, V, D, .what = "token embedding");
    if (c->layernorm_embedding) VECTOR(&m->embed_norm, D, "embedding norm");
    if (c->normalize_before) VECTOR(&m->final_norm, D, "final norm");
    if (!c->share_embed) MATRIX(&m->output, V, D, .what = "output projection");
    for (int64_t l = 0; l < c->layers; l++) {
        rn_layer_weights *w = &m->layers[l];
        MATRIX(&w->qkvg, (uint64_t)rn_qkvg_layout(c).total, D, .rotated = true, .what = "stacked q/k/v/g projections");
        MATRIX(&w->out_proj, D, Dv, .what = "retention output projection");
        if (c->head_norm_weight) VECTOR(&w->head_norm, (uint64_t)c->value_head_dim, "head norm");
        VECTOR(&w->retention_norm, D, "retention norm");
        MATRIX(&w->ffn_in, 2 * F, D, .halves = true, .what = "stacked FFN fc1/gate");
        MATRIX(&w->fc2, D, F, .what = "FFN fc2");
        VECTOR(&w->ffn_norm, D, "FFN norm");
    }
#undef VECTOR
#undef MATRIX
    return n;
}

static uint64_t slot_bytes(const rn_model *m, const slot *s) {
    return rn_storage_bytes(s->matrix ? m->weights : ST_F32, s->rows * s->cols);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Where a matrix may be cut into pieces: on multiples of 16 rows (even rows for the project
 * kernel's pairs, whole row groups of the matrix-engine GEMMs' loads), of a head where rows are
 * rotated in pairs, and of whole blocks for the quantized types. */
static int64_t piece_granule(const rn_model *m, const slot *s) {
    uint64_t g = 16;
    const uint64_t dk = (uint64_t)m->cfg.key_head_dim, block = rn_block_elements(m->weights);
    if (s->rotated) g = g / gcd_u64(g, dk) * dk;
    if (block > 1) {
        const uint64_t rows_per_block = block / gcd_u64(block, s->cols);
        g = g / gcd_u64(g, rows_per_block) * rows_per_block;
    }
    return (int64_t)g;
}

/* A tensor of the checkpoint and where it goes: a vector buffer, or a matrix from a row on. */
typedef struct upload {
    const st_tensor *tensor;
    rt_buffer *buffer;
    rn_matrix *matrix;
    uint64_t row0;
} upload;

static size_t plan_uploads(const rn_checkpoint *ckpt, rn_model *m, upload *plan) {
    const rn_qkvg_rows at = rn_qkvg_layout(&m->cfg);
    size_t n = 0;
#define VECTOR(t, buf) \
    if (t) plan[n++] = (upload){.tensor = (t), .buffer = (buf)}
#define MATRIX(t, mat, row) \
    if (t) plan[n++] = (upload){.tensor = (t), .matrix = (mat), .row0 = (uint64_t)(row)}
    MATRIX(ckpt->embed, &m->embed, 0);
    VECTOR(ckpt->embed_norm, &m->embed_norm);
    VECTOR(ckpt->final_norm, &m->final_norm);
    if (!m->cfg.share_embed) MATRIX(ckpt->output, &m->output, 0);
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        const rn_layer_tensors *t = &ckpt->layers[l];
        rn_layer_weights *w = &m->layers[l];
        MATRIX(t->q_proj, &w->qkvg, at.q);
        MATRIX(t->k_proj, &w->qkvg, at.k);
        MATRIX(t->v_proj, &w->qkvg, at.v);
        MATRIX(t->g_proj, &w->qkvg, at.g);
        MATRIX(t->out_proj, &w->out_proj, 0);
        VECTOR(t->head_norm, &w->head_norm);
        VECTOR(t->retention_norm, &w->retention_norm);
        MATRIX(t->fc1, &w->ffn_in, 0);
        MATRIX(t->gate, &w->ffn_in, m->cfg.ffn_dim);
        MATRIX(t->fc2, &w->fc2, 0);
        VECTOR(t->ffn_norm, &w->ffn_norm);
    }
#undef VECTOR
#undef MATRIX
    return n;
}

static void release_weights(rn_model *m) {
    rt_runtime *rt = &m->ctx->rt;
    rt_buffer *globals[] = {&m->embed_norm, &m->final_norm, &m->angle, &m->decay};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++) rt_buffer_free(rt, globals[i]);
    rn_matrix_free(rt, &m->embed);
    rn_matrix_free(rt, &m->output);
    for (int64_t l = 0; m->layers && l < m->cfg.layers; l++) {
        rn_layer_weights *w = &m->layers[l];
        rt_buffer *vectors[] = {&w->head_norm, &w->retention_norm, &w->ffn_norm};
        for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) rt_buffer_free(rt, vectors[i]);
        rn_matrix *matrices[] = {&w->qkvg, &w->out_proj, &w->ffn_in, &w->fc2};
        for (size_t i = 0; i < sizeof matrices / sizeof matrices[0]; i++) rn_matrix_free(rt, matrices[i]);
    }
}

/* Refuses a model that cannot fit before anything is allocated: the total against the
 * device's memory; a matrix larger than the device's largest single allocation is planned in
 * pieces that each fit (refused only when a piece cannot be made small enough). */
static rn_status check_fits(rn_model *m, const slot *slots, size_t n) {
    rn_context *ctx = m->ctx;
    const rt_device_info *dev = &ctx->rt.dev.info;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        const slot *s = &slots[i];
        sum += slot_bytes(m, s);
        rn_status st = RN_OK;
        if (s->matrix)
            st = rn_matrix_plan(s->matrix, s->what, (int64_t)s->rows, (int64_t)s->cols, s->halves, m->weights,
                                dev->max_alloc_bytes, piece_granule(m, s), &ctx->err);
        else if (slot_bytes(m, s) > dev->max_alloc_bytes)
            st = rn_fail(&ctx->err, RN_ERR_DEVICE_MEMORY, "the %s needs %.1f MiB in one buffer; '%s' allows %.1f MiB per allocation",
                         s->what, slot_bytes(m, s) / 1048576.0, dev->name, dev->max_alloc_bytes / 1048576.0);
        if (st != RN_OK) return st;
    }
    m->device_bytes = sum;
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
        st = slots[i].matrix ? rn_matrix_alloc(&m->ctx->rt, slots[i].matrix, m->weights)
                             : rt_buffer_alloc(&m->ctx->rt, (size_t)slot_bytes(m, &slots[i]), slots[i].what,
                                               slots[i].buffer);
    return st;
}

/* The checkpoint's own precision: that of its matrices, F32 when they mix. */
static st_dtype file_type(const upload *plan, size_t n, bool *mixed) {
    *mixed = false;
    for (size_t i = 1; i < n; i++)
        if (plan[i].matrix && plan[i].tensor->dtype != plan[0].tensor->dtype) *mixed = true;
    return *mixed ? ST_F32 : plan[0].tensor->dtype;
}

/* Elements [from, from + count) of a quantized checkpoint's matrix, already in the device's
 * scheme: its quants and scales copied straight to their places in the buffer's [quants][scales]
 * (from element `first` on). Whole blocks (upload_tensor checks). */
static rn_status upload_quantized(rn_model *m, const st_tensor *t, uint64_t from, uint64_t count, rt_buffer *buffer,
                                  uint64_t first, uint64_t *done, uint64_t total, const rn_model_options *opts) {
    rt_runtime *rt = &m->ctx->rt;
    const st_dtype q = t->dtype;
    const uint64_t elements = rn_storage_elements(q, buffer->bytes);
    const uint64_t qbytes = rn_quant_bytes(q, count), sbytes = count / 32 * 2;
    const uint64_t qfrom = rn_quant_bytes(q, from), sfrom = from / 32 * 2;
    const uint64_t piece = UPLOAD_PIECE * sizeof(float);
    rn_status st = RN_OK;
    for (uint64_t at = 0; st == RN_OK && at < qbytes; at += piece) {
        uint64_t n = qbytes - at < piece ? qbytes - at : piece;
        st = rt_buffer_write(rt, buffer, (size_t)(rn_quant_bytes(q, first) + at),
                             (const unsigned char *)t->data + qfrom + at, (size_t)n);
        *done += n;
        if (opts->progress) opts->progress(opts->progress_user, *done, total);
    }
    for (uint64_t at = 0; st == RN_OK && at < sbytes; at += piece) {
        uint64_t n = sbytes - at < piece ? sbytes - at : piece;
        st = rt_buffer_write(rt, buffer, (size_t)(rn_quant_bytes(q, elements) + first / 32 * 2 + at),
                             (const unsigned char *)t->scales + sfrom + at, (size_t)n);
        *done += n;
        if (opts->progress) opts->progress(opts->progress_user, *done, total);
    }
    return st;
}

/* Elements [from, from + count) of tensor t, converted to `to`, into `buffer` from its element
 * `first`. */
static rn_status upload_span(rn_model *m, const st_tensor *t, uint64_t from, uint64_t count, rt_buffer *buffer,
                             uint64_t first, st_dtype to, void *staging, uint64_t *done, uint64_t total,
                             const rn_model_options *opts) {
    rt_runtime *rt = &m->ctx->rt;
    if (t->scales) return upload_quantized(m, t, from, count, buffer, first, done, total, opts);
    const unsigned from_size = st_dtype_size(t->dtype);
    rn_status st = RN_OK;
    for (uint64_t at = 0; st == RN_OK && at < count; at += UPLOAD_PIECE) {
        uint64_t n = count - at < UPLOAD_PIECE ? count - at : UPLOAD_PIECE;
        uint64_t bad = 0;
        if (!rn_convert(t->dtype, (const unsigned char *)t->data + (from + at) * from_size, n, to, staging, &bad))
            return rn_fail(&m->ctx->err, RN_ERR_LIMIT,
                           "tensor '%s': element %llu is too large for %s storage and would become "
                           "infinite (for Q8_0/Q4_0: its block's scale); load it with --weights bf16 or f32",
                           t->name, (unsigned long long)(from + at + bad), st_dtype_name(to));
        if (rn_block_elements(to) > 1) {
            /* A piece's quants and scales (rn_convert's layout) go to their places in the
             * buffer's: its quants, then the whole buffer's scales. */
            const uint64_t elements = rn_storage_elements(to, buffer->bytes), qpiece = rn_quant_bytes(to, n);
            st = rt_buffer_write(rt, buffer, (size_t)rn_quant_bytes(to, first + at), staging, (size_t)qpiece);
            if (st == RN_OK)
                st = rt_buffer_write(rt, buffer, (size_t)(rn_quant_bytes(to, elements) + (first + at) / 32 * 2),
                                     (unsigned char *)staging + qpiece, (size_t)(n / 32 * 2));
        } else {
            st = rt_buffer_write(rt, buffer, (size_t)rn_storage_bytes(to, first + at), staging,
                                 (size_t)rn_storage_bytes(to, n));
        }
        *done += n * from_size;
        if (opts->progress) opts->progress(opts->progress_user, *done, total);
    }
    return st;
}

/* A tensor to its place: a vector whole, a matrix's rows run by run (matrix.h). */
static rn_status upload_tensor(rn_model *m, const upload *u, void *staging, uint64_t *done,
                               uint64_t total, const rn_model_options *opts) {
    const st_tensor *t = u->tensor;
    if (!u->matrix) return upload_span(m, t, 0, t->elements, u->buffer, 0, ST_F32, staging, done, total, opts);
    const uint64_t cols = (uint64_t)u->matrix->cols, end = u->row0 + t->elements / cols;
    const unsigned block = rn_block_elements(m->weights);
    for (uint64_t row = u->row0; row < end;) {
        const rn_run run = rn_matrix_run(u->matrix, (int64_t)row, (int64_t)end);
        const uint64_t from = (row - u->row0) * cols, count = (uint64_t)run.rows * cols, first = (uint64_t)run.at * cols;
        if (first % block || from % block || count % block)
            return rn_fail(&m->ctx->err, RN_ERR_UNSUPPORTED_CONFIG,
                           "tensor '%s' (%llu elements from element %llu of the %s) is not whole blocks of %u of %s "
                           "storage", t->name, (unsigned long long)t->elements, (unsigned long long)(u->row0 * cols),
                           u->matrix->what, block, st_dtype_name(m->weights));
        rn_status st = upload_span(m, t, from, count, run.buffer, first, m->weights, staging, done, total, opts);
        if (st != RN_OK) return st;
        row += (uint64_t)run.rows;
    }
    return RN_OK;
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
            st = rn_matrix_fill(rt, &m->kernels, slots[i].matrix, seed + i * 0x632be59bd9b4e019ull,
                                sqrtf(3.0f / (float)slots[i].cols));
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
        .batch_work_group = m->kernels.batch ? (int)m->kernels.batch->wg : 0,
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
