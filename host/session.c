/*
 * session.c: forward passes. A session owns the recurrent state of every layer; a prompt is
 * prefilled in the parallel or chunkwise form (which leaves that state behind) or fed token by
 * token in the recurrent form, and decoding continues recurrently.
 *
 * One layer, pre-norm (decoder_normalize_before), alpha = (2L)^(1/4) with deepnorm, else 1:
 *     x = alpha x + out_proj(silu(g) * groupnorm(retention(theta(q), theta(k) / sqrt(dk), v)))
 *           where q, k, v, g are projections of rmsnorm(x)
 *     x = alpha x + fc2(act(fc1 h) * gate h),  h = rmsnorm(x)
 * Post-norm applies each rmsnorm after its residual add instead. Nothing waits on the device
 * inside a pass; the logits are read at the end.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define RN_MAX_PROMPT (1 << 20)

/* ---- workspaces ---------------------------------------------------------------------------- */

static void workspace_free(rt_runtime *rt, rn_workspace *ws) {
    rt_buffer *all[] = {&ws->tokens, &ws->positions, &ws->scale_in, &ws->x, &ws->h, &ws->q, &ws->k, &ws->v, &ws->g, &ws->o,
                        &ws->a, &ws->b, &ws->logits, &ws->step_done, &ws->choice,
                        &ws->argmax_winners, &ws->argmax_done, &ws->widened, &ws->stacked, &ws->partial, &ws->x_half,
                        &ws->retention.chunk_states, &ws->retention.sigma, &ws->retention.scores, &ws->retention.keys};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) rt_buffer_free(rt, all[i]);
    ws->rows = 0;
}

/* Prompts (and batches) of up to k->project_rows rows take the project kernel, which reads
 * each weight once for all of them; longer ones CLBlast's SGEMM, which needs rows to fill its
 * tiles, except on devices too small for CLBlast's work-groups, where the project kernel takes
 * every size. */
static bool use_project(const rn_kernels *k, int64_t rows) {
    return rows <= k->project_rows || !k->gemm;
}

/* Whether every product of a layer and the logits can run on the matrix engine (gemm_mma built
 * for this precision, device and weight type; inner dimensions of whole 16-byte pieces): then
 * prompts need neither widened weights nor a stacked output. */
static bool mma_everywhere(const rn_model *m) {
    const rn_config *c = &m->cfg;
    return rn_mma_takes(&m->kernels, c->embed_dim) && rn_mma_takes(&m->kernels, c->value_embed_dim) &&
           rn_mma_takes(&m->kernels, c->ffn_dim);
}

/* Batches and short prompts of rows from k->mma_rows_from to RN_MMA_SMALL_ROWS take the small
 * matrix-engine GEMM (split K, few rows) where it is built and every product fits it: the same
 * layer as the project kernel's (layer_few_rows), each product followed by a reduction that
 * applies the project kernel's epilogue, and the norms as their own kernel. */
static bool mma_rows(const rn_model *m, int64_t rows) {
    const rn_kernels *k = &m->kernels;
    return k->gemm_mma_small && mma_everywhere(m) && rows >= k->mma_rows_from && rows <= RN_MMA_SMALL_ROWS;
}

/* Whether a pass of `rows` rows runs layer_few_rows (else layer_prompt). */
static bool few_rows(const rn_model *m, int64_t rows) {
    return mma_rows(m, rows) || use_project(&m->kernels, rows);
}

/* The bytes of the small GEMM's partial sums for up to `rows` rows of every product of a layer
 * and `logit_rows` rows of logits, as far as they take it. */
static uint64_t partial_bytes(const rn_model *m, int64_t rows, int64_t logit_rows) {
    const rn_config *c = &m->cfg;
    const rn_kernels *k = &m->kernels;
    uint64_t most = 0;
    if (rows > RN_MMA_SMALL_ROWS) rows = RN_MMA_SMALL_ROWS;
    if (logit_rows > RN_MMA_SMALL_ROWS) logit_rows = RN_MMA_SMALL_ROWS;
    if (!mma_rows(m, rows) && !mma_rows(m, logit_rows)) return 0;
    const int64_t D = c->embed_dim, F = c->ffn_dim;
    const int64_t shapes[][2] = {{D, rn_qkvg_layout(c).total}, {c->value_embed_dim, D}, {D, 2 * F}, {F, D}};
    for (size_t i = 0; i < 4 && mma_rows(m, rows); i++) {
        const uint64_t b = rn_mma_partial_bytes(k, rows, shapes[i][0], shapes[i][1]);
        if (b > most) most = b;
    }
    if (mma_rows(m, logit_rows)) {
        const uint64_t b = rn_mma_partial_bytes(k, logit_rows, D, c->vocab_size);
        if (b > most) most = b;
    }
    return most;
}

/* A stacked product's output up to this size is one SGEMM (workspace_init). */
#define STACKED_MAX ((uint64_t)1 << 30)

/* Scores scratch up to this size lets a prompt's retention run as batched GEMMs. */
#define RETENTION_SCORES_MAX ((uint64_t)1 << 30)

/* A workspace for `rows` tokens: a prompt in `mode` (continuing the session's state when
 * has_state), or one token of up to `rows` sequences in the recurrent form; `logit_rows` of
 * them get logits (the last ones). */
