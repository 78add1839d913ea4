/*
 * checkpoint.c: config.json + the safetensors file(s) checked against each other (checkpoint.h).
 *
 * Opening goes: config (which names the family, or the pair torchscale/syncdoth), the weights
 * (one file, or every shard of the index, each validated, the index checked against what the
 * shards hold), then every tensor the config implies looked up under the family's name.
 * Missing tensors are collected and reported together, so that a user fixing a converter sees
 * the whole list at once; a shape mismatch is reported with both shapes and the file. Nothing
 * here touches tensor data except rn_checkpoint_rel_pos, which widens the two small position
 * buffers.
 */
#include "checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "dtype.h"
#include "json_guard.h"

#define MAX_LISTED_MISSING 20
#define NAME_CAP 160   /* "model.layers.1023.attn.g_norm_swish_gate.weight" is 47 bytes */
#define INDEX_NAME "model.safetensors.index.json"

/* One weight_map entry: a tensor and the shard the index puts it in. */
typedef struct shard_ref {
    const char *name;      /* the shard's own copy once validated */
    size_t shard;
} shard_ref;

/* Half of a legacy fused gate_proj: a view the checkpoint owns, never a copy of the data. */
typedef struct derived_tensor {
    st_tensor t;
    char name[NAME_CAP + 32];
} derived_tensor;

/* The handle callers hold is `pub`; the rest is what lookups and messages need. */
typedef struct checkpoint_impl {
    rn_checkpoint pub;
    char **shard_paths;          /* [pub.n_shards], for messages */
    shard_ref *map;              /* [n_map] sorted by name; NULL when unsharded */
    size_t n_map;
    derived_tensor *derived;     /* [2L] for fla's fused MLP, else NULL */
    derived_tensor *qviews;      /* quantized: one Q8_0/Q4_0 view per matrix ([2 + 10L]) */
    size_t n_qviews, cap_qviews;
} checkpoint_impl;

static int compare_refs(const void *a, const void *b) {
    return strcmp(((const shard_ref *)a)->name, ((const shard_ref *)b)->name);
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A tensor by its file name, and which shard holds it. */
static const st_tensor *find_in(const checkpoint_impl *ck, const char *name, size_t *shard) {
    if (!ck->map) {
        if (shard) *shard = 0;
        return ck->pub.n_shards ? st_find(ck->pub.shards[0], name) : NULL;
    }
    shard_ref key = {.name = name};
    const shard_ref *r = bsearch(&key, ck->map, ck->n_map, sizeof *ck->map, compare_refs);
    if (!r) return NULL;
    if (shard) *shard = r->shard;
    return st_find(ck->pub.shards[r->shard], name);
}

const st_tensor *rn_checkpoint_find(const rn_checkpoint *ckpt, const char *name) {
    if (!ckpt || !name) return NULL;
    return find_in((const checkpoint_impl *)ckpt, name, NULL);
}

/* ---- the index ---------------------------------------------------------------------------- */

/* A shard name the index may give: a file directly in the model directory, nothing that could
 * reach outside it (B.1 item 23). */
static bool plain_file_name(const char *s) {
    if (!s[0] || strlen(s) > 255 || strstr(s, "..")) return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '/' || *p == '\\' || *p == ':' || *p < 0x20 || *p == 0x7f) return false;
    return true;
}

/* Same depth and number caps as a safetensors header: the index is two levels deep. */
static const rn_json_limits k_index_limits = {
    .max_depth = 64,
    .max_number_chars = 64,
    .base_offset = 0,
};

