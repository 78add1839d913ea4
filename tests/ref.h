/*
 * ref.h: the plain-C reference of the RetNet forward pass (torchscale's math: microsoft/torchscale's
 * torchscale/architecture/retnet.py and torchscale/component/multiscale_retention.py), written to
 * be read, not to be fast.
 *
 * Inputs and outputs are float; every sum, product and normalisation is computed in double.
 * Layouts (row-major):
 *   activations x, h      [n, D]
 *   q, k                  [n, H*dk]   head h owns columns [h*dk, (h+1)*dk)
 *   v, g, retention out   [n, H*dv]
 *   linear weight W       [out, in]   y = x W^T, no bias
 *   recurrent state       [H, dk, dv] key-major: state[h][a][b] = sum_m gamma^(n-m) k_m[a] v_m[b]
 *                                     / sqrt(S_n), plus one scale S_n per head
 *
 * Every op the OpenCL kernels implement has a function here, so that tests/test_ops.c can check
 * kernels one by one; ref_forward chains them into the whole network.
 */
#ifndef RN_REF_H
#define RN_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

/* ---- ops ---------------------------------------------------------------------------------- */

/* x[t] = scale * E[tokens[t]]. E is [V, D]. */
void ref_embedding(const float *E, int64_t D, const int32_t *tokens, int64_t n, double scale,
                   float *x);

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w  (w may be NULL: no weight). rows x dim. */
void ref_rms_norm(const float *x, const float *w, int64_t rows, int64_t dim, double eps,
                  float *y);

/* y = x W^T: x [n, in], W [out, in], y [n, out]. */
void ref_linear(const float *x, const float *W, int64_t n, int64_t in, int64_t out, float *y);

/* In place on x [n, H*dk]: multiply by `scale` (1 for q, dk^-0.5 for k), then rotate each
 * pair of every head by phi = float(pos0 + t) * angle[j0], the product rounded to float as
 * torch does, then sin/cos in double. Pairs are interleaved (j0, j1) = (2i, 2i+1), or with
 * half_split NeoX's (i, i + dk/2) (fla). angle has dk entries. */
void ref_theta_shift(float *x, int64_t n, int64_t H, int64_t dk, const float *angle,
                     int64_t pos0, double scale, bool half_split);

/* Retention of n tokens starting from an empty state, per head with gamma_h = exp(decay[h]).
 * q, k [n, H*dk] already rotated (k already scaled); v [n, H*dv]; o [n, H*dv] is written
 * before the group norm, with the exact per-form normalisation:
 *   parallel:   o_t = R_t / (sqrt(S_t) * clamp(sum_m |q_t.k_m| g^(t-m) / sqrt(S_t), 1, 5e4))
 *   chunkwise:  o_t = R_t / (sqrt(s_c) * max(iota_c, sigma_i))   (chunk i, offset c)
 *   recurrent:  o_t = R_t / sqrt(S_t)
 * plain (fla): o_t = R_t in every form, and the state below is not divided by sqrt(S).
 * Grouped heads: k [n, kv_heads*dk], v [n, kv_heads*dv]; query head h reads key/value head
 * h / (H / kv_heads).
 * When state/scale are not NULL, the recurrent state after the last token is written there
 * (layout above; scale[h] = S_(n-1)); it is the same for all three forms. */
void ref_retention(rn_mode mode, int64_t chunk, const float *q, const float *k, const float *v,
                   int64_t n, int64_t H, int64_t kv_heads, int64_t dk, int64_t dv,
                   const float *decay, bool plain, float *o, float *state, float *scale);

/* One recurrent step continuing from state/scale (updated in place), for the token at
 * position `pos` (scale is S_(pos-1) on entry, 0 when pos == 0). q [H*dk], k [kv_heads*dk],
 * v [kv_heads*dv], o [H*dv]. */
void ref_retention_step(const float *q, const float *k, const float *v, int64_t H,
                        int64_t kv_heads, int64_t dk, int64_t dv, const float *decay, bool plain,
                        float *state, float *scale, float *o);

/* y = silu(g) * w * (o / sqrt(mean_head(o^2) + eps)) per token and head; g NULL: no gate;
 * w [dv] NULL: no weight. o, g, y [n, H*dv]. */
void ref_group_norm_gate(const float *o, const float *g, const float *w, int64_t n, int64_t H,
                         int64_t dv, double eps, float *y);

/* c = act(a) * b elementwise; gelu is the exact erf form, swish is x * sigmoid(x). */
void ref_glu(const float *a, const float *b, int64_t count, rn_activation act, float *c);

/* ---- whole model -------------------------------------------------------------------------- */

typedef struct ref_layer {
    float *q_proj, *k_proj, *v_proj, *g_proj, *out_proj;
    float *head_norm;                                  /* [dv] or NULL */
    float *retention_norm, *fc1, *gate, *fc2, *ffn_norm;
} ref_layer;

typedef struct ref_model {
    rn_config cfg;
    float *embed, *embed_norm, *final_norm, *output;  /* embed_norm, final_norm may be NULL */
    float *angle, *decay;                              /* [dk], [H] */
    ref_layer *layers;                                 /* [L] */
} ref_model;

/* Widens every tensor of the checkpoint to float. NULL when out of memory. */
ref_model *ref_model_from_checkpoint(const rn_checkpoint *ckpt);
void ref_model_free(ref_model *model);

/* Logits [n, V] of n tokens from position 0, in the given form (recurrent: one token at a
 * time, as fairseq drives torchscale). chunk is used by RN_MODE_CHUNKWISE. */
void ref_forward(const ref_model *model, const int32_t *tokens, int64_t n, rn_mode mode,
                 int64_t chunk, float *logits);

/* As a session runs a prompt: the first n_prefill tokens at once in the parallel or chunkwise
 * form, which leaves the recurrent state, then the rest one token at a time in the recurrent
 * form. Logits [n, V]. */
void ref_forward_prefill(const ref_model *model, const int32_t *tokens, int64_t n,
                         int64_t n_prefill, rn_mode mode, int64_t chunk, float *logits);

#endif /* RN_REF_H */