static rn_status workspace_init(rn_model *m, int64_t rows, rn_mode mode, int64_t chunk,
                                int64_t logit_rows, bool has_state, rn_workspace *ws) {
    rt_runtime *rt = &m->ctx->rt;
    const rn_config *c = &m->cfg;
    memset(ws, 0, sizeof *ws);
    ws->rows = rows;
    /* A prompt's retention runs as batched GEMMs where CLBlast does and every chunk's scores
     * fit in a bounded scratch (a long prompt in the parallel form may not: the kernels then). */
    rn_retention_sizes z = {0};
    if (mode != RN_MODE_RECURRENT && !few_rows(m, rows)) {
        z = rn_retention_scratch_size(mode, true, has_state, rows, chunk, c->heads, c->key_head_dim,
                                      c->value_head_dim);
        ws->retention_gemm = z.scores <= RETENTION_SCORES_MAX && z.scores <= rt->dev.info.max_alloc_bytes;
    }
    if (!ws->retention_gemm)
        z = rn_retention_scratch_size(mode, false, has_state, rows, chunk, c->heads, c->key_head_dim,
                                      c->value_head_dim);
    const size_t f = sizeof(float), r = (size_t)rows;
    const size_t kv = (size_t)c->kv_heads;
    /* A prompt's stacked matrices (q/k/v/g, fc1/gate) are one SGEMM each when the output fits
     * a bounded scratch: larger products keep CLBlast closer to its peak than four or two
     * smaller ones, and its per-call copies of x happen once. Otherwise one SGEMM per matrix. */
    const bool sgemm = !use_project(&m->kernels, rows) && !mma_everywhere(m);
    const uint64_t stacked_cols = (uint64_t)(rn_qkvg_layout(c).total > 2 * c->ffn_dim ? rn_qkvg_layout(c).total
                                                                                      : 2 * c->ffn_dim);
    const uint64_t stacked_bytes = r * stacked_cols * f;
    const uint64_t stacked = sgemm && stacked_bytes <= STACKED_MAX && stacked_bytes <= rt->dev.info.max_alloc_bytes
                                 ? stacked_bytes
                                 : 0;
    /* SGEMM needs fp32 operands: half-precision and quantized weights are widened, one matrix
     * (or stacked matrix, or piece) at a time, or as many rows as one buffer takes. */
    uint64_t widened = 0;
    if (m->weights != ST_F32 && sgemm) {
        const rn_matrix *all[] = {&m->layers[0].qkvg, &m->layers[0].out_proj, &m->layers[0].ffn_in,
                                  &m->layers[0].fc2, rn_model_output(m)};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (rn_matrix_largest_piece(all[i]) > widened) widened = rn_matrix_largest_piece(all[i]);
        widened *= f;
        if (widened > rt->dev.info.max_alloc_bytes) widened = rt->dev.info.max_alloc_bytes;
    }
    /* A prompt's products on the matrix engine read their activations rounded to half, once
     * per product input, from x_half: as wide as the widest input that the engine takes. */
    int64_t engine_cols = 0;
    if (!few_rows(m, rows)) {
        const int64_t inputs[] = {c->embed_dim, c->value_embed_dim, c->ffn_dim};
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
            if (rn_mma_takes(&m->kernels, inputs[i]) && inputs[i] > engine_cols) engine_cols = inputs[i];
    }
    /* Decoding's kernels that count their work-groups (retention_step's norm, argmax_rows' slices),
     * where the device orders writes across groups (rn_kernels.groups_hand_off). */
    const bool counted = mode == RN_MODE_RECURRENT && m->kernels.groups_hand_off;
    struct { rt_buffer *buf; uint64_t bytes; const char *what; } plan[] = {
        {&ws->tokens, r * sizeof(cl_int), "token ids"},
        {&ws->positions, mode == RN_MODE_RECURRENT ? r * sizeof(cl_int) : 0, "row positions"},
        {&ws->scale_in, has_state ? (size_t)c->heads * f : 0, "entering scale"},
        {&ws->x, r * (size_t)c->embed_dim * f, "residual stream"},
        {&ws->h, r * (size_t)c->embed_dim * f, "normed activations"},
        {&ws->q, r * (size_t)c->key_embed_dim * f, "queries"},
        {&ws->k, r * kv * (size_t)c->key_head_dim * f, "keys"},
        {&ws->v, r * kv * (size_t)c->value_head_dim * f, "values"},
        {&ws->g, c->output_gate ? r * (size_t)c->value_embed_dim * f : 0, "gates"},
        {&ws->o, r * (size_t)c->value_embed_dim * f, "retention output"},
        {&ws->a, r * (size_t)c->ffn_dim * f, "FFN activations"},
        {&ws->b, r * (size_t)c->ffn_dim * f, "FFN gates"},
        {&ws->logits, (size_t)logit_rows * (size_t)c->vocab_size * f, "logits"},
        {&ws->step_done, counted ? r * (size_t)c->heads * sizeof(cl_int) : 0, "step counters"},
        {&ws->choice, mode == RN_MODE_RECURRENT ? r * 2 * sizeof(cl_int) : 0, "greedy choices"},
        {&ws->argmax_winners, counted ? r * RN_ARGMAX_MAX_PARTS * 3 * sizeof(cl_int) : 0, "greedy slices"},
        {&ws->argmax_done, counted ? r * sizeof(cl_int) : 0, "greedy slice counters"},
        {&ws->widened, widened, "widened weights"},
        {&ws->stacked, stacked, "stacked products"},
        {&ws->partial, partial_bytes(m, rows, logit_rows), "partial products"},
        {&ws->x_half, r * (size_t)engine_cols * sizeof(cl_ushort), "activations in half"},
        {&ws->retention.chunk_states, z.chunk_states, "chunk states"},
        {&ws->retention.sigma, z.sigma, "chunk scales"},
        {&ws->retention.scores, z.scores, "retention scores"},
        {&ws->retention.keys, z.keys, "weighted keys"},
    };
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        rn_status st = rt_buffer_alloc(rt, (size_t)plan[i].bytes, plan[i].what, plan[i].buf);
        if (st != RN_OK) {
            workspace_free(rt, ws);
            return st;
        }
    }
    return RN_OK;
}

/* ---- sessions ------------------------------------------------------------------------------ */

void rn_session_free_locked(rn_session *s) {
    if (!s) return;
    rt_runtime *rt = &s->model->ctx->rt;
    for (int64_t l = 0; l < s->model->cfg.layers; l++) {
        if (s->state) rt_buffer_free(rt, &s->state[l]);
        if (s->scale) {
            rt_buffer_free(rt, &s->scale[2 * l]);
            rt_buffer_free(rt, &s->scale[2 * l + 1]);
        }
    }
    workspace_free(rt, &s->step);
    free(s->state);
    free(s->scale);
    free(s->last_logits);
    free(s->logits_on_device);
    free(s->step_choice);
    free(s->positions);
    free(s->step_input);
    free(s->recent);
    free(s);
}

#define MAX_BATCH 1024

static rn_status session_init(rn_model *m, int64_t batch, rn_session **out) {
    if (!m || !out) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (batch < 1 || batch > MAX_BATCH)
        return rn_fail(&m->ctx->err, RN_ERR_INVALID_ARGUMENT, "a batch of %lld sequences is outside [1, %d]",
                       (long long)batch, MAX_BATCH);
    const rn_config *c = &m->cfg;
    rn_session *s = calloc(1, sizeof *s);
    if (!s) return RN_ERR_OUT_OF_HOST_MEMORY;
    s->model = m;
    s->batch = batch;
    s->state = calloc((size_t)c->layers, sizeof *s->state);
    s->scale = calloc(2 * (size_t)c->layers, sizeof *s->scale);
    s->last_logits = calloc((size_t)(batch * c->vocab_size), sizeof *s->last_logits);
    s->logits_on_device = calloc((size_t)batch, sizeof *s->logits_on_device);
    s->step_choice = calloc(2 * (size_t)batch, sizeof *s->step_choice);
    s->positions = calloc((size_t)batch, sizeof *s->positions);
    s->step_input = calloc(2 * (size_t)batch, sizeof *s->step_input);
    s->recent = calloc((size_t)batch * RN_RECENT_TOKENS, sizeof *s->recent);
    if (!s->state || !s->scale || !s->last_logits || !s->logits_on_device || !s->step_choice || !s->positions ||
        !s->step_input || !s->recent) {
        rn_session_free_locked(s);
        return rn_fail(&m->ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for a session");
    }
    rt_runtime *rt = &m->ctx->rt;
    size_t state_bytes = (size_t)(batch * c->heads * c->key_head_dim * c->value_head_dim) * sizeof(float);
    size_t scale_bytes = (size_t)(batch * c->heads) * sizeof(float);
    rn_status st = RN_OK;
    for (int64_t l = 0; l < c->layers && st == RN_OK; l++) {
        st = rt_buffer_alloc(rt, state_bytes, "recurrent state", &s->state[l]);
        if (st == RN_OK) st = rt_buffer_alloc(rt, scale_bytes, "state scale", &s->scale[2 * l]);
        if (st == RN_OK) st = rt_buffer_alloc(rt, scale_bytes, "state scale", &s->scale[2 * l + 1]);
    }
    if (st == RN_OK) st = workspace_init(m, batch, RN_MODE_RECURRENT, 1, batch, false, &s->step);
    if (st != RN_OK) {
        rn_session_free_locked(s);
        return st;
    }
    *out = s;
    return RN_OK;
}

rn_status rn_session_init_locked(rn_model *m, rn_session **out) {
    return session_init(m, 1, out);
}

rn_status rn_session_reset_locked(rn_session *s) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rt_runtime *rt = &s->model->ctx->rt;
    for (int64_t l = 0; l < s->model->cfg.layers; l++) {
        rn_status st = rt_buffer_zero(rt, &s->state[l]);
        if (st == RN_OK) st = rt_buffer_zero(rt, &s->scale[2 * l]);
        if (st == RN_OK) st = rt_buffer_zero(rt, &s->scale[2 * l + 1]);
        if (st != RN_OK) return st;
    }
    memset(s->positions, 0, (size_t)s->batch * sizeof *s->positions);
    memset(s->last_logits, 0, (size_t)(s->batch * s->model->cfg.vocab_size) * sizeof *s->last_logits);
    memset(s->logits_on_device, 0, (size_t)s->batch * sizeof *s->logits_on_device);
    s->rows_on_device = 0;
    return RN_OK;
}

