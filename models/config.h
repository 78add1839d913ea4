/*
 * config.h: a RetNet config.json of any supported family, read into one description.
 *
 * The family is told by the keys. decoder_* keys (decoder_embed_dim, decoder_layers, ...) are
 * torchscale's RetNetConfig, which syncdoth/RetNet (and Spiral, built on it) keeps: those two
 * differ in the tensor names more than in the config, so the parse only guesses between them
 * (syncdoth when a key only its HF class writes is present: tie_word_embeddings, use_lm_decay,
 * use_ffn_rms_norm, forward_impl) and rn_checkpoint_open settles it from the tensor names.
 * hidden_size with model_type "retnet" is flash-linear-attention's RetNetConfig (fla-hub), read
 * as flash-linear-attention's RetNetConfig writes them, with fla's defaults for absent keys. A config
 * that is neither fails with RN_ERR_CONFIG and the keys it does have; one with both kinds of keys
 * fails too. A config naming a torchscale-only option and no size (e.g. {"multiway": true}) is a
 * torchscale config relying on the defaults.
 *
 * torchscale/syncdoth: field names and defaults are RetNetConfig's (torchscale/architecture/
 * config.py). Every value is type-checked (a number where a number belongs, an integer where an
 * integer belongs) and range-checked; the heads must divide both dimensions and the key head
 * dimension must be even. Settings this runtime does not implement (MoE, multiway, xpos_rel_pos,
 * a relu activation, syncdoth's use_ffn_rms_norm or a non-GLU FFN, ...) are refused by name with
 * RN_ERR_UNSUPPORTED_CONFIG. syncdoth's tie_word_embeddings is torchscale's
 * share_decoder_input_output_embed (both present and different: RN_ERR_CONFIG); subln and
 * forward_impl change nothing at inference and are ignored.
 *
 * fla: feature_map, attn (hybrid softmax layers) and attnres_block_size must be null, and
 * hidden_act swish/silu, or RN_ERR_UNSUPPORTED_CONFIG names the key. A config that contradicts
 * itself (num_kv_heads not dividing num_heads, a key or value dim not divisible by the heads, an
 * odd key head dim, intermediate_size <= 0) is RN_ERR_CONFIG.
 *
 * Unknown keys are ignored: HF configs carry many (architectures, torch_dtype, ...).
 */
#ifndef RN_CONFIG_H
#define RN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "rn_common.h"
#include "retnet.h"  /* rn_activation: the config speaks the API's vocabulary */

#define RN_MAX_CONFIG_BYTES (1u << 20)
#define RN_MAX_DIM 65536
#define RN_MAX_LAYERS 1024
#define RN_MAX_HEADS 1024
#define RN_MAX_VOCAB (1 << 24)
#define RN_MAX_CHUNK 4096

/* The checkpoint families: where the tensors are named and which variant of the math runs. */
typedef enum rn_family {
    RN_FAMILY_TORCHSCALE = 0, /* torchscale RetNetDecoder state dict, RetNetConfig keys */
    RN_FAMILY_SYNCDOTH = 1,   /* syncdoth/RetNet HF port (Spiral): torchscale math, "model." names */
    RN_FAMILY_FLA = 2         /* flash-linear-attention RetNetForCausalLM (fla-hub) */
} rn_family;

typedef struct rn_config {
    rn_family family;         /* from the keys; torchscale vs syncdoth settled by the checkpoint */
    int64_t embed_dim;        /* D  decoder_embed_dim (768); fla hidden_size (2048) */
    int64_t value_embed_dim;  /* Dv decoder_value_embed_dim (1280); fla int(D * expand_v) */
    int64_t heads;            /* H  decoder_retention_heads (3); fla num_heads (8) */
    int64_t ffn_dim;          /* F  decoder_ffn_embed_dim (1280); fla intermediate_size or the
                                 hidden_ratio rule (rn_fla_intermediate_size) */
    int64_t layers;           /* L  decoder_layers (12); fla num_hidden_layers (24) */
    int64_t vocab_size;       /* V  vocab_size (required, > 0; fla default 32000) */
    int64_t chunk_size;       /* recurrent_chunk_size (512; fla has none: 512) */
    rn_activation activation; /* activation_fn ("gelu"; "swish" or "silu"); fla hidden_act,
                                 swish only */
    double layernorm_eps;     /* layernorm_eps (1e-6); fla norm_eps, else rms_norm_eps (1e-6) */
    bool no_scale_embedding;  /* (true; fla true) */
    bool layernorm_embedding; /* (false; fla false) */
    bool share_embed;         /* share_decoder_input_output_embed or tie_word_embeddings (false) */
    bool normalize_before;    /* decoder_normalize_before (true; fla true) */
    bool deepnorm;            /* (false; fla false) */
    /* Where the families differ. torchscale and syncdoth: key_embed_dim = D, kv_heads = H, all
     * flags false except output_gate. fla: as its RetNetConfig. */
    int64_t key_embed_dim;    /* H * dk: rows of q_proj (fla: D * expand_k) */
    int64_t kv_heads;         /* heads of k and v; query head h reads kv head h / (H / kv_heads) */
    bool rope_half;           /* NeoX half-split rotation, theta_i = 10000^(-2i/dk) (fla) instead
                                 of interleaved pairs with theta_i = 10000^(-i/(dk/2-1)) */
    bool plain_retention;     /* no per-form normalisation: o = sum gamma^(n-m) (q.k) v (fla) */
    bool head_norm_weight;    /* the per-head norm has a learned [dv] weight (fla) */
    bool output_gate;         /* retention output times silu(g) (always, except fla's
                                 use_output_gate false) */
    bool use_lm_decay;        /* syncdoth: decays log(1 - exp(linspace(log 1/32, log 1/512, H))) */
    /* derived */
    int64_t key_head_dim;     /* dk = key_embed_dim / H */
    int64_t value_head_dim;   /* dv = Dv / H */
} rn_config;

/* A fixed lowercase name: "torchscale", "syncdoth" or "fla" ("unknown" otherwise). */
const char *rn_family_name(rn_family family);

/* fla's MLP width when intermediate_size is null (fla/modules/mlp.py): int(D * hidden_ratio * 2/3)
 * rounded up to a multiple of 256; D = 2048, ratio 2 gives 2816. 0 when the result is not a
 * positive size this runtime accepts (<= RN_MAX_DIM), or the ratio is not finite and > 0. */
int64_t rn_fla_intermediate_size(int64_t embed_dim, double hidden_ratio);

/* Parses `len` bytes of JSON text. */
rn_status rn_config_parse(const char *json, size_t len, rn_config *out, rn_error *err);
/* Reads and parses a config.json file; the message names the file. */
rn_status rn_config_load(const char *path, rn_config *out, rn_error *err);

#endif /* RN_CONFIG_H */
