/*
 * model_writer.c: safetensors and random-checkpoint writers (model_writer.h).
 *
 * Both writers share one streaming core: tensors are produced a chunk of floats at a time by a
 * fill callback, converted to the storage dtype and written, so a random checkpoint never
 * needs more memory than one chunk whatever its size (fla-hub's 1.3B in bf16 is 2.7 GB).
 * Each family's layout is a list of tensors (name, shape, how to fill it); sharding deals that
 * list out over several files.
 */
#define _POSIX_C_SOURCE 200809L   /* mkdir, stat */

#include "model_writer.h"

#include "dtype.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "checkpoint.h"

#define CHUNK_ELEMENTS 65536
#define ST_MAX_OFFSET ((UINT64_C(1) << 48) - 1)

/* ---- number formats ----------------------------------------------------------------------- */

static uint32_t f32_bits(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

/* Appends `count` floats to `out` in `dtype`, little-endian whatever the host. */
static size_t encode(st_dtype dtype, const float *src, size_t count, unsigned char *out) {
    unsigned char *p = out;
    if (dtype == ST_F32) {
        for (size_t i = 0; i < count; i++) {
            uint32_t b = f32_bits(src[i]);
            *p++ = (unsigned char)b;
            *p++ = (unsigned char)(b >> 8);
            *p++ = (unsigned char)(b >> 16);
            *p++ = (unsigned char)(b >> 24);
        }
    } else if (dtype == ST_F16) {
        for (size_t i = 0; i < count; i++) {
            uint16_t b = rn_float_to_half(src[i]);
            *p++ = (unsigned char)b;
            *p++ = (unsigned char)(b >> 8);
        }
    } else {
        for (size_t i = 0; i < count; i++) {
            uint16_t b = rn_float_to_bf16(src[i]);
            *p++ = (unsigned char)b;
            *p++ = (unsigned char)(b >> 8);
        }
    }
    return (size_t)(p - out);
}

/* ---- a growable string for the header ----------------------------------------------------- */

typedef struct text {
    char *data;
    size_t len, cap;
    bool failed;
} text;

static void text_add(text *t, const char *s, size_t n) {
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n + 1) cap *= 2;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_printf(text *t, const char *fmt, ...) RN_PRINTF(2, 3);
static void text_printf(text *t, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        t->failed = true;
        return;
    }
    text_add(t, buf, (size_t)n);
}

/* A JSON string literal: quotes and backslashes escaped (control bytes are refused earlier,
 * but escaped too should that change). */
static void text_json_string(text *t, const char *s) {
    text_add(t, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            text_add(t, esc, 2);
        } else if (*p < 0x20) {
            text_printf(t, "\\u%04x", *p);
        } else {
            text_add(t, (const char *)p, 1);
        }
    }
    text_add(t, "\"", 1);
}

/* ---- the streaming core ------------------------------------------------------------------- */

/* Fills `count` floats of entry `index`, starting at element `start`. Called with increasing
 * `start` from 0 for each entry in turn. */
typedef void (*fill_fn)(void *ctx, size_t index, uint64_t start, size_t count, float *dst);

typedef struct layout {
    size_t index;
    uint64_t elements, begin, end;
} layout;

/* Data order: widest dtype first, so that every tensor starts aligned to its element size
 * (the header is padded to 8), and otherwise as given. */
