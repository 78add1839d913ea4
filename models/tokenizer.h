/*
 * tokenizer.h: Hugging Face tokenizer.json (model type BPE) read into lookup tables, text to
 * token ids and back. No OpenCL.
 *
 * What is read
 *   DIR/tokenizer.json, and DIR/tokenizer_config.json when it exists. Both go through
 *   json_guard (UTF-8, NUL, "\u0000", nesting, number length; duplicate keys in any object are
 *   refused) before cJSON sees them; tokenizer.json may have at most RN_TOKENIZER_MAX_FILE bytes.
 *   The supported components, each refused by name (RN_ERR_TOKENIZER) when another type is met:
 *     model           BPE: vocab, merges as "a b" or ["a","b"] (zero merges is an error),
 *                     unk_token, byte_fallback with <0xNN> tokens (two hex digits, parsed
 *                     strictly), fuse_unk, ignore_merges. continuing_subword_prefix,
 *                     end_of_word_suffix and dropout are refused when set.
 *     normalizer      null, Sequence, Prepend, Replace (String or Regex pattern).
 *     pre_tokenizer   null, Sequence, Split (Regex through PCRE2 with UTF and UCP, or String;
 *                     every behavior; invert), ByteLevel (GPT-2 byte-to-unicode map, its regex
 *                     when use_regex, add_prefix_space), Metaspace (prepend_scheme
 *                     always/first/never or the older add_prefix_space, split).
 *     post_processor  null, TemplateProcessing (the single template), ByteLevel (nothing to do
 *                     for ids), Sequence of those.
 *     decoder         null (tokens joined by spaces), Sequence, Replace (String pattern),
 *                     ByteFallback, Fuse, Strip, ByteLevel, Metaspace. After a Fuse only Strip
 *                     (then last), Metaspace and one-character Replaces are accepted: the
 *                     decoder works token by token, and those give the same text either way.
 *   added_tokens are matched in the raw text before anything else, leftmost and then longest
 *   first (normalized: true is not honoured, as in transformers.js); lstrip/rstrip eat the
 *   whitespace beside them; single_word true is refused. Split and Metaspace follow the
 *   tokenizers library (Rust) where transformers.js differs: Split's invert and its
 *   MergedWithPrevious, MergedWithNext and Contiguous behaviors, Metaspace's split, and
 *   Metaspace's prepend_scheme when add_prefix_space is absent.
 *
 * BOS and EOS
 *   With add_special, encode adds what the post_processor's single template puts around $A. When
 *   tokenizer_config.json sets add_bos_token and/or add_eos_token (as Llama's tokenizers do), the
 *   ids become [bos if add_bos_token] $A [eos if add_eos_token], a key that is absent keeping what
 *   the template does. tokenizer_bos/eos come from tokenizer_config.json's bos_token/eos_token
 *   (a string or an {"content": ...} object), else from a template that adds exactly one token
 *   before (BOS) or after (EOS) the text, else (EOS only) from a special added token named
 *   "</s>", "<|endoftext|>" or "<|end_of_text|>".
 *
 * Text
 *   Encoding accepts any bytes: each maximal invalid UTF-8 subsequence is replaced by U+FFFD
 *   first, as the WHATWG TextDecoder (and Python's errors="replace") do, so the ids are those of
 *   the repaired text. Decoding always yields valid UTF-8: bytes that do not form a character
 *   (a byte-fallback or byte-level token cut in the middle of one, or a wrong sequence) become
 *   U+FFFD by the same rule, and the streaming decoder holds back an incomplete character until
 *   the token that completes it. transformers' clean_up_tokenization_spaces is never applied:
 *   decode(encode(x)) is x for the lossless tokenizers.
 *
 * Regexes run in PCRE2 (UTF, UCP) with its own Unicode tables (14.0 for Debian 12's 10.42). Two
 * known differences from other engines follow: PCRE2's \s takes U+0085 and U+180E but not
 * U+FEFF (JavaScript's takes U+FEFF only; the Rust library's Oniguruma takes U+0085 only), and
 * letters or digits assigned after that Unicode version are neither \p{L} nor \p{N} here. Texts
 * with those characters may split differently from the reference at them.
 *
 * Threads: a loaded tokenizer is read-only; encode and decode may run on it from several
 * threads at once. A detokenizer belongs to one thread at a time.
 *
 * Errors name the file and the field ("tokenizer.json: model.merges[17]: ..."): RN_ERR_IO,
 * RN_ERR_LIMIT, RN_ERR_JSON (syntax, UTF-8, duplicate keys), RN_ERR_TOKENIZER (valid JSON that is
 * not a usable tokenizer), RN_ERR_OUT_OF_HOST_MEMORY, RN_ERR_INVALID_ARGUMENT.
 */
