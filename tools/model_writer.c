/*
 * model_writer.c: safetensors and random-checkpoint writers (model_writer.h).
 *
 * Both writers share one streaming core: tensors are produced a chunk of floats at a time by a
 * fill callback, converted to the storage dtype and written, so a random checkpoint never
 * needs more memory than one chunk whatever its size.
 */
#define _POSIX_C_SOURCE 200809L   /* mkdir, stat */

#include "model_writer.h"

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

uint16_t rn_f32_to_f16(float x) {
    uint32_t bits = f32_bits(x);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    uint32_t abs = bits & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00;          /* NaN */
    if (abs >= 0x47800000u) return sign | 0x7c00;         /* >= 65536 or inf */
    uint32_t e = abs >> 23;
    if (e < 113) {
        /* below 2^-14: a subnormal half, value / 2^-24 = mant >> (126 - e) */
        uint32_t shift = 126 - e;
        if (shift > 24) return sign;                     /* below 2^-25: rounds to zero */
        uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        uint32_t h = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;  /* may carry into the smallest normal */
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((e - 112) << 10) | ((abs >> 13) & 0x3ff);
    uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;  /* a carry past 30 gives inf, rightly */
    return (uint16_t)(sign | h);
}

uint16_t rn_f32_to_bf16(float x) {
    uint32_t bits = f32_bits(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040);
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

/* Appends `count` floats to `out` in `dtype`, little-endian whatever the host. */
static size_t encode(st_dtype dtype, const float *src, size_t count, unsigned char *out) {
    unsigned char *p = out;
    for (size_t i = 0; i < count; i++) {
        if (dtype == ST_F32) {
            uint32_t b = f32_bits(src[i]);
            *p++ = (unsigned char)b;
            *p++ = (unsigned char)(b >> 8);
            *p++ = (unsigned char)(b >> 16);
            *p++ = (unsigned char)(b >> 24);
        } else {
            uint16_t b = dtype == ST_F16 ? rn_f32_to_f16(src[i]) : rn_f32_to_bf16(src[i]);
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

rn_status rn_write_config(const char *path, const rn_config *cfg, rn_error *err) {
    if (!path || !cfg) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_write_config: NULL argument");
    FILE *f = fopen(path, "w");
    if (!f) return rn_fail(err, RN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    char eps[64];
    format_double(eps, sizeof eps, cfg->layernorm_eps);
#define B(x) ((x) ? "true" : "false")
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
#undef B
    bool ok = !ferror(f);
    if (fclose(f) != 0 || !ok)
        return rn_fail(err, RN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return RN_OK;
}

/* ---- random checkpoints ------------------------------------------------------------------- */

void rn_writer_options_default(rn_writer_options *opts) {
    *opts = (rn_writer_options){.seed = 1, .dtype = ST_F32, .qk_gain = 1.0, .write_rel_pos = false};
}

typedef enum init_kind { INIT_NORMAL, INIT_UNIFORM, INIT_NORM_WEIGHT, INIT_VALUES } init_kind;

typedef struct random_tensor {
    char name[96];
    init_kind kind;
    double scale;          /* std for INIT_NORMAL, bound for INIT_UNIFORM */
    const float *values;   /* INIT_VALUES */
} random_tensor;

typedef struct generator {
    const random_tensor *tensors;
    uint64_t seed;
    uint64_t state;        /* splitmix64 state of the tensor being filled */
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

static void fill_random(void *ctx, size_t index, uint64_t start, size_t count, float *dst) {
    generator *g = ctx;
    const random_tensor *t = &g->tensors[index];
    if (start == 0) {
        /* seeded by name: a tensor's values do not depend on which other tensors exist */
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        for (const unsigned char *p = (const unsigned char *)t->name; *p; p++)
            h = (h ^ *p) * UINT64_C(0x100000001b3);
        g->state = g->seed ^ h;
    }
    for (size_t i = 0; i < count; i++) {
        switch (t->kind) {
        case INIT_NORMAL: {
            double u1 = uniform01(&g->state), u2 = uniform01(&g->state);
            dst[i] = (float)(t->scale * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
            break;
        }
        case INIT_UNIFORM:
            dst[i] = (float)(t->scale * (2.0 * uniform01(&g->state) - 1.0));
            break;
        case INIT_NORM_WEIGHT:
            dst[i] = (float)(1.0 + 0.1 * (2.0 * uniform01(&g->state) - 1.0));
            break;
        case INIT_VALUES:
            dst[i] = t->values[start + i];
            break;
        }
    }
}

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

/* xavier_uniform bound for a [out, in] weight */
static double xavier(double gain, int64_t out, int64_t in) {
    return gain * sqrt(6.0 / (double)(out + in));
}

rn_status rn_write_random_model(const char *dir, const rn_config *cfg,
                                const rn_writer_options *opts_in, rn_error *err) {
    rn_status status = RN_OK;
    char *config_path = NULL, *model_path = NULL;
    random_tensor *tensors = NULL;
    rn_st_entry *entries = NULL;
    float *rel_pos = NULL;

    if (!dir || !cfg) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_write_random_model: NULL argument");
    rn_writer_options opts;
    if (opts_in) opts = *opts_in;
    else rn_writer_options_default(&opts);
    if (!isfinite(opts.qk_gain) || opts.qk_gain <= 0 ||
        (opts.dtype != ST_F32 && opts.dtype != ST_F16 && opts.dtype != ST_BF16))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_write_random_model: bad options");

    if ((status = make_dirs(dir, err)) != RN_OK) return status;
    config_path = rn_path_join(dir, "config.json");
    model_path = rn_path_join(dir, "model.safetensors");
    if (!config_path || !model_path) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
        goto done;
    }
    if ((status = rn_write_config(config_path, cfg, err)) != RN_OK) goto done;
    /* read back: the model follows the config exactly as the loader will see it */
    rn_config c;
    if ((status = rn_config_load(config_path, &c, err)) != RN_OK) goto done;

    int64_t D = c.embed_dim, Dv = c.value_embed_dim, F = c.ffn_dim, V = c.vocab_size, L = c.layers;
    size_t max_tensors = 10 * (size_t)L + 8;
    tensors = calloc(max_tensors, sizeof *tensors);
    entries = calloc(max_tensors, sizeof *entries);
    rel_pos = malloc((size_t)(c.key_head_dim + c.heads) * sizeof *rel_pos);
    if (!tensors || !entries || !rel_pos) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
        goto done;
    }

    size_t n = 0;
#define ADD(kind_, scale_, rank_, d0, d1, ...)                                          \
    do {                                                                                \
        random_tensor *t_ = &tensors[n];                                                \
        snprintf(t_->name, sizeof t_->name, __VA_ARGS__);                               \
        t_->kind = kind_;                                                               \
        t_->scale = scale_;                                                             \
        entries[n] = (rn_st_entry){.name = t_->name, .dtype = opts.dtype, .rank = rank_, \
                                   .shape = {(uint64_t)(d0), (uint64_t)(d1)}};          \
        n++;                                                                            \
    } while (0)

    /* torchscale's deepnorm init divides exactly these four by (8L)^(1/4) */
    double beta = c.deepnorm ? pow(8.0 * (double)L, 0.25) : 1.0;
    double qk = xavier(pow(2.0, -2.5), D, D) * opts.qk_gain;
    double v_scale = xavier(pow(2.0, -2.5), Dv, D) / beta;
    double g_scale = xavier(pow(2.0, -2.5), Dv, D);
    double out = xavier(0.5, D, Dv) / beta;
    double fc1_scale = 1.0 / sqrt((double)D) / beta, gate_scale = 1.0 / sqrt((double)D);
    double fc2_scale = 1.0 / sqrt((double)F) / beta;

    ADD(INIT_NORMAL, 1.0 / sqrt((double)D), 2, V, D, "embed_tokens.weight");           /* [V, D] */
    if (c.layernorm_embedding) ADD(INIT_NORM_WEIGHT, 0, 1, D, 0, "layernorm_embedding.weight");
    for (int64_t l = 0; l < L; l++) {
        long long i = (long long)l;
        ADD(INIT_UNIFORM, qk, 2, D, D, "layers.%lld.retention.q_proj.weight", i);       /* [D, D] */
        ADD(INIT_UNIFORM, qk, 2, D, D, "layers.%lld.retention.k_proj.weight", i);       /* [D, D] */
        ADD(INIT_UNIFORM, v_scale, 2, Dv, D, "layers.%lld.retention.v_proj.weight", i); /* [Dv, D] */
        ADD(INIT_UNIFORM, g_scale, 2, Dv, D, "layers.%lld.retention.g_proj.weight", i); /* [Dv, D] */
        ADD(INIT_UNIFORM, out, 2, D, Dv, "layers.%lld.retention.out_proj.weight", i);   /* [D, Dv] */
        ADD(INIT_NORM_WEIGHT, 0, 1, D, 0, "layers.%lld.retention_layer_norm.weight", i);
        ADD(INIT_UNIFORM, fc1_scale, 2, F, D, "layers.%lld.ffn.fc1.weight", i);         /* [F, D] */
        ADD(INIT_UNIFORM, gate_scale, 2, F, D, "layers.%lld.ffn.gate.weight", i);       /* [F, D] */
        ADD(INIT_UNIFORM, fc2_scale, 2, D, F, "layers.%lld.ffn.fc2.weight", i);         /* [D, F] */
        ADD(INIT_NORM_WEIGHT, 0, 1, D, 0, "layers.%lld.final_layer_norm.weight", i);
    }
    if (c.normalize_before) ADD(INIT_NORM_WEIGHT, 0, 1, D, 0, "layer_norm.weight");
    if (!c.share_embed)
        ADD(INIT_NORMAL, 1.0 / sqrt((double)D), 2, V, D, "output_projection.weight");   /* [V, D] */
    if (opts.write_rel_pos) {
        /* the values the loader would compute without the buffers */
        rn_checkpoint view = {.config = c};
        rn_checkpoint_rel_pos(&view, rel_pos, rel_pos + c.key_head_dim);
        ADD(INIT_VALUES, 0, 1, c.key_head_dim, 0, "retnet_rel_pos.angle");
        tensors[n - 1].values = rel_pos;
        ADD(INIT_VALUES, 0, 1, c.heads, 0, "retnet_rel_pos.decay");
        tensors[n - 1].values = rel_pos + c.key_head_dim;
    }
#undef ADD

    generator g = {.tensors = tensors, .seed = opts.seed};
    status = write_tensors(model_path, entries, n, fill_random, &g, false, err);

done:
    free(config_path);
    free(model_path);
    free(tensors);
    free(entries);
    free(rel_pos);
    return status;
}
