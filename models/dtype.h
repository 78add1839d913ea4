/*
 * dtype.h: converting tensor data between F32, F16 and BF16 (IEEE binary16 and bfloat16,
 * round to nearest even), as weights go from the file's precision to the device's.
 */
#ifndef RN_DTYPE_H
#define RN_DTYPE_H

#include <stdbool.h>
#include <stdint.h>

#include "safetensors.h"

float rn_half_to_float(uint16_t h);
float rn_bf16_to_float(uint16_t b);
uint16_t rn_float_to_half(float f);   /* overflow gives infinity; NaN stays a quiet NaN */
uint16_t rn_float_to_bf16(float f);

/* Converts `count` elements of little-endian `src` (any alignment) in `from` to `dst` in `to`
 * (host-order floats or 16-bit words). Returns false
 * when a finite value becomes infinite (only F16 can overflow: |x| > 65504 after rounding),
 * with the index of the first such element in *overflow_at; the rest is converted anyway. */
bool rn_convert(st_dtype from, const void *src, uint64_t count, st_dtype to, void *dst,
                uint64_t *overflow_at);

#endif /* RN_DTYPE_H */
