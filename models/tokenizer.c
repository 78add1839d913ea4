/*
 * tokenizer.c: loading tokenizer.json and tokenizer_config.json into the tables of
 * tokenizer_impl.h, and the small accessors (tokenizer.h).
 *
 * The order: json_guard's byte scan, the cJSON parse, duplicate keys refused in every object;
 * then the vocabulary and the added tokens (ids, texts, flags), the merges (by id pairs), the
 * byte tokens, the pipeline components, the post-processor and tokenizer_config.json, and last
 * the checks that need everything (byte-level coverage, BOS/EOS). Every failure goes to `fail`
 * below, which frees what was built; the message names the field, and the file is put in front.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json_guard.h"
#include "tokenizer_impl.h"

/* tokenizer.json nests a handful of levels; a number is an id or a count. */
static const rn_json_limits k_tokenizer_limits = {
    .max_depth = 64,
    .max_number_chars = 64,
    .base_offset = 0,
};

/* A field's path for messages, such as "pre_tokenizer.pretokenizers[0].pattern.Regex". */
typedef struct tk_path {
    char s[256];
} tk_path;

static tk_path sub(const tk_path *p, const char *fmt, ...) RN_PRINTF(2, 3);
static tk_path sub(const tk_path *p, const char *fmt, ...) {
    tk_path q;
    size_t n = strlen(p->s);
    memcpy(q.s, p->s, n + 1);
    va_list ap;
    va_start(ap, fmt);
    if (n < sizeof q.s) vsnprintf(q.s + n, sizeof q.s - n, fmt, ap);
    va_end(ap);
    return q;
}

static tk_path root_path(const char *name) {
    tk_path p;
    snprintf(p.s, sizeof p.s, "%s", name);
    return p;
}

/* A token's text for a message: at most 60 bytes, control characters shown as '?'. */
typedef struct tk_quote {
    char s[64];
} tk_quote;

static tk_quote quote(const char *s, size_t n) {
    tk_quote q;
    size_t m = n < 60 ? n : 60;
    while (m < n && m > 0 && ((unsigned char)s[m] & 0xc0) == 0x80) m--;   /* whole characters */
    for (size_t i = 0; i < m; i++) q.s[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    q.s[m] = '\0';
    return q;
}

/* ---- typed reads ----------------------------------------------------------------------- */

/* The member `key`, or NULL when absent or null. Case-sensitive. */
static const cJSON *member(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(item) ? NULL : item;
}

static rn_status need_object(const cJSON *item, const tk_path *p, rn_error *err) {
    if (!cJSON_IsObject(item)) return rn_fail(err, RN_ERR_TOKENIZER, "%s must be an object", p->s);
    return RN_OK;
}

/* An integer in [lo, hi] from valuedouble (cJSON's valueint saturates). */
static rn_status read_int(const cJSON *item, const tk_path *p, int64_t lo, int64_t hi, int64_t *out,
                          rn_error *err) {
    if (!cJSON_IsNumber(item)) return rn_fail(err, RN_ERR_TOKENIZER, "%s must be a number", p->s);
    double v = item->valuedouble;
    if (!isfinite(v) || floor(v) != v)
        return rn_fail(err, RN_ERR_TOKENIZER, "%s must be an integer, not %g", p->s, v);
    if (v < (double)lo || v > (double)hi)
        return rn_fail(err, RN_ERR_TOKENIZER, "%s = %.15g is outside %lld..%lld", p->s, v,
                       (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return RN_OK;
}

/* A boolean member; `out` keeps its default when absent or null. */
static rn_status read_bool(const cJSON *obj, const char *key, const tk_path *p, bool *out,
                           rn_error *err) {
    const cJSON *item = member(obj, key);
    if (!item) return RN_OK;
    if (!cJSON_IsBool(item))
        return rn_fail(err, RN_ERR_TOKENIZER, "%s.%s must be true or false", p->s, key);
    *out = cJSON_IsTrue(item);
    return RN_OK;
}

/* A string member; NULL when absent or null unless `required`. */
static rn_status read_string(const cJSON *obj, const char *key, const tk_path *p, bool required,
                             const char **out, rn_error *err) {
    const cJSON *item = member(obj, key);
    *out = NULL;
    if (!item) {
        if (required) return rn_fail(err, RN_ERR_TOKENIZER, "%s.%s is missing", p->s, key);
        return RN_OK;
    }
    if (!cJSON_IsString(item))
        return rn_fail(err, RN_ERR_TOKENIZER, "%s.%s must be a string", p->s, key);
    *out = item->valuestring;
    return RN_OK;
}

/* A component's "type"; components without one are refused. */
static rn_status read_type(const cJSON *obj, const tk_path *p, const char **type, rn_error *err) {
    rn_status s = need_object(obj, p, err);
    if (s != RN_OK) return s;
    return read_string(obj, "type", p, true, type, err);
}

/* A string that is exactly one character (Metaspace's replacement, Strip's content). */
static rn_status read_char(const cJSON *obj, const char *key, const tk_path *p, char out[5],
                           size_t *out_len, rn_error *err) {
    const char *v;
    rn_status s = read_string(obj, key, p, false, &v, err);
    if (s != RN_OK || !v) return s;
    size_t n = strlen(v);
    if (n == 0 || n > 4 || tk_utf8_valid((const unsigned char *)v, n) != n)
        return rn_fail(err, RN_ERR_TOKENIZER, "%s.%s must be one character, not '%s'", p->s, key,
                       quote(v, n).s);
    memcpy(out, v, n + 1);
    *out_len = n;
    return RN_OK;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Every object in the document, at any depth, with its keys distinct. */
static rn_status check_duplicates(const cJSON *item, const char *file, rn_error *err) {
    for (; item; item = item->next) {
        if (cJSON_IsObject(item)) {
            const char *dup;
            rn_status s = rn_json_duplicate_key(item, &dup, err);
            if (s != RN_OK) return s;
            if (dup) {
                tk_quote q = quote(dup, strlen(dup));
                if (item->string)
                    return rn_fail(err, RN_ERR_JSON, "key '%s' appears twice in object '%s'", q.s,
                                   quote(item->string, strlen(item->string)).s);
                return rn_fail(err, RN_ERR_JSON, "key '%s' appears twice in an object of %s", q.s,
                               file);
            }
        }
        if (item->child) {
            rn_status s = check_duplicates(item->child, file, err);
            if (s != RN_OK) return s;
        }
    }
    return RN_OK;
}

/* Reads, scans and parses one JSON file whose root must be an object. */
static rn_status parse_json_file(const char *path, cJSON **out, rn_error *err) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    rn_status s = rn_read_file(path, RN_TOKENIZER_MAX_FILE, &text, &len, err);
    if (s != RN_OK) return s;   /* rn_read_file names the path */
    if ((s = rn_json_prescan(text, len, &k_tokenizer_limits, err)) != RN_OK) goto fail;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0, line = 1, column = 1;
        for (size_t i = 0; i < at && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                column = 1;
            } else {
                column++;
            }
        }
        s = rn_fail(err, RN_ERR_JSON, "JSON syntax error at line %zu, column %zu (offset %zu)",
                    line, column, at);
        goto fail;
    }
    for (size_t i = (size_t)(end - text); i < len; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            s = rn_fail(err, RN_ERR_JSON, "bytes after the JSON value at offset %zu", i);
            cJSON_Delete(root);
            goto fail;
        }
    }
    free(text);
    text = NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        s = rn_fail(err, RN_ERR_JSON, "the document is not a JSON object");
        goto fail;
    }
    if ((s = check_duplicates(root, "the document", err)) != RN_OK) {
        cJSON_Delete(root);
        goto fail;
    }
    *out = root;
    return RN_OK;