/* Reads the index into ck->map and opens every shard it names (ck->pub.shards). */
static rn_status open_index(checkpoint_impl *ck, const char *dir, const char *index_path,
                            rn_error *err) {
    rn_status status = RN_OK;
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    const char **names = NULL;        /* shard file names, sorted, unique */
    shard_ref *all = NULL;            /* every tensor of every shard, for the two-shard check */

    if ((status = rn_read_file(index_path, RN_MAX_INDEX_BYTES, &text, &len, err)) != RN_OK)
        return status;
    if ((status = rn_json_prescan(text, len, &k_index_limits, err)) != RN_OK) {
        rn_error_prefix(err, "%s", index_path);
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        status = rn_fail(err, RN_ERR_JSON, "%s: not JSON: syntax error at offset %zu", index_path,
                         end ? (size_t)(end - text) : (size_t)0);
        goto done;
    }
    for (size_t i = (size_t)(end - text); i < len; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') {
            status = rn_fail(err, RN_ERR_JSON, "%s: bytes after the JSON value at offset %zu",
                             index_path, i);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        status = rn_fail(err, RN_ERR_JSON, "%s: the document is not a JSON object", index_path);
        goto done;
    }
    const char *dup;
    if ((status = rn_json_duplicate_key(root, &dup, err)) != RN_OK) goto done;
    if (dup) {
        status = rn_fail(err, RN_ERR_JSON, "%s: key '%.200s' appears twice", index_path, dup);
        goto done;
    }

    /* weight_map: tensor name -> shard file name, nothing else */
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        status = rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: weight_map %s", index_path,
                         map ? "must be an object mapping tensor names to shard file names"
                             : "is missing");
        goto done;
    }
    if ((status = rn_json_duplicate_key(map, &dup, err)) != RN_OK) goto done;
    if (dup) {
        status = rn_fail(err, RN_ERR_DUPLICATE, "%s: weight_map lists tensor '%.200s' twice",
                         index_path, dup);
        goto done;
    }
    size_t n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, map) {
        const char *tensor = item->string ? item->string : "";
        if (!cJSON_IsString(item)) {
            status = rn_fail(err, RN_ERR_TENSOR_ENTRY,
                             "%s: weight_map['%.200s'] must be a string (a shard file name)",
                             index_path, tensor);
            goto done;
        }
        bool control = false;
        for (const unsigned char *p = (const unsigned char *)tensor; *p; p++)
            control |= *p < 0x20 || *p == 0x7f;
        if (!tensor[0] || strlen(tensor) > ST_MAX_NAME_BYTES || control) {
            status = rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: weight_map has a tensor name that is "
                             "empty, over %d bytes or holds a control character", index_path,
                             ST_MAX_NAME_BYTES);
            goto done;
        }
        if (!plain_file_name(item->valuestring)) {
            status = rn_fail(err, RN_ERR_TENSOR_ENTRY,
                             "%s: weight_map['%.200s'] = '%.200s' is not a plain file name in the "
                             "model directory (no '/', '\\', ':', '..' or control characters)",
                             index_path, tensor, item->valuestring);
            goto done;
        }
        n++;
    }
    if (n == 0) {
        status = rn_fail(err, RN_ERR_TENSOR_ENTRY, "%s: weight_map is empty", index_path);
        goto done;
    }

    /* the shards: distinct names, sorted */
    names = malloc(n * sizeof *names);
    ck->map = calloc(n, sizeof *ck->map);
    if (!names || !ck->map) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", index_path);
        goto done;
    }
    size_t k = 0;
    cJSON_ArrayForEach(item, map) names[k++] = item->valuestring;
    qsort(names, n, sizeof *names, compare_strings);
    size_t shards = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(names[i], names[shards - 1]) != 0) names[shards++] = names[i];
    if (shards > RN_MAX_SHARDS) {
        status = rn_fail(err, RN_ERR_LIMIT, "%s: %zu shards, more than the %d this runtime opens",
                         index_path, shards, RN_MAX_SHARDS);
        goto done;
    }
    ck->pub.shards = calloc(shards, sizeof *ck->pub.shards);
    ck->shard_paths = calloc(shards, sizeof *ck->shard_paths);
    if (!ck->pub.shards || !ck->shard_paths) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", index_path);
        goto done;
    }
    ck->pub.n_shards = shards;
    for (size_t i = 0; i < shards; i++) {
        ck->shard_paths[i] = rn_path_join(dir, names[i]);
        if (!ck->shard_paths[i]) {
            status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", index_path);
            goto done;
        }
        /* st_open's message names the file; say where the name came from */
        if ((status = st_open(ck->shard_paths[i], &ck->pub.shards[i], err)) != RN_OK) {
            rn_error_prefix(err, "shard '%s' listed in %s", names[i], index_path);
            goto done;
        }
    }

    /* no tensor in two shards: over everything the shards hold, listed or not */
    size_t total = 0;
    for (size_t i = 0; i < shards; i++) total += st_count(ck->pub.shards[i]);
    all = malloc((total ? total : 1) * sizeof *all);
    if (!all) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", index_path);
        goto done;
    }
    k = 0;
    for (size_t i = 0; i < shards; i++)
        for (size_t j = 0; j < st_count(ck->pub.shards[i]); j++)
            all[k++] = (shard_ref){.name = st_at(ck->pub.shards[i], j)->name, .shard = i};
    qsort(all, total, sizeof *all, compare_refs);
    for (size_t i = 1; i < total; i++) {
        if (strcmp(all[i - 1].name, all[i].name) == 0) {
            status = rn_fail(err, RN_ERR_DUPLICATE,
                             "%s: tensor '%.200s' is in two shards, '%s' and '%s'", index_path,
                             all[i].name, names[all[i - 1].shard], names[all[i].shard]);
            goto done;
        }
    }

    /* every listed tensor is where the index says */
    size_t absent = 0;
    char first[ST_MAX_NAME_BYTES + 1] = "", where[256] = "";
    k = 0;
    cJSON_ArrayForEach(item, map) {
        const char **slot = bsearch(&item->valuestring, names, shards, sizeof *names, compare_strings);
        size_t shard = (size_t)(slot - names);
        const st_tensor *t = st_find(ck->pub.shards[shard], item->string);
        if (!t) {
            if (absent++ == 0) {
                snprintf(first, sizeof first, "%s", item->string);
                snprintf(where, sizeof where, "%s", names[shard]);
            }
            continue;
        }
        ck->map[k++] = (shard_ref){.name = t->name, .shard = shard};   /* outlives the JSON */
    }
    if (absent) {
        status = rn_fail(err, RN_ERR_MISSING_TENSOR,
                         "%s: weight_map puts tensor '%.200s' in shard '%s', which does not hold it%s",
                         index_path, first, where, absent > 1 ? " (and others)" : "");
        goto done;
    }
    ck->n_map = n;
    qsort(ck->map, n, sizeof *ck->map, compare_refs);

