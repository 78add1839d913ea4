/*
 * dtype.h: the tensor types, and converting tensor data between F32, F16 and BF16 (IEEE
 * binary16 and bfloat16, round to nearest even) and into the block-quantized Q8_0 and Q4_0, as
 * weights go from the file's precision to the device's.
 */
#ifndef RN_DTYPE_H
#define RN_DTYPE_H

#include <stdbool.h>
#include <stdint.h>

/* The tensor types. F32, F16, BF16 and U8 are safetensors dtypes (U8 holds the quants of a
 * quantized checkpoint, checkpoint.h). The block-quantized ones are device storage
 * and the dtype of the matrix views a quantized checkpoint makes of its
 * .qweight/.qscale pairs, never the dtype of a tensor as the file declares it. Both
 * quantize blocks of 32 consecutive elements with one fp16 scale d each. An array of n elements
 * is stored as its quants, then its n / 32 scales (so every load in a kernel is aligned):
 *   ST_Q8_0  n int8 q; w = d q (GGML's Q8_0 values)                             (34 bytes a block)
 *   ST_Q4_0  n / 2 bytes, element 2k in the low nibble of byte k and 2k + 1 in the high one;
 *            w = d (q - 8) (GGML's Q4_0 values)                                  (18 bytes a block) */
typedef enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_Q8_0, ST_Q4_0, ST_U8 } st_dtype;

const char *st_dtype_name(st_dtype dtype);
unsigned st_dtype_size(st_dtype dtype);  /* bytes per element; 0 for the block types */
bool st_dtype_is_float(st_dtype dtype);

float rn_half_to_float(uint16_t h);
float rn_bf16_to_float(uint16_t b);
uint16_t rn_float_to_half(float f);   /* overflow gives infinity; NaN stays a quiet NaN */
uint16_t rn_float_to_bf16(float f);

/* Elements per block (1 for F32/F16/BF16, 32 for the quantized types) and its bytes. */
unsigned rn_block_elements(st_dtype dtype);
unsigned rn_block_bytes(st_dtype dtype);
/* Bytes of `elements` elements stored as `dtype`; `elements` a multiple of its block. */
uint64_t rn_storage_bytes(st_dtype dtype, uint64_t elements);

/* The elements a buffer of `bytes` holds in `dtype`: the inverse of rn_storage_bytes. */
uint64_t rn_storage_elements(st_dtype dtype, uint64_t bytes);

/* Bytes of the quants of `elements` elements (the scales follow them). */
uint64_t rn_quant_bytes(st_dtype dtype, uint64_t elements);

/* One block of 32 floats quantized: its fp16 scale into *d and its quants into q (32 bytes for
 * Q8_0, 16 for Q4_0), and back. Q8_0: d = max|x| / 127 rounded to fp16, q = round(x / d).
 * Q4_0: d = -m / 8 with m the element of largest magnitude (so m itself maps to q = 0 exactly),
 * rounded to fp16, q = clamp(round(x / d) + 8, 0, 15). False when d overflows fp16 (|x| above
 * about 8e6 for Q8_0, 5e5 for Q4_0). */
bool rn_quantize_block(st_dtype to, const float *x, uint16_t *d, unsigned char *q);
void rn_dequantize_block(st_dtype from, uint16_t d, const unsigned char *q, float *x);

/* Converts `count` elements of little-endian `src` (any alignment) in `from` to `dst` in `to`
 * (host-order floats or 16-bit words; for Q8_0 and Q4_0 the quants of the `count` elements then
 * their scales, `count` a multiple of 32; from Q8_0 and Q4_0 only to F32; U8, as integers, only
 * from). Returns false when a finite value becomes infinite (F16: |x| > 65504 after
 * rounding; a block's scale beyond fp16), with the index of the first such element in
 * *overflow_at; the rest is converted anyway. */
bool rn_convert(st_dtype from, const void *src, uint64_t count, st_dtype to, void *dst,
                uint64_t *overflow_at);

#endif /* RN_DTYPE_H */
