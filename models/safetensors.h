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

#include "dtype.h"
#include "rn_common.h"

#define ST_MAX_RANK 4
#define ST_MAX_HEADER_BYTES (16u << 20)  /* RetNet headers are kilobytes */
#define ST_MAX_NAME_BYTES 512
#define ST_MAX_TENSORS 1000000

/* The tensor types (st_dtype) are dtype.h's. */

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

/* F32, F16 or BF16: what st_to_f32 widens. */

/* Widens `count` elements of `src` (any alignment) to fp32. */
void st_to_f32(st_dtype dtype, const void *src, uint64_t count, float *dst);

#endif /* RN_SAFETENSORS_H */
