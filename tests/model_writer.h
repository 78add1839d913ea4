/*
 * model_writer.h: writing safetensors files and random RetNet checkpoints.
 *
 * The writing half of models/: what tests and tools use to make inputs for the reader.
 * rn_st_write turns float arrays into a safetensors file in F32, F16 or BF16 (rounded to
 * nearest even), with the header padded by spaces to a multiple of 8 and the tensors laid out
 * widest dtype first so that each one is naturally aligned. rn_write_random_model writes a
 * whole checkpoint directory (config.json + model.safetensors, or shards and their index) in
 * the exact naming and config.json keys of the config's family (torchscale, syncdoth or fla;
 * checkpoint.h lists the names), with weights drawn from a fixed-seed generator at
 * torchscale-like scales. Tensors are streamed a chunk at a time, so a model of any size needs
 * only a few hundred kilobytes of memory. The same seed and config always give the same bytes,
 * and each tensor's values depend only on the seed, its name and its scale: not on which other
 * tensors are written, how they are sharded, nor (beyond rounding) on the dtype. An fla fused
 * gate_proj [2I, D] holds exactly the values of the separate gate_proj and up_proj, so the two
 * layouts describe the same model.
 */
#ifndef RN_MODEL_WRITER_H
#define RN_MODEL_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "safetensors.h"

/* One tensor to write. `data` holds product(shape) floats (1 for rank 0), row-major; it may be
 * NULL only when that product is 0. */
typedef struct rn_st_entry {
    const char *name;             /* non-empty, at most ST_MAX_NAME_BYTES, unique */
    st_dtype dtype;               /* stored dtype; data is converted to it */
    int rank;                     /* 0..ST_MAX_RANK */
    uint64_t shape[ST_MAX_RANK];
    const float *data;
} rn_st_entry;

/* Writes `n` entries to `path` (replacing it), with "__metadata__": {"format": "pt"} as torch
 * does. Errors: RN_ERR_INVALID_ARGUMENT (bad entry, duplicate name), RN_ERR_LIMIT (sizes past
 * the format's 2^48), RN_ERR_IO, RN_ERR_OUT_OF_HOST_MEMORY. */
rn_status rn_st_write(const char *path, const rn_st_entry *entries, size_t n, rn_error *err);

typedef struct rn_writer_options {
    uint64_t seed;        /* generator seed (default 1) */
    st_dtype dtype;       /* storage dtype of every tensor (default ST_F32) */
    double qk_gain;       /* extra factor on the q_proj/k_proj init (default 1); a few units
                             make |q.k| large enough that parallel retention's d_n clamp acts */
    bool write_rel_pos;   /* torchscale/syncdoth: also write the retnet_rel_pos.angle/.decay
                             buffers (default no); refused for fla, which has none */
    const float *decay;   /* [H] values for the decay buffer instead of the computed ones (a
                             learned decay); implies write_rel_pos (default NULL) */
    unsigned shards;      /* 0 (default): one model.safetensors. N >= 1: N files
                             model-0000k-of-0000N.safetensors and model.safetensors.index.json,
                             the tensors dealt out in a shuffled order (from the seed); at most
                             one shard per tensor */
    bool fused_mlp;       /* fla: one gate_proj [2I, D] as fla wrote before 2025-02 (b48ca31d)
                             instead of gate_proj [I, D] + up_proj [I, D] (default no) */
} rn_writer_options;

void rn_writer_options_default(rn_writer_options *opts);

/* fla-hub/retnet-1.3B-100B: its config (D 2048, 24 layers, 8 heads, dk 256, dv 512, MLP 2816,
 * vocab 32000, untied, eps 1e-6; config.json as on the hub) and its storage: bf16, the fused MLP layout of its 2024 upload. 1,351,727,104
 * parameters, 2,703,454,208 bytes of tensor data. */
void rn_writer_preset_fla_1_3b(rn_config *cfg, rn_writer_options *opts);

/* Writes `cfg` as its family's config.json:
 *   torchscale  every RetNetConfig key of config.h and "model_type": "retnet";
 *   syncdoth    the keys of syncdoth's RetNetConfig (tie_word_embeddings, use_lm_decay,
 *               use_glu, subln, forward_impl, ...), sorted as transformers writes them;
 *   fla         the keys of fla-hub/retnet-1.3B-100B's config.json, sorted, with this config's
 *               values (expand_k/expand_v as the exact ratios, intermediate_size null when the
 *               hidden_ratio-2 rule gives ffn_dim, num_kv_heads null when equal to H).
 * torchscale/syncdoth read D, Dv, H, F, L, V, chunk_size, activation, layernorm_eps and the
 * structure flags (syncdoth also use_lm_decay). fla reads D, key_embed_dim (0: D),
 * value_embed_dim, H, kv_heads (0: H), F, L, V, layernorm_eps, share_embed, head_norm_weight and
 * output_gate; the activation is always swish. Other fields, derived ones included, are not
 * read. torch_dtype says float32. */
rn_status rn_write_config(const char *path, const rn_config *cfg, rn_error *err);

/* Creates `dir` (and its parents), writes `dir`/config.json from `cfg` (as rn_write_config,
 * torch_dtype following opts->dtype) and the weights: `dir`/model.safetensors, or with
 * opts->shards the shard files and `dir`/model.safetensors.index.json (a stale file of the other
 * kind in `dir` is removed, since the loader prefers the index). The config is read back through
 * rn_config_load first, so an invalid `cfg` fails with that loader's status, and one whose family
 * fields do not survive the round trip with RN_ERR_INVALID_ARGUMENT. `opts` may be NULL for the
 * defaults. Initialisation, per tensor (fla names in brackets):
 *   embed_tokens, output [embeddings, lm_head]   N(0, D^-1/2)
 *   q/k/v/g_proj                                 xavier uniform, gain 2^-2.5 (q, k also times
 *                                                qk_gain)
 *   out_proj [o_proj]                            xavier uniform, gain 2^-1
 *   ffn fc1/gate/fc2 [gate/up/down_proj]         U(-1/sqrt(in), 1/sqrt(in))
 *   norm weights [and the head norm]             1 + U(-0.1, 0.1), so a forgotten weight shows
 *   deepnorm                                     v_proj, out_proj, fc1, fc2 divided by (8L)^(1/4)
 *   rel-pos buffers                              rn_checkpoint_rel_pos's values, or opts->decay
 * fla's head norm is written as attn.g_norm_swish_gate.weight with the output gate and as
 * attn.g_norm.weight without, as fla names it (fuse_norm true, swish). */
rn_status rn_write_random_model(const char *dir, const rn_config *cfg,
                                const rn_writer_options *opts, rn_error *err);


#endif /* RN_MODEL_WRITER_H */