rn_status rn_session_reset_row_locked(rn_session *s, int64_t row) {
    rt_runtime *rt = &s->model->ctx->rt;
    const rn_config *c = &s->model->cfg;
    const size_t state_row = (size_t)(c->heads * c->key_head_dim * c->value_head_dim) * sizeof(float);
    const size_t scale_row = (size_t)c->heads * sizeof(float), V = (size_t)c->vocab_size;
    for (int64_t l = 0; l < c->layers; l++) {
        rn_status st = rt_buffer_zero_at(rt, &s->state[l], (size_t)row * state_row, state_row);
        for (int slot = 0; slot < 2 && st == RN_OK; slot++)
            st = rt_buffer_zero_at(rt, &s->scale[2 * l + slot], (size_t)row * scale_row, scale_row);
        if (st != RN_OK) return st;
    }
    s->positions[row] = 0;
    memset(s->last_logits + (size_t)row * V, 0, V * sizeof *s->last_logits);
    rn_session_logits_on_device(s, row, false);
    return RN_OK;
}

uint64_t rn_session_position(const rn_session *s) {
    return s ? s->positions[0] : 0;
}

uint64_t rn_session_row_position(const rn_session *s, size_t row) {
    return s && row < (size_t)s->batch ? s->positions[row] : 0;
}

/* ---- the forward pass ---------------------------------------------------------------------- */

/* One pass over ws->rows rows: its session, form, positions and the constants of the math. */
typedef struct pass {
    rn_session *s;
    rn_model *m;
    rt_runtime *rt;
    const rn_kernels *k;
    const rn_config *c;
    rn_workspace *ws;
    rn_mode mode;
    int64_t chunk, n;
    uint64_t pos0;
    rn_qkvg_rows at;
    float eps, alpha, k_scale;
    bool pre;                          /* pre-norm */
    bool mma;                          /* layer_few_rows's products on the small matrix-engine GEMM */
} pass;

/* The kernels of a step's norms, retention step and argmax: rn_kernels.batch's wider groups for
 * batches of RN_BATCH_GROUP_ROWS rows or more on the matrix engine, else the usual ones. */
static const rn_kernels *group_kernels(const rn_kernels *k, bool mma, int64_t rows) {
    return mma && rows >= RN_BATCH_GROUP_ROWS && k->batch ? k->batch : k;
}

#define TRY(call)                              \
    do {                                       \
        rn_status st_ = (call);                \
        if (st_ != RN_OK) return st_;          \
    } while (0)

/* Retention of q, k, v (rotated) into ws->o, then the group norm and the output gate: in the
 * recurrent form one step per sequence (each at its own position, ws->positions), else the
 * whole prompt, from an empty state or continuing the session's (pos0 > 0, chunkwise). */
static rn_status retention(const pass *p, int64_t l) {
    const rn_config *c = p->c;
    rn_workspace *ws = p->ws;
    const rn_retention_shape shape = {c->heads, c->kv_heads, c->plain_retention};
    const rt_buffer *gate = c->output_gate ? &ws->g : NULL;
    const rt_buffer *head_norm = c->head_norm_weight ? &p->m->layers[l].head_norm : NULL;
    if (p->mode == RN_MODE_RECURRENT) {  /* the group norm and gate in the same launch where it can */
        const rn_step_norm norm = {.gate = gate, .weight = head_norm, .eps = p->eps, .done = &ws->step_done};
        const rn_kernels *k = group_kernels(p->k, p->mma, p->n);
        TRY(rn_op_retention_step(p->rt, k, shape, p->n, &ws->q, &ws->k, &ws->v, &p->m->decay, &ws->positions,
                                 &p->s->state[l], &p->s->scale[2 * l], &p->s->scale[2 * l + 1], &ws->o,
                                 k->groups_hand_off ? &norm : NULL, &p->m->layers[l].out_proj.pieces[0]));
        if (k->groups_hand_off) return RN_OK;
    } else {
        /* The scale of position p lives in slot p & 1. A continued prompt enters with that of
         * pos0 - 1, copied aside: its own slot may be the one the prompt's last token writes. */
        rt_buffer *scale_out = &p->s->scale[2 * l + ((p->pos0 + (uint64_t)p->n - 1) & 1)];
        const rt_buffer *scale_in = NULL;
        if (p->pos0 > 0) {
            TRY(rt_buffer_copy(p->rt, &p->s->scale[2 * l + ((p->pos0 - 1) & 1)], &ws->scale_in,
                               ws->scale_in.bytes));
            scale_in = &ws->scale_in;
        }
        TRY((ws->retention_gemm ? rn_op_retention_gemm : rn_op_retention)(
            p->rt, p->k, shape, p->mode, p->chunk, &ws->q, &ws->k, &ws->v, p->n, &p->m->decay, &ws->retention,
            &ws->o, &p->s->state[l], scale_in, scale_out));
    }
    return rn_op_group_norm_gate(p->rt, p->k, &ws->o, gate, head_norm, p->n, c->heads, p->eps, &ws->o);
}

/* A projection of layer_few_rows by W: the project kernel, or with p->mma the small
 * matrix-engine GEMM and its reduction, the norm (if any) first into ws->h unless the GEMM
 * folds it in (rn_mma_folds_norm). */
static rn_status project(const pass *p, const rn_matrix *W, rn_projection proj) {
    if (p->mma && proj.normalize && !rn_mma_folds_norm(p->k, &proj)) {
        TRY(rn_op_rms_norm(p->rt, group_kernels(p->k, true, proj.n), proj.x, proj.norm, proj.n, proj.cols, proj.eps,
                           &p->ws->h));
        proj.x = &p->ws->h;
        proj.normalize = false;
    }
    return rn_matrix_project(p->rt, p->k, W, proj, p->mma, &p->ws->partial);
}

/* One layer for a few rows (decoding, a batch of sequences, a short prompt): the project
 * kernel reads every weight once for all rows, folds each RMSNorm into the product after it,
 * reads q, k, v and g from the stacked matrix and rotates q and k on the way out, and adds the
 * residual or applies the GLU as it writes. Five launches in decoding where the retention step
 * applies the group norm and gate too (rn_kernels.groups_hand_off), else six, as for a short
 * prompt. */
static rn_status layer_few_rows(const pass *p, int64_t l) {
    const rn_config *c = p->c;
    const rn_layer_weights *w = &p->m->layers[l];
    /* What the launch after each product reads first: after q/k/v/g a step's retention reads its
     * states (the first n rows'; a prompt's retention is its own business), after the layer's last
     * product the next layer's first weights, or the logits'. */
    rt_buffer states = p->s->state[l];
    const rt_buffer *after_qkvg = NULL;
    if (p->mode == RN_MODE_RECURRENT) {
        states.bytes = states.bytes / (size_t)p->s->batch * (size_t)p->n;
        after_qkvg = &states;
    }
    const rn_matrix *after = l + 1 < c->layers ? &p->m->layers[l + 1].qkvg : rn_model_output(p->m);
    rn_workspace *ws = p->ws;
    const int64_t D = c->embed_dim, F = c->ffn_dim;
    /* A prompt's rows follow each other; a batch's sequences each have their own position. */
    rn_projection qkvg = {.rows = p->at.total, .cols = D, .x = &ws->x, .n = p->n,
                          .normalize = p->pre, .norm = p->pre ? &w->retention_norm : NULL, .eps = p->eps,
                          .mode = RN_PROJECT_PLAIN, .y = {&ws->q, &ws->k, &ws->v, c->output_gate ? &ws->g : NULL},
                          .ends = {p->at.k, p->at.v, p->at.g}, .rotated = p->at.v, .q_rows = p->at.k,
                          .pos0 = (int64_t)p->pos0, .pos_step = 1,
                          .positions = p->mode == RN_MODE_RECURRENT ? &ws->positions : NULL, .angle = &p->m->angle, .k_scale = p->k_scale, .half_split = c->rope_half,
                          .ahead = after_qkvg};
    TRY(project(p, &w->qkvg, qkvg));
    TRY(retention(p, l));
    rn_projection out = {.rows = D, .cols = c->value_embed_dim, .x = &ws->o, .n = p->n,
                         .mode = RN_PROJECT_RESIDUAL, .alpha = p->alpha, .y = {&ws->x},
                         .ahead = &w->ffn_in.pieces[0]};
    TRY(project(p, &w->out_proj, out));
    if (!p->pre) TRY(rn_op_rms_norm(p->rt, p->k, &ws->x, &w->retention_norm, p->n, D, p->eps, &ws->x));

    rn_projection ffn_in = {.rows = F, .cols = D, .x = &ws->x, .n = p->n,
                            .normalize = p->pre, .norm = p->pre ? &w->ffn_norm : NULL, .eps = p->eps,
                            .mode = RN_PROJECT_GLU, .activation = c->activation, .y = {&ws->a},
                            .ahead = &w->fc2.pieces[0]};
    TRY(project(p, &w->ffn_in, ffn_in));
    rn_projection ffn_out = {.rows = D, .cols = F, .x = &ws->a, .n = p->n,
                             .mode = RN_PROJECT_RESIDUAL, .alpha = p->alpha, .y = {&ws->x},
                             .ahead = &after->pieces[0]};
    TRY(project(p, &w->fc2, ffn_out));
    if (!p->pre) TRY(rn_op_rms_norm(p->rt, p->k, &ws->x, &w->ffn_norm, p->n, D, p->eps, &ws->x));
    return RN_OK;
}