static bool layout_before(const layout *a, const layout *b, const rn_st_entry *entries) {
    unsigned sa = st_dtype_size(entries[a->index].dtype), sb = st_dtype_size(entries[b->index].dtype);
    if (sa != sb) return sa > sb;
    return a->index < b->index;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Writes the file; `fill` supplies the values. With `need_data`, entries must carry data. */
static rn_status write_tensors(const char *path, const rn_st_entry *entries, size_t n, fill_fn fill,
                               void *ctx, bool need_data, rn_error *err) {
    rn_status status = RN_OK;
    layout *lay = NULL;
    size_t *slot = NULL;   /* slot[i]: where entry i sits in `lay` */
    const char **names = NULL;
    text header = {0};
    FILE *out = NULL;
    float *chunk = NULL;
    unsigned char *bytes = NULL;

    if (!path || (n > 0 && !entries))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_st_write: NULL argument");
    lay = calloc(n ? n : 1, sizeof *lay);
    slot = calloc(n ? n : 1, sizeof *slot);
    names = calloc(n ? n : 1, sizeof *names);
    chunk = malloc(CHUNK_ELEMENTS * sizeof *chunk);
    bytes = malloc(CHUNK_ELEMENTS * 4);
    if (!lay || !slot || !names || !chunk || !bytes) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", path);
        goto fail;
    }

    /* entries: names, ranks, dtypes and checked sizes */
    for (size_t i = 0; i < n; i++) {
        const rn_st_entry *e = &entries[i];
        if (!e->name || !e->name[0] || strlen(e->name) > ST_MAX_NAME_BYTES ||
            strcmp(e->name, "__metadata__") == 0 || e->rank < 0 || e->rank > ST_MAX_RANK ||
            (e->dtype != ST_F32 && e->dtype != ST_F16 && e->dtype != ST_BF16)) {
            status = rn_fail(err, RN_ERR_INVALID_ARGUMENT, "%s: entry %zu ('%s'): bad name, rank or dtype",
                             path, i, e->name ? e->name : "(null)");
            goto fail;
        }
        for (const unsigned char *c = (const unsigned char *)e->name; *c; c++) {
            if (*c < 0x20 || *c == 0x7f) {
                status = rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                                 "%s: entry %zu: control character in the name", path, i);
                goto fail;
            }
        }
        uint64_t elements = 1;
        for (int d = 0; d < e->rank; d++) {
            if (e->shape[d] > ST_MAX_OFFSET || !rn_mul_u64(elements, e->shape[d], &elements)) {
                status = rn_fail(err, RN_ERR_LIMIT, "%s: tensor '%s': shape too large", path, e->name);
                goto fail;
            }
        }
        if (need_data && elements > 0 && !e->data) {
            status = rn_fail(err, RN_ERR_INVALID_ARGUMENT, "%s: tensor '%s': no data", path, e->name);
            goto fail;
        }
        lay[i] = (layout){.index = i, .elements = elements};
        names[i] = e->name;
    }
    qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            status = rn_fail(err, RN_ERR_INVALID_ARGUMENT, "%s: tensor '%s' given twice", path, names[i]);
            goto fail;
        }
    }

    /* layout: insertion sort, linear for the usual single-dtype file */
    for (size_t i = 1; i < n; i++) {
        layout key = lay[i];
        size_t j = i;
        while (j > 0 && layout_before(&key, &lay[j - 1], entries)) {
            lay[j] = lay[j - 1];
            j--;
        }
        lay[j] = key;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t nbytes;
        if (!rn_mul_u64(lay[i].elements, st_dtype_size(entries[lay[i].index].dtype), &nbytes) ||
            !rn_add_u64(offset, nbytes, &lay[i].end) || lay[i].end > ST_MAX_OFFSET) {
            status = rn_fail(err, RN_ERR_LIMIT, "%s: tensor data past 2^48 bytes", path);
            goto fail;
        }
        lay[i].begin = offset;
        offset = lay[i].end;
        slot[lay[i].index] = i;
    }

    /* header, keys in the given order so that st_at gives them back in that order */
    static const char meta[] = "{\"__metadata__\":{\"format\":\"pt\"}";
    text_add(&header, meta, sizeof meta - 1);
    for (size_t i = 0; i < n; i++) {
        const rn_st_entry *e = &entries[i];
        text_add(&header, ",", 1);
        text_json_string(&header, e->name);
        text_printf(&header, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(e->dtype));
        for (int d = 0; d < e->rank; d++)
            text_printf(&header, d ? ",%llu" : "%llu", (unsigned long long)e->shape[d]);
        text_printf(&header, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)lay[slot[i]].begin,
                    (unsigned long long)lay[slot[i]].end);
    }
    text_add(&header, "}", 1);
    while (header.len % 8 != 0) text_add(&header, " ", 1);   /* data starts 8-aligned */
    if (header.failed) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for the header", path);
        goto fail;
    }

    out = fopen(path, "wb");
    if (!out) {
        status = rn_fail(err, RN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, out) == 8 && fwrite(header.data, 1, header.len, out) == header.len;
    for (size_t i = 0; ok && i < n; i++) {
        const rn_st_entry *e = &entries[lay[i].index];
        for (uint64_t at = 0; ok && at < lay[i].elements; at += CHUNK_ELEMENTS) {
            size_t count = (size_t)(lay[i].elements - at < CHUNK_ELEMENTS ? lay[i].elements - at
                                                                          : CHUNK_ELEMENTS);
            fill(ctx, lay[i].index, at, count, chunk);
            size_t nb = encode(e->dtype, chunk, count, bytes);
            ok = fwrite(bytes, 1, nb, out) == nb;
        }
    }
    int closed = fclose(out);
    out = NULL;
    if (!ok || closed != 0) {
        status = rn_fail(err, RN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto fail;
    }

fail:
    if (out) fclose(out);
    free(lay);
    free(slot);
    free(names);
    free(header.data);
    free(chunk);
    free(bytes);
    return status;
}

static void fill_from_entries(void *ctx, size_t index, uint64_t start, size_t count, float *dst) {
    const rn_st_entry *e = &((const rn_st_entry *)ctx)[index];
    memcpy(dst, e->data + start, count * sizeof *dst);
}

rn_status rn_st_write(const char *path, const rn_st_entry *entries, size_t n, rn_error *err) {
    return write_tensors(path, entries, n, fill_from_entries, (void *)entries, true, err);
}

/* ---- config.json -------------------------------------------------------------------------- */

/* The shortest "%g" form that reads back to the same double. */
static void format_double(char *buf, size_t cap, double v) {
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static const char *torch_dtype(st_dtype dtype) {
    return dtype == ST_BF16 ? "bfloat16" : dtype == ST_F16 ? "float16" : "float32";
}

/* fla reads dims as int(hidden_size * expand): the ratio dim / D, nudged up where rounding
 * left D * ratio a hair below dim (e.g. 1/3), so that the loader gets dim back exactly. */
static double exact_ratio(int64_t dim, int64_t D) {
    if (D < 1) return 1.0;
    double x = (double)dim / (double)D;
    while (isfinite(x) && (int64_t)((double)D * x) < dim) x = nextafter(x, INFINITY);
    return x;
}

#define B(x) ((x) ? "true" : "false")

static void write_torchscale_config(FILE *f, const rn_config *cfg, const char *eps) {
    fprintf(f,
            "{\n"
            "  \"model_type\": \"retnet\",\n"
            "  \"vocab_size\": %lld,\n"
            "  \"decoder_embed_dim\": %lld,\n"
            "  \"decoder_value_embed_dim\": %lld,\n"
            "  \"decoder_retention_heads\": %lld,\n"
            "  \"decoder_ffn_embed_dim\": %lld,\n"
            "  \"decoder_layers\": %lld,\n"
            "  \"recurrent_chunk_size\": %lld,\n"
            "  \"activation_fn\": \"%s\",\n"
            "  \"layernorm_eps\": %s,\n"
            "  \"no_scale_embedding\": %s,\n"
            "  \"layernorm_embedding\": %s,\n"
            "  \"share_decoder_input_output_embed\": %s,\n"
            "  \"decoder_normalize_before\": %s,\n"
            "  \"deepnorm\": %s\n"
            "}\n",
            (long long)cfg->vocab_size, (long long)cfg->embed_dim, (long long)cfg->value_embed_dim,
            (long long)cfg->heads, (long long)cfg->ffn_dim, (long long)cfg->layers,
            (long long)cfg->chunk_size, cfg->activation == RN_ACT_SWISH ? "swish" : "gelu", eps,
            B(cfg->no_scale_embedding), B(cfg->layernorm_embedding), B(cfg->share_embed),
            B(cfg->normalize_before), B(cfg->deepnorm));
}

/* syncdoth's RetNetConfig as transformers saves it: sorted keys, its own defaults for what this
 * runtime does not read. subln is written so that syncdoth's __init__ keeps the saved
 * decoder_normalize_before/deepnorm (subln true would force pre-norm). */
static void write_syncdoth_config(FILE *f, const rn_config *cfg, const char *eps, st_dtype dtype) {
    fprintf(f,
            "{\n"
            "  \"activation_dropout\": 0.0,\n"
            "  \"activation_fn\": \"%s\",\n"
            "  \"architectures\": [\n"
            "    \"RetNetForCausalLM\"\n"
            "  ],\n"
            "  \"decoder_embed_dim\": %lld,\n"
            "  \"decoder_ffn_embed_dim\": %lld,\n"
            "  \"decoder_layers\": %lld,\n"
            "  \"decoder_normalize_before\": %s,\n"
            "  \"decoder_retention_heads\": %lld,\n"
            "  \"decoder_value_embed_dim\": %lld,\n"
            "  \"deepnorm\": %s,\n"
            "  \"disable_fused_ops\": false,\n"
            "  \"drop_path_rate\": 0.0,\n"
            "  \"dropout\": 0.0,\n"
            "  \"eos_token_id\": 0,\n"
            "  \"forward_impl\": \"parallel\",\n"
            "  \"initializer_range\": 0.02,\n"
            "  \"is_decoder\": true,\n"
            "  \"layernorm_embedding\": %s,\n"
            "  \"layernorm_eps\": %s,\n"
            "  \"model_type\": \"retnet\",\n"
            "  \"no_scale_embedding\": %s,\n"
            "  \"output_retentions\": false,\n"
            "  \"pad_token_id\": 0,\n"
            "  \"recurrent_chunk_size\": %lld,\n"
            "  \"subln\": %s,\n"
            "  \"tie_word_embeddings\": %s,\n"
            "  \"torch_dtype\": \"%s\",\n"
            "  \"transformers_version\": \"4.35.2\",\n"
            "  \"use_cache\": true,\n"
            "  \"use_ffn_rms_norm\": false,\n"
            "  \"use_glu\": true,\n"
            "  \"use_lm_decay\": %s,\n"
            "  \"vocab_size\": %lld,\n"
            "  \"z_loss_coeff\": 0.0\n"
            "}\n",
            cfg->activation == RN_ACT_SWISH ? "swish" : "gelu", (long long)cfg->embed_dim,
            (long long)cfg->ffn_dim, (long long)cfg->layers, B(cfg->normalize_before),
            (long long)cfg->heads, (long long)cfg->value_embed_dim, B(cfg->deepnorm),
            B(cfg->layernorm_embedding), eps, B(cfg->no_scale_embedding), (long long)cfg->chunk_size,
            B(cfg->normalize_before && !cfg->deepnorm), B(cfg->share_embed), torch_dtype(dtype),
            B(cfg->use_lm_decay), (long long)cfg->vocab_size);
}

/* fla-hub/retnet-1.3B-100B's config.json, key for key, with this config's values. */
static void write_fla_config(FILE *f, const rn_config *cfg, const char *eps, st_dtype dtype) {
    int64_t D = cfg->embed_dim;
    int64_t K = cfg->key_embed_dim ? cfg->key_embed_dim : D;
    int64_t kv = cfg->kv_heads ? cfg->kv_heads : cfg->heads;
    char expand_k[64], expand_v[64], inter[32], kv_heads[32];
    format_double(expand_k, sizeof expand_k, exact_ratio(K, D));
    format_double(expand_v, sizeof expand_v, exact_ratio(cfg->value_embed_dim, D));
    /* null where fla's own rule gives the same, as on the hub */
    if (cfg->ffn_dim == rn_fla_intermediate_size(D, 2.0)) snprintf(inter, sizeof inter, "null");
    else snprintf(inter, sizeof inter, "%lld", (long long)cfg->ffn_dim);
    if (kv == cfg->heads) snprintf(kv_heads, sizeof kv_heads, "null");
    else snprintf(kv_heads, sizeof kv_heads, "%lld", (long long)kv);
    fprintf(f,
            "{\n"
            "  \"architectures\": [\n"
            "    \"RetNetForCausalLM\"\n"
            "  ],\n"
            "  \"attn_mode\": \"fused_chunk\",\n"
            "  \"bos_token_id\": 1,\n"
            "  \"conv_size\": 4,\n"
            "  \"elementwise_affine\": %s,\n"
            "  \"eos_token_id\": 2,\n"
            "  \"expand_k\": %s,\n"
            "  \"expand_v\": %s,\n"
            "  \"feature_map\": null,\n"
            "  \"fuse_cross_entropy\": true,\n"
            "  \"fuse_norm\": true,\n"
            "  \"hidden_act\": \"swish\",\n"
            "  \"hidden_ratio\": 2,\n"
            "  \"hidden_size\": %lld,\n"
            "  \"initializer_range\": 0.02,\n"
            "  \"intermediate_size\": %s,\n"
            "  \"max_position_embeddings\": 2048,\n"
            "  \"model_type\": \"retnet\",\n"
            "  \"norm_eps\": %s,\n"
            "  \"num_heads\": %lld,\n"
            "  \"num_hidden_layers\": %lld,\n"
            "  \"num_kv_heads\": %s,\n"
            "  \"rms_norm_eps\": %s,\n"
            "  \"share_conv_kernel\": true,\n"
            "  \"tie_word_embeddings\": %s,\n"
            "  \"torch_dtype\": \"%s\",\n"
            "  \"transformers_version\": \"4.40.2\",\n"
            "  \"use_cache\": true,\n"
            "  \"use_output_gate\": %s,\n"
            "  \"use_short_conv\": false,\n"
            "  \"vocab_size\": %lld\n"
            "}\n",
            B(cfg->head_norm_weight), expand_k, expand_v, (long long)D, inter, eps,
            (long long)cfg->heads, (long long)cfg->layers, kv_heads, eps, B(cfg->share_embed),
            torch_dtype(dtype), B(cfg->output_gate), (long long)cfg->vocab_size);
}
#undef B

static rn_status write_config(const char *path, const rn_config *cfg, st_dtype dtype, rn_error *err) {
    if (!path || !cfg) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_write_config: NULL argument");
    FILE *f = fopen(path, "w");
    if (!f) return rn_fail(err, RN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    char eps[64];
    format_double(eps, sizeof eps, cfg->layernorm_eps);
    switch (cfg->family) {
    case RN_FAMILY_SYNCDOTH: write_syncdoth_config(f, cfg, eps, dtype); break;
    case RN_FAMILY_FLA: write_fla_config(f, cfg, eps, dtype); break;
    default: write_torchscale_config(f, cfg, eps); break;
    }
    bool ok = !ferror(f);
    if (fclose(f) != 0 || !ok)
        return rn_fail(err, RN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return RN_OK;
}

rn_status rn_write_config(const char *path, const rn_config *cfg, rn_error *err) {
    return write_config(path, cfg, ST_F32, err);
}

/* ---- options and presets ------------------------------------------------------------------ */

void rn_writer_options_default(rn_writer_options *opts) {
    *opts = (rn_writer_options){.seed = 1, .dtype = ST_F32, .qk_gain = 1.0, .write_rel_pos = false,
                                .decay = NULL, .shards = 0, .fused_mlp = false};
}

void rn_writer_preset_fla_1_3b(rn_config *cfg, rn_writer_options *opts) {
    *cfg = (rn_config){
        .family = RN_FAMILY_FLA,
        .embed_dim = 2048,
        .key_embed_dim = 2048,      /* expand_k 1: dk 256 */
        .value_embed_dim = 4096,    /* expand_v 2: dv 512 */
        .heads = 8,
        .kv_heads = 8,
        .ffn_dim = 2816,            /* intermediate_size null, hidden_ratio 2 */
        .layers = 24,
        .vocab_size = 32000,
        .chunk_size = 512,
        .activation = RN_ACT_SWISH,
        .layernorm_eps = 1e-6,
        .no_scale_embedding = true,
        .normalize_before = true,
        .rope_half = true,
        .plain_retention = true,
        .head_norm_weight = true,
        .output_gate = true,
        .key_head_dim = 256,
        .value_head_dim = 512,
    };
    rn_writer_options_default(opts);
    opts->dtype = ST_BF16;
    opts->fused_mlp = true;   /* uploaded with transformers 4.40.2 in 2024, before the split */
}

/* ---- random tensors ----------------------------------------------------------------------- */

#define TENSOR_NAME_CAP 96

typedef enum init_kind { INIT_NORMAL, INIT_UNIFORM, INIT_NORM_WEIGHT, INIT_VALUES } init_kind;

typedef struct random_tensor {
    char name[TENSOR_NAME_CAP];
    int rank;
    uint64_t shape[2];
    init_kind kind;
    double scale;          /* std for INIT_NORMAL, bound for INIT_UNIFORM */
    const float *values;   /* INIT_VALUES */
    /* fla's fused gate_proj: from element split_at on, the values are those of the separate
     * tensor named `second`, drawn with second_kind/second_scale */
    uint64_t split_at;     /* 0: not split */
    char second[TENSOR_NAME_CAP];
    init_kind second_kind;
    double second_scale;
} random_tensor;

typedef struct generator {
    const random_tensor *tensors;
    const size_t *order;   /* entry index -> tensor index, or NULL for the identity */
    uint64_t seed;
    uint64_t state;        /* splitmix64 state of the stream being drawn */
    init_kind kind;        /* and its distribution */
    double scale;
} generator;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* (0, 1], never 0, so that log() in Box-Muller is finite */
static double uniform01(uint64_t *state) {
    return ((double)(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
}

/* Seeded by name: a tensor's values do not depend on which other tensors exist. */
static void begin_stream(generator *g, const char *name, init_kind kind, double scale) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * UINT64_C(0x100000001b3);
    g->state = g->seed ^ h;
    g->kind = kind;
    g->scale = scale;
}

/* `count` values of the current stream; one loop per distribution, as this is the writer's
 * whole cost for a large model. */
static void draw(generator *g, const float *values, uint64_t start, size_t count, float *dst) {
    double scale = g->scale;
    switch (g->kind) {
    case INIT_NORMAL:
        for (size_t i = 0; i < count; i++) {
            double u1 = uniform01(&g->state), u2 = uniform01(&g->state);
            dst[i] = (float)(scale * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
        break;
    case INIT_UNIFORM:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)(scale * (2.0 * uniform01(&g->state) - 1.0));
        break;
    case INIT_NORM_WEIGHT:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)(1.0 + 0.1 * (2.0 * uniform01(&g->state) - 1.0));
        break;
    case INIT_VALUES:
        memcpy(dst, values + start, count * sizeof *dst);
        break;
    }
}

static void fill_random(void *ctx, size_t index, uint64_t start, size_t count, float *dst) {
    generator *g = ctx;
    const random_tensor *t = &g->tensors[g->order ? g->order[index] : index];
    size_t i = 0;
    while (i < count) {
        uint64_t e = start + i;
        if (e == 0) begin_stream(g, t->name, t->kind, t->scale);
        if (t->split_at && e == t->split_at)
            begin_stream(g, t->second, t->second_kind, t->second_scale);
        /* up to the split, if it falls inside this chunk */
        size_t run = count - i;
        if (t->split_at > e && t->split_at - e < run) run = (size_t)(t->split_at - e);
        draw(g, t->values, e, run, dst + i);
        i += run;
    }
}

/* The layout being built: a fixed-capacity list (the builders know their count). */
typedef struct tensor_list {
    random_tensor *t;
    size_t n, cap;
} tensor_list;

static random_tensor *add(tensor_list *l, init_kind kind, double scale, int rank, int64_t d0,
                          int64_t d1, const char *fmt, ...) RN_PRINTF(7, 8);
static random_tensor *add(tensor_list *l, init_kind kind, double scale, int rank, int64_t d0,
                          int64_t d1, const char *fmt, ...) {
    random_tensor *t = &l->t[l->n++];   /* the builders stay within cap by construction */
    *t = (random_tensor){.rank = rank, .shape = {(uint64_t)d0, (uint64_t)d1}, .kind = kind,
                         .scale = scale};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    return t;
}

/* xavier_uniform bound for a [out, in] weight */
static double xavier(double gain, int64_t out, int64_t in) {
    return gain * sqrt(6.0 / (double)(out + in));
}

/* torchscale, or syncdoth ("model." prefix, lm_head): at most 10 L + 6 tensors. `rel_pos` holds
 * the dk angles then the H decays when the buffers are written. */
static void build_decoder(tensor_list *l, const rn_config *c, const rn_writer_options *o,
                          const float *rel_pos) {
    bool sd = c->family == RN_FAMILY_SYNCDOTH;
    const char *p = sd ? "model." : "";
    int64_t D = c->embed_dim, Dv = c->value_embed_dim, F = c->ffn_dim, V = c->vocab_size, L = c->layers;

    /* torchscale's deepnorm init divides exactly these four by (8L)^(1/4) */
    double beta = c->deepnorm ? pow(8.0 * (double)L, 0.25) : 1.0;
    double qk = xavier(pow(2.0, -2.5), D, D) * o->qk_gain;
    double v_scale = xavier(pow(2.0, -2.5), Dv, D) / beta;
    double g_scale = xavier(pow(2.0, -2.5), Dv, D);
    double out = xavier(0.5, D, Dv) / beta;
    double fc1_scale = 1.0 / sqrt((double)D) / beta, gate_scale = 1.0 / sqrt((double)D);
    double fc2_scale = 1.0 / sqrt((double)F) / beta;

    add(l, INIT_NORMAL, 1.0 / sqrt((double)D), 2, V, D, "%sembed_tokens.weight", p);          /* [V, D] */
    if (c->layernorm_embedding) add(l, INIT_NORM_WEIGHT, 0, 1, D, 0, "%slayernorm_embedding.weight", p);
    for (int64_t layer = 0; layer < L; layer++) {
        long long i = (long long)layer;
        add(l, INIT_UNIFORM, qk, 2, D, D, "%slayers.%lld.retention.q_proj.weight", p, i);       /* [D, D] */
        add(l, INIT_UNIFORM, qk, 2, D, D, "%slayers.%lld.retention.k_proj.weight", p, i);       /* [D, D] */
        add(l, INIT_UNIFORM, v_scale, 2, Dv, D, "%slayers.%lld.retention.v_proj.weight", p, i); /* [Dv, D] */
        add(l, INIT_UNIFORM, g_scale, 2, Dv, D, "%slayers.%lld.retention.g_proj.weight", p, i); /* [Dv, D] */
        add(l, INIT_UNIFORM, out, 2, D, Dv, "%slayers.%lld.retention.out_proj.weight", p, i);   /* [D, Dv] */
        add(l, INIT_NORM_WEIGHT, 0, 1, D, 0, "%slayers.%lld.retention_layer_norm.weight", p, i);
        add(l, INIT_UNIFORM, fc1_scale, 2, F, D, "%slayers.%lld.ffn.fc1.weight", p, i);         /* [F, D] */
        add(l, INIT_UNIFORM, gate_scale, 2, F, D, "%slayers.%lld.ffn.gate.weight", p, i);       /* [F, D] */
        add(l, INIT_UNIFORM, fc2_scale, 2, D, F, "%slayers.%lld.ffn.fc2.weight", p, i);         /* [D, F] */
        add(l, INIT_NORM_WEIGHT, 0, 1, D, 0, "%slayers.%lld.final_layer_norm.weight", p, i);
    }
    if (c->normalize_before) add(l, INIT_NORM_WEIGHT, 0, 1, D, 0, "%slayer_norm.weight", p);
    if (!c->share_embed)
        add(l, INIT_NORMAL, 1.0 / sqrt((double)D), 2, V, D, "%s", sd ? "lm_head.weight"
                                                                     : "output_projection.weight");
    if (rel_pos) {
        add(l, INIT_VALUES, 0, 1, c->key_head_dim, 0, "%sretnet_rel_pos.angle", p)->values = rel_pos;
        add(l, INIT_VALUES, 0, 1, c->heads, 0, "%sretnet_rel_pos.decay", p)->values =
            rel_pos + c->key_head_dim;
    }
}

/* fla (checkpoint.h's table): at most 11 L + 3 tensors. */
static void build_fla(tensor_list *l, const rn_config *c, const rn_writer_options *o) {
    int64_t D = c->embed_dim, K = c->key_embed_dim, Dv = c->value_embed_dim, I = c->ffn_dim;
    int64_t V = c->vocab_size, L = c->layers, G = c->heads / c->kv_heads;
    double qk = xavier(pow(2.0, -2.5), K, D) * o->qk_gain;
    double k_scale = xavier(pow(2.0, -2.5), K / G, D) * o->qk_gain;
    double v_scale = xavier(pow(2.0, -2.5), Dv / G, D), g_scale = xavier(pow(2.0, -2.5), Dv, D);
    double out = xavier(0.5, D, Dv), in_scale = 1.0 / sqrt((double)D), down = 1.0 / sqrt((double)I);

    add(l, INIT_NORMAL, 1.0 / sqrt((double)D), 2, V, D, "model.embeddings.weight");        /* [V, D] */
    for (int64_t layer = 0; layer < L; layer++) {
        long long i = (long long)layer;
        add(l, INIT_NORM_WEIGHT, 0, 1, D, 0, "model.layers.%lld.attn_norm.weight", i);
        add(l, INIT_UNIFORM, qk, 2, K, D, "model.layers.%lld.attn.q_proj.weight", i);           /* [K, D] */
        add(l, INIT_UNIFORM, k_scale, 2, K / G, D, "model.layers.%lld.attn.k_proj.weight", i);  /* [K/G, D] */
        add(l, INIT_UNIFORM, v_scale, 2, Dv / G, D, "model.layers.%lld.attn.v_proj.weight", i); /* [Dv/G, D] */
        if (c->output_gate)
            add(l, INIT_UNIFORM, g_scale, 2, Dv, D, "model.layers.%lld.attn.g_proj.weight", i); /* [Dv, D] */
        add(l, INIT_UNIFORM, out, 2, D, Dv, "model.layers.%lld.attn.o_proj.weight", i);         /* [D, Dv] */
        if (c->head_norm_weight)
            add(l, INIT_NORM_WEIGHT, 0, 1, c->value_head_dim, 0, "model.layers.%lld.attn.%s.weight", i,
                c->output_gate ? "g_norm_swish_gate" : "g_norm");                             /* [dv] */
        add(l, INIT_NORM_WEIGHT, 0, 1, D, 0, "model.layers.%lld.mlp_norm.weight", i);
        if (o->fused_mlp) {
            /* [2I, D]: gate rows, then up rows drawn exactly as a separate up_proj would be */
            random_tensor *t = add(l, INIT_UNIFORM, in_scale, 2, 2 * I, D,
                                   "model.layers.%lld.mlp.gate_proj.weight", i);
            t->split_at = (uint64_t)I * (uint64_t)D;
            snprintf(t->second, sizeof t->second, "model.layers.%lld.mlp.up_proj.weight", i);
            t->second_kind = INIT_UNIFORM;
            t->second_scale = in_scale;
        } else {
            add(l, INIT_UNIFORM, in_scale, 2, I, D, "model.layers.%lld.mlp.gate_proj.weight", i); /* [I, D] */
            add(l, INIT_UNIFORM, in_scale, 2, I, D, "model.layers.%lld.mlp.up_proj.weight", i);   /* [I, D] */
        }
        add(l, INIT_UNIFORM, down, 2, D, I, "model.layers.%lld.mlp.down_proj.weight", i);       /* [D, I] */
    }
    add(l, INIT_NORM_WEIGHT, 0, 1, D, 0, "model.norm.weight");
    if (!c->share_embed) add(l, INIT_NORMAL, 1.0 / sqrt((double)D), 2, V, D, "lm_head.weight");
}

/* ---- writing the weights ------------------------------------------------------------------ */

/* mkdir -p: every missing component of `dir`, then a check that it is a directory. */
static rn_status make_dirs(const char *dir, rn_error *err) {
    size_t len = strlen(dir);
    char *p = malloc(len + 1);
    if (!p) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
    memcpy(p, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rn_status s = rn_fail(err, RN_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return s;
        }
        p[i] = saved;
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return rn_fail(err, RN_ERR_IO, "%s: not a directory", dir);
    return RN_OK;
}

/* Removes `dir`/`name` if it is there: a leftover the loader would read instead. */
static rn_status remove_stale(const char *dir, const char *name, rn_error *err) {
    char *path = rn_path_join(dir, name);
    if (!path) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
    rn_status s = RN_OK;
    if (remove(path) != 0 && errno != ENOENT)
        s = rn_fail(err, RN_ERR_IO, "%s: cannot remove the stale file: %s", path, strerror(errno));
    free(path);
    return s;
}

static const random_tensor *g_sort_tensors;   /* for compare_by_name; single-threaded tool code */

static int compare_by_name(const void *a, const void *b) {
    return strcmp(g_sort_tensors[*(const size_t *)a].name, g_sort_tensors[*(const size_t *)b].name);
}

/* `n` tensors into opts->shards files dealt from a shuffled order, plus the index. */
static rn_status write_sharded(const char *dir, const random_tensor *t, const rn_st_entry *entries,
                               size_t n, const rn_writer_options *o, rn_error *err) {
    rn_status status = RN_OK;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    size_t *shard_of = malloc((n ? n : 1) * sizeof *shard_of);
    rn_st_entry *sub = malloc((n ? n : 1) * sizeof *sub);
    char *path = NULL;
    text index = {0};
    unsigned N = o->shards;
    if (!order || !shard_of || !sub) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
        goto done;
    }

    /* Fisher-Yates from the seed: which tensors share a file, and their order in it */
    for (size_t i = 0; i < n; i++) order[i] = i;
    uint64_t state = o->seed ^ UINT64_C(0x5348415244494e47);   /* "SHARDING" */
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(&state) % i);
        size_t tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }

    uint64_t total = 0;
    for (unsigned k = 0; k < N; k++) {
        size_t lo = (size_t)((uint64_t)k * n / N), hi = (size_t)((uint64_t)(k + 1) * n / N);
        for (size_t j = lo; j < hi; j++) {
            sub[j - lo] = entries[order[j]];
            shard_of[order[j]] = k;
            /* write_tensors checks these sizes against 2^48 before a byte is written */
            const random_tensor *r = &t[order[j]];
            uint64_t bytes = r->shape[0] * (r->rank == 2 ? r->shape[1] : 1) * st_dtype_size(o->dtype);
            total += bytes;
        }
        char name[64];
        snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", k + 1, N);
        free(path);
        path = rn_path_join(dir, name);
        if (!path) {
            status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
            goto done;
        }
        generator g = {.tensors = t, .order = order + lo, .seed = o->seed};
        if ((status = write_tensors(path, sub, hi - lo, fill_random, &g, false, err)) != RN_OK)
            goto done;
    }

    /* the index as transformers writes it: total_size, then the map sorted by tensor name */
    g_sort_tensors = t;
    for (size_t i = 0; i < n; i++) order[i] = i;
    qsort(order, n, sizeof *order, compare_by_name);
    text_printf(&index, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
                (unsigned long long)total);
    for (size_t i = 0; i < n; i++) {
        if (i) text_add(&index, ",", 1);
        text_add(&index, "\n    ", 5);
        text_json_string(&index, t[order[i]].name);
        text_printf(&index, ": \"model-%05u-of-%05u.safetensors\"",
                    (unsigned)shard_of[order[i]] + 1, N);
    }
    text_add(&index, "\n  }\n}\n", 7);
    if (index.failed) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for the index", dir);
        goto done;
    }
    free(path);
    path = rn_path_join(dir, "model.safetensors.index.json");
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (!f) {
        status = rn_fail(err, RN_ERR_IO, "%s: cannot create: %s", path ? path : dir, strerror(errno));
        goto done;
    }
    bool ok = fwrite(index.data, 1, index.len, f) == index.len;
    if (fclose(f) != 0 || !ok)
        status = rn_fail(err, RN_ERR_IO, "%s: write failed: %s", path, strerror(errno));

done:
    free(order);
    free(shard_of);
    free(sub);
    free(path);
    free(index.data);
    return status;
}

/* The fields the family's config.json carries came back as given (model_writer.h). */
static bool round_trip_ok(const rn_config *want, const rn_config *got) {
    bool ok = got->embed_dim == want->embed_dim && got->value_embed_dim == want->value_embed_dim &&
              got->heads == want->heads && got->ffn_dim == want->ffn_dim &&
              got->layers == want->layers && got->vocab_size == want->vocab_size &&
              got->layernorm_eps == want->layernorm_eps && got->share_embed == want->share_embed;
    if (want->family == RN_FAMILY_FLA) {
        int64_t K = want->key_embed_dim ? want->key_embed_dim : want->embed_dim;
        int64_t kv = want->kv_heads ? want->kv_heads : want->heads;
        return ok && got->family == RN_FAMILY_FLA && got->key_embed_dim == K &&
               got->kv_heads == kv && got->head_norm_weight == want->head_norm_weight &&
               got->output_gate == want->output_gate;
    }
    return ok && got->family != RN_FAMILY_FLA && got->chunk_size == want->chunk_size &&
           got->activation == want->activation &&
           got->no_scale_embedding == want->no_scale_embedding &&
           got->layernorm_embedding == want->layernorm_embedding &&
           got->normalize_before == want->normalize_before && got->deepnorm == want->deepnorm &&
           (want->family != RN_FAMILY_SYNCDOTH || got->use_lm_decay == want->use_lm_decay);
}

rn_status rn_write_random_model(const char *dir, const rn_config *cfg,
                                const rn_writer_options *opts_in, rn_error *err) {
    rn_status status = RN_OK;
    char *config_path = NULL, *model_path = NULL;
    tensor_list list = {0};
    rn_st_entry *entries = NULL;
    float *rel_pos = NULL;

    if (!dir || !cfg)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_write_random_model: NULL argument");
    rn_writer_options opts;
    if (opts_in) opts = *opts_in;
    else rn_writer_options_default(&opts);
    if (opts.decay) opts.write_rel_pos = true;
    bool fla = cfg->family == RN_FAMILY_FLA;
    if (!isfinite(opts.qk_gain) || opts.qk_gain <= 0 ||
        (opts.dtype != ST_F32 && opts.dtype != ST_F16 && opts.dtype != ST_BF16) ||
        (cfg->family != RN_FAMILY_TORCHSCALE && cfg->family != RN_FAMILY_SYNCDOTH && !fla))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_write_random_model: bad options");
    if (fla && opts.write_rel_pos)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                       "rn_write_random_model: fla checkpoints have no rel-pos buffers");
    if (!fla && opts.fused_mlp)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                       "rn_write_random_model: the fused MLP layout is fla's only");

    if ((status = make_dirs(dir, err)) != RN_OK) return status;
    config_path = rn_path_join(dir, "config.json");
    model_path = rn_path_join(dir, "model.safetensors");
    if (!config_path || !model_path) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
        goto done;
    }
    if ((status = write_config(config_path, cfg, opts.dtype, err)) != RN_OK) goto done;
    /* read back: the model follows the config exactly as the loader will see it */
    rn_config c;
    if ((status = rn_config_load(config_path, &c, err)) != RN_OK) goto done;
    if (!round_trip_ok(cfg, &c)) {
        status = rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                         "%s: the config does not survive its %s config.json (a field this family "
                         "cannot express)", config_path, rn_family_name(cfg->family));
        goto done;
    }
    c.family = cfg->family;   /* syncdoth and torchscale configs may read back as either */

    list.cap = 12 * (size_t)c.layers + 8;
    list.t = calloc(list.cap, sizeof *list.t);
    entries = calloc(list.cap, sizeof *entries);
    rel_pos = malloc((size_t)(c.key_head_dim + c.heads) * sizeof *rel_pos);
    if (!list.t || !entries || !rel_pos) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
        goto done;
    }
    if (fla) {
        build_fla(&list, &c, &opts);
    } else {
        if (opts.write_rel_pos) {
            /* the values the loader would compute without the buffers, or the caller's decays */
            rn_checkpoint view = {.config = c};
            rn_checkpoint_rel_pos(&view, rel_pos, rel_pos + c.key_head_dim);
            if (opts.decay)
                memcpy(rel_pos + c.key_head_dim, opts.decay, (size_t)c.heads * sizeof *rel_pos);
        }
        build_decoder(&list, &c, &opts, opts.write_rel_pos ? rel_pos : NULL);
    }
    for (size_t i = 0; i < list.n; i++) {
        const random_tensor *t = &list.t[i];
        entries[i] = (rn_st_entry){.name = t->name, .dtype = opts.dtype, .rank = t->rank,
                                   .shape = {t->shape[0], t->shape[1]}};
    }

    if (opts.shards > 0) {
        if (opts.shards > list.n) {
            status = rn_fail(err, RN_ERR_INVALID_ARGUMENT, "%s: %u shards for %zu tensors; a shard "
                             "needs at least one", dir, opts.shards, list.n);
            goto done;
        }
        if ((status = remove_stale(dir, "model.safetensors", err)) != RN_OK) goto done;
        status = write_sharded(dir, list.t, entries, list.n, &opts, err);
    } else {
        if ((status = remove_stale(dir, "model.safetensors.index.json", err)) != RN_OK) goto done;
        generator g = {.tensors = list.t, .seed = opts.seed};
        status = write_tensors(model_path, entries, list.n, fill_random, &g, false, err);
    }

done:
    free(config_path);
    free(model_path);
    free(list.t);
    free(entries);
    free(rel_pos);
    return status;
}