#ifndef RN_TOKENIZER_H
#define RN_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rn_common.h"

#define RN_TOKENIZER_MAX_FILE (64u << 20)        /* tokenizer.json, tokenizer_config.json */
#define RN_TOKENIZER_MAX_VOCAB (1 << 24)         /* ids are below this */
#define RN_TOKENIZER_MAX_TOKEN_BYTES 4096        /* one token's text */
#define RN_TOKENIZER_MAX_TEXT ((size_t)1 << 30)  /* bytes given to one encode call */

typedef struct rn_tokenizer rn_tokenizer;

/* Loads dir/tokenizer.json and, when present, dir/tokenizer_config.json. */
rn_status tokenizer_load(const char *dir, rn_tokenizer **out, rn_error *err);

/* The same from explicit paths; config_path may be NULL (no tokenizer_config.json). */
rn_status tokenizer_load_files(const char *json_path, const char *config_path,
                                  rn_tokenizer **out, rn_error *err);

void tokenizer_free(rn_tokenizer *t);

/* Text (len bytes, any content) to ids in a malloc'ed array the caller frees; *ids may be NULL
 * when *n is 0. add_special: add BOS/EOS as described above. Added and special tokens written in
 * the text are always recognised. */
rn_status tokenizer_encode(const rn_tokenizer *t, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *n, rn_error *err);

/* Ids to valid UTF-8 in a malloc'ed, NUL-terminated buffer the caller frees (*len excludes the
 * NUL). skip_special drops the added tokens marked special. An id outside the vocabulary is
 * RN_ERR_INVALID_ARGUMENT. */
rn_status tokenizer_decode(const rn_tokenizer *t, const int32_t *ids, size_t n,
                              bool skip_special, char **text, size_t *len, rn_error *err);

int32_t tokenizer_bos(const rn_tokenizer *t);          /* -1 when none */
int32_t tokenizer_eos(const rn_tokenizer *t);          /* -1 when none */
size_t tokenizer_vocab_size(const rn_tokenizer *t);    /* the largest id + 1 */
/* The stored text of token `id` (NUL-terminated; byte-level tokens in their mapped form), or
 * NULL for an id outside the vocabulary. */
const char *tokenizer_token(const rn_tokenizer *t, int32_t id);
bool tokenizer_is_special(const rn_tokenizer *t, int32_t id);
/* The id whose stored text is exactly s[0..len) (vocabulary or added token), or -1. */
int32_t tokenizer_find(const rn_tokenizer *t, const char *s, size_t len);

/*
 * Streaming decoder: push ids one at a time as they are generated and print what comes back.
 * Each call hands out bytes that are complete, valid UTF-8, in a buffer owned by the decoder
 * that stays valid until its next call. The text of all the pushes and the flush together is
 * exactly tokenizer_decode of the same ids.
 */
typedef struct rn_detok rn_detok;

enum {
    RN_DETOK_SKIP_SPECIAL = 1u << 0, /* drop special added tokens, as decode's skip_special */
    /* The ids continue a text already shown (a prompt): the stripping a decoder does at the
     * start of a text (Llama's leading space, Metaspace's prefix) is not done. */
    RN_DETOK_CONTINUE = 1u << 1,
};

rn_status rn_detok_init(const rn_tokenizer *t, unsigned flags, rn_detok **out, rn_error *err);
rn_status rn_detok_push(rn_detok *d, int32_t id, const char **bytes, size_t *len, rn_error *err);
/* The end of the text: what was held back (an incomplete character becomes U+FFFD). The
 * decoder then starts a new text, as after init. */
rn_status rn_detok_flush(rn_detok *d, const char **bytes, size_t *len, rn_error *err);
void rn_detok_free(rn_detok *d);

#endif /* RN_TOKENIZER_H */
