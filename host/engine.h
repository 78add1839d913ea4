/* engine.h: the objects behind the public handles. Internal to host/. */
#ifndef RN_ENGINE_H
#define RN_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "checkpoint.h"
#include "matrix.h"
#include "ops.h"
#include "retnet.h"

struct rn_context {
    rt_runtime rt;
    rn_error err;
    pthread_mutex_t lock;              /* held for the whole of every public call on the context,
                                          its models and sessions (rn_context_lock/unlock) */
    uint64_t id;                       /* unique per process: tags the per-thread error copies */
    rn_tuning tuning;                  /* from rn_context_options */
    rn_device_info info;               /* the public copy of rt.dev.info */
    atomic_int cancel;                 /* rn_context_cancel: set from anywhere, without the lock */
};

/* Whether rn_context_cancel asked the running work to stop; if so, clears the request and
 * records the message: the caller returns RN_ERR_CANCELLED. `what` names the work. */
bool rn_context_cancelled(rn_context *ctx, const char *what);

/* Records `err` as the calling thread's last failure (rn_last_error), for calls that fail
 * without a context (tokenizer, sampler, context creation). Returns `st`. */
rn_status rn_thread_fail(rn_status st, const rn_error *err);

/* Every public call that touches the device, the memory counters or `err` runs between these.
 * rn_context_unlock copies err's message into the calling thread's own last-error slot when
 * `st` is a failure, so that rn_context_last_error returns the message of this thread's own
 * failure even if another thread fails on the same context in between. */
void rn_context_lock(rn_context *ctx);
rn_status rn_context_unlock(rn_context *ctx, rn_status st);

/* Matrices are stored in the model's weight type, each in one buffer or, on a device with a
 * small largest allocation, in pieces of whole rows (matrix.h); vectors (norm weights) in fp32.
 * The projections that read the same input are stacked in one matrix, so that decoding reads
 * them in one product (one launch) while prompts still take each as its own GEMM (a row
 * offset). */
typedef struct rn_layer_weights {
    rn_matrix qkvg;                    /* [rn_qkvg_layout().total, D]: q, k, v, g rows */
    rn_matrix out_proj;                /* [D, Dv] */
    rt_buffer head_norm;               /* [dv], only with a weighted head norm (fla) */
    rt_buffer retention_norm;          /* [D] */
    rn_matrix ffn_in;                  /* [2F, D]: fc1's rows and the gate's, as halves */
    rn_matrix fc2;                     /* [D, F] */
    rt_buffer ffn_norm;                /* [D] */
} rn_layer_weights;

/* Where q, k, v and g start in a layer's qkvg matrix, and its row count: q [H*dk], k [Hkv*dk],
 * v [Hkv*dv], g [Dv] (absent without an output gate). */
typedef struct rn_qkvg_rows {
    int64_t q, k, v, g, total;
} rn_qkvg_rows;

static inline rn_qkvg_rows rn_qkvg_layout(const rn_config *c) {
    rn_qkvg_rows r;
    r.q = 0;
    r.k = c->key_embed_dim;
    r.v = r.k + c->kv_heads * c->key_head_dim;
    r.g = r.v + c->kv_heads * c->value_head_dim;
    r.total = r.g + (c->output_gate ? c->value_embed_dim : 0);
    return r;
}

struct rn_model {
    rn_context *ctx;
    rn_config cfg;
    st_dtype weights;                  /* device storage of the matrices */
    rn_kernels kernels;
    rn_matrix embed;                   /* [V, D] */
    rt_buffer embed_norm;              /* [D], allocated only with layernorm_embedding */
    rt_buffer final_norm;              /* [D], allocated only with pre-norm */
    rn_matrix output;                  /* [V, D], not allocated when tied: embed is used */
    rt_buffer angle;                   /* [dk] */
    rt_buffer decay;                   /* [H] log gamma */
    rn_layer_weights *layers;          /* [L] */
    uint64_t parameters, file_bytes, device_bytes;
    const char *file_dtype;
    uint64_t fingerprint;              /* of the config and the weights, for state files */
};

