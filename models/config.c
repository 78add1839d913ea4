/*
 * config.c: torchscale's RetNetConfig from config.json (config.h).
 *
 * Three passes over the document: json_guard's byte scan that keeps hostile input away from
 * cJSON, the cJSON parse with duplicate top-level keys refused, then one typed read per key,
 * followed by the cross-field checks. A JSON null counts as absent, as torchscale's override()
 * skips None.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_guard.h"

/* Far above what a config needs: depth 2 for a list such as architectures, and a double prints
 * in at most 24 characters. */
static const rn_json_limits k_config_limits = {
    .max_depth = 64,
    .max_number_chars = 64,
    .base_offset = 0,
};

/* The value of `key`, or NULL when absent or null. Case-sensitive: "Vocab_Size" is not
 * vocab_size. */
static const cJSON *get(const cJSON *root, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNull(item) ? NULL : item;
}

/* An integer in [lo, hi], read from valuedouble (valueint saturates); `out` keeps its default
 * when the key is absent. */
static rn_status get_int(const cJSON *root, const char *key, int64_t lo, int64_t hi, int64_t *out,
                         rn_error *err) {
    const cJSON *item = get(root, key);
    if (!item) return RN_OK;
    if (!cJSON_IsNumber(item))
        return rn_fail(err, RN_ERR_CONFIG, "%s must be a number", key);
    double v = item->valuedouble;
    if (!isfinite(v) || floor(v) != v)
        return rn_fail(err, RN_ERR_CONFIG, "%s must be an integer, not %g", key, v);
    if (v < (double)lo || v > (double)hi)
        return rn_fail(err, RN_ERR_CONFIG, "%s = %.15g is outside %lld..%lld", key, v, (long long)lo,
                       (long long)hi);
    *out = (int64_t)v;
    return RN_OK;
}

/* A JSON true/false; 0, 1 and "true" are refused rather than read for their truthiness. */
static rn_status get_bool(const cJSON *root, const char *key, bool *out, rn_error *err) {
    const cJSON *item = get(root, key);
    if (!item) return RN_OK;
    if (!cJSON_IsBool(item)) return rn_fail(err, RN_ERR_CONFIG, "%s must be true or false", key);
    *out = cJSON_IsTrue(item);
    return RN_OK;
}

static rn_status get_string(const cJSON *root, const char *key, const char **out, rn_error *err) {
    const cJSON *item = get(root, key);
    if (!item) return RN_OK;
    if (!cJSON_IsString(item)) return rn_fail(err, RN_ERR_CONFIG, "%s must be a string", key);
    *out = item->valuestring;
    return RN_OK;
}

/* torchscale settings that change the network into something this runtime does not run. Each
 * is refused by name only when set to its non-default value. */
static rn_status check_unsupported(const cJSON *root, rn_error *err) {
    rn_status s;
    static const char *const counts[] = {"moe_freq", "moe_expertnum"};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        int64_t v = 0;
        if ((s = get_int(root, counts[i], 0, INT64_C(1) << 40, &v, err)) != RN_OK) return s;
        if (v > 0)
            return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG,
                           "unsupported option %s=%lld (mixture-of-experts layers)", counts[i],
                           (long long)v);
    }
    static const struct {
        const char *key;
        bool refused;   /* the value this runtime cannot honour */
        const char *why;
    } flags[] = {
        {"multiway", true, "multiway networks"},
        {"xpos_rel_pos", true, "xPos relative positions"},
        {"use_glu", false, "a plain FFN instead of the GLU"},
        {"use_lm_decay", true, "learned decays"},
        {"no_output_layer", true, "a network without the vocabulary projection"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        bool v = !flags[i].refused;
        if ((s = get_bool(root, flags[i].key, &v, err)) != RN_OK) return s;
        if (v == flags[i].refused)
            return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "unsupported option %s=%s (%s)",
                           flags[i].key, v ? "true" : "false", flags[i].why);
    }
    /* subln changes nothing in the RetNet forward (only MoE experts read it): type-checked and
     * otherwise ignored. */
    bool subln = true;
    if ((s = get_bool(root, "subln", &subln, err)) != RN_OK) return s;

    const char *model_type = NULL;
    if ((s = get_string(root, "model_type", &model_type, err)) != RN_OK) return s;
    if (model_type && strcmp(model_type, "retnet") != 0)
        return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "unsupported architecture model_type='%.100s'",
                       model_type);
    return RN_OK;
}