fail:
    free(text);
    rn_error_prefix(err, "%s", path);
    return s;
}

/* ---- vocabulary and added tokens ------------------------------------------------------- */

/* Stores the text of `id`. The arena was sized beforehand, so this cannot fail. */
static void set_token(rn_tokenizer *t, int32_t id, const char *s, size_t n, uint8_t flags) {
    t->tok_off[id] = (uint32_t)t->arena_len;
    t->tok_len[id] = (uint32_t)n;
    t->tok_flags[id] = flags;
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    t->arena_len += n + 1;
}

static rn_status check_token_text(const char *s, const tk_path *p, rn_error *err) {
    size_t n = strlen(s);
    if (n == 0) return rn_fail(err, RN_ERR_TOKENIZER, "%s has an empty token", p->s);
    if (n > RN_TOKENIZER_MAX_TOKEN_BYTES)
        return rn_fail(err, RN_ERR_LIMIT, "%s has a token of %zu bytes, more than the %d allowed",
                       p->s, n, RN_TOKENIZER_MAX_TOKEN_BYTES);
    return RN_OK;
}

static rn_status read_vocab(rn_tokenizer *t, const cJSON *model, const cJSON *added,
                            rn_error *err) {
    tk_path pv = root_path("model.vocab"), pa = root_path("added_tokens");
    const cJSON *vocab = member(model, "vocab");
    if (!vocab) return rn_fail(err, RN_ERR_TOKENIZER, "model.vocab is missing");
    if (!cJSON_IsObject(vocab))
        return rn_fail(err, RN_ERR_TOKENIZER, "model.vocab must be an object of token: id");
    if (added && !cJSON_IsArray(added))
        return rn_fail(err, RN_ERR_TOKENIZER, "added_tokens must be an array");

    /* First pass: types, ranges, the largest id and the arena's size. */
    rn_status s;
    size_t count = 0, bytes = 0;
    int64_t max_id = -1;
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        tk_path p = sub(&pv, "['%s']", quote(item->string, strlen(item->string)).s);
        int64_t id;
        if ((s = check_token_text(item->string, &pv, err)) != RN_OK) return s;
        if ((s = read_int(item, &p, 0, RN_TOKENIZER_MAX_VOCAB - 1, &id, err)) != RN_OK) return s;
        if (id > max_id) max_id = id;
        bytes += strlen(item->string) + 1;
        count++;
    }
    if (count == 0) return rn_fail(err, RN_ERR_TOKENIZER, "model.vocab is empty");
    size_t i = 0;
    cJSON_ArrayForEach(item, added) {
        tk_path p = sub(&pa, "[%zu]", i++);
        if ((s = need_object(item, &p, err)) != RN_OK) return s;
        const cJSON *idj = member(item, "id");
        if (!idj) return rn_fail(err, RN_ERR_TOKENIZER, "%s.id is missing", p.s);
        tk_path pid = sub(&p, ".id");
        int64_t id;
        if ((s = read_int(idj, &pid, 0, RN_TOKENIZER_MAX_VOCAB - 1, &id, err)) != RN_OK) return s;
        const char *content;
        if ((s = read_string(item, "content", &p, true, &content, err)) != RN_OK) return s;
        tk_path pc = sub(&p, ".content");
        if ((s = check_token_text(content, &pc, err)) != RN_OK) return s;
        if (id > max_id) max_id = id;
        bytes += strlen(content) + 1;
    }

    t->vocab_size = (size_t)max_id + 1;
    t->tok_off = malloc(t->vocab_size * sizeof *t->tok_off);
    t->tok_len = calloc(t->vocab_size, sizeof *t->tok_len);
    t->tok_flags = calloc(t->vocab_size, 1);
    t->tok_byte = calloc(t->vocab_size, 1);
    t->arena = malloc(bytes);
    t->arena_cap = bytes;
    if (!t->tok_off || !t->tok_len || !t->tok_flags || !t->tok_byte || !t->arena ||
        !tk_strmap_init(&t->vocab, count) ||
        !tk_strmap_init(&t->all, count + 16 + (size_t)cJSON_GetArraySize(added)))
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for a vocabulary of %zu tokens",
                       count);
    for (size_t k = 0; k < t->vocab_size; k++) t->tok_off[k] = UINT32_MAX;

    /* Second pass: the tables. Texts are distinct (the keys of one object); ids must be too. */
    cJSON_ArrayForEach(item, vocab) {
        int32_t id = (int32_t)item->valuedouble;
        if (t->tok_off[id] != UINT32_MAX)
            return rn_fail(err, RN_ERR_TOKENIZER, "model.vocab gives id %d to both '%s' and '%s'",
                           id, quote(t->arena + t->tok_off[id], t->tok_len[id]).s,
                           quote(item->string, strlen(item->string)).s);
        set_token(t, id, item->string, strlen(item->string), 0);
        tk_strmap_put(t, &t->vocab, id);
        tk_strmap_put(t, &t->all, id);
    }
    i = 0;
    cJSON_ArrayForEach(item, added) {
        tk_path p = sub(&pa, "[%zu]", i++);
        int32_t id = (int32_t)member(item, "id")->valuedouble;
        const char *content = member(item, "content")->valuestring;
        size_t n = strlen(content);
        bool special = false, lstrip = false, rstrip = false, single_word = false,
             normalized = false;
        if ((s = read_bool(item, "special", &p, &special, err)) != RN_OK ||
            (s = read_bool(item, "lstrip", &p, &lstrip, err)) != RN_OK ||
            (s = read_bool(item, "rstrip", &p, &rstrip, err)) != RN_OK ||
            (s = read_bool(item, "normalized", &p, &normalized, err)) != RN_OK ||
            (s = read_bool(item, "single_word", &p, &single_word, err)) != RN_OK)
            return s;
        if (single_word)
            return rn_fail(err, RN_ERR_TOKENIZER, "%s ('%s'): single_word true is not supported",
                           p.s, quote(content, n).s);
        int32_t other = tk_strmap_get(t, &t->all, content, n);
        if (other >= 0 && other != id)
            return rn_fail(err, RN_ERR_TOKENIZER, "%s: '%s' has id %d here and id %d elsewhere",
                           p.s, quote(content, n).s, id, other);
        if (t->tok_off[id] != UINT32_MAX) {
            if (t->tok_flags[id] & TK_ADDED)
                return rn_fail(err, RN_ERR_TOKENIZER, "%s: id %d is given to two added tokens", p.s,
                               id);
            if (t->tok_len[id] != n || memcmp(t->arena + t->tok_off[id], content, n) != 0)
                return rn_fail(
                    err, RN_ERR_TOKENIZER, "%s: id %d is '%s' here and '%s' in model.vocab", p.s,
                    id, quote(content, n).s, quote(t->arena + t->tok_off[id], t->tok_len[id]).s);
        } else {
            set_token(t, id, content, n, 0);
            tk_strmap_put(t, &t->all, id);
        }
        t->tok_flags[id] |= (uint8_t)(TK_ADDED | (special ? TK_SPECIAL : 0) |
                                      (lstrip ? TK_LSTRIP : 0) | (rstrip ? TK_RSTRIP : 0));
    }
    return RN_OK;
}