/* y [n, rows of W from row0] = x W^T for a prompt: on the matrix engine where it takes the
 * product, from x rounded to half into ws->x_half (unless `rounded`: the previous product read
 * the same x and left it there), else through SGEMM. */
static rn_status linear(const pass *p, const rt_buffer *x, bool rounded, const rn_matrix *W, int64_t row0,
                        int64_t out, rt_buffer *y) {
    const bool mma = rn_mma_takes(p->k, W->cols);
    if (mma && !rounded) TRY(rn_op_engine_operand(p->rt, p->k, x, p->n * W->cols, &p->ws->x_half));
    const rn_linear l = {.x = mma ? &p->ws->x_half : x, .n = p->n, .row0 = row0, .out = out, .y = y, .ldy = out,
                         .mma = mma};
    return rn_matrix_linear(p->rt, p->k, W, &l, &p->ws->widened);
}

/* x = alpha x + y W^T: on the matrix engine in one product (its epilogue adds the residual),
 * else a product into ws->h and a residual kernel. */
static rn_status linear_residual(const pass *p, const rt_buffer *y, const rn_matrix *W) {
    const int64_t D = p->c->embed_dim;
    if (rn_mma_takes(p->k, W->cols)) {
        TRY(rn_op_engine_operand(p->rt, p->k, y, p->n * W->cols, &p->ws->x_half));
        const rn_linear l = {.x = &p->ws->x_half, .n = p->n, .out = D, .y = &p->ws->x, .ldy = D, .mma = true,
                             .accumulate = true, .alpha = p->alpha};
        return rn_matrix_linear(p->rt, p->k, W, &l, NULL);
    }
    TRY(linear(p, y, false, W, 0, D, &p->ws->h));
    return rn_op_residual(p->rt, p->k, &p->ws->x, &p->ws->h, p->n * D, p->alpha);
}

/* A stacked matrix's products for a prompt: one SGEMM into ws->stacked handed out by columns
 * when its output fits there, else one SGEMM per output. */
static rn_status stacked_linear(const pass *p, const rt_buffer *x, const rn_matrix *W, const int64_t *ends,
                                rt_buffer *const *y, int outputs) {
    const int64_t D = p->c->embed_dim, total = ends[outputs - 1];
    rn_workspace *ws = p->ws;
    /* On the matrix engine each output is its own product, written in place; so is each output
     * of a matrix in pieces. */
    const bool one_product = !rn_mma_takes(p->k, D) && W->count == 1 &&
                             ws->stacked.bytes >= (size_t)(p->n * total) * sizeof(float);
    if (one_product) TRY(linear(p, x, false, W, 0, total, &ws->stacked));
    bool rounded = false;  /* x in ws->x_half already, from this matrix's previous product */
    for (int i = 0; i < outputs; i++) {
        const int64_t from = i ? ends[i - 1] : 0, width = ends[i] - from;
        if (!y[i]) continue;
        if (one_product) TRY(rn_op_split_columns(p->rt, p->k, &ws->stacked, p->n, total, from, width, y[i]));
        else TRY(linear(p, x, rounded, W, from, width, y[i]));
        rounded = true;
    }
    return RN_OK;
}

/* One layer for a prompt: SGEMMs over the stacked matrices, the rotation as its own kernel,
 * retention as batched GEMMs per chunk and head (or its kernels), the residuals and the GLU as
 * element-wise kernels. */
static rn_status layer_prompt(const pass *p, int64_t l) {
    const rn_config *c = p->c;
    const rn_layer_weights *w = &p->m->layers[l];
    rn_workspace *ws = p->ws;
    const int64_t n = p->n, D = c->embed_dim, F = c->ffn_dim;
    const rt_buffer *in = &ws->x;
    if (p->pre) {
        TRY(rn_op_rms_norm(p->rt, p->k, &ws->x, &w->retention_norm, n, D, p->eps, &ws->h));
        in = &ws->h;
    }
    const int64_t qkvg_ends[4] = {p->at.k, p->at.v, p->at.g, p->at.total};
    rt_buffer *const qkvg[4] = {&ws->q, &ws->k, &ws->v, c->output_gate ? &ws->g : NULL};
    TRY(stacked_linear(p, in, &w->qkvg, qkvg_ends, qkvg, 4));
    const rt_buffer *positions = p->mode == RN_MODE_RECURRENT ? &ws->positions : NULL;
    TRY(rn_op_theta_shift(p->rt, p->k, &ws->q, n, c->heads, &p->m->angle, (int64_t)p->pos0, positions, 1.0f,
                          c->rope_half));
    TRY(rn_op_theta_shift(p->rt, p->k, &ws->k, n, c->kv_heads, &p->m->angle, (int64_t)p->pos0, positions,
                          p->k_scale, c->rope_half));
    TRY(retention(p, l));
    TRY(linear_residual(p, &ws->o, &w->out_proj));
    if (!p->pre) TRY(rn_op_rms_norm(p->rt, p->k, &ws->x, &w->retention_norm, n, D, p->eps, &ws->x));

    in = &ws->x;
    if (p->pre) {
        TRY(rn_op_rms_norm(p->rt, p->k, &ws->x, &w->ffn_norm, n, D, p->eps, &ws->h));
        in = &ws->h;
    }
    const int64_t ffn_ends[2] = {F, 2 * F};
    rt_buffer *const ffn[2] = {&ws->a, &ws->b};
    TRY(stacked_linear(p, in, &w->ffn_in, ffn_ends, ffn, 2));
    TRY(rn_op_glu(p->rt, p->k, &ws->a, &ws->b, n * F, c->activation, &ws->a));
    TRY(linear_residual(p, &ws->a, &w->fc2));
    if (!p->pre) TRY(rn_op_rms_norm(p->rt, p->k, &ws->x, &w->ffn_norm, n, D, p->eps, &ws->x));
    return RN_OK;
}

