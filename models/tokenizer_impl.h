/*
 * tokenizer_impl.h: what the tokenizer's files share: the loaded tables (tokenizer.c builds
 * them), growable buffers, hash maps and UTF-8 helpers (tokenizer_util.c). Internal to
 * models/tokenizer*.c.
 */
#ifndef RN_TOKENIZER_IMPL_H
#define RN_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

/* ---- growable buffers ------------------------------------------------------------------ */

typedef struct tk_bytes {
    char *data;
    size_t len, cap;
} tk_bytes;

typedef struct tk_ids {
    int32_t *data;
    size_t len, cap;
} tk_ids;

bool tk_bytes_reserve(tk_bytes *b, size_t extra);
bool tk_bytes_put(tk_bytes *b, const void *p, size_t n);
bool tk_ids_push(tk_ids *v, int32_t id);
bool tk_ids_append(tk_ids *v, const int32_t *ids, size_t n);

/* Grows *p (of *cap elements of `size` bytes) to hold at least `need`; false when out of memory
 * or when the byte count would overflow. */
bool tk_grow(void **p, size_t *cap, size_t need, size_t size);

/* ---- UTF-8 ----------------------------------------------------------------------------- */

/* Length of the valid UTF-8 character at p (at most `left` bytes), 0 when invalid. */
size_t tk_utf8_valid(const unsigned char *p, size_t left);
/* The lead byte's sequence length and the range its second byte must fall in (which excludes
 * overlong forms, surrogates and code points above U+10FFFF); 0 for a byte that cannot lead. */
size_t tk_utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi);
/* Length of the maximal invalid subpart at p (>= 1), the unit that one U+FFFD replaces. */
size_t tk_utf8_invalid_run(const unsigned char *p, size_t left);
/* Length of a character from its lead byte, for text already known to be valid. */
static inline size_t tk_utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}
/* Decodes the valid character at p; sets *len. */
uint32_t tk_utf8_decode(const unsigned char *p, size_t *len);
/* Encodes cp (<= U+10FFFF) into out[4]; returns the byte count. */
size_t tk_utf8_encode(uint32_t cp, char *out);
/* Whitespace as JavaScript's trim() sees it (WhiteSpace and LineTerminator). */
bool tk_is_js_space(uint32_t cp);

#define TK_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* ---- hash maps ------------------------------------------------------------------------- */

uint64_t tk_hash(const void *p, size_t n);

/* Token text -> id; the texts live in the tokenizer's arena, the slots hold id + 1. */
typedef struct tk_strmap {
    uint32_t *slots;
    size_t mask;
} tk_strmap;

/* (left id, right id) -> (rank, merged id). */
typedef struct tk_mergemap {
    uint64_t *keys;     /* (left << 32 | right) + 1; 0 marks an empty slot */
    uint32_t *ranks;
    int32_t *merged;
    size_t mask;
} tk_mergemap;

/* ---- the loaded tokenizer -------------------------------------------------------------- */

enum tk_norm_kind { TK_NORM_PREPEND, TK_NORM_REPLACE };

typedef struct tk_normalizer {
    enum tk_norm_kind kind;
    char *text;         /* Prepend: what is prepended; Replace: the String pattern */
    size_t text_len;
    char *content;      /* Replace: the replacement */
    size_t content_len;
    pcre2_code *re;     /* Replace with a Regex pattern */
} tk_normalizer;

enum tk_split_behavior {
    TK_SPLIT_REMOVED, TK_SPLIT_ISOLATED, TK_SPLIT_MERGED_WITH_PREVIOUS, TK_SPLIT_MERGED_WITH_NEXT,
    TK_SPLIT_CONTIGUOUS
};

enum tk_prepend { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };

enum tk_pre_kind { TK_PRE_SPLIT, TK_PRE_BYTELEVEL, TK_PRE_METASPACE };

typedef struct tk_pretok {
    enum tk_pre_kind kind;
    /* Split; ByteLevel with use_regex keeps the GPT-2 regex in `re` */
    pcre2_code *re;
    char *literal;       /* Split with a String pattern */
    size_t literal_len;
    enum tk_split_behavior behavior;
    bool invert;
    /* ByteLevel */
    bool add_prefix_space;
    /* Metaspace */
    char replacement[5];
    size_t replacement_len;
    enum tk_prepend prepend;
    bool split;
} tk_pretok;

enum tk_dec_kind {
    TK_DEC_REPLACE, TK_DEC_BYTE_FALLBACK, TK_DEC_FUSE, TK_DEC_STRIP, TK_DEC_BYTE_LEVEL,
    TK_DEC_METASPACE
};

