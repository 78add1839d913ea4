/*
 * quantize.h: writing a quantized checkpoint (`retnet quantize`, rn_quantize_checkpoint).
 *
 * The checkpoint at `model_dir` (any family, sharded or not, F32/F16/BF16) is written to
 * `out_dir` as one model.safetensors in the format checkpoint.h describes: every weight matrix
 * the runtime keeps in the model's weight type becomes <name>.qweight (U8) and <name>.qscale
 * (F16), quantized block by block exactly as a load with --weights q8|q4 does (dtype.h's
 * rn_convert), so that loading the output gives the same device bytes; every other tensor the
 * checkpoint's lookups see is copied byte for byte; __metadata__ is {"format": "pt",
 * "retnet_cl.quantization": "q8_0"|"q4_0", "retnet_cl.quantization_version": "1"}. config.json,
 * tokenizer.json, tokenizer_config.json, special_tokens_map.json and generation_config.json are
 * copied when present. The tensors are streamed a piece at a time from the mapped input, so a
 * model of any size needs a few MiB of memory.
 *
 * Every file is written to a temporary name in `out_dir` (created, with its parents, when
 * missing), synced, and renamed into place, model.safetensors last; a failure removes the
 * temporaries and leaves what was there. Refused: `out_dir` the same directory as `model_dir`
 * or holding a model.safetensors.index.json (which the loader would read instead)
 * (RN_ERR_INVALID_ARGUMENT); an input that is already quantized, or a matrix whose rows are not
 * a multiple of 32 long (RN_ERR_UNSUPPORTED_CONFIG, naming the tensor); a block whose scale
 * overflows fp16 (RN_ERR_LIMIT); output names over ST_MAX_NAME_BYTES (RN_ERR_LIMIT) or taken by
 * another tensor (RN_ERR_DUPLICATE); rn_checkpoint_open's errors for the input; RN_ERR_IO.
 * `progress` (may be NULL) gets the input bytes done and in total after each piece.
 */
#ifndef RN_QUANTIZE_H
#define RN_QUANTIZE_H

#include <stdint.h>

#include "safetensors.h"

rn_status rn_checkpoint_quantize(const char *model_dir, const char *out_dir, st_dtype scheme,
                                 void (*progress)(void *user, uint64_t done, uint64_t total), void *user,
                                 rn_error *err);

#endif /* RN_QUANTIZE_H */