/* Logits of the last logit_rows rows, through the final norm (pre-norm). */
static rn_status output_logits(const pass *p, int64_t logit_rows) {
    const rn_config *c = p->c;
    rn_workspace *ws = p->ws;
    const int64_t D = c->embed_dim;
    const rt_buffer *last = &ws->x;
    if (logit_rows < p->n) {  /* a prompt whose caller wants the last row only */
        TRY(rt_buffer_copy_at(p->rt, &ws->x, (size_t)((p->n - logit_rows) * D) * sizeof(float), &ws->h, 0,
                              (size_t)(logit_rows * D) * sizeof(float)));
        last = &ws->h;
    }
    const bool mma = mma_rows(p->m, logit_rows);
    if (mma || use_project(p->k, logit_rows)) {
        rn_projection out = {.rows = c->vocab_size, .cols = D, .x = last,
                             .n = logit_rows, .normalize = p->pre, .norm = p->pre ? &p->m->final_norm : NULL,
                             .eps = p->eps, .mode = RN_PROJECT_PLAIN, .y = {&ws->logits},
                             .ahead = &p->m->layers[0].qkvg.pieces[0]};  /* the next step's first */
        pass q = *p;
        q.mma = mma;
        return project(&q, rn_model_output(p->m), out);
    }
    if (p->pre) TRY(rn_op_rms_norm(p->rt, p->k, last, &p->m->final_norm, logit_rows, D, p->eps, &ws->h));
    pass q = *p;
    q.n = logit_rows;
    return linear(&q, p->pre ? &ws->h : last, false, rn_model_output(p->m), 0, c->vocab_size, &ws->logits);
}

/* Runs n tokens (already in ws->tokens; n <= ws->rows) through the network: with
 * RN_MODE_RECURRENT, one token of each of the first n rows of the session, each at its own
 * position (already in ws->positions), in one recurrent step; otherwise a whole prompt from
 * position `pos0` in the parallel or chunkwise form (from the session's state when pos0 > 0).
 * Logits are computed for the last `logit_rows` rows. A step enqueues everything and waits for
 * nothing; a prompt waits after each layer, to report progress and to see a cancellation (a
 * short one without a progress callback only looks for the cancellation). */
#define SYNC_PROMPT_ROWS 256  /* prompts of at least this many tokens wait for each layer */
static rn_status forward(rn_session *s, rn_workspace *ws, int64_t n, rn_mode mode, int64_t chunk, uint64_t pos0,
                         int64_t logit_rows) {
    rn_model *m = s->model;
    const rn_config *c = &m->cfg;
    const pass p = {.s = s, .m = m, .rt = &m->ctx->rt, .k = &m->kernels, .c = c, .ws = ws, .mode = mode,
                    .chunk = chunk, .n = n, .pos0 = pos0, .at = rn_qkvg_layout(c),
                    .eps = (float)c->layernorm_eps,
                    .alpha = c->deepnorm ? (float)pow(2.0 * (double)c->layers, 0.25) : 1.0f,
                    .k_scale = (float)(1.0 / sqrt((double)c->key_head_dim)), .pre = c->normalize_before,
                    .mma = mma_rows(m, n)};
    const bool prompt = mode != RN_MODE_RECURRENT;
    rn_status (*layer)(const pass *, int64_t) = few_rows(m, p.n) ? layer_few_rows : layer_prompt;

    const float embed_scale = c->no_scale_embedding ? 1.0f : (float)sqrt((double)c->embed_dim);
    TRY(rn_matrix_embed(p.rt, p.k, &ws->tokens, p.n, &m->embed, embed_scale, &ws->x));
    if (c->layernorm_embedding)
        TRY(rn_op_rms_norm(p.rt, p.k, &ws->x, &m->embed_norm, p.n, c->embed_dim, p.eps, &ws->x));
    for (int64_t l = 0; l < c->layers; l++) {
        rt_profile_tag(p.rt, (int)l);
        TRY(layer(&p, l));
        if (!prompt) continue;
        /* Waiting for each layer lets progress be reported and a cancellation stop a long
         * prompt within a layer's time; a short prompt without a progress callback is not
         * worth the waits (one per layer, each a round trip to the device: milliseconds a
         * prompt on a GPU, when a server starts a wave of short requests). A cancellation is
         * still seen between its layers; what is already queued finishes first. */
        if (s->progress || p.n >= SYNC_PROMPT_ROWS) TRY(rt_finish(p.rt));
        if (s->progress) s->progress(s->progress_user, (uint64_t)(p.n * (l + 1) / c->layers), (uint64_t)p.n);
        if (l + 1 < c->layers && rn_context_cancelled(m->ctx, "the prompt")) return RN_ERR_CANCELLED;
    }
    rt_profile_tag(p.rt, -1);
    return output_logits(&p, logit_rows);
}

/* A pass that failed on the device may have updated some layers' state and not others: such a
 * session is emptied rather than left inconsistent. (Bad arguments are refused before any
 * work and leave the session as it was.) */
static rn_status fail_pass(rn_session *s, rn_status st) {
    rn_error saved = s->model->ctx->err;
    rn_session_reset_locked(s);
    s->model->ctx->err = saved;
    return st;
}

/* Row `row` consumed `n` more tokens. */
static void advance_row(rn_session *s, int64_t row, const int32_t *tokens, size_t n) {
    int32_t *ring = rn_session_ring(s, row);
    for (size_t i = 0; i < n; i++) ring[(s->positions[row] + i) % RN_RECENT_TOKENS] = tokens[i];
    s->positions[row] += n;
}

static rn_status check_tokens(rn_session *s, const int32_t *tokens, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->model->cfg.vocab_size)
            return rn_fail(&s->model->ctx->err, RN_ERR_INVALID_ARGUMENT,
                           "token %d at position %zu is outside the vocabulary [0, %lld)", tokens[i], i,
                           (long long)s->model->cfg.vocab_size);
    return RN_OK;
}

/* Reads the `rows` rows of logits the pass computed into `out` (when not NULL) and keeps the
 * session's own copy of the last `kept` of them as rows [0, kept) of its last logits (a step:
 * every row stepped; a prompt: its last row), to sample from after a restore; then checks
 * them: a non-finite logit means the weights or the device went wrong, and a caller must not
 * sample from it unknowingly. */
/* Whether every value is finite, two at a time and without a branch: a value's exponent bits
 * plus one exponent step carry into its sign bit only when they are all ones (Inf, NaN). A
 * batch of 32 rows of a 64k vocabulary is 2M values a step, which isfinite() one at a time
 * took a noticeable part of. */
static bool all_finite(const float *v, size_t n) {
    const uint64_t exponents = 0x7f8000007f800000u, step = 0x0080000000800000u;
    uint64_t bad = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64_t pair;
        memcpy(&pair, v + i, sizeof pair);
        bad |= (pair & exponents) + step;
    }
    if (i < n) {
        uint32_t last;
        memcpy(&last, v + i, sizeof last);
        bad |= (uint64_t)((last & 0x7f800000u) + 0x00800000u);
    }
    return (bad & 0x8000000080000000u) == 0;
}

/* The error of a step whose logits hold a NaN or an infinity: its value, row and column. */
static rn_status non_finite_logit(rn_session *s, float value, int64_t row, int64_t column) {
    return rn_fail(&s->model->ctx->err, RN_ERR_NUMERIC, "non-finite logit %g at row %lld, column %lld",
                   (double)value, (long long)row, (long long)column);
}

static rn_status read_logits(rn_session *s, rn_workspace *ws, int64_t rows, int64_t kept, float *out) {
    rt_runtime *rt = &s->model->ctx->rt;
    const size_t V = (size_t)s->model->cfg.vocab_size, count = (size_t)rows * V;
    float *dest = out ? out : s->last_logits;  /* without `out`, rows == kept */
    rn_status st = rt_buffer_read(rt, &ws->logits, 0, dest, count * sizeof(float));
    if (st != RN_OK) return st;
    if (out) memcpy(s->last_logits, out + count - (size_t)kept * V, (size_t)kept * V * sizeof(float));
    for (int64_t r = 0; r < kept; r++) rn_session_logits_on_device(s, r, false);
    if (all_finite(dest, count)) return RN_OK;
    size_t i = 0;
    while (isfinite(dest[i])) i++;  /* the first one, to name it */
    return non_finite_logit(s, dest[i], (int64_t)(i / V), (int64_t)(i % V));
}