done:
    cJSON_Delete(root);
    free(text);
    free(names);
    free(all);
    return status;
}

/* ---- tensor lookups ----------------------------------------------------------------------- */

/* State of one mapping pass: the missing names so far and the first other failure. */
typedef struct lookup {
    checkpoint_impl *ck;
    const char *source;           /* model.safetensors or the index, for the missing list */
    size_t missing;
    char missing_list[2048];
    rn_status status;             /* first shape (or duplicate head norm) failure */
    rn_error *err;
    uint64_t parameters;
    uint64_t bytes;
} lookup;

static void format_shape(char *buf, size_t cap, int rank, const uint64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %llu" : "%llu", (unsigned long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static const char *file_of(const lookup *lk, size_t shard) {
    return lk->ck->shard_paths[shard];
}

static void note_missing(lookup *lk, const char *name) {
    if (lk->missing < MAX_LISTED_MISSING) {
        size_t used = strlen(lk->missing_list);
        snprintf(lk->missing_list + used, sizeof lk->missing_list - used, "%s%s",
                 lk->missing ? ", " : "", name);
    }
    lk->missing++;
}

static bool shape_is(const st_tensor *t, int rank, uint64_t d0, uint64_t d1) {
    uint64_t expect[2] = {d0, d1};
    if (t->rank != rank) return false;
    for (int i = 0; i < rank; i++)
        if (t->shape[i] != expect[i]) return false;
    return true;
}

/* Keeps the first failure only; missing tensors take precedence at the end. */
static void shape_fail(lookup *lk, const st_tensor *t, size_t shard, const char *expect) {
    if (lk->status != RN_OK) return;
    char got[96];
    format_shape(got, sizeof got, t->rank, t->shape);
    lk->status =
        rn_fail(lk->err, RN_ERR_TENSOR_SHAPE, "%s: tensor '%s' has shape %s, the config implies %s",
                file_of(lk, shard), t->name, got, expect);
}

static void dtype_fail(lookup *lk, const st_tensor *t, size_t shard, const char *expect, const char *note) {
    if (lk->status != RN_OK) return;
    lk->status = rn_fail(lk->err, RN_ERR_UNSUPPORTED_DTYPE, "%s: tensor '%s' is %s, where %s is expected%s",
                         file_of(lk, shard), t->name, st_dtype_name(t->dtype), expect, note);
}

static const st_tensor *accept(lookup *lk, const st_tensor *t, bool counted) {
    if (counted) rn_add_u64(lk->parameters, t->elements, &lk->parameters);
    rn_add_u64(lk->bytes, t->nbytes, &lk->bytes);
    return t;
}

/* Finds `name` and checks its shape (rank entries of d0, d1). Absent tensors are added to the
 * missing list when `required`, else give NULL silently. */
static const st_tensor *want(lookup *lk, const char *name, bool required, bool counted, int rank,
                             uint64_t d0, uint64_t d1) {
    size_t shard = 0;
    const st_tensor *t = find_in(lk->ck, name, &shard);
    if (!t) {
        if (required) note_missing(lk, name);
        return NULL;
    }
    if (!st_dtype_is_float(t->dtype)) {
        dtype_fail(lk, t, shard, "F32, F16 or BF16",
                   lk->ck->pub.quantized ? " (a quantized checkpoint keeps all but its matrices unquantized)" : "");
        return NULL;
    }
    if (!shape_is(t, rank, d0, d1)) {
        uint64_t expect[2] = {d0, d1};
        char exp[96];
        format_shape(exp, sizeof exp, rank, expect);
        shape_fail(lk, t, shard, exp);
        return NULL;
    }
    return accept(lk, t, counted);
}

/* want() for a name built from a format, e.g. one layer's tensor. */
static const st_tensor *wantf(lookup *lk, bool required, int rank, uint64_t d0, uint64_t d1,
                              const char *fmt, ...) RN_PRINTF(6, 7);
