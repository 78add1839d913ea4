/*
 * checkpoint.h: a checkpoint directory as a model description, whatever its family.
 *
 * `dir`/config.json (config.h, which detects the family) and the weights: `dir`/model.safetensors,
 * or the shards listed by `dir`/model.safetensors.index.json. When both exist the index wins:
 * HF writes the index only for sharded saves, so a model.safetensors beside it is a leftover
 * of an earlier save (ckpt->indexed says which was read). The tensors of every family are
 * mapped onto torchscale's roles below; syncdoth prefixes every name with "model." and calls
 * the output "lm_head"; fla's names and its MLP are mapped as flash-linear-attention's
 * RetNetForCausalLM defines them (gate_proj -> fc1, the activated branch; up_proj -> gate, the linear branch;
 * down_proj -> fc2; a legacy gate_proj of 2I rows is split into the two).
 *
 * torchscale (syncdoth: "model." + the same name, except lm_head.weight for the output):
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
 * Which of the two a decoder_* config is follows from the names: model.embed_tokens.weight
 * makes it syncdoth, embed_tokens.weight torchscale; ckpt->config.family is set accordingly.
 *
 * fla (K = H * dk = key_embed_dim, G = H / kv_heads, I = ffn_dim):
 *
 *   model.embeddings.weight                          [V, D]     embed
 *   model.layers.N.attn_norm.weight                  [D]        retention_norm
 *   model.layers.N.attn.q_proj.weight                [K, D]
 *   model.layers.N.attn.k_proj.weight                [K/G, D]
 *   model.layers.N.attn.v_proj.weight                [Dv/G, D]
 *   model.layers.N.attn.g_proj.weight                [Dv, D]    only with use_output_gate
 *   model.layers.N.attn.o_proj.weight                [D, Dv]    out_proj
 *   model.layers.N.attn.g_norm_swish_gate.weight     [dv]       head_norm, when elementwise_affine;
 *     or model.layers.N.attn.g_norm.weight                      either name, not both
 *   model.layers.N.mlp_norm.weight                   [D]        ffn_norm
 *   model.layers.N.mlp.gate_proj.weight              [I, D]     fc1, with up_proj
 *   model.layers.N.mlp.up_proj.weight                [I, D]     gate
 *     or model.layers.N.mlp.gate_proj.weight         [2I, D]    no up_proj: rows [0, I) are fc1,
 *                                                               rows [I, 2I) are gate
 *   model.layers.N.mlp.down_proj.weight              [D, I]     fc2
 *   model.norm.weight                                [D]        final_norm
 *   lm_head.weight                                   [V, D]     output, unless tie_word_embeddings
 *
 * The two halves of a fused gate_proj are st_tensors owned by the checkpoint (data pointing into
 * the parent's bytes, shape [I, D], name "<parent>[rows 0:I]" or "[rows I:2I]").
 *
 * Sharded: model.safetensors.index.json is read for "weight_map" only (tensor name -> shard file
 * name; other keys such as "metadata" are ignored). Shard names must be plain file names in
 * `dir`: no '/', '\\', ':', "..", control characters, nothing empty. Every shard named is opened
 * and validated by st_open; every tensor the map lists must be in the shard it names, and no
 * tensor may be in two shards. Lookups go through the map; tensors a shard holds but the map
 * does not list are ignored, like unknown tensors. Errors: RN_ERR_JSON (index not JSON, or a
 * key twice at its top level), RN_ERR_TENSOR_ENTRY (weight_map missing, empty or not an object
 * of strings; a shard name that is not a plain file name), RN_ERR_DUPLICATE (a tensor twice in
 * weight_map, or in two shards), RN_ERR_IO (a shard file missing, named), RN_ERR_MISSING_TENSOR
 * (a tensor absent from the shard the map names), RN_ERR_LIMIT (index over 16 MiB, over 65536
 * shards), and st_open's for a shard.
 *
 * syncdoth built with tensor_parallel (retention.decay_proj.weight present) is refused with
 * RN_ERR_UNSUPPORTED_CONFIG. A tensor of a role in U8 (or any dtype but F32, F16, BF16) is refused
 * with RN_ERR_UNSUPPORTED_DTYPE. Every missing tensor is listed in one message
 * (RN_ERR_MISSING_TENSOR); a wrong shape names the tensor, its file, its shape and the expected
 * one (RN_ERR_TENSOR_SHAPE). Tensors outside these lists are ignored. No OpenCL here.
 *
 * Quantized checkpoints (`retnet quantize`, models/quantize.h): the header's __metadata__ holds
 * "retnet_cl.quantization": "q8_0" or "q4_0" and "retnet_cl.quantization_version": "1" (every
 * shard the same). Each weight matrix the runtime keeps in the model's weight type (the embedding,
 * the output, q/k/v/g, out_proj, fc1, gate, fc2; fla's gate_proj/up_proj/down_proj, a fused
 * gate_proj whole) is then two tensors named after it:
 *   <name>.qweight  U8   [rows, cols (Q8_0) or cols / 2 (Q4_0)]  the quants of each row
 *   <name>.qscale   F16  [rows, cols / 32]                       a scale per block of 32
 * (safetensors.h has the quants' layout). Every other tensor is as in an ordinary checkpoint,
 * in F32, F16 or BF16. The roles' tensors are views of dtype ST_Q8_0 / ST_Q4_0 and the logical
 * shape [rows, cols]: `data` the quants, `scales` the scales, nbytes both, owned by the
 * checkpoint and not found by name (nor read by st_to_f32, whose blocks are contiguous). Errors, each naming the tensor: a scheme other than q8_0/q4_0, a version other
 * than "1" or missing, a version without a scheme, shards that disagree
 * (RN_ERR_UNSUPPORTED_CONFIG); a missing .qweight or .qscale (RN_ERR_MISSING_TENSOR, listed with
 * the others); .qweight not U8 or .qscale not F16 (RN_ERR_UNSUPPORTED_DTYPE); either of the
 * wrong shape for the config (RN_ERR_TENSOR_SHAPE); a matrix whose rows are not a multiple of 32
 * (RN_ERR_UNSUPPORTED_CONFIG).
 */