/* A greedy step's end: each stepped row's choice (argmax.cl) into next[rows], the only read
 * of the step. A row holding a NaN or an infinity is refused as read_logits refuses it, naming
 * the value (one more read, on this failure only). next is written only on success. */
static rn_status read_choices(rn_session *s, int64_t rows, int32_t *next) {
    rt_runtime *rt = &s->model->ctx->rt;
    const int64_t V = s->model->cfg.vocab_size;
    const rn_kernels *k = group_kernels(&s->model->kernels, mma_rows(s->model, rows), rows);
    const rn_argmax_slices slices = {&s->step.argmax_winners, &s->step.argmax_done};
    rn_status st = rn_op_argmax(rt, k, &s->step.logits, rows, V, &s->step.choice, 0, &s->step.tokens, &slices);
    if (st == RN_OK)
        st = rt_buffer_read(rt, &s->step.choice, 0, s->step_choice, (size_t)rows * 2 * sizeof *s->step_choice);
    if (st != RN_OK) return st;
    for (int64_t b = 0; b < rows; b++) {
        const cl_int column = s->step_choice[2 * b + 1];
        if (column < 0) continue;
        float value = NAN;  /* stays NaN if even this read fails: the step fails either way */
        rt_buffer_read(rt, &s->step.logits, ((size_t)b * (size_t)V + (size_t)column) * sizeof value, &value,
                       sizeof value);
        return non_finite_logit(s, value, b, column);
    }
    for (int64_t b = 0; b < rows; b++) next[b] = s->step_choice[2 * b];
    return RN_OK;
}

/* One token for each of the session's first `rows` rows, each at its own position; the other
 * rows are not touched (the kernels run over the first `rows` rows of the step workspace).
 * With `next` (greedy) the step reads back each row's choice instead of its logits, which stay
 * on the device as the rows' last logits until something asks for them. */
static rn_status decode_step(rn_session *s, int64_t rows, const int32_t *tokens, float *logits, int32_t *next) {
    /* A request to cancel stops the next step before it starts (a step itself is too short to
     * be worth interrupting): the session stays as it was. */
    if (rn_context_cancelled(s->model->ctx, "decoding")) return RN_ERR_CANCELLED;
    rn_status st = check_tokens(s, tokens, (size_t)rows);
    if (st != RN_OK) return st;
    for (int64_t b = 0; b < rows; b++)
        if (s->positions[b] >= (uint64_t)INT32_MAX)
            return rn_fail(&s->model->ctx->err, RN_ERR_LIMIT, "row %lld is at position %llu, the last the kernels take",
                           (long long)b, (unsigned long long)s->positions[b]);
    rt_runtime *rt = &s->model->ctx->rt;
    /* Two writes the queue orders before the kernels, without a wait each: the step's one
     * synchronisation is reading its logits (or its choices). */
    cl_int *ids = s->step_input, *at = s->step_input + s->batch;
    for (int64_t b = 0; b < rows; b++) {
        ids[b] = tokens[b];
        at[b] = (cl_int)s->positions[b];
    }
    st = rt_buffer_write_async(rt, &s->step.tokens, 0, ids, (size_t)rows * sizeof *ids);
    if (st == RN_OK) st = rt_buffer_write_async(rt, &s->step.positions, 0, at, (size_t)rows * sizeof *at);
    if (st == RN_OK) st = forward(s, &s->step, rows, RN_MODE_RECURRENT, 1, 0, rows);
    if (st == RN_OK) st = next ? read_choices(s, rows, next) : read_logits(s, &s->step, rows, rows, logits);
    if (st != RN_OK) {
        rt_finish(rt);  /* the writes may still be reading step_input */
        return fail_pass(s, st);
    }
    for (int64_t b = 0; b < rows; b++) {
        advance_row(s, b, tokens + b, 1);
        if (next) rn_session_logits_on_device(s, b, true);
    }
    return RN_OK;
}

/* Greedy steps chained on the device are queued at most about 2 x GREEDY_AHEAD ahead of the
 * device: the host waits for a marker queued GREEDY_AHEAD steps earlier before queueing more, so
 * that a cancellation is seen within that many steps and a long run holds no endless queue. */
#define GREEDY_AHEAD 8

/* `steps` greedy steps of the first `rows` rows, each step's choices the next one's input on
 * the device (argmax_rows writes them into the step's token buffer) and kept there, step by
 * step, in one buffer that is read back once at the end: no host transfer between steps, so the
 * device does not wait for the host. (Reading each step's choices back without waiting for them
 * was slower on an H100 than one call per step, perhaps because a read into ordinary host
 * memory is finished by the driver on the host: docs/BENCHMARKS.md.) *done: the steps run and
 * kept. */
static rn_status greedy_steps(rn_session *s, int64_t rows, const int32_t *tokens, int64_t steps, int32_t *out,
                              int64_t *done) {
    *done = 0;
    rn_context *ctx = s->model->ctx;
    if (rn_context_cancelled(ctx, "decoding")) return RN_ERR_CANCELLED;
    rn_status st = check_tokens(s, tokens, (size_t)rows);
    if (st != RN_OK) return st;
    for (int64_t b = 0; b < rows; b++)
        if (s->positions[b] + (uint64_t)steps > (uint64_t)INT32_MAX)
            return rn_fail(&ctx->err, RN_ERR_LIMIT,
                           "row %lld is at position %llu: %lld more steps pass the last position the kernels take",
                           (long long)b, (unsigned long long)s->positions[b], (long long)steps);
    rt_runtime *rt = &ctx->rt;
    const rn_kernels *k = group_kernels(&s->model->kernels, mma_rows(s->model, rows), rows);
    const int64_t V = s->model->cfg.vocab_size;
    const size_t cells = (size_t)steps * (size_t)rows;
    /* Host side: every step's positions (written without waiting, so they stay until the end)
     * and then every step's choices [steps, rows, 2]. */
    cl_int *at = malloc(cells * 3 * sizeof *at), *choice = at ? at + cells : NULL;
    rt_buffer history = {0};
    if (!at) return rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for %lld greedy steps", (long long)steps);
    st = rt_buffer_alloc(rt, cells * 2 * sizeof *choice, "greedy choices", &history);
    if (st != RN_OK) {
        free(at);
        return st;
    }
    cl_int *ids = s->step_input;
    for (int64_t b = 0; b < rows; b++) ids[b] = tokens[b];
    st = rt_buffer_write_async(rt, &s->step.tokens, 0, ids, (size_t)rows * sizeof *ids);
    cl_event older = NULL, newer = NULL;  /* markers after steps GREEDY_AHEAD apart */
    const rn_argmax_slices slices = {&s->step.argmax_winners, &s->step.argmax_done};
    int64_t queued = 0;
    for (; st == RN_OK && queued < steps; queued++) {
        if (queued > 0 && rn_context_cancelled(ctx, "decoding")) break;
        cl_int *pos = at + (size_t)queued * (size_t)rows;
        for (int64_t b = 0; b < rows; b++) pos[b] = (cl_int)(s->positions[b] + (uint64_t)queued);
        st = rt_buffer_write_async(rt, &s->step.positions, 0, pos, (size_t)rows * sizeof *pos);
        if (st == RN_OK) st = forward(s, &s->step, rows, RN_MODE_RECURRENT, 1, 0, rows);
        if (st == RN_OK)
            st = rn_op_argmax(rt, k, &s->step.logits, rows, V, &history, queued * rows, &s->step.tokens, &slices);
        if (st == RN_OK && queued == 0) st = rt_flush(rt);  /* the device starts while more are queued */
        if (st == RN_OK && queued % GREEDY_AHEAD == GREEDY_AHEAD - 1) {
            st = rt_event_wait(rt, &older);
            older = newer;
            if (st == RN_OK) st = rt_marker(rt, &newer);
        }
    }
    const bool cancelled = st == RN_OK && queued < steps;
    if (st == RN_OK) st = rt_buffer_read(rt, &history, 0, choice, (size_t)queued * (size_t)rows * 2 * sizeof *choice);
    else rt_finish(rt);  /* nothing queued may still read `at` or step_input */
    if (older) clReleaseEvent(older);
    if (newer) clReleaseEvent(newer);
    rt_buffer_free(rt, &history);
    for (int64_t i = 0; st == RN_OK && i < queued; i++)
        for (int64_t b = 0; st == RN_OK && b < rows; b++) {
            const cl_int *c = choice + 2 * ((size_t)i * (size_t)rows + (size_t)b);
            if (c[1] >= 0)
                st = rn_fail(&ctx->err, RN_ERR_NUMERIC,
                             "non-finite logit at row %lld, column %d, in greedy step %lld of %lld", (long long)b,
                             c[1], (long long)i + 1, (long long)steps);
            else
                out[i * rows + b] = c[0];
        }
    free(at);
    if (st != RN_OK) return fail_pass(s, st);
    for (int64_t b = 0; b < rows; b++) {
        for (int64_t i = 0; i < queued; i++) advance_row(s, b, i == 0 ? tokens + b : out + (i - 1) * rows + b, 1);
        if (queued > 0) rn_session_logits_on_device(s, b, true);
    }
    *done = queued;
    if (cancelled) rn_fail(&ctx->err, RN_ERR_CANCELLED, "decoding was cancelled (rn_context_cancel) after %lld of %lld greedy steps",
                           (long long)queued, (long long)steps);
    return cancelled ? RN_ERR_CANCELLED : RN_OK;
}