static const st_tensor *wantf(lookup *lk, bool required, int rank, uint64_t d0, uint64_t d1,
                              const char *fmt, ...) {
    char name[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return want(lk, name, required, true, rank, d0, d1);
}

/* A matrix of a quantized checkpoint: `name`.qweight [rows, quant bytes of a row] (U8) and
 * `name`.qscale [rows, cols / 32] (F16), or, when a row is not whole blocks (blocks then run
 * across rows), both flat: [quant bytes of rows * cols] and [rows * cols / 32]; as one view of
 * the scheme's dtype and the logical shape [rows, cols]. `take`: counted as a role's tensor
 * (parameters, bytes). */
static const st_tensor *want_quantized(lookup *lk, const char *name, bool take, uint64_t rows, uint64_t cols) {
    checkpoint_impl *ck = lk->ck;
    const st_dtype q = ck->pub.quantization;
    char wname[NAME_CAP + 16], sname[NAME_CAP + 16], exp[160];
    snprintf(wname, sizeof wname, "%s" RN_QWEIGHT_SUFFIX, name);
    snprintf(sname, sizeof sname, "%s" RN_QSCALE_SUFFIX, name);
    size_t ws = 0, ss = 0;
    const st_tensor *w = find_in(ck, wname, &ws), *sc = find_in(ck, sname, &ss);
    if (!w) note_missing(lk, wname);
    if (!sc) note_missing(lk, sname);
    if (!w || !sc) return NULL;
    if (rows * cols % 32 != 0) {
        if (lk->status == RN_OK)
            lk->status = rn_fail(lk->err, RN_ERR_UNSUPPORTED_CONFIG,
                                 "%s: tensor '%s': %s needs whole blocks of 32; the config implies [%llu, %llu]",
                                 file_of(lk, ws), wname, st_dtype_name(q), (unsigned long long)rows,
                                 (unsigned long long)cols);
        return NULL;
    }
    const bool by_row = cols % 32 == 0;
    if (w->dtype != ST_U8) {
        dtype_fail(lk, w, ws, "U8", " (the quants of a quantized matrix)");
        return NULL;
    }
    if (sc->dtype != ST_F16) {
        dtype_fail(lk, sc, ss, "F16", " (the scales of a quantized matrix)");
        return NULL;
    }
    const uint64_t row_bytes = rn_quant_bytes(q, cols), all_bytes = rn_quant_bytes(q, rows * cols);
    if (by_row ? !shape_is(w, 2, rows, row_bytes) : !shape_is(w, 1, all_bytes, 0)) {
        if (by_row)
            snprintf(exp, sizeof exp, "[%llu, %llu] (the %s quants of [%llu, %llu])", (unsigned long long)rows,
                     (unsigned long long)row_bytes, st_dtype_name(q), (unsigned long long)rows,
                     (unsigned long long)cols);
        else
            snprintf(exp, sizeof exp, "[%llu] (the %s quants of [%llu, %llu], blocks across rows)",
                     (unsigned long long)all_bytes, st_dtype_name(q), (unsigned long long)rows,
                     (unsigned long long)cols);
        shape_fail(lk, w, ws, exp);
        return NULL;
    }
    if (by_row ? !shape_is(sc, 2, rows, cols / 32) : !shape_is(sc, 1, rows * cols / 32, 0)) {
        if (by_row)
            snprintf(exp, sizeof exp, "[%llu, %llu] (a scale per block of 32 of [%llu, %llu])",
                     (unsigned long long)rows, (unsigned long long)(cols / 32), (unsigned long long)rows,
                     (unsigned long long)cols);
        else
            snprintf(exp, sizeof exp, "[%llu] (a scale per block of 32 of [%llu, %llu], blocks across rows)",
                     (unsigned long long)(rows * cols / 32), (unsigned long long)rows, (unsigned long long)cols);
        shape_fail(lk, sc, ss, exp);
        return NULL;
    }
    if (ck->n_qviews == ck->cap_qviews) {   /* the allocation covers every role; never reached */
        if (lk->status == RN_OK) lk->status = rn_fail(lk->err, RN_ERR_LIMIT, "%s: too many quantized matrices", lk->source);
        return NULL;
    }
    derived_tensor *d = &ck->qviews[ck->n_qviews++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->t = (st_tensor){.name = d->name, .dtype = q, .rank = 2, .shape = {rows, cols}, .elements = rows * cols,
                       .nbytes = w->nbytes + sc->nbytes, .data = w->data, .scales = sc->data};
    return take ? accept(lk, &d->t, true) : &d->t;
}

/* A weight matrix [rows, cols]: the tensor itself, or its .qweight/.qscale pair in a quantized
 * checkpoint. Always required and counted. */
static const st_tensor *want_matrix(lookup *lk, const char *name, uint64_t rows, uint64_t cols) {
    if (lk->ck->pub.quantized) return want_quantized(lk, name, true, rows, cols);
    return want(lk, name, true, true, 2, rows, cols);
}

static const st_tensor *wantf_matrix(lookup *lk, uint64_t rows, uint64_t cols, const char *fmt, ...) RN_PRINTF(4, 5);
static const st_tensor *wantf_matrix(lookup *lk, uint64_t rows, uint64_t cols, const char *fmt, ...) {
    char name[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return want_matrix(lk, name, rows, cols);
}

/* ---- the families ------------------------------------------------------------------------- */

/* torchscale and syncdoth: the same state dict, syncdoth's under "model." and with lm_head. */
static void map_decoder(rn_checkpoint *ck, lookup *lk) {
    const rn_config *c = &ck->config;
    bool sd = c->family == RN_FAMILY_SYNCDOTH;
    const char *p = sd ? "model." : "";
    uint64_t D = (uint64_t)c->embed_dim, Dv = (uint64_t)c->value_embed_dim;
    uint64_t F = (uint64_t)c->ffn_dim, V = (uint64_t)c->vocab_size;

    ck->embed = wantf_matrix(lk, V, D, "%sembed_tokens.weight", p);                       /* [V, D] */
    if (c->layernorm_embedding)
        ck->embed_norm = wantf(lk, true, 1, D, 0, "%slayernorm_embedding.weight", p);    /* [D] */

    for (int64_t l = 0; l < c->layers; l++) {
        rn_layer_tensors *L = &ck->layers[l];
        long long i = (long long)l;
        L->q_proj = wantf_matrix(lk, D, D, "%slayers.%lld.retention.q_proj.weight", p, i);     /* [D, D] */
        L->k_proj = wantf_matrix(lk, D, D, "%slayers.%lld.retention.k_proj.weight", p, i);     /* [D, D] */
        L->v_proj = wantf_matrix(lk, Dv, D, "%slayers.%lld.retention.v_proj.weight", p, i);    /* [Dv, D] */
        L->g_proj = wantf_matrix(lk, Dv, D, "%slayers.%lld.retention.g_proj.weight", p, i);    /* [Dv, D] */
        L->out_proj = wantf_matrix(lk, D, Dv, "%slayers.%lld.retention.out_proj.weight", p, i); /* [D, Dv] */
        L->retention_norm = wantf(lk, true, 1, D, 0, "%slayers.%lld.retention_layer_norm.weight", p, i);
        L->fc1 = wantf_matrix(lk, F, D, "%slayers.%lld.ffn.fc1.weight", p, i);                 /* [F, D] */
        L->gate = wantf_matrix(lk, F, D, "%slayers.%lld.ffn.gate.weight", p, i);               /* [F, D] */
        L->fc2 = wantf_matrix(lk, D, F, "%slayers.%lld.ffn.fc2.weight", p, i);                 /* [D, F] */
        L->ffn_norm = wantf(lk, true, 1, D, 0, "%slayers.%lld.final_layer_norm.weight", p, i);
    }

    if (c->normalize_before) ck->final_norm = wantf(lk, true, 1, D, 0, "%slayer_norm.weight", p);
    /* Tied: the state dict carries the output as an alias of the embedding (or not at all,
     * after safetensors deduplication); either way it is not read. */
    if (c->share_embed) ck->output = ck->embed;
    else if (sd) ck->output = want_matrix(lk, "lm_head.weight", V, D);                   /* [V, D] */
    else ck->output = want_matrix(lk, "output_projection.weight", V, D);                 /* [V, D] */

    /* syncdoth built with tensor_parallel=True derives each head's decay through a projection
     * this runtime does not apply: refuse rather than run other decays */
    if (sd && find_in(lk->ck, "model.layers.0.retention.decay_proj.weight", NULL) &&
        lk->status == RN_OK)
        lk->status = rn_fail(lk->err, RN_ERR_UNSUPPORTED_CONFIG,
                             "%s: model.layers.0.retention.decay_proj.weight is present (syncdoth "
                             "built with tensor_parallel); its decays are not supported",
                             lk->source);

    /* persistent buffers, not parameters; syncdoth's may hold learned or custom decays */
    char name[NAME_CAP];
    snprintf(name, sizeof name, "%sretnet_rel_pos.angle", p);
    ck->angle = want(lk, name, false, false, 1, (uint64_t)c->key_head_dim, 0);
    snprintf(name, sizeof name, "%sretnet_rel_pos.decay", p);
    ck->decay = want(lk, name, false, false, 1, (uint64_t)c->heads, 0);
}

/* Rows [first, first + I) of a fused [2I, D] gate_proj, as a tensor of its own. */
static const st_tensor *half_of(lookup *lk, derived_tensor *d, const st_tensor *fused, uint64_t first,
                                uint64_t I) {
    d->t = *fused;
    snprintf(d->name, sizeof d->name, "%s[rows %llu:%llu]", fused->name, (unsigned long long)first,
             (unsigned long long)(first + I));
    d->t.name = d->name;
    d->t.shape[0] = I;
    d->t.elements = fused->elements / 2;
    d->t.nbytes = fused->nbytes / 2;
    if (fused->scales) {   /* a quantized view: its quants and its scales each split in two */
        d->t.data = (const unsigned char *)fused->data + (first ? rn_quant_bytes(fused->dtype, d->t.elements) : 0);
        d->t.scales = (const unsigned char *)fused->scales + (first ? d->t.elements / 32 * 2 : 0);
    } else {
        d->t.data = (const unsigned char *)fused->data + (first ? d->t.nbytes : 0);
    }
    return accept(lk, &d->t, true);
}

/* fla's MLP: separate gate_proj/up_proj, or one gate_proj of 2I rows (before fla b48ca31d). */
static void map_fla_mlp(checkpoint_impl *ck, lookup *lk, int64_t l, rn_layer_tensors *L) {
    uint64_t D = (uint64_t)ck->pub.config.embed_dim, I = (uint64_t)ck->pub.config.ffn_dim;
    char gate_name[NAME_CAP], up_name[NAME_CAP], gate_key[NAME_CAP + 16], up_key[NAME_CAP + 16];
    snprintf(gate_name, sizeof gate_name, "model.layers.%lld.mlp.gate_proj.weight", (long long)l);
    snprintf(up_name, sizeof up_name, "model.layers.%lld.mlp.up_proj.weight", (long long)l);
    /* quantized: the layout shows in the quants' shape, [2I or I, quant bytes of D] */
    const bool q = ck->pub.quantized;
    const uint64_t Dq = q ? rn_quant_bytes(ck->pub.quantization, D) : D;
    snprintf(gate_key, sizeof gate_key, "%s%s", gate_name, q ? RN_QWEIGHT_SUFFIX : "");
    snprintf(up_key, sizeof up_key, "%s%s", up_name, q ? RN_QWEIGHT_SUFFIX : "");
    size_t shard = 0;
    const st_tensor *gp = find_in(ck, gate_key, &shard), *up = find_in(ck, up_key, NULL);
    if (!gp) {
        note_missing(lk, gate_key);
    } else if (up) {
        L->fc1 = want_matrix(lk, gate_name, I, D);              /* [I, D] silu branch */
        L->gate = want_matrix(lk, up_name, I, D);               /* [I, D] linear branch */
    } else if (shape_is(gp, 2, 2 * I, Dq)) {
        /* rows [0, I) are the gate fla runs through silu: our fc1; rows [I, 2I) "up": our gate */
        const st_tensor *fused = q ? want_quantized(lk, gate_name, false, 2 * I, D) : gp;
        if (fused) {
            L->fc1 = half_of(lk, &ck->derived[2 * l], fused, 0, I);
            L->gate = half_of(lk, &ck->derived[2 * l + 1], fused, I, I);
        }
    } else if (shape_is(gp, 2, I, Dq)) {
        note_missing(lk, up_key);                               /* split layout, half of it */
    } else {
        char exp[160];
        snprintf(exp, sizeof exp,
                 "[%llu, %llu] (fused, without up_proj) or [%llu, %llu] (with up_proj)",
                 (unsigned long long)(2 * I), (unsigned long long)Dq, (unsigned long long)I,
                 (unsigned long long)Dq);
        shape_fail(lk, gp, shard, exp);
    }
    long long i = (long long)l;
    L->fc2 = wantf_matrix(lk, D, I, "model.layers.%lld.mlp.down_proj.weight", i);    /* [D, I] */
}

/* The per-head norm weight: fla names it after the module that holds it, which depends on
 * fuse_norm and the gate; a file has one of the two names. */
static void map_fla_head_norm(checkpoint_impl *ck, lookup *lk, int64_t l, rn_layer_tensors *L) {
    const rn_config *c = &ck->pub.config;
    if (!c->head_norm_weight) return;   /* elementwise_affine false: no weight, stray ones ignored */
    char fused[NAME_CAP], plain[NAME_CAP];
    snprintf(fused, sizeof fused, "model.layers.%lld.attn.g_norm_swish_gate.weight", (long long)l);
    snprintf(plain, sizeof plain, "model.layers.%lld.attn.g_norm.weight", (long long)l);
    bool has_fused = find_in(ck, fused, NULL) != NULL, has_plain = find_in(ck, plain, NULL) != NULL;
    if (has_fused && has_plain) {
        if (lk->status == RN_OK)
            lk->status = rn_fail(lk->err, RN_ERR_DUPLICATE,
                                 "%s: both '%s' and '%s' present; fla writes one of them", lk->source,
                                 fused, plain);
        return;
    }
    if (!has_fused && !has_plain) {
        char both[2 * NAME_CAP + 8];
        snprintf(both, sizeof both, "%s (or %s)", fused, plain);
        note_missing(lk, both);
        return;
    }
    L->head_norm = want(lk, has_fused ? fused : plain, true, true, 1, (uint64_t)c->value_head_dim, 0);
}

static void map_fla(checkpoint_impl *ck, lookup *lk) {
    rn_checkpoint *p = &ck->pub;
    const rn_config *c = &p->config;
    uint64_t D = (uint64_t)c->embed_dim, Dv = (uint64_t)c->value_embed_dim;
    uint64_t K = (uint64_t)c->key_embed_dim, V = (uint64_t)c->vocab_size;
    uint64_t G = (uint64_t)(c->heads / c->kv_heads);   /* config.c checked the division */

    p->embed = want_matrix(lk, "model.embeddings.weight", V, D);                          /* [V, D] */
    for (int64_t l = 0; l < c->layers; l++) {
        rn_layer_tensors *L = &p->layers[l];
        long long i = (long long)l;
        L->retention_norm = wantf(lk, true, 1, D, 0, "model.layers.%lld.attn_norm.weight", i);
        L->q_proj = wantf_matrix(lk, K, D, "model.layers.%lld.attn.q_proj.weight", i);       /* [K, D] */
        L->k_proj = wantf_matrix(lk, K / G, D, "model.layers.%lld.attn.k_proj.weight", i);   /* [K/G, D] */
        L->v_proj = wantf_matrix(lk, Dv / G, D, "model.layers.%lld.attn.v_proj.weight", i);  /* [Dv/G, D] */
        if (c->output_gate)
            L->g_proj = wantf_matrix(lk, Dv, D, "model.layers.%lld.attn.g_proj.weight", i);  /* [Dv, D] */
        L->out_proj = wantf_matrix(lk, D, Dv, "model.layers.%lld.attn.o_proj.weight", i);    /* [D, Dv] */
        map_fla_head_norm(ck, lk, l, L);
        L->ffn_norm = wantf(lk, true, 1, D, 0, "model.layers.%lld.mlp_norm.weight", i);
        map_fla_mlp(ck, lk, l, L);
    }
    p->final_norm = want(lk, "model.norm.weight", true, true, 1, D, 0);
    /* tied: lm_head.weight may be stored as the embedding's alias; it is not read */
    p->output = c->share_embed ? p->embed : want_matrix(lk, "lm_head.weight", V, D);
}

/* ---- open / close ------------------------------------------------------------------------- */

/* The quantization the shards' __metadata__ names (checkpoint.h): every shard the same. */
static rn_status read_quantization(checkpoint_impl *ck, rn_error *err) {
    rn_checkpoint *p = &ck->pub;
    p->quantization = ST_F32;
    for (size_t i = 0; i < p->n_shards; i++) {
        const char *scheme = st_metadata(p->shards[i], RN_QUANT_KEY);
        const char *version = st_metadata(p->shards[i], RN_QUANT_VERSION_KEY);
        const char *path = ck->shard_paths[i];
        if (!scheme && version)
            return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "%s: __metadata__ has %s '%.40s' but no %s", path,
                           RN_QUANT_VERSION_KEY, version, RN_QUANT_KEY);
        st_dtype q = ST_F32;
        if (scheme) {
            if (strcmp(scheme, "q8_0") == 0) q = ST_Q8_0;
            else if (strcmp(scheme, "q4_0") == 0) q = ST_Q4_0;
            else
                return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG,
                               "%s: __metadata__ %s is '%.40s', an unknown scheme (q8_0 and q4_0 are known)", path,
                               RN_QUANT_KEY, scheme);
            if (!version || strcmp(version, RN_QUANT_VERSION) != 0)
                return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG,
                               "%s: __metadata__ %s is %s%.40s%s; this runtime reads version %s", path,
                               RN_QUANT_VERSION_KEY, version ? "'" : "", version ? version : "missing",
                               version ? "'" : "", RN_QUANT_VERSION);
        }
        if (i > 0 && q != p->quantization)
            return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "%s: quantization %s differs from %s's %s", path,
                           scheme ? scheme : "(none)", ck->shard_paths[0],
                           p->quantized ? st_dtype_name(p->quantization) : "(none)");
        p->quantization = q;
        p->quantized = scheme != NULL;
    }
    return RN_OK;
}

