/*
 * safetensors.h: a validating reader of the safetensors format.
 *
 * File: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping tensor names to
 * {"dtype", "shape", "data_offsets"} (plus an optional "__metadata__" string map), then the
 * byte buffer. st_open makes every check of style-and-safety.md B.1 (items 1-19) before it
 * hands out a single tensor: header bounds, strict JSON, no duplicate names, exact entry keys,
 * known dtypes, 48-bit integral shapes and offsets, checked byte counts, and offsets that
 * cover the buffer exactly, without gaps, overlaps or trailing bytes. The file is mapped
 * read-only; data pointers stay valid until st_close.
 */
#ifndef RN_SAFETENSORS_H
#define RN_SAFETENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include "rn_common.h"

#define ST_MAX_RANK 4
#define ST_MAX_HEADER_BYTES (16u << 20)  /* RetNet headers are kilobytes */
#define ST_MAX_NAME_BYTES 512
#define ST_MAX_TENSORS 1000000

/* The tensor types. F32, F16, BF16 and U8 are safetensors dtypes (U8 holds the quants of a
 * quantized checkpoint, checkpoint.h). The block-quantized ones are device storage
 * (models/dtype.h) and the dtype of the matrix views a quantized checkpoint makes of its
 * .qweight/.qscale pairs, never the dtype of a tensor as the file declares it. Both
 * quantize blocks of 32 consecutive elements with one fp16 scale d each. An array of n elements
 * is stored as its quants, then its n / 32 scales (so every load in a kernel is aligned):
 *   ST_Q8_0  n int8 q; w = d q (GGML's Q8_0 values)                             (34 bytes a block)
 *   ST_Q4_0  n / 2 bytes, element 2k in the low nibble of byte k and 2k + 1 in the high one;
 *            w = d (q - 8) (GGML's Q4_0 values)                                  (18 bytes a block) */
typedef enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_Q8_0, ST_Q4_0, ST_U8 } st_dtype;

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int rank;
    uint64_t shape[ST_MAX_RANK];
    uint64_t elements;     /* product of shape, 1 for rank 0 */
    uint64_t nbytes;       /* Q8_0/Q4_0 views: quants and scales together */
    const void *data;      /* inside the mapping; may be unaligned for its dtype */
    const void *scales;    /* Q8_0/Q4_0 views only (checkpoint.h): the elements / 32 fp16
                              scales, apart from the quants at `data`; NULL otherwise */
} st_tensor;

typedef struct st_file st_file;

/* Opens and validates `path`. Errors: RN_ERR_IO, RN_ERR_TRUNCATED, RN_ERR_HEADER_SIZE,
 * RN_ERR_JSON, RN_ERR_TENSOR_ENTRY, RN_ERR_UNKNOWN_DTYPE, RN_ERR_UNSUPPORTED_DTYPE,
 * RN_ERR_DUPLICATE, RN_ERR_OFFSETS, RN_ERR_LIMIT, RN_ERR_OUT_OF_HOST_MEMORY; the message names
 * the file and the tensor. */
rn_status st_open(const char *path, st_file **out, rn_error *err);
void st_close(st_file *file);

size_t st_count(const st_file *file);
const st_tensor *st_at(const st_file *file, size_t index);
/* NULL when absent. */
const st_tensor *st_find(const st_file *file, const char *name);
/* The value of `key` in the header's __metadata__, NULL when absent. */
const char *st_metadata(const st_file *file, const char *key);

const char *st_dtype_name(st_dtype dtype);
unsigned st_dtype_size(st_dtype dtype);  /* bytes per element; 0 for the block types */
/* F32, F16 or BF16: what st_to_f32 widens. */
bool st_dtype_is_float(st_dtype dtype);

/* Widens `count` elements of `src` (any alignment) to fp32. */
void st_to_f32(st_dtype dtype, const void *src, uint64_t count, float *dst);

#endif /* RN_SAFETENSORS_H */