/* The byte trie of the added tokens, for leftmost-longest matching in the raw text. */
static rn_status build_trie(rn_tokenizer *t, rn_error *err) {
    size_t edges = 0, n_added = 0;
    for (size_t id = 0; id < t->vocab_size; id++) {
        if (t->tok_flags[id] & TK_ADDED) {
            edges += t->tok_len[id];
            n_added++;
        }
    }
    if (n_added == 0) return RN_OK;
    size_t slots = 16;
    while (slots < edges * 2 + 1) slots *= 2;
    t->trie_keys = calloc(slots, sizeof *t->trie_keys);
    t->trie_child = malloc(slots * sizeof *t->trie_child);
    t->trie_id = malloc((edges + 1) * sizeof *t->trie_id);
    if (!t->trie_keys || !t->trie_child || !t->trie_id)
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for the added tokens");
    t->trie_mask = slots - 1;
    t->trie_nodes = 1;
    t->trie_id[0] = -1;
    for (size_t id = 0; id < t->vocab_size; id++) {
        if (!(t->tok_flags[id] & TK_ADDED)) continue;
        const unsigned char *s = (const unsigned char *)t->arena + t->tok_off[id];
        uint32_t node = 0;
        t->trie_first[s[0] >> 3] |= (uint8_t)(1u << (s[0] & 7));
        for (size_t k = 0; k < t->tok_len[id]; k++) {
            uint64_t key = (((uint64_t)node << 8) | s[k]) + 1;
            size_t h = (size_t)tk_hash(&key, sizeof key) & t->trie_mask;
            while (t->trie_keys[h] && t->trie_keys[h] != key) h = (h + 1) & t->trie_mask;
            if (!t->trie_keys[h]) {
                t->trie_keys[h] = key;
                t->trie_child[h] = (uint32_t)t->trie_nodes;
                t->trie_id[t->trie_nodes++] = -1;
            }
            node = t->trie_child[h];
        }
        t->trie_id[node] = (int32_t)id;
    }
    return RN_OK;
}

/* ---- the BPE model --------------------------------------------------------------------- */

/* One merge, "a b" or ["a","b"], as the ids of its parts and of the merged token. */
static rn_status read_merge(rn_tokenizer *t, const cJSON *item, size_t index, char *scratch,
                            int32_t ids[3], rn_error *err) {
    const char *a, *b;
    size_t na, nb;
    if (cJSON_IsString(item)) {
        const char *s = item->valuestring, *space = strchr(s, ' ');
        if (!space || space == s || space[1] == '\0' || strchr(space + 1, ' '))
            return rn_fail(err, RN_ERR_TOKENIZER,
                           "model.merges[%zu] = '%s' is not two tokens separated by one space",
                           index, quote(s, strlen(s)).s);
        a = s;
        na = (size_t)(space - s);
        b = space + 1;
        nb = strlen(b);
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 &&
               cJSON_IsString(item->child) && cJSON_IsString(item->child->next)) {
        a = item->child->valuestring;
        b = item->child->next->valuestring;
        na = strlen(a);
        nb = strlen(b);
    } else {
        return rn_fail(err, RN_ERR_TOKENIZER,
                       "model.merges[%zu] must be a string \"a b\" or an array [\"a\", \"b\"]",
                       index);
    }
    ids[0] = tk_strmap_get(t, &t->vocab, a, na);
    ids[1] = tk_strmap_get(t, &t->vocab, b, nb);
    if (ids[0] < 0 || ids[1] < 0) {
        const char *missing = ids[0] < 0 ? a : b;
        size_t nm = ids[0] < 0 ? na : nb;
        return rn_fail(err, RN_ERR_TOKENIZER, "model.merges[%zu]: '%s' is not in model.vocab",
                       index, quote(missing, nm).s);
    }
    if (na + nb > RN_TOKENIZER_MAX_TOKEN_BYTES)
        return rn_fail(err, RN_ERR_TOKENIZER, "model.merges[%zu]: the merged token is too long",
                       index);
    memcpy(scratch, a, na);
    memcpy(scratch + na, b, nb);
    ids[2] = tk_strmap_get(t, &t->vocab, scratch, na + nb);
    if (ids[2] < 0)
        return rn_fail(err, RN_ERR_TOKENIZER,
                       "model.merges[%zu]: the merged token '%s' is not in model.vocab", index,
                       quote(scratch, na + nb).s);
    return RN_OK;
}

