/*
 * safetensors.c: the validating safetensors reader (safetensors.h).
 *
 * st_open runs the checks of style-and-safety.md B.1 in the order listed there: file size,
 * header length, the header's first byte and json_guard's byte-level scan (NUL, control
 * characters, "\u0000", UTF-8, nesting depth, number length), the cJSON parse, the root object
 * and its names, every entry, and last the offsets sorted over the whole buffer. Nothing is
 * handed out before all of them pass, and every failure goes through one cleanup path.
 *
 * cJSON itself is lax (json_guard.h says how): the header scan and the checks after the parse
 * are what make the reader strict, not cJSON.
 */
#define _POSIX_C_SOURCE 200809L   /* O_CLOEXEC, mmap */

#include "safetensors.h"

#include "dtype.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_guard.h"

#define ST_MAX_INT ((double)((UINT64_C(1) << 48) - 1))

struct st_file {
    void *map;            /* the whole file, read-only */
    size_t map_size;
    size_t count;
    st_tensor *tensors;   /* [count], in header order */
    size_t *by_name;      /* [count], indices sorted by name, for st_find */
    char *names;          /* one block holding every name, NUL-separated */
    size_t n_meta;
    char **meta;          /* [2 n_meta]: __metadata__'s keys and values, alternating */
};

/* ---- dtypes ------------------------------------------------------------------------------- */

/* The full safetensors dtype list. The first four load (U8 for the quants of a quantized
 * checkpoint); the others are valid files this runtime refuses with RN_ERR_UNSUPPORTED_DTYPE
 * rather than calling them malformed. */
static const struct {
    const char *name;
    st_dtype dtype;
} k_supported_dtypes[] = {{"F32", ST_F32}, {"F16", ST_F16}, {"BF16", ST_BF16}, {"U8", ST_U8}};
static const char *const k_other_dtypes[] = {
    "BOOL", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
    "I16", "U16", "I32", "U32", "F64", "I64", "U64", "C64", "F4", "F6_E2M3", "F6_E3M2",
};

/* ---- messages ----------------------------------------------------------------------------- */

/* A printable copy of a name from the file for error messages: control bytes become '?' and
 * long names are cut, so that a hostile name cannot flood or garble the message. */
static const char *printable(const char *name, char *buf, size_t cap) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && n + 4 < cap; p++)
        buf[n++] = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
    if (name[n] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- header scan -------------------------------------------------------------------------- */

/* The byte-level checks of B.1 items 6, 7 and 9 that cJSON does not make, on the `n` header
 * bytes; the message gives offsets in the file. */
static rn_status scan_header(const char *path, const unsigned char *h, size_t n, rn_error *err) {
    static const rn_json_limits limits = {
        .max_depth = 64,          /* the format needs 3: root, entry, shape */
        .max_number_chars = 64,   /* 48-bit integers need 15; cJSON 1.7.15 truncates at 63 */
        .base_offset = 8,         /* after the header length */
    };
    if (h[0] != '{')
        return rn_fail(err, RN_ERR_JSON, "%s: header does not start with '{' (byte 0x%02x)",
                       path, h[0]);
    rn_status status = rn_json_prescan((const char *)h, n, &limits, err);
    if (status != RN_OK) rn_error_prefix(err, "%s: header", path);
    return status;
}

/* ---- header values ------------------------------------------------------------------------ */

/* A JSON integer of the safetensors schema: a finite, integral number in 0..2^48-1, read from
 * valuedouble (valueint saturates at INT_MAX). */
static bool json_u48(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!isfinite(v) || v < 0 || v > ST_MAX_INT || floor(v) != v) return false;
    *out = (uint64_t)v;
    return true;
}

/* A tensor's name and its index, sorted by name for st_find. */
typedef struct named {
    const char *name;
    size_t index;
} named;

static int compare_named(const void *pa, const void *pb) {
    return strcmp(((const named *)pa)->name, ((const named *)pb)->name);
}

/* Index order by (begin, end, name), for the contiguity check of item 17. */
typedef struct span {
    uint64_t begin, end;
    const char *name;
} span;