rn_status rn_checkpoint_open(const char *dir, rn_checkpoint **out, rn_error *err) {
    rn_status status = RN_OK;
    checkpoint_impl *ck = NULL;
    char *config_path = NULL, *model_path = NULL, *index_path = NULL;

    if (!dir || !out) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_checkpoint_open: NULL argument");
    *out = NULL;

    struct stat st;
    if (stat(dir, &st) != 0)
        return rn_fail(err, RN_ERR_IO, "%s: cannot open the model directory: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rn_fail(err, RN_ERR_IO, "%s: not a directory (a checkpoint is a directory holding "
                       "config.json and model.safetensors)", dir);

    ck = calloc(1, sizeof *ck);
    config_path = rn_path_join(dir, "config.json");
    model_path = rn_path_join(dir, "model.safetensors");
    index_path = rn_path_join(dir, INDEX_NAME);
    if (!ck || !config_path || !model_path || !index_path) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
        goto fail;
    }
    rn_checkpoint *p = &ck->pub;
    if ((status = rn_config_load(config_path, &p->config, err)) != RN_OK) goto fail;

    /* the index wins over a model.safetensors beside it (checkpoint.h) */
    errno = 0;
    p->indexed = stat(index_path, &st) == 0 || errno != ENOENT;
    if (p->indexed) {
        if ((status = open_index(ck, dir, index_path, err)) != RN_OK) goto fail;
    } else {
        p->shards = calloc(1, sizeof *p->shards);
        ck->shard_paths = calloc(1, sizeof *ck->shard_paths);
        if (!p->shards || !ck->shard_paths) {
            status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory", dir);
            goto fail;
        }
        ck->shard_paths[0] = model_path;
        model_path = NULL;
        p->n_shards = 1;
        if ((status = st_open(ck->shard_paths[0], &p->shards[0], err)) != RN_OK) goto fail;
    }

    if ((status = read_quantization(ck, err)) != RN_OK) goto fail;

    const rn_config *c = &p->config;
    p->layers = calloc((size_t)c->layers, sizeof *p->layers);
    if (c->family == RN_FAMILY_FLA) ck->derived = calloc(2 * (size_t)c->layers, sizeof *ck->derived);
    if (p->quantized) {
        ck->cap_qviews = 2 + 10 * (size_t)c->layers;
        ck->qviews = calloc(ck->cap_qviews, sizeof *ck->qviews);
    }
    if (!p->layers || (c->family == RN_FAMILY_FLA && !ck->derived) || (p->quantized && !ck->qviews)) {
        status = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for %lld layers", dir,
                         (long long)c->layers);
        goto fail;
    }

    /* a decoder_* config is torchscale's or syncdoth's: the names tell, the config only guessed */
    if (c->family != RN_FAMILY_FLA) {
        const char *sfx = p->quantized ? RN_QWEIGHT_SUFFIX : "";
        char sd_name[64], ts_name[64];
        snprintf(sd_name, sizeof sd_name, "model.embed_tokens.weight%s", sfx);
        snprintf(ts_name, sizeof ts_name, "embed_tokens.weight%s", sfx);
        if (find_in(ck, sd_name, NULL)) p->config.family = RN_FAMILY_SYNCDOTH;
        else if (find_in(ck, ts_name, NULL)) p->config.family = RN_FAMILY_TORCHSCALE;
    }

    lookup lk = {.ck = ck, .source = p->indexed ? index_path : ck->shard_paths[0], .err = err};
    if (c->family == RN_FAMILY_FLA) map_fla(ck, &lk);
    else map_decoder(p, &lk);
    if (lk.missing > 0) {
        status = rn_fail(err, RN_ERR_MISSING_TENSOR, "%s: %zu tensor%s missing (%s names): %s%s",
                         lk.source, lk.missing, lk.missing == 1 ? "" : "s", rn_family_name(c->family),
                         lk.missing_list, lk.missing > MAX_LISTED_MISSING ? ", ..." : "");
        goto fail;
    }
    if (lk.status != RN_OK) {
        status = lk.status;   /* the message is already in err */
        goto fail;
    }
    p->parameters = lk.parameters;
    p->tensor_bytes = lk.bytes;

    free(config_path);
    free(model_path);
    free(index_path);
    *out = p;
    return RN_OK;