static rn_status read_model(rn_tokenizer *t, const cJSON *model, bool decoder_bytes,
                            rn_error *err) {
    rn_status s;
    tk_path p = root_path("model");
    const char *type;
    if ((s = read_string(model, "type", &p, false, &type, err)) != RN_OK) return s;
    /* Old files (GPT-2's own) have no type; a vocab with merges is a BPE model there. */
    if (type && strcmp(type, "BPE") != 0)
        return rn_fail(err, RN_ERR_TOKENIZER, "model.type '%s' is not supported (only BPE)",
                       quote(type, strlen(type)).s);
    if (!type && !member(model, "merges"))
        return rn_fail(err, RN_ERR_TOKENIZER, "model.type is missing and model has no merges");

    const char *prefix, *suffix;
    if ((s = read_string(model, "continuing_subword_prefix", &p, false, &prefix, err)) != RN_OK ||
        (s = read_string(model, "end_of_word_suffix", &p, false, &suffix, err)) != RN_OK)
        return s;
    if ((prefix && *prefix) || (suffix && *suffix))
        return rn_fail(err, RN_ERR_TOKENIZER, "model.%s is not supported",
                       prefix && *prefix ? "continuing_subword_prefix" : "end_of_word_suffix");
    const cJSON *dropout = member(model, "dropout");
    if (dropout && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return rn_fail(err, RN_ERR_TOKENIZER, "model.dropout must be null or 0 for inference");
    if ((s = read_bool(model, "byte_fallback", &p, &t->byte_fallback, err)) != RN_OK ||
        (s = read_bool(model, "fuse_unk", &p, &t->fuse_unk, err)) != RN_OK ||
        (s = read_bool(model, "ignore_merges", &p, &t->ignore_merges, err)) != RN_OK)
        return s;

    const char *unk;
    if ((s = read_string(model, "unk_token", &p, false, &unk, err)) != RN_OK) return s;
    t->unk = -1;
    if (unk) {
        t->unk = tk_strmap_get(t, &t->vocab, unk, strlen(unk));
        if (t->unk < 0)
            return rn_fail(err, RN_ERR_TOKENIZER, "model.unk_token '%s' is not in model.vocab",
                           quote(unk, strlen(unk)).s);
    }

    /* Byte tokens: with byte_fallback (or a ByteFallback decoder) every vocab token of the form
     * <0x...> must be exactly two hex digits, one per byte value. */
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    if (t->byte_fallback || decoder_bytes) {
        for (size_t id = 0; id < t->vocab_size; id++) {
            if (t->tok_off[id] == UINT32_MAX || (t->tok_flags[id] & TK_ADDED)) continue;
            const char *s2 = t->arena + t->tok_off[id];
            size_t n = t->tok_len[id];
            if (n < 4 || memcmp(s2, "<0x", 3) != 0 || s2[n - 1] != '>') continue;
            int byte = tk_parse_byte_token(s2, n);
            if (byte < 0)
                return rn_fail(
                    err, RN_ERR_TOKENIZER,
                    "model.vocab: byte token '%s' (id %zu) is not <0x followed by two hex digits>",
                    quote(s2, n).s, id);
            if (t->byte_token[byte] >= 0)
                return rn_fail(err, RN_ERR_TOKENIZER,
                               "model.vocab: byte 0x%02X has two tokens, ids %d and %zu", byte,
                               t->byte_token[byte], id);
            t->byte_token[byte] = (int32_t)id;
            t->tok_flags[id] |= TK_BYTE;
            t->tok_byte[id] = (uint8_t)byte;
        }
    }

    const cJSON *merges = member(model, "merges");
    if (!merges) return rn_fail(err, RN_ERR_TOKENIZER, "model.merges is missing");
    if (!cJSON_IsArray(merges))
        return rn_fail(err, RN_ERR_TOKENIZER, "model.merges must be an array");
    size_t count = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, merges) count++;
    /* A BPE model without merges encodes every text as single characters: always a broken
     * conversion, never a real tokenizer. */
    if (count == 0) return rn_fail(err, RN_ERR_TOKENIZER, "model.merges is empty");
    if (count >= UINT32_MAX) return rn_fail(err, RN_ERR_LIMIT, "model.merges has too many entries");
    if (!tk_mergemap_init(&t->merges, count))
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %zu merges", count);
    char *scratch = malloc(RN_TOKENIZER_MAX_TOKEN_BYTES + 1);
    if (!scratch) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for the merges");
    size_t index = 0;
    s = RN_OK;
    cJSON_ArrayForEach(item, merges) {
        int32_t ids[3] = {0, 0, 0};
        if ((s = read_merge(t, item, index, scratch, ids, err)) != RN_OK) break;
        tk_mergemap_put(&t->merges, ids[0], ids[1], (uint32_t)index, ids[2]);
        index++;
    }
    free(scratch);
    return s;
}

/* ---- pipeline components --------------------------------------------------------------- */

static rn_status compile_regex(const char *pattern, const tk_path *p, pcre2_code **out,
                               rn_error *err) {
    int code;
    PCRE2_SIZE offset;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &code, &offset, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            strcpy((char *)msg, "unknown error");
        return rn_fail(err, RN_ERR_TOKENIZER, "%s: the regex does not compile at offset %zu: %s",
                       p->s, (size_t)offset, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* without JIT, the interpreter runs it */
    *out = re;
    return RN_OK;
}

/* A pattern object: {"String": s} or {"Regex": r}. Exactly one is set on return. */
static rn_status read_pattern(const cJSON *obj, const tk_path *p, bool regex_ok, char **literal,
                              size_t *literal_len, pcre2_code **re, rn_error *err) {
    tk_path pp = sub(p, ".pattern");
    const cJSON *pat = member(obj, "pattern");
    if (!pat) return rn_fail(err, RN_ERR_TOKENIZER, "%s is missing", pp.s);
    rn_status s = need_object(pat, &pp, err);
    if (s != RN_OK) return s;
    const char *str, *rx;
    if ((s = read_string(pat, "String", &pp, false, &str, err)) != RN_OK ||
        (s = read_string(pat, "Regex", &pp, false, &rx, err)) != RN_OK)
        return s;
    if (!str == !rx)
        return rn_fail(err, RN_ERR_TOKENIZER, "%s must have one of String and Regex", pp.s);
    if (rx) {
        if (!regex_ok)
            return rn_fail(err, RN_ERR_TOKENIZER, "%s: a Regex pattern is not supported here",
                           pp.s);
        tk_path pr = sub(&pp, ".Regex");
        return compile_regex(rx, &pr, re, err);
    }
    if (!*str) return rn_fail(err, RN_ERR_TOKENIZER, "%s.String is empty", pp.s);
    *literal_len = strlen(str);
    *literal = dup_bytes(str, *literal_len);
    if (!*literal) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %s", pp.s);
    return RN_OK;
}

/* Appends one zeroed element to a component array; NULL when out of memory. */
static void *append(void **array, size_t *n, size_t size, rn_error *err, const tk_path *p) {
    size_t cap = *n;   /* arrays grow one element at a time: there are a handful */
    void *q = realloc(*array, (cap + 1) * size);
    if (!q) {
        rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %s", p->s);
        return NULL;
    }
    *array = q;
    void *e = (char *)q + cap * size;
    memset(e, 0, size);
    (*n)++;
    return e;
}

static rn_status read_normalizer(rn_tokenizer *t, const cJSON *obj, const tk_path *p,
                                 rn_error *err) {
    const char *type;
    rn_status s = read_type(obj, p, &type, err);
    if (s != RN_OK) return s;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = member(obj, "normalizers");
        if (!cJSON_IsArray(list))
            return rn_fail(err, RN_ERR_TOKENIZER, "%s.normalizers must be an array", p->s);
        size_t i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list) {
            tk_path q = sub(p, ".normalizers[%zu]", i++);
            if ((s = read_normalizer(t, item, &q, err)) != RN_OK) return s;
        }
        return RN_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const char *text;
        if ((s = read_string(obj, "prepend", p, true, &text, err)) != RN_OK) return s;
        tk_normalizer *n = append((void **)&t->norm, &t->n_norm, sizeof *n, err, p);
        if (!n) return RN_ERR_OUT_OF_HOST_MEMORY;
        n->kind = TK_NORM_PREPEND;
        n->text_len = strlen(text);
        if (!(n->text = dup_bytes(text, n->text_len)))
            return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %s", p->s);
        return RN_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *content;
        if ((s = read_string(obj, "content", p, true, &content, err)) != RN_OK) return s;
        tk_normalizer *n = append((void **)&t->norm, &t->n_norm, sizeof *n, err, p);
        if (!n) return RN_ERR_OUT_OF_HOST_MEMORY;
        n->kind = TK_NORM_REPLACE;
        n->content_len = strlen(content);
        if (!(n->content = dup_bytes(content, n->content_len)))
            return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %s", p->s);
        return read_pattern(obj, p, true, &n->text, &n->text_len, &n->re, err);
    }
    return rn_fail(err, RN_ERR_TOKENIZER, "%s: normalizer type '%s' is not supported", p->s,
                   quote(type, strlen(type)).s);
}