static rn_status read_config(const cJSON *root, rn_config *c, rn_error *err) {
    rn_status s;
    if ((s = check_unsupported(root, err)) != RN_OK) return s;

    /* RetNetConfig's defaults; vocab_size is -1 there, which this runtime cannot use */
    *c = (rn_config){
        .embed_dim = 768,
        .value_embed_dim = 1280,
        .heads = 3,
        .ffn_dim = 1280,
        .layers = 12,
        .vocab_size = -1,
        .chunk_size = 512,
        .activation = RN_ACT_GELU,
        .layernorm_eps = 1e-6,
        .no_scale_embedding = true,
        .layernorm_embedding = false,
        .share_embed = false,
        .normalize_before = true,
        .deepnorm = false,
    };
    /* Every size is at least 1: zero or negative fails the range check with its value shown. */
    static const struct {
        const char *key;
        size_t offset;
        int64_t max;
    } ints[] = {
        {"decoder_embed_dim", offsetof(rn_config, embed_dim), RN_MAX_DIM},
        {"decoder_value_embed_dim", offsetof(rn_config, value_embed_dim), RN_MAX_DIM},
        {"decoder_retention_heads", offsetof(rn_config, heads), RN_MAX_HEADS},
        {"decoder_ffn_embed_dim", offsetof(rn_config, ffn_dim), RN_MAX_DIM},
        {"decoder_layers", offsetof(rn_config, layers), RN_MAX_LAYERS},
        {"vocab_size", offsetof(rn_config, vocab_size), RN_MAX_VOCAB},
        {"recurrent_chunk_size", offsetof(rn_config, chunk_size), RN_MAX_CHUNK},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        int64_t *field = (int64_t *)((char *)c + ints[i].offset);
        if ((s = get_int(root, ints[i].key, 1, ints[i].max, field, err)) != RN_OK) return s;
    }
    if (c->vocab_size < 1)
        return rn_fail(err, RN_ERR_CONFIG, "vocab_size is required (a positive integer)");

    static const struct {
        const char *key;
        size_t offset;
    } bools[] = {
        {"no_scale_embedding", offsetof(rn_config, no_scale_embedding)},
        {"layernorm_embedding", offsetof(rn_config, layernorm_embedding)},
        {"share_decoder_input_output_embed", offsetof(rn_config, share_embed)},
        {"decoder_normalize_before", offsetof(rn_config, normalize_before)},
        {"deepnorm", offsetof(rn_config, deepnorm)},
    };
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) {
        bool *field = (bool *)((char *)c + bools[i].offset);
        if ((s = get_bool(root, bools[i].key, field, err)) != RN_OK) return s;
    }

    const char *act = NULL;
    if ((s = get_string(root, "activation_fn", &act, err)) != RN_OK) return s;
    if (act) {
        if (strcmp(act, "gelu") == 0) c->activation = RN_ACT_GELU;
        else if (strcmp(act, "swish") == 0 || strcmp(act, "silu") == 0) c->activation = RN_ACT_SWISH;
        else
            return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG,
                           "unsupported activation_fn '%.100s' (gelu, swish or silu)", act);
    }

    const cJSON *eps = get(root, "layernorm_eps");
    if (eps) {
        if (!cJSON_IsNumber(eps)) return rn_fail(err, RN_ERR_CONFIG, "layernorm_eps must be a number");
        if (!isfinite(eps->valuedouble) || eps->valuedouble <= 0)
            return rn_fail(err, RN_ERR_CONFIG, "layernorm_eps = %g must be finite and > 0",
                           eps->valuedouble);
        c->layernorm_eps = eps->valuedouble;
    }

    /* torchscale's view(B, T, H, d) needs exact division; the rotation pairs need an even dk */
    if (c->embed_dim % c->heads != 0)
        return rn_fail(err, RN_ERR_CONFIG,
                       "decoder_retention_heads = %lld does not divide decoder_embed_dim = %lld",
                       (long long)c->heads, (long long)c->embed_dim);
    if (c->value_embed_dim % c->heads != 0)
        return rn_fail(err, RN_ERR_CONFIG,
                       "decoder_retention_heads = %lld does not divide decoder_value_embed_dim = %lld",
                       (long long)c->heads, (long long)c->value_embed_dim);
    c->key_head_dim = c->embed_dim / c->heads;
    c->value_head_dim = c->value_embed_dim / c->heads;
    if (c->key_head_dim % 2 != 0)
        return rn_fail(err, RN_ERR_CONFIG,
                       "key head dimension decoder_embed_dim / decoder_retention_heads = %lld is odd; "
                       "the rotation works on pairs",
                       (long long)c->key_head_dim);
    return RN_OK;
}

rn_status rn_config_parse(const char *json, size_t len, rn_config *out, rn_error *err) {
    if (!json || !out) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_config_parse: NULL argument");
    rn_status s = rn_json_prescan(json, len, &k_config_limits, err);
    if (s != RN_OK) return s;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        /* config.json is edited by hand: say where, as an editor would */
        size_t at = end ? (size_t)(end - json) : 0, line = 1, column = 1;
        for (size_t i = 0; i < at && i < len; i++) {
            if (json[i] == '\n') {
                line++;
                column = 1;
            } else {
                column++;
            }
        }
        return rn_fail(err, RN_ERR_JSON, "JSON syntax error at line %zu, column %zu (offset %zu)",
                       line, column, at);
    }
    for (size_t i = (size_t)(end - json); i < len; i++) {
        char c = json[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            s = rn_fail(err, RN_ERR_JSON, "bytes after the JSON value at offset %zu", i);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        s = rn_fail(err, RN_ERR_JSON, "the document is not a JSON object");
        goto done;
    }
    /* cJSON keeps both copies of a repeated key and its getters return the first: a config
     * that says two things is refused instead. */
    const char *dup;
    if ((s = rn_json_duplicate_key(root, &dup, err)) != RN_OK) goto done;
    if (dup) {
        s = rn_fail(err, RN_ERR_JSON, "key '%.200s' appears twice", dup);
        goto done;
    }

    rn_config c;
    if ((s = read_config(root, &c, err)) != RN_OK) goto done;
    *out = c;
done:
    cJSON_Delete(root);
    return s;
}

rn_status rn_config_load(const char *path, rn_config *out, rn_error *err) {
    if (!path || !out) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_config_load: NULL argument");
    char *text = NULL;
    size_t len = 0;
    rn_status s = rn_read_file(path, RN_MAX_CONFIG_BYTES, &text, &len, err);
    if (s != RN_OK) return s;   /* rn_read_file's messages already name the file */
    s = rn_config_parse(text, len, out, err);
    free(text);
    if (s != RN_OK) rn_error_prefix(err, "%s", path);
    return s;
}