fail:
    free(config_path);
    free(model_path);
    free(index_path);
    rn_checkpoint_close(ck ? &ck->pub : NULL);
    return status;
}

void rn_checkpoint_close(rn_checkpoint *ckpt) {
    if (!ckpt) return;
    checkpoint_impl *ck = (checkpoint_impl *)ckpt;   /* pub is the first member */
    for (size_t i = 0; i < ckpt->n_shards; i++) {
        st_close(ckpt->shards[i]);
        if (ck->shard_paths) free(ck->shard_paths[i]);
    }
    free(ckpt->shards);
    free(ck->shard_paths);
    free(ck->map);
    free(ck->derived);
    free(ck->qviews);
    free(ckpt->layers);
    free(ck);
}

/* ---- positions ---------------------------------------------------------------------------- */

/* torch.linspace(start, end, n) in fp32: a float step, counted up from `start` in the first half
 * and down from `end` in the second, as torch's CPU kernel does. The naive start + i*step is a
 * few ulps off, and what follows (pow, exp) amplifies that. */
static float linspace_at(float start, float end, int64_t n, int64_t i) {
    if (n == 1) return start;
    float step = (end - start) / (float)(n - 1);
    return i < n / 2 ? start + step * (float)i : end - step * (float)(n - 1 - i);
}