/* Metaspace's prepend_scheme, or the older add_prefix_space, as in the tokenizers library. */
static rn_status read_prepend(const cJSON *obj, const tk_path *p, enum tk_prepend *out,
                              rn_error *err) {
    const char *scheme;
    rn_status s = read_string(obj, "prepend_scheme", p, false, &scheme, err);
    if (s != RN_OK) return s;
    if (scheme) {
        if (strcmp(scheme, "always") == 0) *out = TK_PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) *out = TK_PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) *out = TK_PREPEND_NEVER;
        else
            return rn_fail(err, RN_ERR_TOKENIZER,
                           "%s.prepend_scheme '%s' is not always, first or never", p->s,
                           quote(scheme, strlen(scheme)).s);
        return RN_OK;
    }
    bool add = true;
    if ((s = read_bool(obj, "add_prefix_space", p, &add, err)) != RN_OK) return s;
    *out = add ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    return RN_OK;
}

static const char k_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static rn_status read_pre_tokenizer(rn_tokenizer *t, const cJSON *obj, const tk_path *p,
                                    rn_error *err) {
    const char *type;
    rn_status s = read_type(obj, p, &type, err);
    if (s != RN_OK) return s;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = member(obj, "pretokenizers");
        if (!cJSON_IsArray(list))
            return rn_fail(err, RN_ERR_TOKENIZER, "%s.pretokenizers must be an array", p->s);
        size_t i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list) {
            tk_path q = sub(p, ".pretokenizers[%zu]", i++);
            if ((s = read_pre_tokenizer(t, item, &q, err)) != RN_OK) return s;
        }
        return RN_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const char *behavior;
        bool invert = false;
        if ((s = read_string(obj, "behavior", p, true, &behavior, err)) != RN_OK ||
            (s = read_bool(obj, "invert", p, &invert, err)) != RN_OK)
            return s;
        static const struct { const char *name; enum tk_split_behavior b; } k_behaviors[] = {
            {"Removed", TK_SPLIT_REMOVED}, {"Isolated", TK_SPLIT_ISOLATED},
            {"MergedWithPrevious", TK_SPLIT_MERGED_WITH_PREVIOUS},
            {"MergedWithNext", TK_SPLIT_MERGED_WITH_NEXT}, {"Contiguous", TK_SPLIT_CONTIGUOUS}};
        size_t k = 0, nb = sizeof k_behaviors / sizeof *k_behaviors;
        while (k < nb && strcmp(behavior, k_behaviors[k].name) != 0) k++;
        if (k == nb)
            return rn_fail(err, RN_ERR_TOKENIZER, "%s.behavior '%s' is not supported", p->s,
                           quote(behavior, strlen(behavior)).s);
        tk_pretok *pt = append((void **)&t->pre, &t->n_pre, sizeof *pt, err, p);
        if (!pt) return RN_ERR_OUT_OF_HOST_MEMORY;
        pt->kind = TK_PRE_SPLIT;
        pt->behavior = k_behaviors[k].b;
        pt->invert = invert;
        return read_pattern(obj, p, true, &pt->literal, &pt->literal_len, &pt->re, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        bool add_prefix_space = true, use_regex = true;
        if ((s = read_bool(obj, "add_prefix_space", p, &add_prefix_space, err)) != RN_OK ||
            (s = read_bool(obj, "use_regex", p, &use_regex, err)) != RN_OK)
            return s;
        tk_pretok *pt = append((void **)&t->pre, &t->n_pre, sizeof *pt, err, p);
        if (!pt) return RN_ERR_OUT_OF_HOST_MEMORY;
        pt->kind = TK_PRE_BYTELEVEL;
        pt->add_prefix_space = add_prefix_space;
        t->pre_bytelevel = true;
        if (use_regex) {
            tk_path q = sub(p, " (GPT-2 regex)");
            return compile_regex(k_gpt2_regex, &q, &pt->re, err);
        }
        return RN_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        tk_pretok *pt = append((void **)&t->pre, &t->n_pre, sizeof *pt, err, p);
        if (!pt) return RN_ERR_OUT_OF_HOST_MEMORY;
        pt->kind = TK_PRE_METASPACE;
        memcpy(pt->replacement, "\xe2\x96\x81", 4);   /* U+2581 */
        pt->replacement_len = 3;
        pt->split = true;
        if ((s = read_char(obj, "replacement", p, pt->replacement, &pt->replacement_len, err)) !=
                RN_OK ||
            (s = read_prepend(obj, p, &pt->prepend, err)) != RN_OK ||
            (s = read_bool(obj, "split", p, &pt->split, err)) != RN_OK)
            return s;
        return RN_OK;
    }
    return rn_fail(err, RN_ERR_TOKENIZER, "%s: pre_tokenizer type '%s' is not supported", p->s,
                   quote(type, strlen(type)).s);
}

