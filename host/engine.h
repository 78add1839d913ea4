/* engine.h: the objects behind the public handles. Internal to host/. */
#ifndef RN_ENGINE_H
#define RN_ENGINE_H

#include "checkpoint.h"
#include "ops.h"
#include "retnet.h"

struct rn_context {
    rt_runtime rt;
    rn_error err;
};

/* Matrices are stored in the model's weight type; vectors (norm weights) in fp32. */
typedef struct rn_layer_weights {
    rt_buffer q_proj;                  /* [H*dk, D] */
    rt_buffer k_proj;                  /* [Hkv*dk, D] */
    rt_buffer v_proj;                  /* [Hkv*dv, D] */
    rt_buffer g_proj;                  /* [Dv, D], absent without an output gate */
    rt_buffer out_proj;                /* [D, Dv] */
    rt_buffer head_norm;               /* [dv], only with a weighted head norm (fla) */
    rt_buffer retention_norm;          /* [D] */
    rt_buffer fc1, gate;               /* [F, D] */
    rt_buffer fc2;                     /* [D, F] */
    rt_buffer ffn_norm;                /* [D] */
} rn_layer_weights;

struct rn_model {
    rn_context *ctx;
    rn_config cfg;
    st_dtype weights;                  /* device storage of the matrices */
    rn_kernels kernels;
    rt_buffer embed;                   /* [V, D] */
    rt_buffer embed_norm;              /* [D], allocated only with layernorm_embedding */
    rt_buffer final_norm;              /* [D], allocated only with pre-norm */
    rt_buffer output;                  /* [V, D], not allocated when tied: embed is used */
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
    rt_buffer x, h;                    /* [rows, D] residual stream, normed input / branch output */
    rt_buffer q;                       /* [rows, H*dk] */
    rt_buffer k;                       /* [rows, Hkv*dk] */
    rt_buffer v;                       /* [rows, Hkv*dv] */
    rt_buffer g;                       /* [rows, Dv] */
    rt_buffer o;                       /* [rows, Dv] retention output, then gated in place */
    rt_buffer a, b;                    /* [rows, F] */
    rt_buffer logits;                  /* [rows, V] */
    rt_buffer widened;                 /* fp32 copy of one weight matrix for SGEMM, when the
                                          weights are half precision and rows > 1 */
    rn_retention_scratch retention;
} rn_workspace;

#define RN_RECENT_TOKENS 256

struct rn_session {
    rn_model *model;
    uint64_t position;                 /* tokens consumed */
    float *last_logits;                /* [V] logits after the last token consumed */
    int32_t recent[RN_RECENT_TOKENS];  /* the last tokens consumed, a ring ending at position - 1 */
    rt_buffer *state;                  /* [L] each [H, dk, dv] */
    rt_buffer *scale;                  /* [L][2] each [H], double-buffered by position parity */
    rn_workspace step;                 /* one row, for decoding */
};

static inline const rt_buffer *rn_model_output(const rn_model *m) {
    return m->cfg.share_embed ? &m->embed : &m->output;
}

#endif /* RN_ENGINE_H */
