/*
 * tokenizer_util.c: the tokenizer's small parts: growable buffers, UTF-8, hash maps, GPT-2's
 * byte-to-unicode table, the strict <0xNN> parser, and regex matching (tokenizer_impl.h).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"

/* ---- growable buffers ------------------------------------------------------------------ */

bool tk_grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2) return false;
        n *= 2;
    }
    if (n > SIZE_MAX / size) return false;
    void *q = realloc(*p, n * size);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

bool tk_bytes_reserve(tk_bytes *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return false;
    /* one spare byte so that a NUL can always follow */
    return tk_grow((void **)&b->data, &b->cap, b->len + extra + 1, 1);
}

bool tk_bytes_put(tk_bytes *b, const void *p, size_t n) {
    if (!tk_bytes_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

bool tk_ids_push(tk_ids *v, int32_t id) {
    if (!tk_grow((void **)&v->data, &v->cap, v->len + 1, sizeof *v->data)) return false;
    v->data[v->len++] = id;
    return true;
}

bool tk_ids_append(tk_ids *v, const int32_t *ids, size_t n) {
    if (n > SIZE_MAX - v->len) return false;
    if (!tk_grow((void **)&v->data, &v->cap, v->len + n, sizeof *v->data)) return false;
    if (n) memcpy(v->data + v->len, ids, n * sizeof *ids);
    v->len += n;
    return true;
}

/* ---- UTF-8 ----------------------------------------------------------------------------- */

size_t tk_utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0) *lo = 0xa0;
        if (c == 0xed) *hi = 0x9f;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0) *lo = 0x90;
        if (c == 0xf4) *hi = 0x8f;
        return 4;
    }
    return 0;
}

size_t tk_utf8_valid(const unsigned char *p, size_t left) {
    if (p[0] < 0x80) return 1;
    unsigned char lo, hi;
    size_t len = tk_utf8_lead(p[0], &lo, &hi);
    if (len == 0 || left < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return len;
}

size_t tk_utf8_invalid_run(const unsigned char *p, size_t left) {
    unsigned char lo, hi;
    size_t len = tk_utf8_lead(p[0], &lo, &hi);
    if (len == 0 || left < 2 || p[1] < lo || p[1] > hi) return 1;
    size_t i = 2;
    while (i < len && i < left && p[i] >= 0x80 && p[i] <= 0xbf) i++;
    return i;
}

uint32_t tk_utf8_decode(const unsigned char *p, size_t *len) {
    unsigned char c = p[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xe0) {
        *len = 2;
        return ((uint32_t)(c & 0x1f) << 6) | (p[1] & 0x3f);
    }
    if (c < 0xf0) {
        *len = 3;
        return ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3f) << 12) |
           ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
}

size_t tk_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

bool tk_is_js_space(uint32_t cp) {
    /* ECMAScript WhiteSpace (TAB, VT, FF, SP, NBSP, ZWNBSP, category Zs) and LineTerminator */
    switch (cp) {
    case 0x09: case 0x0a: case 0x0b: case 0x0c: case 0x0d: case 0x20: case 0xa0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000: case 0xfeff:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

/* ---- hash maps ------------------------------------------------------------------------- */

uint64_t tk_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a, then a final mix for the low bits */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static size_t table_size(size_t count) {
    size_t n = 16;
    while (n < count * 2 + 1) n *= 2;   /* count is capped far below SIZE_MAX / 4 */
    return n;
}

bool tk_strmap_init(tk_strmap *m, size_t count) {
    size_t n = table_size(count);
    m->slots = calloc(n, sizeof *m->slots);
    m->mask = n - 1;
    return m->slots != NULL;
}

void tk_strmap_put(const rn_tokenizer *t, tk_strmap *m, int32_t id) {
    const char *s = t->arena + t->tok_off[id];
    size_t i = (size_t)tk_hash(s, t->tok_len[id]) & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = (uint32_t)id + 1;
}

int32_t tk_strmap_get(const rn_tokenizer *t, const tk_strmap *m, const char *s, size_t n) {
    if (!m->slots) return -1;
    size_t i = (size_t)tk_hash(s, n) & m->mask;
    for (uint32_t slot; (slot = m->slots[i]) != 0; i = (i + 1) & m->mask) {
        uint32_t id = slot - 1;
        if (t->tok_len[id] == n && memcmp(t->arena + t->tok_off[id], s, n) == 0) return (int32_t)id;
    }
    return -1;
}

void tk_strmap_free(tk_strmap *m) {
    free(m->slots);
    m->slots = NULL;
}

bool tk_mergemap_init(tk_mergemap *m, size_t count) {
    size_t n = table_size(count);
    m->keys = calloc(n, sizeof *m->keys);
    m->ranks = malloc(n * sizeof *m->ranks);
    m->merged = malloc(n * sizeof *m->merged);
    m->mask = n - 1;
    return m->keys && m->ranks && m->merged;
}

static size_t merge_slot(uint64_t key, size_t mask) {
    key ^= key >> 31;
    key *= 0x9e3779b97f4a7c15ull;
    key ^= key >> 29;
    return (size_t)key & mask;
}

void tk_mergemap_put(tk_mergemap *m, int32_t left, int32_t right, uint32_t rank, int32_t merged) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    size_t i = merge_slot(key, m->mask);
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & m->mask;
    m->keys[i] = key;
    m->ranks[i] = rank;
    m->merged[i] = merged;
}

bool tk_mergemap_get(const tk_mergemap *m, int32_t left, int32_t right, uint32_t *rank,
                     int32_t *merged) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    for (size_t i = merge_slot(key, m->mask); m->keys[i]; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) {
            *rank = m->ranks[i];
            *merged = m->merged[i];
            return true;
        }
    }
    return false;
}

void tk_mergemap_free(tk_mergemap *m) {
    free(m->keys);
    free(m->ranks);
    free(m->merged);
    m->keys = NULL;
    m->ranks = NULL;
    m->merged = NULL;
}

/* ---- byte-level and byte-fallback tokens ----------------------------------------------- */

void tk_byte_level_table(uint16_t byte_cp[256], int16_t cp_byte[324]) {
    /* Printable bytes stand for themselves: '!'..'~', 0xA1..0xAC, 0xAE..0xFF. The other 68
     * (controls, space, DEL, 0x80..0xA0, the soft hyphen) take U+0100 onwards in byte order. */
    unsigned next = 256;
    for (unsigned b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        byte_cp[b] = (uint16_t)(printable ? b : next++);
    }
    for (unsigned c = 0; c < 324; c++) cp_byte[c] = -1;
    for (unsigned b = 0; b < 256; b++) cp_byte[byte_cp[b]] = (int16_t)b;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int tk_parse_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

/* ---- regex ----------------------------------------------------------------------------- */

int tk_regex_next(const pcre2_code *re, pcre2_match_data *md, pcre2_match_context *mc,
                  const char *subject, size_t len, size_t start, size_t *ms, size_t *me,
                  rn_error *err) {
    if (start > len) return 0;
    uint32_t options = PCRE2_NO_UTF_CHECK;   /* the subject was validated once, up front */
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, start, options, md, mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(options & PCRE2_NO_JIT)) {
            options |= PCRE2_NO_JIT;   /* the interpreter keeps its backtracking on the heap */
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            if (pcre2_get_error_message(rc, msg, sizeof msg) < 0) strcpy((char *)msg, "unknown");
            return rn_fail(err,
                           rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
                                   rc == PCRE2_ERROR_DEPTHLIMIT
                               ? RN_ERR_LIMIT
                               : RN_ERR_TOKENIZER,
                           "regex match failed at byte %zu: %s", start, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
}