static rn_status read_decoder(rn_tokenizer *t, const cJSON *obj, const tk_path *p, rn_error *err) {
    const char *type;
    rn_status s = read_type(obj, p, &type, err);
    if (s != RN_OK) return s;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = member(obj, "decoders");
        if (!cJSON_IsArray(list))
            return rn_fail(err, RN_ERR_TOKENIZER, "%s.decoders must be an array", p->s);
        size_t i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list) {
            tk_path q = sub(p, ".decoders[%zu]", i++);
            if ((s = read_decoder(t, item, &q, err)) != RN_OK) return s;
        }
        return RN_OK;
    }
    enum tk_dec_kind kind;
    if (strcmp(type, "Replace") == 0) kind = TK_DEC_REPLACE;
    else if (strcmp(type, "ByteFallback") == 0) kind = TK_DEC_BYTE_FALLBACK;
    else if (strcmp(type, "Fuse") == 0) kind = TK_DEC_FUSE;
    else if (strcmp(type, "Strip") == 0) kind = TK_DEC_STRIP;
    else if (strcmp(type, "ByteLevel") == 0) kind = TK_DEC_BYTE_LEVEL;
    else if (strcmp(type, "Metaspace") == 0) kind = TK_DEC_METASPACE;
    else
        return rn_fail(err, RN_ERR_TOKENIZER, "%s: decoder type '%s' is not supported", p->s,
                       quote(type, strlen(type)).s);
    /* After a Fuse the steps see the whole text. Strip is followed there exactly (it must then
     * be the last step); steps that act on each token alike (Metaspace, a one-character
     * Replace) give the same text either way; the others are refused rather than approximated. */
    bool fused = false;
    for (size_t i = 0; i < t->n_dec; i++) {
        fused |= t->dec[i].kind == TK_DEC_FUSE;
        if (t->dec[i].kind == TK_DEC_STRIP && t->dec[i].whole_text)
            return rn_fail(err, RN_ERR_TOKENIZER,
                           "%s: a decoder after a Strip that follows a Fuse is not "
                           "supported",
                           p->s);
    }
    if (fused && (kind == TK_DEC_BYTE_FALLBACK || kind == TK_DEC_BYTE_LEVEL))
        return rn_fail(err, RN_ERR_TOKENIZER, "%s: decoder '%s' after a Fuse is not supported",
                       p->s, type);
    tk_decoder *d = append((void **)&t->dec, &t->n_dec, sizeof *d, err, p);
    if (!d) return RN_ERR_OUT_OF_HOST_MEMORY;
    d->kind = kind;
    switch (kind) {
    case TK_DEC_REPLACE: {
        const char *content;
        if ((s = read_string(obj, "content", p, true, &content, err)) != RN_OK) return s;
        d->content_len = strlen(content);
        if (!(d->content = dup_bytes(content, d->content_len)))
            return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %s", p->s);
        pcre2_code *unused = NULL;
        if ((s = read_pattern(obj, p, false, &d->pattern, &d->pattern_len, &unused, err)) != RN_OK)
            return s;
        if (fused && tk_utf8_len((unsigned char)d->pattern[0]) != d->pattern_len)
            return rn_fail(err, RN_ERR_TOKENIZER,
                           "%s: a Replace of more than one character after a Fuse "
                           "is not supported",
                           p->s);
        return RN_OK;
    }
    case TK_DEC_STRIP: {
        char c[5] = "";
        size_t n = 0;
        if ((s = read_char(obj, "content", p, c, &n, err)) != RN_OK) return s;
        if (n == 0) return rn_fail(err, RN_ERR_TOKENIZER, "%s.content is missing", p->s);
        int64_t start = 0, stop = 0;
        const cJSON *a = member(obj, "start"), *b = member(obj, "stop");
        tk_path pa = sub(p, ".start"), pb = sub(p, ".stop");
        if ((a && (s = read_int(a, &pa, 0, 1 << 20, &start, err)) != RN_OK) ||
            (b && (s = read_int(b, &pb, 0, 1 << 20, &stop, err)) != RN_OK))
            return s;
        if (!(d->content = dup_bytes(c, n)))
            return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %s", p->s);
        d->content_len = n;
        d->start = (size_t)start;
        d->stop = (size_t)stop;
        d->whole_text = fused;
        return RN_OK;
    }
    case TK_DEC_BYTE_LEVEL:
        t->dec_bytelevel = true;
        return RN_OK;
    case TK_DEC_METASPACE: {
        memcpy(d->replacement, "\xe2\x96\x81", 4);
        d->replacement_len = 3;
        enum tk_prepend prepend;
        if ((s = read_char(obj, "replacement", p, d->replacement, &d->replacement_len, err)) !=
                RN_OK ||
            (s = read_prepend(obj, p, &prepend, err)) != RN_OK)
            return s;
        d->strip_first = prepend != TK_PREPEND_NEVER;
        return RN_OK;
    }
    default:
        return RN_OK;
    }
}

/* ---- post-processor and tokenizer_config.json ------------------------------------------ */

static rn_status check_id(const rn_tokenizer *t, int64_t id, const tk_path *p, rn_error *err) {
    if (id < 0 || (size_t)id >= t->vocab_size || t->tok_off[id] == UINT32_MAX)
        return rn_fail(err, RN_ERR_TOKENIZER, "%s: id %lld is not a token", p->s, (long long)id);
    return RN_OK;
}