static int compare_spans(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* __metadata__ (item 11): an object of strings, without duplicate keys. */
static rn_status check_metadata(const char *path, const cJSON *meta, rn_error *err) {
    char shown[96];
    if (!cJSON_IsObject(meta))
        return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: __metadata__ is not an object", path);
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        if (!cJSON_IsString(item))
            return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: __metadata__ value '%s' is not a string",
                           path, printable(item->string, shown, sizeof shown));
    }
    const char *dup;
    rn_status status = rn_json_duplicate_key(meta, &dup, err);
    if (status != RN_OK) {
        rn_error_prefix(err, "%s: __metadata__", path);
        return status;
    }
    if (dup)
        return rn_fail(err, RN_ERR_DUPLICATE, "%s: __metadata__ key '%s' appears twice", path,
                       printable(dup, shown, sizeof shown));
    return RN_OK;
}

static rn_status keep_metadata(const char *path, st_file *f, const cJSON *meta, rn_error *err) {
    size_t n = (size_t)cJSON_GetArraySize(meta);
    if (n == 0) return RN_OK;
    f->meta = calloc(2 * n, sizeof *f->meta);
    if (!f->meta) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for __metadata__", path);
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        char *key = strdup(item->string), *value = strdup(item->valuestring);
        f->meta[2 * f->n_meta] = key;
        f->meta[2 * f->n_meta + 1] = value;
        f->n_meta++;
        if (!key || !value) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for __metadata__", path);
    }
    return RN_OK;
}

/* Items 12-16 for one entry: exact keys, dtype, shape, data_offsets, byte count. */
static rn_status parse_entry(const char *path, const cJSON *entry, st_tensor *t, uint64_t *begin,
                             uint64_t *end, rn_error *err) {
    char shown[96];
    const char *name = printable(entry->string, shown, sizeof shown);
    if (!cJSON_IsObject(entry))
        return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': entry is not an object", path, name);

    /* Exactly the three keys, each once. cJSON keeps duplicate keys, so a count is needed. */
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL, *item;
    cJSON_ArrayForEach(item, entry) {
        const cJSON **slot = strcmp(item->string, "dtype") == 0          ? &dtype
                             : strcmp(item->string, "shape") == 0        ? &shape
                             : strcmp(item->string, "data_offsets") == 0 ? &offsets
                                                                          : NULL;
        char key[96];
        if (!slot)
            return rn_fail(err, RN_ERR_TENSOR_ENTRY,
                           "%s: tensor '%s': unexpected key '%s' (only dtype, shape, data_offsets)",
                           path, name, printable(item->string, key, sizeof key));
        if (*slot)
            return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': key '%s' appears twice",
                           path, name, item->string);
        *slot = item;
    }
    if (!dtype || !shape || !offsets)
        return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': missing key '%s'", path, name,
                       !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    /* dtype (item 13): matched exactly; known-but-unsupported is its own status. */
    if (!cJSON_IsString(dtype))
        return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': dtype is not a string", path, name);
    bool found = false;
    for (size_t i = 0; i < sizeof k_supported_dtypes / sizeof *k_supported_dtypes; i++) {
        if (strcmp(dtype->valuestring, k_supported_dtypes[i].name) == 0) {
            t->dtype = k_supported_dtypes[i].dtype;
            found = true;
        }
    }
    if (!found) {
        char dt[96];
        printable(dtype->valuestring, dt, sizeof dt);
        for (size_t i = 0; i < sizeof k_other_dtypes / sizeof *k_other_dtypes; i++)
            if (strcmp(dtype->valuestring, k_other_dtypes[i]) == 0)
                return rn_fail(err, RN_ERR_UNSUPPORTED_DTYPE,
                               "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16 and U8 are)",
                               path, name, dt);
        return rn_fail(err, RN_ERR_UNKNOWN_DTYPE, "%s: tensor '%s': unknown dtype '%s'", path, name, dt);
    }

    /* shape (item 14) */
    if (!cJSON_IsArray(shape))
        return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': shape is not an array", path, name);
    int rank = 0;
    cJSON_ArrayForEach(item, shape) {
        if (rank == ST_MAX_RANK)
            return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': rank above %d", path, name,
                           ST_MAX_RANK);
        if (!json_u48(item, &t->shape[rank]))
            return rn_fail(err, RN_ERR_TENSOR_ENTRY,
                           "%s: tensor '%s': shape[%d] is not an integer in 0..2^48-1", path, name, rank);
        rank++;
    }
    t->rank = rank;

    /* data_offsets (item 15) */
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_u48(cJSON_GetArrayItem(offsets, 0), begin) ||
        !json_u48(cJSON_GetArrayItem(offsets, 1), end))
        return rn_fail(err, RN_ERR_TENSOR_ENTRY,
                       "%s: tensor '%s': data_offsets is not two integers in 0..2^48-1", path, name);
    if (*begin > *end)
        return rn_fail(err, RN_ERR_OFFSETS, "%s: tensor '%s': data_offsets begin %llu > end %llu",
                       path, name, (unsigned long long)*begin, (unsigned long long)*end);

    /* byte count (item 16); every dtype we load is a whole number of bytes */
    uint64_t elements = 1;
    for (int i = 0; i < rank; i++)
        if (!rn_mul_u64(elements, t->shape[i], &elements))
            return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': element count overflows", path, name);
    uint64_t nbytes;
    if (!rn_mul_u64(elements, st_dtype_size(t->dtype), &nbytes))
        return rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': byte count overflows", path, name);
    if (*end - *begin != nbytes)
        return rn_fail(err, RN_ERR_OFFSETS,
                       "%s: tensor '%s': data_offsets span %llu bytes, %s shape needs %llu",
                       path, name, (unsigned long long)(*end - *begin), st_dtype_name(t->dtype),
                       (unsigned long long)nbytes);
    t->elements = elements;
    t->nbytes = nbytes;
    return RN_OK;
}

