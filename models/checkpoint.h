/*
 * checkpoint.h: a torchscale RetNetDecoder checkpoint directory as a model description.
 *
 * `dir`/config.json (config.h) and `dir`/model.safetensors (safetensors.h) holding the state
 * dict of torchscale's RetNetDecoder:
 *
 *   embed_tokens.weight                      [V, D]
 *   layernorm_embedding.weight               [D]      only if layernorm_embedding
 *   layers.N.retention.{q,k}_proj.weight     [D, D]
 *   layers.N.retention.{v,g}_proj.weight     [Dv, D]
 *   layers.N.retention.out_proj.weight       [D, Dv]
 *   layers.N.retention_layer_norm.weight     [D]
 *   layers.N.ffn.{fc1,gate}.weight           [F, D]
 *   layers.N.ffn.fc2.weight                  [D, F]
 *   layers.N.final_layer_norm.weight         [D]
 *   layer_norm.weight                        [D]      only if decoder_normalize_before
 *   output_projection.weight                 [V, D]   unless tied (ignored when tied)
 *   retnet_rel_pos.angle                     [dk]     optional buffer, used when present
 *   retnet_rel_pos.decay                     [H]      optional buffer, used when present
 *
 * Every missing tensor is listed in one message (RN_ERR_MISSING_TENSOR); a wrong shape names
 * the tensor, its shape and the expected one (RN_ERR_TENSOR_SHAPE). Tensors outside this list
 * are ignored. No OpenCL here.
 */
#ifndef RN_CHECKPOINT_H
#define RN_CHECKPOINT_H

#include "config.h"
#include "safetensors.h"

typedef struct rn_layer_tensors {
    const st_tensor *q_proj, *k_proj, *v_proj, *g_proj, *out_proj;
    const st_tensor *retention_norm;   /* retention_layer_norm.weight */
    const st_tensor *fc1, *gate, *fc2;
    const st_tensor *ffn_norm;         /* final_layer_norm.weight */
} rn_layer_tensors;

typedef struct rn_checkpoint {
    rn_config config;
    st_file *file;
    const st_tensor *embed;            /* embed_tokens.weight */
    const st_tensor *embed_norm;       /* NULL unless layernorm_embedding */
    const st_tensor *final_norm;       /* NULL unless normalize_before */
    const st_tensor *output;           /* output_projection.weight, or embed when tied */
    const st_tensor *angle;            /* NULL when absent */
    const st_tensor *decay;            /* NULL when absent */
    rn_layer_tensors *layers;          /* [L] */
    uint64_t parameters;               /* tied weights counted once */
    uint64_t tensor_bytes;             /* bytes of the tensors above in the file */
} rn_checkpoint;

rn_status rn_checkpoint_open(const char *dir, rn_checkpoint **out, rn_error *err);
void rn_checkpoint_close(rn_checkpoint *ckpt);

/* The rotation angles (dk floats) and decays (H floats, log gamma) the model uses: the
 * checkpoint's buffers when present, otherwise computed as torchscale's RetNetRelPos does in
 * fp32 (theta_i = 10000^-(i/(dk/2-1)), each repeated twice; decay_h = log(1 - 2^(-5-h))). */
void rn_checkpoint_rel_pos(const rn_checkpoint *ckpt, float *angle, float *decay);

#endif /* RN_CHECKPOINT_H */