static rn_status read_template(rn_tokenizer *t, const cJSON *obj, const tk_path *p, rn_error *err) {
    rn_status s;
    if (t->prefix || t->suffix || t->n_prefix || t->n_suffix)
        return rn_fail(err, RN_ERR_TOKENIZER, "%s: a second TemplateProcessing is not supported",
                       p->s);
    const cJSON *single = member(obj, "single"), *specials = member(obj, "special_tokens");
    tk_path ps = sub(p, ".single"), pst = sub(p, ".special_tokens");
    if (!cJSON_IsArray(single)) return rn_fail(err, RN_ERR_TOKENIZER, "%s must be an array", ps.s);
    if (specials && (s = need_object(specials, &pst, err)) != RN_OK) return s;
    tk_ids before = {0}, after = {0};
    bool seen_a = false;
    size_t i = 0;
    const cJSON *item;
    s = RN_OK;
    cJSON_ArrayForEach(item, single) {
        tk_path pi = sub(&ps, "[%zu]", i++);
        const cJSON *sp = member(item, "SpecialToken"), *seq = member(item, "Sequence");
        if (!cJSON_IsObject(item) || !sp == !seq) {
            s = rn_fail(err, RN_ERR_TOKENIZER,
                        "%s must be {\"SpecialToken\": ...} or {\"Sequence\": ...}", pi.s);
            break;
        }
        if (seq) {
            tk_path pq = sub(&pi, ".Sequence");
            const char *id;
            if ((s = need_object(seq, &pq, err)) != RN_OK ||
                (s = read_string(seq, "id", &pq, true, &id, err)) != RN_OK)
                break;
            if (strcmp(id, "A") != 0 || seen_a) {
                s = rn_fail(err, RN_ERR_TOKENIZER,
                            "%s: the single template takes the sequence A once", pq.s);
                break;
            }
            seen_a = true;
            continue;
        }
        tk_path pq = sub(&pi, ".SpecialToken");
        const char *name;
        if ((s = need_object(sp, &pq, err)) != RN_OK ||
            (s = read_string(sp, "id", &pq, true, &name, err)) != RN_OK)
            break;
        const cJSON *entry = specials ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        tk_path pe = sub(&pst, "['%s']", quote(name, strlen(name)).s);
        if (!entry) {
            s = rn_fail(err, RN_ERR_TOKENIZER, "%s: '%s' is not in special_tokens", pq.s,
                        quote(name, strlen(name)).s);
            break;
        }
        const cJSON *ids = cJSON_IsObject(entry) ? member(entry, "ids") : NULL;
        if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) == 0) {
            s = rn_fail(err, RN_ERR_TOKENIZER, "%s.ids must be a non-empty array", pe.s);
            break;
        }
        const cJSON *idj;
        size_t k = 0;
        cJSON_ArrayForEach(idj, ids) {
            tk_path pk = sub(&pe, ".ids[%zu]", k++);
            int64_t id;
            if ((s = read_int(idj, &pk, 0, RN_TOKENIZER_MAX_VOCAB - 1, &id, err)) != RN_OK ||
                (s = check_id(t, id, &pk, err)) != RN_OK)
                break;
            if (!tk_ids_push(seen_a ? &after : &before, (int32_t)id)) {
                s = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for %s", pk.s);
                break;
            }
        }
        if (s != RN_OK) break;
    }
    if (s == RN_OK && !seen_a)
        s = rn_fail(err, RN_ERR_TOKENIZER, "%s has no {\"Sequence\": {\"id\": \"A\"}}", ps.s);
    if (s != RN_OK) {
        free(before.data);
        free(after.data);
        return s;
    }
    t->prefix = before.data;
    t->n_prefix = before.len;
    t->suffix = after.data;
    t->n_suffix = after.len;
    return RN_OK;
}

static rn_status read_post_processor(rn_tokenizer *t, const cJSON *obj, const tk_path *p,
                                     rn_error *err) {
    const char *type;
    rn_status s = read_type(obj, p, &type, err);
    if (s != RN_OK) return s;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = member(obj, "processors");
        if (!cJSON_IsArray(list))
            return rn_fail(err, RN_ERR_TOKENIZER, "%s.processors must be an array", p->s);
        size_t i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list) {
            tk_path q = sub(p, ".processors[%zu]", i++);
            if ((s = read_post_processor(t, item, &q, err)) != RN_OK) return s;
        }
        return RN_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) return RN_OK;   /* it only trims offsets */
    if (strcmp(type, "TemplateProcessing") == 0) return read_template(t, obj, p, err);
    return rn_fail(err, RN_ERR_TOKENIZER, "%s: post_processor type '%s' is not supported", p->s,
                   quote(type, strlen(type)).s);
}

/* bos_token/eos_token in tokenizer_config.json: a string, or an AddedToken object. */
static rn_status read_config_token(const rn_tokenizer *t, const cJSON *root, const char *key,
                                   int32_t *id, rn_error *err) {
    const cJSON *item = member(root, key);
    if (!item) return RN_OK;
    if (cJSON_IsObject(item)) item = member(item, "content");
    if (!cJSON_IsString(item))
        return rn_fail(err, RN_ERR_TOKENIZER,
                       "%s must be a string or an object with a content string", key);
    const char *s = item->valuestring;
    *id = tokenizer_find(t, s, strlen(s));
    if (*id < 0)
        return rn_fail(err, RN_ERR_TOKENIZER, "%s '%s' is not a token of tokenizer.json", key,
                       quote(s, strlen(s)).s);
    return RN_OK;
}

static rn_status read_config(rn_tokenizer *t, const char *path, rn_error *err) {
    cJSON *root;
    rn_status s = parse_json_file(path, &root, err);
    if (s != RN_OK) return s;   /* named by parse_json_file */
    tk_path p = root_path("tokenizer_config");
    int32_t bos = -1, eos = -1;
    int add_bos = -1, add_eos = -1;   /* -1: not set */
    bool v;
    if ((s = read_config_token(t, root, "bos_token", &bos, err)) != RN_OK ||
        (s = read_config_token(t, root, "eos_token", &eos, err)) != RN_OK)
        goto done;
    if (member(root, "add_bos_token")) {
        if ((s = read_bool(root, "add_bos_token", &p, &v, err)) != RN_OK) goto done;
        add_bos = v;
    }
    if (member(root, "add_eos_token")) {
        if ((s = read_bool(root, "add_eos_token", &p, &v, err)) != RN_OK) goto done;
        add_eos = v;
    }
    if (bos >= 0) t->bos = bos;
    if (eos >= 0) t->eos = eos;
    if (add_bos >= 0 || add_eos >= 0) {
        /* transformers' Llama tokenizers rebuild the template from these two: [bos] $A [eos] */
        if (add_bos < 0) add_bos = t->n_prefix > 0;
        if (add_eos < 0) add_eos = t->n_suffix > 0;
        if ((add_bos && t->bos < 0) || (add_eos && t->eos < 0)) {
            s = rn_fail(err, RN_ERR_TOKENIZER, "%s is true but there is no %s",
                        add_bos && t->bos < 0 ? "add_bos_token" : "add_eos_token",
                        add_bos && t->bos < 0 ? "bos_token" : "eos_token");
            goto done;
        }
        free(t->prefix);
        free(t->suffix);
        t->prefix = t->suffix = NULL;
        t->n_prefix = t->n_suffix = 0;
        if (add_bos) {
            if (!(t->prefix = malloc(sizeof *t->prefix))) goto oom;
            t->prefix[0] = t->bos;
            t->n_prefix = 1;
        }
        if (add_eos) {
            if (!(t->suffix = malloc(sizeof *t->suffix))) goto oom;
            t->suffix[0] = t->eos;
            t->n_suffix = 1;
        }
    }
    goto done;
oom:
    s = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for the special tokens");
done:
    cJSON_Delete(root);
    if (s != RN_OK) rn_error_prefix(err, "%s", path);
    return s;
}

