/*
 * config.c: config.json of any supported family into an rn_config (config.h).
 *
 * Three passes over the document: json_guard's byte scan that keeps hostile input away from
 * cJSON, the cJSON parse with duplicate top-level keys refused, then the family from the keys
 * and one typed read per key of that family, followed by the cross-field checks. A JSON null
 * counts as absent, as torchscale's override() skips None, except for fla's hidden_ratio, where
 * null and absent mean different things to fla.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
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

/* Both families write model_type "retnet"; anything else is another architecture. */
static rn_status check_model_type(const cJSON *root, rn_error *err) {
    const char *model_type = NULL;
    rn_status s = get_string(root, "model_type", &model_type, err);
    if (s != RN_OK) return s;
    if (model_type && strcmp(model_type, "retnet") != 0)
        return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "unsupported architecture model_type='%.100s'",
                       model_type);
    return RN_OK;
}

/* A finite number > 0; `out` keeps its default when the key is absent. */
static rn_status get_positive(const cJSON *root, const char *key, double *out, rn_error *err) {
    const cJSON *item = get(root, key);
    if (!item) return RN_OK;
    if (!cJSON_IsNumber(item)) return rn_fail(err, RN_ERR_CONFIG, "%s must be a number", key);
    if (!isfinite(item->valuedouble) || item->valuedouble <= 0)
        return rn_fail(err, RN_ERR_CONFIG, "%s = %g must be finite and > 0", key, item->valuedouble);
    *out = item->valuedouble;
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
        {"use_ffn_rms_norm", true, "syncdoth's RMSNorm inside the FFN"},
        {"no_output_layer", true, "a network without the vocabulary projection"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        bool v = !flags[i].refused;
        if ((s = get_bool(root, flags[i].key, &v, err)) != RN_OK) return s;
        if (v == flags[i].refused)
            return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "unsupported option %s=%s (%s)",
                           flags[i].key, v ? "true" : "false", flags[i].why);
    }
    /* subln changes nothing in the RetNet forward (only MoE experts read it; in syncdoth it
     * only overrides decoder_normalize_before/deepnorm, whose saved values are read): type-checked
     * and otherwise ignored. */
    bool subln = true;
    if ((s = get_bool(root, "subln", &subln, err)) != RN_OK) return s;
    return check_model_type(root, err);
}

static rn_status read_torchscale(const cJSON *root, rn_family hint, rn_config *c, rn_error *err) {
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
        .family = hint,
        .output_gate = true,
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
        {"use_lm_decay", offsetof(rn_config, use_lm_decay)},
    };
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) {
        bool *field = (bool *)((char *)c + bools[i].offset);
        if ((s = get_bool(root, bools[i].key, field, err)) != RN_OK) return s;
    }

    /* syncdoth names torchscale's share_decoder_input_output_embed as HF does */
    bool tied = false;
    if ((s = get_bool(root, "tie_word_embeddings", &tied, err)) != RN_OK) return s;
    if (get(root, "tie_word_embeddings")) {
        if (get(root, "share_decoder_input_output_embed") && tied != c->share_embed)
            return rn_fail(err, RN_ERR_CONFIG,
                           "tie_word_embeddings = %s contradicts share_decoder_input_output_embed = %s",
                           tied ? "true" : "false", c->share_embed ? "true" : "false");
        c->share_embed = tied;
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
    c->key_embed_dim = c->embed_dim;
    c->kv_heads = c->heads;
    c->key_head_dim = c->embed_dim / c->heads;
    c->value_head_dim = c->value_embed_dim / c->heads;
    if (c->key_head_dim % 2 != 0)
        return rn_fail(err, RN_ERR_CONFIG,
                       "key head dimension decoder_embed_dim / decoder_retention_heads = %lld is odd; "
                       "the rotation works on pairs",
                       (long long)c->key_head_dim);
    return RN_OK;
}

/* ---- fla ------------------------------------------------------------------------------------ */

int64_t rn_fla_intermediate_size(int64_t embed_dim, double hidden_ratio) {
    if (embed_dim < 1 || embed_dim > RN_MAX_DIM || !isfinite(hidden_ratio) || hidden_ratio <= 0)
        return 0;
    /* Python's int(hidden_size * hidden_ratio * 2 / 3): left to right in doubles, truncated */
    double v = (double)embed_dim * hidden_ratio * 2.0 / 3.0;
    if (!(v < (double)RN_MAX_DIM)) return 0;
    int64_t i = (int64_t)v;
    i = 256 * ((i + 255) / 256);
    return i >= 1 && i <= RN_MAX_DIM ? i : 0;
}

/* fla keys that make layers this runtime does not have. Each is refused by name when non-null. */
static rn_status fla_unsupported(const cJSON *root, rn_error *err) {
    static const struct {
        const char *key, *why;
    } keys[] = {
        {"feature_map", "a feature map applied to q and k"},
        {"attn", "hybrid layers of softmax attention"},
        {"attnres_block_size", "AttnRes residual projections"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const cJSON *item = get(root, keys[i].key);
        if (!item) continue;
        if (cJSON_IsString(item))
            return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "unsupported option %s='%.100s' (%s)",
                           keys[i].key, item->valuestring, keys[i].why);
        return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "unsupported option %s (non-null: %s)",
                       keys[i].key, keys[i].why);
    }
    return RN_OK;
}

