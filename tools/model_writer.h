/*
 * model_writer.h: writing safetensors files and random RetNet checkpoints.
 *
 * The writing half of models/: what tests and tools use to make inputs for the reader.
 * rn_st_write turns float arrays into a safetensors file in F32, F16 or BF16 (rounded to
 * nearest even), with the header padded by spaces to a multiple of 8 and the tensors laid out
 * widest dtype first so that each one is naturally aligned. rn_write_random_model writes a
 * whole checkpoint directory (config.json + model.safetensors) in torchscale's naming, with
 * weights drawn from a fixed-seed generator at torchscale-like scales. The same seed and config
 * always give the same bytes, and each tensor's values depend only on the seed, its name and
 * its scale: not on which other tensors are written, nor (beyond rounding) on the dtype.
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
    bool write_rel_pos;   /* also write the retnet_rel_pos.angle/.decay buffers (default no) */
} rn_writer_options;

void rn_writer_options_default(rn_writer_options *opts);

/* Writes `cfg` as a config.json holding every RetNetConfig key of config.h and
 * "model_type": "retnet". The derived fields of `cfg` are not read. */
rn_status rn_write_config(const char *path, const rn_config *cfg, rn_error *err);

/* Creates `dir` (and its parents), writes `dir`/config.json from `cfg` and
 * `dir`/model.safetensors with random weights for it. The config is read back through
 * rn_config_load first, so an invalid `cfg` fails with that loader's status. `opts` may be NULL
 * for the defaults. Initialisation, per tensor:
 *   embed_tokens, output_projection     N(0, D^-1/2)
 *   q/k/v/g_proj                        xavier uniform, gain 2^-2.5 (q, k also times qk_gain)
 *   out_proj                            xavier uniform, gain 2^-1
 *   ffn fc1/gate/fc2                    U(-1/sqrt(in), 1/sqrt(in))
 *   norm weights                        1 + U(-0.1, 0.1), so a forgotten weight is visible
 *   deepnorm                            v_proj, out_proj, fc1, fc2 divided by (8L)^(1/4)
 *   rel-pos buffers                     torchscale's values (rn_checkpoint_rel_pos) */
rn_status rn_write_random_model(const char *dir, const rn_config *cfg,
                                const rn_writer_options *opts, rn_error *err);

/* fp32 to IEEE binary16 and to bfloat16, round to nearest even; NaN stays a (quiet) NaN. */
uint16_t rn_f32_to_f16(float x);
uint16_t rn_f32_to_bf16(float x);

#endif /* RN_MODEL_WRITER_H */