/* ---- open / close ------------------------------------------------------------------------- */

rn_status st_open(const char *path, st_file **out, rn_error *err) {
    rn_status status = RN_OK;
    st_file *f = NULL;
    int fd = -1;
    char *header = NULL;
    cJSON *root = NULL;
    named *names = NULL;
    uint64_t *begins = NULL, *ends = NULL;
    span *spans = NULL;
    char shown[96];

    if (!out || !path) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "st_open: NULL argument");
    *out = NULL;

    f = calloc(1, sizeof *f);
    if (!f) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", path);
        goto fail;
    }

    /* 1. the file and its size */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        status = rn_fail(err, RN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        status = rn_fail(err, RN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        status = rn_fail(err, RN_ERR_IO, "%s: is a directory, not a safetensors file", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        status = rn_fail(err, RN_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t file_size = (uint64_t)st.st_size;
    if (file_size < 8) {
        status = rn_fail(err, RN_ERR_TRUNCATED,
                         "%s: %llu bytes, shorter than the 8-byte header length", path,
                         (unsigned long long)file_size);
        goto fail;
    }
    if (file_size > SIZE_MAX) {
        status = rn_fail(err, RN_ERR_LIMIT, "%s: %llu bytes do not fit this host's address space",
                         path, (unsigned long long)file_size);
        goto fail;
    }
    /* MAP_PRIVATE and read-only: nothing we do can reach the file. Truncating the file while
     * it is mapped still raises SIGBUS on access; the header is copied out before parsing so
     * at least its checks cannot be raced. */
    f->map_size = (size_t)file_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        status = rn_fail(err, RN_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    const unsigned char *bytes = f->map;

    /* 2-4. header length, little-endian whatever the host */
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    if (n == 0) {
        status = rn_fail(err, RN_ERR_HEADER_SIZE, "%s: header length is 0", path);
        goto fail;
    }
    if (n > ST_MAX_HEADER_BYTES) {
        status = rn_fail(err, RN_ERR_HEADER_SIZE, "%s: header length %llu above the cap of %u bytes",
                         path, (unsigned long long)n, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (n > file_size - 8) {
        status = rn_fail(err, RN_ERR_HEADER_SIZE,
                         "%s: header length %llu runs past the end of the %llu-byte file", path,
                         (unsigned long long)n, (unsigned long long)file_size);
        goto fail;
    }

    /* 6-7. byte-level checks on a private, NUL-terminated copy */
    header = malloc((size_t)n + 1);
    if (!header) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a %llu-byte header",
                         path, (unsigned long long)n);
        goto fail;
    }
    memcpy(header, bytes + 8, (size_t)n);
    header[n] = '\0';
    if ((status = scan_header(path, (const unsigned char *)header, (size_t)n, err)) != RN_OK)
        goto fail;
    /* Only spaces may pad the JSON (spec: "trailing padded with whitespace (0x20)"). */
    size_t json_len = (size_t)n;
    while (json_len > 0 && header[json_len - 1] == ' ') json_len--;
    if (json_len == 0 || header[json_len - 1] != '}') {
        status = rn_fail(err, RN_ERR_JSON,
                         "%s: header has bytes other than spaces after its JSON object", path);
        goto fail;
    }

    /* 8. parse, bounded by length; the end position comes back through parse_end, not through
     * the global cJSON_GetErrorPtr */
    const char *parse_end = NULL;
    root = cJSON_ParseWithLengthOpts(header, json_len, &parse_end, 0);
    if (!root) {
        size_t at = parse_end ? (size_t)(parse_end - header) : 0;
        status = rn_fail(err, RN_ERR_JSON, "%s: JSON syntax error in the header near offset %zu",
                         path, 8 + at);
        goto fail;
    }
    if ((size_t)(parse_end - header) != json_len) {
        status = rn_fail(err, RN_ERR_JSON, "%s: bytes after the header's JSON object at offset %zu",
                         path, 8 + (size_t)(parse_end - header));
        goto fail;
    }

    /* 9. the root object */
    if (!cJSON_IsObject(root)) {
        status = rn_fail(err, RN_ERR_JSON, "%s: header is not a JSON object", path);
        goto fail;
    }
    size_t tensors = 0;
    uint64_t name_bytes = 0;
    const cJSON *item, *meta = NULL;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") != 0) {
            tensors++;
            name_bytes += strlen(item->string) + 1;   /* bounded by the 16 MiB header */
        } else if (!meta) {
            meta = item;
        }
    }
    if (tensors > ST_MAX_TENSORS) {
        status = rn_fail(err, RN_ERR_LIMIT, "%s: %zu tensors, above the cap of %d", path, tensors,
                         ST_MAX_TENSORS);
        goto fail;
    }

    /* 10. duplicate names, __metadata__ included */
    const char *dup;
    if ((status = rn_json_duplicate_key(root, &dup, err)) != RN_OK) {
        rn_error_prefix(err, "%s", path);
        goto fail;
    }
    if (dup) {
        status = rn_fail(err, RN_ERR_DUPLICATE, "%s: tensor '%s' appears twice in the header", path,
                         printable(dup, shown, sizeof shown));
        goto fail;
    }

    /* 11. __metadata__, kept for st_metadata */
    if (meta && (status = check_metadata(path, meta, err)) != RN_OK) goto fail;
    if (meta && (status = keep_metadata(path, f, meta, err)) != RN_OK) goto fail;

    /* 12-16. every tensor entry */
    if (tensors > 0) {
        f->tensors = calloc(tensors, sizeof *f->tensors);
        begins = malloc(tensors * sizeof *begins);
        ends = malloc(tensors * sizeof *ends);
        spans = malloc(tensors * sizeof *spans);
        f->names = malloc((size_t)name_bytes);
        f->by_name = malloc(tensors * sizeof *f->by_name);
        names = malloc(tensors * sizeof *names);
        if (!f->tensors || !begins || !ends || !spans || !f->names || !f->by_name || !names) {
            status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for %zu tensors", path,
                             tensors);
            goto fail;
        }
    }
    size_t ti = 0;
    char *name_at = f->names;
    cJSON_ArrayForEach(item, root) {
        if (item == meta) continue;
        const char *name = item->string;
        size_t len = strlen(name);
        if (len == 0) {
            status = rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: a tensor has an empty name", path);
            goto fail;
        }
        if (len > ST_MAX_NAME_BYTES) {
            status = rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: tensor '%s': name of %zu bytes, above %d",
                             path, printable(name, shown, sizeof shown), len, ST_MAX_NAME_BYTES);
            goto fail;
        }
        for (size_t c = 0; c < len; c++) {
            unsigned char b = (unsigned char)name[c];
            if (b < 0x20 || b == 0x7f) {
                status = rn_fail(err, RN_ERR_TENSOR_ENTRY,
                                 "%s: tensor '%s': control character 0x%02x in the name", path,
                                 printable(name, shown, sizeof shown), b);
                goto fail;
            }
        }
        st_tensor *t = &f->tensors[ti];
        if ((status = parse_entry(path, item, t, &begins[ti], &ends[ti], err)) != RN_OK) goto fail;
        memcpy(name_at, name, len + 1);
        t->name = name_at;
        name_at += len + 1;
        ti++;
    }
    f->count = tensors;

    /* 17. sorted by offset, the tensors tile the buffer exactly: no holes, no overlaps (the
     * aliasing attack), nothing after the last one (polyglot files) */
    uint64_t data_size = file_size - 8 - n;
    for (size_t i = 0; i < tensors; i++) {
        spans[i].begin = begins[i];
        spans[i].end = ends[i];
        spans[i].name = f->tensors[i].name;
    }
    if (tensors > 0) qsort(spans, tensors, sizeof *spans, compare_spans);
    uint64_t expect = 0;
    for (size_t i = 0; i < tensors; i++) {
        if (spans[i].begin != expect) {
            const char *what = spans[i].begin < expect ? "overlaps the previous tensor"
                                                       : "leaves a gap after the previous tensor";
            status = rn_fail(err, RN_ERR_OFFSETS,
                             "%s: tensor '%s': data_offsets begin %llu %s (which ends at %llu)",
                             path, printable(spans[i].name, shown, sizeof shown),
                             (unsigned long long)spans[i].begin, what, (unsigned long long)expect);
            goto fail;
        }
        expect = spans[i].end;
    }
    if (expect > data_size) {
        status = rn_fail(err, RN_ERR_TRUNCATED,
                         "%s: tensor '%s': data ends at %llu but the data region holds %llu bytes",
                         path, printable(spans[tensors - 1].name, shown, sizeof shown),
                         (unsigned long long)expect, (unsigned long long)data_size);
        goto fail;
    }
    if (expect < data_size) {
        status = rn_fail(err, RN_ERR_OFFSETS,
                         "%s: %llu trailing bytes after the last tensor (data ends at %llu of %llu)",
                         path, (unsigned long long)(data_size - expect), (unsigned long long)expect,
                         (unsigned long long)data_size);
        goto fail;
    }

    /* 18. data pointers; 8 + n + end <= file_size, which fits size_t, by 17 */
    for (size_t i = 0; i < tensors; i++) {
        size_t at = (size_t)(8 + n + begins[i]);
        if (at > f->map_size || f->map_size - at < f->tensors[i].nbytes) {
            status = rn_fail(err, RN_ERR_OFFSETS, "%s: tensor '%s' outside the file", path,
                             printable(f->tensors[i].name, shown, sizeof shown));
            goto fail;
        }
        f->tensors[i].data = bytes + at;
    }
    /* 19. alignment is not required: st_to_f32 reads through memcpy. */

    /* st_find's binary search order, over the tensors' own copies of their names */
    for (size_t i = 0; i < tensors; i++) {
        names[i].name = f->tensors[i].name;
        names[i].index = i;
    }
    if (tensors > 0) qsort(names, tensors, sizeof *names, compare_named);
    for (size_t i = 0; i < tensors; i++) f->by_name[i] = names[i].index;

    cJSON_Delete(root);
    free(header);
    free(names);
    free(begins);
    free(ends);
    free(spans);
    *out = f;
    return RN_OK;

fail:
    if (fd >= 0) close(fd);
    cJSON_Delete(root);
    free(header);
    free(names);
    free(begins);
    free(ends);
    free(spans);
    st_close(f);
    return status;
}

void st_close(st_file *file) {
    if (!file) return;
    if (file->map) munmap(file->map, file->map_size);
    free(file->tensors);
    free(file->by_name);
    free(file->names);
    for (size_t i = 0; i < 2 * file->n_meta; i++) free(file->meta[i]);
    free(file->meta);
    free(file);
}

const char *st_metadata(const st_file *file, const char *key) {
    if (!file || !key) return NULL;
    for (size_t i = 0; i < file->n_meta; i++)
        if (strcmp(file->meta[2 * i], key) == 0) return file->meta[2 * i + 1];
    return NULL;
}

size_t st_count(const st_file *file) {
    return file ? file->count : 0;
}

const st_tensor *st_at(const st_file *file, size_t index) {
    if (!file || index >= file->count) return NULL;
    return &file->tensors[index];
}

const st_tensor *st_find(const st_file *file, const char *name) {
    if (!file || !name) return NULL;
    size_t lo = 0, hi = file->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const st_tensor *t = &file->tensors[file->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

/* ---- conversion --------------------------------------------------------------------------- */

void st_to_f32(st_dtype dtype, const void *src, uint64_t count, float *dst) {
    rn_convert(dtype, src, count, ST_F32, dst, NULL);  /* widening never overflows */
}