/* Python's int(D * expand): the dims of q/k and of v. */
static rn_status fla_dim(const char *key, int64_t D, double expand, int64_t *out, rn_error *err) {
    double v = (double)D * expand;
    if (!(v >= 1.0) || !(v < (double)RN_MAX_DIM + 1.0))
        return rn_fail(err, RN_ERR_CONFIG, "%s = %g gives hidden_size * %s = %g, outside 1..%d", key,
                       expand, key, v, RN_MAX_DIM);
    *out = (int64_t)v;
    return RN_OK;
}

static rn_status read_fla(const cJSON *root, rn_config *c, rn_error *err) {
    rn_status s;
    if ((s = fla_unsupported(root, err)) != RN_OK) return s;

    /* fla's RetNetConfig defaults (configuration_retnet.py) */
    int64_t D = 2048, L = 24, H = 8, kv_heads = 0, V = 32000, inter = 0;
    double expand_k = 1.0, expand_v = 2.0, ratio = 2.0, eps = 1e-6;
    bool gate = true, affine = true, fuse_norm = true, tied = false;

    if ((s = get_int(root, "hidden_size", 1, RN_MAX_DIM, &D, err)) != RN_OK) return s;
    if ((s = get_int(root, "num_hidden_layers", 1, RN_MAX_LAYERS, &L, err)) != RN_OK) return s;
    if ((s = get_int(root, "num_heads", 1, RN_MAX_HEADS, &H, err)) != RN_OK) return s;
    if ((s = get_int(root, "num_kv_heads", 1, RN_MAX_HEADS, &kv_heads, err)) != RN_OK) return s;
    if ((s = get_int(root, "vocab_size", 1, RN_MAX_VOCAB, &V, err)) != RN_OK) return s;
    if ((s = get_int(root, "intermediate_size", 1, RN_MAX_DIM, &inter, err)) != RN_OK) return s;
    if ((s = get_positive(root, "expand_k", &expand_k, err)) != RN_OK) return s;
    if ((s = get_positive(root, "expand_v", &expand_v, err)) != RN_OK) return s;
    /* absent: the class default 2; an explicit null reaches GatedMLP as None, which means 4 */
    const cJSON *ratio_item = cJSON_GetObjectItemCaseSensitive(root, "hidden_ratio");
    if (cJSON_IsNull(ratio_item)) ratio = 4.0;
    else if ((s = get_positive(root, "hidden_ratio", &ratio, err)) != RN_OK) return s;
    /* norm_eps since 2025, rms_norm_eps in 2024 checkpoints; the hub config carries both */
    const char *eps_key = get(root, "norm_eps") ? "norm_eps" : "rms_norm_eps";
    if ((s = get_positive(root, eps_key, &eps, err)) != RN_OK) return s;

    const struct {
        const char *key;
        bool *field;
    } bools[] = {
        {"use_output_gate", &gate},
        {"elementwise_affine", &affine},
        {"fuse_norm", &fuse_norm},
        {"tie_word_embeddings", &tied},
    };
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++)
        if ((s = get_bool(root, bools[i].key, bools[i].field, err)) != RN_OK) return s;

    /* hidden_act is both the MLP's activation (swiglu) and the output gate's */
    const char *act = NULL;
    if ((s = get_string(root, "hidden_act", &act, err)) != RN_OK) return s;
    if (act && strcmp(act, "swish") != 0 && strcmp(act, "silu") != 0)
        return rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG,
                       "unsupported hidden_act '%.100s' (swish or silu)", act);

    int64_t key_dim, value_dim;
    if ((s = fla_dim("expand_k", D, expand_k, &key_dim, err)) != RN_OK) return s;
    if ((s = fla_dim("expand_v", D, expand_v, &value_dim, err)) != RN_OK) return s;
    if (key_dim % H != 0)
        return rn_fail(
            err, RN_ERR_CONFIG,
            "num_heads = %lld does not divide the key dim int(hidden_size * expand_k) = %lld",
            (long long)H, (long long)key_dim);
    if (value_dim % H != 0)
        return rn_fail(
            err, RN_ERR_CONFIG,
            "num_heads = %lld does not divide the value dim int(hidden_size * expand_v) = %lld",
            (long long)H, (long long)value_dim);
    if ((key_dim / H) % 2 != 0)
        return rn_fail(err, RN_ERR_CONFIG,
                       "key head dimension int(hidden_size * expand_k) / num_heads = %lld is odd; the "
                       "rotation works on halves",
                       (long long)(key_dim / H));
    if (kv_heads == 0) kv_heads = H;
    if (kv_heads > H || H % kv_heads != 0)
        return rn_fail(err, RN_ERR_CONFIG, "num_kv_heads = %lld does not divide num_heads = %lld",
                       (long long)kv_heads, (long long)H);
    if (inter == 0) {
        inter = rn_fla_intermediate_size(D, ratio);
        if (inter == 0)
            return rn_fail(err, RN_ERR_CONFIG,
                           "hidden_ratio = %g gives an MLP width outside 1..%d for hidden_size = %lld",
                           ratio, RN_MAX_DIM, (long long)D);
    }

    *c = (rn_config){
        .family = RN_FAMILY_FLA,
        .embed_dim = D,
        .value_embed_dim = value_dim,
        .heads = H,
        .ffn_dim = inter,
        .layers = L,
        .vocab_size = V,
        .chunk_size = 512,
        .activation = RN_ACT_SWISH,
        .layernorm_eps = eps,
        .no_scale_embedding = true,
        .layernorm_embedding = false,
        .share_embed = tied,
        .normalize_before = true,
        .deepnorm = false,
        .key_embed_dim = key_dim,
        .kv_heads = kv_heads,
        .rope_half = true,
        .plain_retention = true,
        .head_norm_weight = affine,
        .output_gate = gate,
        .use_lm_decay = false,
        .key_head_dim = key_dim / H,
        .value_head_dim = value_dim / H,
    };
    (void)fuse_norm;   /* picks the head-norm tensor's name; the checkpoint accepts either */
    return RN_OK;
}