/* ---- loading --------------------------------------------------------------------------- */

static rn_status read_tokenizer(rn_tokenizer *t, const cJSON *root, rn_error *err) {
    rn_status s;
    const cJSON *model = member(root, "model");
    if (!model) return rn_fail(err, RN_ERR_TOKENIZER, "model is missing");
    tk_path pm = root_path("model");
    if ((s = need_object(model, &pm, err)) != RN_OK) return s;
    if ((s = read_vocab(t, model, member(root, "added_tokens"), err)) != RN_OK) return s;

    const cJSON *norm = member(root, "normalizer"), *pre = member(root, "pre_tokenizer");
    const cJSON *post = member(root, "post_processor"), *dec = member(root, "decoder");
    tk_path pn = root_path("normalizer"), pp = root_path("pre_tokenizer");
    tk_path pq = root_path("post_processor"), pd = root_path("decoder");
    if (norm && (s = read_normalizer(t, norm, &pn, err)) != RN_OK) return s;
    if (pre && (s = read_pre_tokenizer(t, pre, &pp, err)) != RN_OK) return s;
    if (post && (s = read_post_processor(t, post, &pq, err)) != RN_OK) return s;
    t->dec_null = !dec;
    if (dec && (s = read_decoder(t, dec, &pd, err)) != RN_OK) return s;
    bool decoder_bytes = false;
    for (size_t i = 0; i < t->n_dec; i++) decoder_bytes |= t->dec[i].kind == TK_DEC_BYTE_FALLBACK;
    if ((s = read_model(t, model, decoder_bytes, err)) != RN_OK) return s;

    tk_byte_level_table(t->byte_cp, t->cp_byte);
    if (t->pre_bytelevel) {
        /* byte-level BPE starts from the 256 byte symbols: all of them must be tokens */
        for (int b = 0; b < 256; b++) {
            char u[4];
            size_t n = tk_utf8_encode(t->byte_cp[b], u);
            if (tk_strmap_get(t, &t->vocab, u, n) < 0)
                return rn_fail(
                    err, RN_ERR_TOKENIZER,
                    "model.vocab lacks the byte-level symbol '%.*s' of byte 0x%02X (ByteLevel "
                    "pre_tokenizer)",
                    (int)n, u, b);
        }
    }
    return build_trie(t, err);
}

/* EOS when the template names none: a special token with one of the usual names (then
 * tokenizer_config.json may name another). */
static void default_eos(rn_tokenizer *t) {
    static const char *const k_eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>"};
    for (size_t i = 0; t->eos < 0 && i < sizeof k_eos_names / sizeof *k_eos_names; i++) {
        int32_t id = tokenizer_find(t, k_eos_names[i], strlen(k_eos_names[i]));
        if (id >= 0 && (t->tok_flags[id] & TK_SPECIAL)) t->eos = id;
    }
}

rn_status tokenizer_load_files(const char *json_path, const char *config_path,
                                  rn_tokenizer **out, rn_error *err) {
    if (!out) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "tokenizer_load: NULL argument");
    *out = NULL;
    if (!json_path)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "tokenizer_load: NULL argument");
    rn_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for a tokenizer");
    t->bos = t->eos = t->unk = -1;
    cJSON *root = NULL;
    rn_status s = parse_json_file(json_path, &root, err);
    if (s != RN_OK) goto fail;
    s = read_tokenizer(t, root, err);
    cJSON_Delete(root);
    if (s != RN_OK) {
        rn_error_prefix(err, "%s", json_path);
        goto fail;
    }
    /* a template that adds one token before (after) the text names BOS (EOS), unless
     * tokenizer_config.json says otherwise */
    if (t->n_prefix == 1) t->bos = t->prefix[0];
    if (t->n_suffix == 1) t->eos = t->suffix[0];
    default_eos(t);
    if (config_path && (s = read_config(t, config_path, err)) != RN_OK) goto fail;
    *out = t;
    return RN_OK;
fail:
    tokenizer_free(t);
    return s;
}

rn_status tokenizer_load(const char *dir, rn_tokenizer **out, rn_error *err) {
    if (!dir || !out)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "tokenizer_load: NULL argument");
    *out = NULL;
    char *json = rn_path_join(dir, "tokenizer.json"),
         *config = rn_path_join(dir, "tokenizer_config.json");
    rn_status s;
    if (!json || !config) {
        s = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for a path");
    } else {
        struct stat st;   /* tokenizer_config.json is optional; one that is there must load */
        s = tokenizer_load_files(json, stat(config, &st) == 0 ? config : NULL, out, err);
    }
    free(json);
    free(config);
    return s;
}

void tokenizer_free(rn_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].text);
        free(t->norm[i].content);
        pcre2_code_free(t->norm[i].re);
    }
    for (size_t i = 0; i < t->n_pre; i++) {
        free(t->pre[i].literal);
        pcre2_code_free(t->pre[i].re);
    }
    for (size_t i = 0; i < t->n_dec; i++) {
        free(t->dec[i].pattern);
        free(t->dec[i].content);
    }
    free(t->norm);
    free(t->pre);
    free(t->dec);
    free(t->prefix);
    free(t->suffix);
    free(t->trie_keys);
    free(t->trie_child);
    free(t->trie_id);
    tk_strmap_free(&t->vocab);
    tk_strmap_free(&t->all);
    tk_mergemap_free(&t->merges);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_flags);
    free(t->tok_byte);
    free(t->arena);
    free(t);
}

/* ---- accessors ------------------------------------------------------------------------- */

int32_t tokenizer_bos(const rn_tokenizer *t) { return t ? t->bos : -1; }
int32_t tokenizer_eos(const rn_tokenizer *t) { return t ? t->eos : -1; }
size_t tokenizer_vocab_size(const rn_tokenizer *t) { return t ? t->vocab_size : 0; }

const char *tokenizer_token(const rn_tokenizer *t, int32_t id) {
    if (!t || id < 0 || (size_t)id >= t->vocab_size || t->tok_off[id] == UINT32_MAX) return NULL;
    return t->arena + t->tok_off[id];
}

bool tokenizer_is_special(const rn_tokenizer *t, int32_t id) {
    return tokenizer_token(t, id) && (t->tok_flags[id] & TK_SPECIAL);
}

int32_t tokenizer_find(const rn_tokenizer *t, const char *s, size_t len) {
    if (!t || (!s && len)) return -1;
    return tk_strmap_get(t, &t->all, s, len);
}