static rn_status refuse_batch(const rn_session *s, const char *what) {
    return rn_fail(&s->model->ctx->err, RN_ERR_INVALID_ARGUMENT,
                   "%s takes a session of one sequence; this one decodes %lld together", what, (long long)s->batch);
}

static rn_status rn_session_decode_locked(rn_session *s, int32_t token, float *logits) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    if (s->batch != 1) return refuse_batch(s, "rn_session_decode");
    return decode_step(s, 1, &token, logits, NULL);
}

rn_status rn_session_fetch_logits_locked(rn_session *s) {
    if (s->rows_on_device == 0) return RN_OK;
    rt_runtime *rt = &s->model->ctx->rt;
    const size_t V = (size_t)s->model->cfg.vocab_size, row_bytes = V * sizeof(float);
    /* Runs of marked rows, one read each: the rows of a greedy step are one run. */
    for (int64_t first = 0; first < s->batch;) {
        if (!s->logits_on_device[first]) {
            first++;
            continue;
        }
        int64_t end = first + 1;
        while (end < s->batch && s->logits_on_device[end]) end++;
        rn_status st = rt_buffer_read(rt, &s->step.logits, (size_t)first * row_bytes, s->last_logits + (size_t)first * V,
                                      (size_t)(end - first) * row_bytes);
        if (st != RN_OK) return st;  /* the rows stay marked: their logits are still there */
        for (int64_t r = first; r < end; r++) rn_session_logits_on_device(s, r, false);
        first = end;
    }
    return RN_OK;
}

/* One pass of a prompt: `n` tokens from the session's position, all in one workspace. */
static rn_status prefill_pass(rn_session *s, const int32_t *tokens, size_t n, rn_mode mode, int64_t chunk,
                              float *logits) {
    rn_model *m = s->model;
    const uint64_t pos0 = s->positions[0];
    /* Logits of every row only when the caller asks for them: [n, V] can dwarf the rest. */
    const int64_t logit_rows = logits ? (int64_t)n : 1;
    rn_workspace ws;
    rn_status st = workspace_init(m, (int64_t)n, mode, chunk, logit_rows, pos0 > 0, &ws);
    if (st != RN_OK) return st;
    rt_runtime *rt = &m->ctx->rt;
    cl_int *ids = malloc(n * sizeof *ids);
    if (!ids) st = rn_fail(&m->ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for %zu token ids", n);
    for (size_t i = 0; ids && i < n; i++) ids[i] = tokens[i];
    if (st == RN_OK) st = rt_buffer_write(rt, &ws.tokens, 0, ids, n * sizeof *ids);
    free(ids);
    if (st == RN_OK) st = forward(s, &ws, (int64_t)n, mode, chunk, pos0, logit_rows);
    if (st == RN_OK) st = read_logits(s, &ws, logit_rows, 1, logits);
    workspace_free(rt, &ws);
    if (st != RN_OK) return fail_pass(s, st);
    advance_row(s, 0, tokens, n);
    return RN_OK;
}

/* The widest activation of a prompt's row in bytes: the one a pass's row count multiplies up
 * to a single buffer (the logits of every row when asked for). */
static uint64_t pass_widest(const rn_model *m, bool all_logits) {
    const rn_config *c = &m->cfg;
    const int64_t widths[] = {c->embed_dim, c->key_embed_dim, c->kv_heads * c->key_head_dim,
                              c->kv_heads * c->value_head_dim, c->value_embed_dim, c->ffn_dim,
                              c->heads * c->key_head_dim, all_logits ? c->vocab_size : 0};
    int64_t widest = 0;
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++)
        if (widths[i] > widest) widest = widths[i];
    return (uint64_t)widest * sizeof(float);
}

/* The most tokens of a prompt one pass takes on this device: every activation buffer, and in
 * the chunkwise form the states of its chunks, within the largest allocation; whole chunks
 * where a pass holds more than one (a pass of fewer rows than a chunk is a smaller chunk, whose
 * normalisation differs slightly, as with a smaller chunk size). The scratch the retention GEMMs
 * need is bounded apart: without room, the prompt's retention runs in kernels. */
static int64_t pass_rows(const rn_model *m, rn_mode mode, int64_t chunk, bool all_logits) {
    const rn_config *c = &m->cfg;
    const uint64_t cap = m->ctx->rt.dev.info.max_alloc_bytes;
    const uint64_t state = (uint64_t)(c->heads * c->key_head_dim * c->value_head_dim) * sizeof(float);
    uint64_t rows = cap / pass_widest(m, all_logits);
    if (mode == RN_MODE_CHUNKWISE && cap / state * (uint64_t)chunk < rows) rows = cap / state * (uint64_t)chunk;
    if (rows > (uint64_t)chunk) rows -= rows % (uint64_t)chunk;
    return rows > RN_MAX_PROMPT ? RN_MAX_PROMPT : (int64_t)rows;
}

/* The progress of a prompt in passes, as one: each pass reports its own rows. */
typedef struct pass_progress {
    rn_progress_fn fn;
    void *user;
    uint64_t done, total;
} pass_progress;

static void pass_progress_shift(void *user, uint64_t done, uint64_t total) {
    (void)total;
    const pass_progress *p = user;
    p->fn(p->user, p->done + done, p->total);
}