void rn_checkpoint_rel_pos(const rn_checkpoint *ckpt, float *angle, float *decay) {
    const rn_config *c = &ckpt->config;
    int64_t dk = c->key_head_dim, H = c->heads;

    if (ckpt->angle) {
        st_to_f32(ckpt->angle->dtype, ckpt->angle->data, (uint64_t)dk, angle);
    } else if (c->rope_half) {
        /* fla's RotaryEmbedding: inv_freq = 1 / base^(arange(0, dk, 2) / dk) in fp32, the first
         * half rotating with the second */
        int64_t half = dk / 2;
        for (int64_t i = 0; i < half; i++) {
            float theta = 1.0f / powf(10000.0f, (float)(2 * i) / (float)dk);
            angle[i] = theta;
            angle[i + half] = theta;
        }
    } else {
        /* torch.linspace(0, 1, P) then 1 / 10000**t, in fp32; this form matches torch's buffers
         * on the fixtures, though torch's own pow may still differ by an ulp, which is why a
         * checkpoint's buffer wins when present. */
        int64_t P = dk / 2;
        for (int64_t i = 0; i < P; i++) {
            float theta = 1.0f / powf(10000.0f, linspace_at(0.0f, 1.0f, P, i));
            angle[2 * i] = theta;
            angle[2 * i + 1] = theta;
        }
    }

    if (ckpt->decay) {
        st_to_f32(ckpt->decay->dtype, ckpt->decay->data, (uint64_t)H, decay);
    } else if (c->use_lm_decay) {
        /* syncdoth: log(1 - exp(linspace(log(1/32), log(1/512), H))), every step in float */
        float s = logf(1.0f / 32.0f), e = logf(1.0f / 512.0f);
        for (int64_t h = 0; h < H; h++) decay[h] = logf(1.0f - expf(linspace_at(s, e, H, h)));
    } else {
        /* log(1 - 2^(-5-h)) in fp32; from h = 20 on, 1 - 2^(-5-h) rounds to 1 and the head
         * does not decay, as in torchscale */
        for (int64_t h = 0; h < H; h++) decay[h] = logf(1.0f - exp2f((float)(-5 - h)));
    }
}