/* Activations for `rows` tokens at a time. */
typedef struct rn_workspace {
    int64_t rows;
    rt_buffer tokens;                  /* [rows] int */
    rt_buffer positions;               /* [rows] int, decoding: each row's own position */
    rt_buffer scale_in;                /* [H], a prompt continuing a state: the scale it enters
                                          with, apart from the slot the prompt writes */
    rt_buffer x, h;                    /* [rows, D] residual stream, normed input / branch output */
    rt_buffer q;                       /* [rows, H*dk] */
    rt_buffer k;                       /* [rows, Hkv*dk] */
    rt_buffer v;                       /* [rows, Hkv*dv] */
    rt_buffer g;                       /* [rows, Dv] */
    rt_buffer o;                       /* [rows, Dv] retention output, then gated in place */
    rt_buffer a, b;                    /* [rows, F] */
    rt_buffer logits;                  /* [rows, V] */
    rt_buffer step_done;               /* [rows * H] ints, decoding: the groups of each head
                                          that finished a retention step (rn_step_norm) */
    rt_buffer choice;                  /* [rows, 2] int, decoding: a greedy step's choices
                                          (rn_op_argmax) */
    rt_buffer argmax_winners;          /* [rows, RN_ARGMAX_MAX_PARTS, 3] ints, decoding where
                                          rows are cut into slices (rn_argmax_slices) */
    rt_buffer argmax_done;             /* [rows] ints: the slices of each row that finished */
    rt_buffer widened;                 /* fp32 copy of one weight matrix (or piece, or as many
                                          rows as one buffer takes) for SGEMM, when the weights
                                          are not fp32 and rows > 1 */
    rt_buffer x_half;                  /* [rows, up to max(D, Dv, F)] halves: a prompt product's
                                          activations rounded once for the matrix engine */
    rt_buffer partial;                 /* the small matrix-engine GEMM's slices of K (ops.h
                                          rn_op_project_mma), for the largest product */
    rt_buffer stacked;                 /* [rows, max(qkvg rows, 2F)]: one SGEMM's output for the
                                          stacked q/k/v/g or fc1/gate matrix, when it fits */
    rn_retention_scratch retention;
    bool retention_gemm;               /* the prompt's retention runs as batched GEMMs */
} rn_workspace;

#define RN_RECENT_TOKENS 256

/* A session is `batch` independent rows (1 for an ordinary session), each a sequence with its
 * own position, state, scale, recent tokens and last logits. */
struct rn_session {
    rn_model *model;
    int64_t batch;                     /* rows */
    uint64_t *positions;               /* [batch] tokens each row has consumed */
    cl_int *step_input;                /* [2, batch] a step's token ids and positions, written to the
                                          device without waiting: untouched until the step's logits
                                          are read back (or rt_finish after a failure) */
    float *last_logits;                /* [batch, V] logits after each row's last token, except
                                          the rows marked in logits_on_device */
    bool *logits_on_device;            /* [batch] row r's last logits are row r of step.logits,
                                          left there by a greedy step and not read back yet
                                          (rn_session_fetch_logits_locked); nothing but a step
                                          writes those rows */
    int64_t rows_on_device;            /* how many rows logits_on_device marks */
    cl_int *step_choice;               /* [batch, 2] a greedy step's choices read back */
    int32_t *recent;                   /* [batch][RN_RECENT_TOKENS] each row's last tokens, a ring
                                          ending at its position - 1 */
    rt_buffer *state;                  /* [L] each [batch*H, dk, dv] */
    rt_buffer *scale;                  /* [L][2] each [batch*H]: the scale of row r's position p
                                          is in slot p & 1 (retention_step) */
    rn_workspace step;                 /* `batch` rows, for decoding */
    rn_progress_fn progress;           /* rn_session_set_progress */
    void *progress_user;
};

/* The bodies of rn_session_init/free/reset, for callers that already hold the context's lock
 * (state.c). */
rn_status rn_session_init_locked(rn_model *model, rn_session **out);
void rn_session_free_locked(rn_session *session);
rn_status rn_session_reset_locked(rn_session *session);
/* Empties row `row` (< batch): zero state and scales, position 0, no recent tokens, zero logits. */
rn_status rn_session_reset_row_locked(rn_session *session, int64_t row);

/* Marks whether row `row`'s last logits are on the device (a greedy step) or in last_logits. */
static inline void rn_session_logits_on_device(rn_session *s, int64_t row, bool on_device) {
    if (s->logits_on_device[row] != on_device) s->rows_on_device += on_device ? 1 : -1;
    s->logits_on_device[row] = on_device;
}
/* Reads the rows a greedy step left on the device into last_logits, so that every row of it is
 * current; nothing to do (and no wait) when no row is marked. */
rn_status rn_session_fetch_logits_locked(rn_session *session);

/* Row r's ring of recent tokens. */
static inline int32_t *rn_session_ring(const rn_session *s, int64_t row) {
    return s->recent + (size_t)row * RN_RECENT_TOKENS;
}

static inline const rn_matrix *rn_model_output(const rn_model *m) {
    return m->cfg.share_embed ? &m->embed : &m->output;
}

#endif /* RN_ENGINE_H */
