/*
 * config.h: torchscale's RetNetConfig read from config.json.
 *
 * Field names and defaults are RetNetConfig's (torchscale/architecture/config.py). Every value
 * is type-checked (a number where a number belongs, an integer where an integer belongs) and
 * range-checked; the heads must divide both dimensions and the key head dimension must be even.
 * Settings torchscale has but this runtime does not implement (MoE, multiway, xpos_rel_pos,
 * a relu activation, ...) are refused by name with RN_ERR_UNSUPPORTED_CONFIG. Unknown keys are
 * ignored: HF configs carry many (architectures, torch_dtype, ...).
 */
#ifndef RN_CONFIG_H
#define RN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "rn_common.h"

#define RN_MAX_CONFIG_BYTES (1u << 20)
#define RN_MAX_DIM 65536
#define RN_MAX_LAYERS 1024
#define RN_MAX_HEADS 1024
#define RN_MAX_VOCAB (1 << 24)
#define RN_MAX_CHUNK 4096

typedef struct rn_config {
    int64_t embed_dim;        /* D  decoder_embed_dim (768) */
    int64_t value_embed_dim;  /* Dv decoder_value_embed_dim (1280) */
    int64_t heads;            /* H  decoder_retention_heads (3) */
    int64_t ffn_dim;          /* F  decoder_ffn_embed_dim (1280) */
    int64_t layers;           /* L  decoder_layers (12) */
    int64_t vocab_size;       /* V  vocab_size (required, > 0) */
    int64_t chunk_size;       /* recurrent_chunk_size (512) */
    rn_activation activation; /* activation_fn ("gelu"; "swish" or "silu") */
    double layernorm_eps;     /* layernorm_eps (1e-6) */
    bool no_scale_embedding;  /* (true) */
    bool layernorm_embedding; /* (false) */
    bool share_embed;         /* share_decoder_input_output_embed (false) */
    bool normalize_before;    /* decoder_normalize_before (true) */
    bool deepnorm;            /* (false) */
    /* derived */
    int64_t key_head_dim;     /* dk = D / H */
    int64_t value_head_dim;   /* dv = Dv / H */
} rn_config;

/* Parses `len` bytes of JSON text. */
rn_status rn_config_parse(const char *json, size_t len, rn_config *out, rn_error *err);
/* Reads and parses a config.json file; the message names the file. */
rn_status rn_config_load(const char *path, rn_config *out, rn_error *err);

#endif /* RN_CONFIG_H */