#ifndef RN_CHECKPOINT_H
#define RN_CHECKPOINT_H

#include "config.h"
#include "safetensors.h"

#define RN_MAX_INDEX_BYTES (16u << 20)   /* a 3B model's index is 26 kB */
#define RN_MAX_SHARDS 65536

#define RN_QUANT_KEY "retnet_cl.quantization"
#define RN_QUANT_VERSION_KEY "retnet_cl.quantization_version"
#define RN_QUANT_VERSION "1"
#define RN_QWEIGHT_SUFFIX ".qweight"
#define RN_QSCALE_SUFFIX ".qscale"

typedef struct rn_layer_tensors {
    const st_tensor *q_proj;           /* [K, D]      K = key_embed_dim = H * dk */
    const st_tensor *k_proj;           /* [K/G, D]    G = H / kv_heads */
    const st_tensor *v_proj;           /* [Dv/G, D] */
    const st_tensor *out_proj;         /* [D, Dv] */
    const st_tensor *g_proj;           /* [Dv, D], NULL without an output gate */
    const st_tensor *head_norm;        /* [dv] weight of the per-head norm, or NULL (fla only) */
    const st_tensor *retention_norm;   /* [D] retention_layer_norm.weight (fla attn_norm) */
    const st_tensor *fc1;              /* [F, D] the activated branch */
    const st_tensor *gate;             /* [F, D] the linear branch */
    const st_tensor *fc2;              /* [D, F] */
    const st_tensor *ffn_norm;         /* [D] final_layer_norm.weight (fla mlp_norm) */
} rn_layer_tensors;

typedef struct rn_checkpoint {
    rn_config config;                  /* family settled from the tensor names */
    st_file **shards;                  /* [n_shards], one when unsharded */
    size_t n_shards;
    bool indexed;                      /* read through model.safetensors.index.json */
    bool quantized;                    /* a quantized checkpoint (above) */
    st_dtype quantization;             /* its scheme, ST_Q8_0 or ST_Q4_0; ST_F32 when not */
    const st_tensor *embed;            /* [V, D] embed_tokens.weight */
    const st_tensor *embed_norm;       /* [D] NULL unless layernorm_embedding */
    const st_tensor *final_norm;       /* [D] NULL unless normalize_before */
    const st_tensor *output;           /* [V, D] output_projection.weight, or embed when tied */
    const st_tensor *angle;            /* [dk] NULL when absent (always for fla) */
    const st_tensor *decay;            /* [H] NULL when absent (always for fla) */
    rn_layer_tensors *layers;          /* [L] */
    uint64_t parameters;               /* what the model uses, tied weights counted once */
    uint64_t tensor_bytes;             /* bytes of the tensors above in the files */
} rn_checkpoint;

rn_status rn_checkpoint_open(const char *dir, rn_checkpoint **out, rn_error *err);
void rn_checkpoint_close(rn_checkpoint *ckpt);

/* A tensor of an opened checkpoint by its name in the files, whichever shard holds it (through
 * the index when there is one); NULL when absent. The derived halves of a fused gate_proj are
 * not found by name. */
const st_tensor *rn_checkpoint_find(const rn_checkpoint *ckpt, const char *name);

/* The rotation angles (dk floats) and decays (H floats, log gamma) the model uses: the
 * checkpoint's buffers when present, otherwise computed in fp32 as the family does. Only
 * ckpt->config and the angle/decay members are read, so a checkpoint struct holding just a config
 * works too.
 *
 * angle, interleaved (torchscale/syncdoth, rope_half false): theta_i = 10000^-(i/(dk/2-1)) as
 *   torch.linspace gives it, each repeated twice: angle[2i] = angle[2i+1] = theta_i; rotation
 *   pairs are (2i, 2i+1).
 * angle, half-split (fla, rope_half true): theta_i = 10000^(-2i/dk) (NeoX inv_freq) for
 *   i < dk/2, stored twice over: angle[i] = angle[i + dk/2] = theta_i; rotation pairs are
 *   (i, i + dk/2). Either way element j of a head rotates by position * angle[j].
 * decay: log(1 - 2^(-5-h)); with use_lm_decay (syncdoth) and no buffer,
 *   log(1 - exp(linspace(log(1/32), log(1/512), H))) in float, as syncdoth's RetNetRelPos. */
void rn_checkpoint_rel_pos(const rn_checkpoint *ckpt, float *angle, float *decay);

#endif /* RN_CHECKPOINT_H */