/* ---- the family ----------------------------------------------------------------------------- */

const char *rn_family_name(rn_family family) {
    switch (family) {
    case RN_FAMILY_TORCHSCALE: return "torchscale";
    case RN_FAMILY_SYNCDOTH: return "syncdoth";
    case RN_FAMILY_FLA: return "fla";
    }
    return "unknown";
}

/* RetNetConfig keys without the decoder_ prefix (torchscale's, and syncdoth's additions): a
 * config holding one of them and no size relies on the defaults. */
static const char *const k_torchscale_keys[] = {
    "activation_fn", "layernorm_eps", "no_scale_embedding", "layernorm_embedding",
    "share_decoder_input_output_embed", "deepnorm", "subln", "multiway", "moe_freq",
    "moe_expertnum", "xpos_rel_pos", "use_glu", "no_output_layer", "recurrent_chunk_size",
    "use_lm_decay", "use_ffn_rms_norm", "forward_impl",
};
/* Keys only syncdoth's HF class writes: the guess between the two decoder_* families. */
static const char *const k_syncdoth_keys[] = {
    "tie_word_embeddings", "use_lm_decay", "use_ffn_rms_norm", "forward_impl",
};

static bool has_any(const cJSON *root, const char *const *keys, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (cJSON_GetObjectItemCaseSensitive(root, keys[i])) return true;
    return false;
}

/* Which reader applies. Contradictions and strangers get RN_ERR_CONFIG with the keys seen. */
static rn_status detect_family(const cJSON *root, rn_family *family, rn_error *err) {
    bool decoder = false;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (item->string && strncmp(item->string, "decoder_", 8) == 0) decoder = true;
    }
    bool hidden = get(root, "hidden_size") != NULL;
    if (decoder && hidden)
        return rn_fail(err, RN_ERR_CONFIG,
                       "config.json has both decoder_* keys (torchscale/syncdoth) and hidden_size "
                       "(fla); it cannot be both");
    if (hidden) {
        const char *model_type = NULL;
        rn_status s = get_string(root, "model_type", &model_type, err);
        if (s != RN_OK) return s;
        if ((s = check_model_type(root, err)) != RN_OK) return s;
        if (!model_type)
            return rn_fail(err, RN_ERR_CONFIG,
                           "config.json has hidden_size but no model_type; fla's RetNet configs say "
                           "\"model_type\": \"retnet\"");
        *family = RN_FAMILY_FLA;
        return RN_OK;
    }
    if (decoder ||
        has_any(root, k_torchscale_keys, sizeof k_torchscale_keys / sizeof *k_torchscale_keys)) {
        *family = has_any(root, k_syncdoth_keys, sizeof k_syncdoth_keys / sizeof *k_syncdoth_keys)
                      ? RN_FAMILY_SYNCDOTH
                      : RN_FAMILY_TORCHSCALE;
        return RN_OK;
    }
    /* name what is there, so that the user sees which converter made it */
    char keys[1024] = "";
    size_t used = 0, listed = 0, total = 0;
    cJSON_ArrayForEach(item, root) {
        total++;
        if (listed >= 24 || !item->string) continue;
        int n = snprintf(keys + used, sizeof keys - used, "%s%.64s", listed ? ", " : "", item->string);
        if (n < 0 || (size_t)n >= sizeof keys - used) continue;
        used += (size_t)n;
        listed++;
    }
    return rn_fail(err, RN_ERR_CONFIG,
                   "config.json has neither decoder_embed_dim (torchscale/syncdoth) nor hidden_size "
                   "(fla); keys found: %s%s",
                   total ? keys : "(none)", total > listed ? ", ..." : "");
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
    rn_family family = RN_FAMILY_TORCHSCALE;
    if ((s = detect_family(root, &family, err)) != RN_OK) goto done;
    s = family == RN_FAMILY_FLA ? read_fla(root, &c, err) : read_torchscale(root, family, &c, err);
    if (s != RN_OK) goto done;
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