static rn_status rn_session_prefill_locked(rn_session *s, const int32_t *tokens, size_t n, rn_mode mode,
                             size_t chunk_size, float *logits) {
    if (!s || (!tokens && n)) return RN_ERR_INVALID_ARGUMENT;
    rn_model *m = s->model;
    rn_error *err = &m->ctx->err;
    if (s->batch != 1) return refuse_batch(s, "rn_session_prefill");
    if (n == 0) return RN_OK;
    if (n > RN_MAX_PROMPT)
        return rn_fail(err, RN_ERR_LIMIT, "a prompt of %zu tokens is over the limit of %d", n, RN_MAX_PROMPT);
    if (mode != RN_MODE_PARALLEL && mode != RN_MODE_CHUNKWISE && mode != RN_MODE_RECURRENT)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "unknown mode %d", (int)mode);
    rn_status st = check_tokens(s, tokens, n);
    if (st != RN_OK) return st;

    if (mode == RN_MODE_RECURRENT) {
        /* Every finished token stays fed: a cancellation (seen by the next step) keeps them. */
        const size_t V = (size_t)m->cfg.vocab_size;
        for (size_t i = 0; i < n && st == RN_OK; i++) {
            st = rn_session_decode_locked(s, tokens[i], logits ? logits + i * V : NULL);
            if (st == RN_OK && s->progress) s->progress(s->progress_user, i + 1, n);
        }
        return st;
    }
    const uint64_t pos0 = s->positions[0];
    if (pos0 != 0 && mode == RN_MODE_PARALLEL)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                       "the parallel form starts from an empty state, but the session holds %llu tokens; "
                       "continue it with the chunkwise or recurrent form or reset it",
                       (unsigned long long)pos0);
    if (pos0 + n >= (uint64_t)INT32_MAX)
        return rn_fail(err, RN_ERR_LIMIT, "the session would pass position %d, the last the kernels take", INT32_MAX);
    int64_t chunk = chunk_size ? (int64_t)chunk_size : m->cfg.chunk_size;
    if (chunk > RN_MAX_PROMPT) chunk = RN_MAX_PROMPT;

    /* A prompt whose activations would not fit the device's largest allocation runs in passes of
     * whole chunks, each continuing the state the last one left: the same chunks as one pass. */
    const int64_t per_pass = pass_rows(m, mode, chunk, logits != NULL);
    const rt_device_info *dev = &m->ctx->rt.dev.info;
    if (per_pass < 1)
        return rn_fail(err, RN_ERR_DEVICE_MEMORY, "one token of a prompt needs %llu bytes in one buffer; '%s' allows %llu",
                       (unsigned long long)pass_widest(m, logits != NULL), dev->name,
                       (unsigned long long)dev->max_alloc_bytes);
    if ((int64_t)n > per_pass && mode == RN_MODE_PARALLEL)
        return rn_fail(err, RN_ERR_DEVICE_MEMORY,
                       "the parallel form takes a prompt in one pass: %zu tokens need %.1f MiB in one buffer, and '%s' "
                       "allows %.1f MiB per allocation; the chunkwise form takes it in passes",
                       n, (double)pass_widest(m, logits != NULL) * (double)n / 1048576.0, dev->name,
                       dev->max_alloc_bytes / 1048576.0);
    const size_t V = (size_t)m->cfg.vocab_size;
    pass_progress outer = {s->progress, s->progress_user, 0, n};
    if (s->progress && (int64_t)n > per_pass) s->progress = pass_progress_shift, s->progress_user = &outer;
    for (size_t done = 0; done < n && st == RN_OK;) {
        const size_t rows = n - done < (size_t)per_pass ? n - done : (size_t)per_pass;
        outer.done = done;
        st = prefill_pass(s, tokens + done, rows, mode, chunk, logits ? logits + done * V : NULL);
        done += rows;
        if (st == RN_OK && done < n && rn_context_cancelled(m->ctx, "the prompt")) st = fail_pass(s, RN_ERR_CANCELLED);
    }
    if (s->progress == pass_progress_shift) s->progress = outer.fn, s->progress_user = outer.user;
    return st;
}

/* ---- the public calls: each holds the context's lock throughout (engine.h) ------------------ */

void rn_session_free(rn_session *s) {
    if (!s) return;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    rn_session_free_locked(s);
    rn_context_unlock(ctx, RN_OK);
}

rn_status rn_session_init(rn_model *m, rn_session **out) {
    if (!m) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(m->ctx);
    return rn_context_unlock(m->ctx, rn_session_init_locked(m, out));
}

rn_status rn_session_reset(rn_session *s) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_session_reset_locked(s));
}

rn_status rn_session_decode(rn_session *s, int32_t token, float *logits) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_session_decode_locked(s, token, logits));
}

rn_status rn_session_prefill(rn_session *s, const int32_t *tokens, size_t n, rn_mode mode,
                             size_t chunk_size, float *logits) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_session_prefill_locked(s, tokens, n, mode, chunk_size, logits));
}

rn_status rn_session_init_batch(rn_model *m, size_t batch, rn_session **out) {
    if (!m) return RN_ERR_INVALID_ARGUMENT;
    rn_context_lock(m->ctx);
    return rn_context_unlock(m->ctx, session_init(m, batch > MAX_BATCH ? MAX_BATCH + 1 : (int64_t)batch, out));
}

rn_status rn_session_decode_batch(rn_session *s, const int32_t *tokens, float *logits) {
    if (!s || !tokens) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, decode_step(s, s->batch, tokens, logits, NULL));
}

rn_status rn_session_decode_rows(rn_session *s, size_t rows, const int32_t *tokens, float *logits) {
    if (!s || !tokens) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    rn_status st = rows >= 1 && rows <= (size_t)s->batch
                       ? decode_step(s, (int64_t)rows, tokens, logits, NULL)
                       : rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT, "%zu rows to step; the batch has %lld", rows,
                                 (long long)s->batch);
    return rn_context_unlock(ctx, st);
}

rn_status rn_session_decode_greedy(rn_session *s, size_t rows, const int32_t *tokens, int32_t *next) {
    if (!s || !tokens || !next) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    rn_status st = rows >= 1 && rows <= (size_t)s->batch
                       ? decode_step(s, (int64_t)rows, tokens, NULL, next)
                       : rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT, "%zu rows to step greedily; the batch has %lld",
                                 rows, (long long)s->batch);
    return rn_context_unlock(ctx, st);
}

rn_status rn_session_generate_greedy(rn_session *s, size_t rows, const int32_t *tokens, size_t steps, int32_t *out,
                                     size_t *done) {
    if (done) *done = 0;
    if (!s || !tokens || !out) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    int64_t ran = 0;
    rn_status st = rows < 1 || rows > (size_t)s->batch
                       ? rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT, "%zu rows to step greedily; the batch has %lld",
                                 rows, (long long)s->batch)
                   : steps < 1 || steps > (size_t)INT32_MAX / rows
                       ? rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT,
                                 "%zu greedy steps of %zu rows: from 1 to %zu steps at a time", steps, rows,
                                 (size_t)INT32_MAX / rows)
                       : greedy_steps(s, (int64_t)rows, tokens, (int64_t)steps, out, &ran);
    if (done) *done = (size_t)ran;
    return rn_context_unlock(ctx, st);
}

rn_status rn_session_reset_row(rn_session *s, size_t row) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    rn_status st = row < (size_t)s->batch ? rn_session_reset_row_locked(s, (int64_t)row)
                                          : rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT, "row %zu of a batch of %lld",
                                                    row, (long long)s->batch);
    return rn_context_unlock(ctx, st);
}

rn_status rn_session_set_progress(rn_session *s, rn_progress_fn fn, void *user) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    s->progress = fn;
    s->progress_user = user;
    return rn_context_unlock(ctx, RN_OK);
}

/* A scratch session runs one step and, when asked, one prompt: drivers that compile a kernel
 * at its first launch (PoCL, for each work-group size) and CLBlast (its routines) do it here. */
rn_status rn_model_warmup(rn_model *m, size_t prompt_tokens, rn_mode mode) {
    if (!m) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = m->ctx;
    rn_context_lock(ctx);
    rn_session *s = NULL;
    rn_status st = rn_session_init_locked(m, &s);
    if (st == RN_OK) st = rn_session_decode_locked(s, 0, NULL);
    if (st == RN_OK && prompt_tokens > 0 && mode != RN_MODE_RECURRENT) {
        int32_t *zeros = calloc(prompt_tokens, sizeof *zeros);
        st = zeros ? rn_session_reset_locked(s)
                   : rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for %zu tokens", prompt_tokens);
        if (st == RN_OK) st = rn_session_prefill_locked(s, zeros, prompt_tokens, mode, 0, NULL);
        free(zeros);
    }
    rn_session_free_locked(s);
    return rn_context_unlock(ctx, st);
}

size_t rn_session_batch(const rn_session *s) {
    return s ? (size_t)s->batch : 0;
}