typedef struct tk_decoder {
    enum tk_dec_kind kind;
    char *pattern;       /* Replace */
    size_t pattern_len;
    char *content;       /* Replace: the replacement; Strip: the character */
    size_t content_len;
    size_t start, stop;  /* Strip: how many characters at most */
    bool whole_text;     /* Strip after a Fuse: it applies to the text, not to each token */
    char replacement[5]; /* Metaspace */
    size_t replacement_len;
    bool strip_first;    /* Metaspace: drop the first token's leading space */
} tk_decoder;

/* Flags per id. */
enum { TK_ADDED = 1, TK_SPECIAL = 2, TK_LSTRIP = 4, TK_RSTRIP = 8, TK_BYTE = 16 };

struct rn_tokenizer {
    char *arena;               /* every token text, NUL-terminated */
    size_t arena_len, arena_cap;
    size_t vocab_size;         /* largest id + 1 */
    uint32_t *tok_off;         /* per id: offset in arena, UINT32_MAX for an id with no token */
    uint32_t *tok_len;
    uint8_t *tok_flags;
    uint8_t *tok_byte;         /* TK_BYTE: the byte of a <0xNN> token */

    tk_strmap vocab;           /* model.vocab only, as BPE sees it */
    tk_strmap all;             /* vocab and added tokens, for tokenizer_find */
    tk_mergemap merges;
    int32_t byte_token[256];   /* <0xNN> ids, -1 when absent */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk;               /* -1 when none */

    /* added tokens as a byte trie: edges (node << 8 | byte) + 1 -> child, and per node the id
     * of the token ending there (-1 for none) */
    uint64_t *trie_keys;
    uint32_t *trie_child;
    size_t trie_mask;
    int32_t *trie_id;
    size_t trie_nodes;
    uint8_t trie_first[32];    /* bitmap of first bytes of added tokens */

    tk_normalizer *norm;
    size_t n_norm;
    tk_pretok *pre;
    size_t n_pre;
    bool pre_bytelevel;        /* a ByteLevel pre-tokenizer is present */
    tk_decoder *dec;
    size_t n_dec;
    bool dec_null;             /* no decoder: tokens joined by spaces */
    bool dec_bytelevel;

    int32_t *prefix, *suffix;  /* ids added around the text with add_special */
    size_t n_prefix, n_suffix;
    int32_t bos, eos;

    /* GPT-2's bytes_to_unicode: byte -> code point, and back for code points below 324 */
    uint16_t byte_cp[256];
    int16_t cp_byte[324];
};

/* Looks up s[0..n) in the map over tokenizer `t`; -1 when absent. */
int32_t tk_strmap_get(const rn_tokenizer *t, const tk_strmap *m, const char *s, size_t n);
/* Inserts id (whose text is already in the arena); false when out of memory. The caller makes
 * sure the text is not yet in the map. */
bool tk_strmap_init(tk_strmap *m, size_t count);
void tk_strmap_put(const rn_tokenizer *t, tk_strmap *m, int32_t id);
void tk_strmap_free(tk_strmap *m);

bool tk_mergemap_init(tk_mergemap *m, size_t count);
/* Sets (left,right) -> (rank,merged), replacing an earlier entry (the last merge wins, as in
 * the tokenizers library). */
void tk_mergemap_put(tk_mergemap *m, int32_t left, int32_t right, uint32_t rank, int32_t merged);
/* Returns false when (left,right) has no merge. */
bool tk_mergemap_get(const tk_mergemap *m, int32_t left, int32_t right, uint32_t *rank,
                     int32_t *merged);
void tk_mergemap_free(tk_mergemap *m);

/* GPT-2's bytes_to_unicode table. */
void tk_byte_level_table(uint16_t byte_cp[256], int16_t cp_byte[324]);

/* A strict "<0xNN>" parser: two hex digits, nothing else. -1 when s is not of that form. */
int tk_parse_byte_token(const char *s, size_t n);

/* Finds the next match of `re` in subject[0..len) from `start`; sets [*ms, *me). Returns 1 on a
 * match, 0 on none, or an rn_status (negative) on a PCRE2 failure. The subject is valid UTF-8.
 * `mc` carries the match limit (see tokenizer_encode). */
int tk_regex_next(const pcre2_code *re, pcre2_match_data *md, pcre2_match_context *mc,
                  const char *subject, size_t len, size_t start, size_t *ms, size_t *me,
                  rn_error *err);

#endif /* RN_TOKENIZER_IMPL_H */
