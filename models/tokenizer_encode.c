/*
 * tokenizer_encode.c: text to ids (tokenizer.h).
 *
 *   repair UTF-8 -> split on added tokens -> per piece of text between them: normalizers ->
 *   pre-tokenizers (a list of pieces over one buffer, rebuilt by each step) -> BPE per piece
 *   -> BOS/EOS around the whole.
 *
 * Every step is linear in its input except BPE, which is O(n log n) in the length of one piece:
 * a binary heap of candidate merges ordered by (rank, position), stale entries skipped when
 * popped. SentencePiece-style tokenizers have no pre-tokenizer that splits, so there one piece
 * is a whole paragraph of text and the heap is what keeps a long text from being quadratic.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"

typedef struct tk_piece {
    size_t off, len;
    bool first;   /* begins at the start of the text (Metaspace's prepend_scheme "first") */
} tk_piece;

typedef struct tk_pieces {
    tk_piece *data;
    size_t len, cap;
} tk_pieces;

/* A split point found by a pattern: [s, e) and whether it is a match (after invert). */
typedef struct tk_event {
    size_t s, e;
    bool match;
} tk_event;

typedef struct tk_heap_entry {
    uint32_t rank, pos;
    int32_t left, right;   /* the pair when it was pushed, to tell stale entries */
} tk_heap_entry;

typedef struct enc_ctx {
    const rn_tokenizer *t;
    rn_error *err;
    pcre2_match_data *md;
    pcre2_match_context *mc;
    tk_bytes buf[2], tmp;
    tk_pieces pieces[2];
    tk_event *ev;
    size_t ev_len, ev_cap;
    int32_t *sym, *next, *prev;
    size_t sym_cap;
    tk_heap_entry *heap;
    size_t heap_len, heap_cap;
    tk_ids out;
} enc_ctx;

static rn_status oom(enc_ctx *c) {
    return rn_fail(c->err, RN_ERR_OUT_OF_HOST_MEMORY, "out of memory while encoding");
}

static bool push_piece(tk_pieces *p, size_t off, size_t len, bool first) {
    if (len == 0) return true;   /* empty pieces are dropped, as the tokenizers library does */
    if (!tk_grow((void **)&p->data, &p->cap, p->len + 1, sizeof *p->data)) return false;
    p->data[p->len++] = (tk_piece){off, len, first};
    return true;
}

static bool push_event(enc_ctx *c, size_t s, size_t e, bool match) {
    if (!tk_grow((void **)&c->ev, &c->ev_cap, c->ev_len + 1, sizeof *c->ev)) return false;
    c->ev[c->ev_len++] = (tk_event){s, e, match};
    return true;
}

/* ---- normalizers ----------------------------------------------------------------------- */

/* Finds `pat` in s[from..n); returns its offset or n. */
static size_t find_literal(const char *s, size_t n, size_t from, const char *pat, size_t m) {
    if (m > n) return n;
    for (size_t i = from; i + m <= n; i++) {
        const char *hit = memchr(s + i, pat[0], n - m + 1 - i);
        if (!hit) return n;
        i = (size_t)(hit - s);
        if (memcmp(hit, pat, m) == 0) return i;
    }
    return n;
}

/* buf[src] -> buf[1 - src] with every match replaced. */
static rn_status replace_all(enc_ctx *c, const tk_normalizer *nz, int src) {
    const tk_bytes *in = &c->buf[src];
    tk_bytes *out = &c->buf[1 - src];
    out->len = 0;
    size_t pos = 0;
    while (pos <= in->len) {
        size_t ms, me;
        if (nz->re) {
            int rc = tk_regex_next(nz->re, c->md, c->mc, in->data, in->len, pos, &ms, &me, c->err);
            if (rc < 0) return (rn_status)rc;
            if (rc == 0) break;
        } else {
            ms = find_literal(in->data, in->len, pos, nz->text, nz->text_len);
            if (ms == in->len) break;
            me = ms + nz->text_len;
        }
        if (!tk_bytes_put(out, in->data + pos, ms - pos) ||
            !tk_bytes_put(out, nz->content, nz->content_len))
            return oom(c);
        pos = me;
        if (ms == me) {   /* an empty match: keep one character and look further on */
            if (me == in->len) break;
            size_t k = tk_utf8_len((unsigned char)in->data[me]);
            if (!tk_bytes_put(out, in->data + me, k)) return oom(c);
            pos = me + k;
        }
    }
    if (pos < in->len && !tk_bytes_put(out, in->data + pos, in->len - pos)) return oom(c);
    return RN_OK;
}

/* Runs the normalizers over buf[0]; returns the index of the buffer holding the result. */
static rn_status normalize(enc_ctx *c, int *cur) {
    const rn_tokenizer *t = c->t;
    *cur = 0;
    for (size_t i = 0; i < t->n_norm; i++) {
        const tk_normalizer *nz = &t->norm[i];
        tk_bytes *in = &c->buf[*cur], *out = &c->buf[1 - *cur];
        if (nz->kind == TK_NORM_PREPEND) {
            if (in->len == 0) continue;   /* as the tokenizers library: nothing to prepend to */
            out->len = 0;
            if (!tk_bytes_put(out, nz->text, nz->text_len) || !tk_bytes_put(out, in->data, in->len))
                return oom(c);
        } else {
            rn_status s = replace_all(c, nz, *cur);
            if (s != RN_OK) return s;
        }
        *cur = 1 - *cur;
    }
    return RN_OK;
}

/* ---- pre-tokenizers -------------------------------------------------------------------- */

/* The split events of one piece: its matches and the gaps between them. */
static rn_status find_events(enc_ctx *c, const tk_pretok *pt, const pcre2_code *re, const char *s,
                             size_t n) {
    c->ev_len = 0;
    size_t prev = 0, pos = 0;
    for (;;) {
        size_t ms, me;
        if (re) {
            int rc = tk_regex_next(re, c->md, c->mc, s, n, pos, &ms, &me, c->err);
            if (rc < 0) return (rn_status)rc;
            if (rc == 0) break;
        } else {
            ms = find_literal(s, n, pos, pt->literal, pt->literal_len);
            if (ms == n) break;
            me = ms + pt->literal_len;
        }
        if (ms > prev && !push_event(c, prev, ms, false)) return oom(c);
        if (!push_event(c, ms, me, true)) return oom(c);
        prev = me;
        pos = me;
        if (ms == me) {   /* an empty match splits there; search again one character on */
            if (me >= n) break;
            pos = me + tk_utf8_len((unsigned char)s[me]);
        }
    }
    if (prev < n && !push_event(c, prev, n, false)) return oom(c);
    return RN_OK;
}

/* Folds the events by the Split behavior (as the tokenizers library's NormalizedString::split)
 * and appends the resulting pieces, offset by `base` in the buffer. */
static rn_status emit_split(enc_ctx *c, enum tk_split_behavior behavior, bool invert, size_t base,
                            bool first, tk_pieces *out) {
    tk_event *ev = c->ev;
    size_t n = c->ev_len, k = 0;
    if (invert)
        for (size_t i = 0; i < n; i++) ev[i].match = !ev[i].match;
    /* Compact in place into the pieces to keep: ev[0..k) */
    bool previous_match = false;
    switch (behavior) {
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!ev[i].match) ev[k++] = ev[i];
        break;
    case TK_SPLIT_ISOLATED:
        k = n;
        break;
    case TK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < n; i++) {
            if (ev[i].match && !previous_match && k > 0) ev[k - 1].e = ev[i].e;
            else ev[k++] = ev[i];
            previous_match = ev[i].match;
        }
        break;
    case TK_SPLIT_MERGED_WITH_NEXT:
        /* the mirror image: walk backwards, merging a match into the piece after it */
        k = n;
        for (size_t i = n; i-- > 0;) {
            bool match = ev[i].match;
            if (match && !previous_match && k < n) ev[k].s = ev[i].s;
            else ev[--k] = ev[i];
            previous_match = match;
        }
        memmove(ev, ev + k, (n - k) * sizeof *ev);
        k = n - k;
        break;
    case TK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (ev[i].match == previous_match && k > 0) ev[k - 1].e = ev[i].e;
            else ev[k++] = ev[i];
            previous_match = ev[i].match;
        }
        break;
    }
    for (size_t i = 0; i < k; i++)
        if (!push_piece(out, base + ev[i].s, ev[i].e - ev[i].s, first && ev[i].s == 0))
            return oom(c);
    return RN_OK;
}

static rn_status pre_split(enc_ctx *c, const tk_pretok *pt, int cur) {
    const tk_bytes *buf = &c->buf[cur];
    const tk_pieces *in = &c->pieces[cur];
    tk_pieces *out = &c->pieces[1 - cur];
    out->len = 0;
    for (size_t i = 0; i < in->len; i++) {
        const tk_piece *p = &in->data[i];
        rn_status s = find_events(c, pt, pt->re, buf->data + p->off, p->len);
        if (s == RN_OK) s = emit_split(c, pt->behavior, pt->invert, p->off, p->first, out);
        if (s != RN_OK) return s;
    }
    /* the text stays where it is: only the pieces changed */
    tk_bytes *dst = &c->buf[1 - cur];
    tk_bytes keep = *dst;
    *dst = c->buf[cur];
    c->buf[cur] = keep;
    return RN_OK;
}

/* Appends the bytes of s[0..n) as GPT-2's byte-level characters. */
static bool put_byte_level(const rn_tokenizer *t, tk_bytes *out, const char *s, size_t n) {
    if (!tk_bytes_reserve(out, n * 2)) return false;
    for (size_t i = 0; i < n; i++)
        out->len += tk_utf8_encode(t->byte_cp[(unsigned char)s[i]], out->data + out->len);
    return true;
}

static rn_status pre_byte_level(enc_ctx *c, const tk_pretok *pt, int cur) {
    const tk_bytes *buf = &c->buf[cur];
    const tk_pieces *in = &c->pieces[cur];
    tk_bytes *dst = &c->buf[1 - cur];
    tk_pieces *out = &c->pieces[1 - cur];
    dst->len = 0;
    out->len = 0;
    for (size_t i = 0; i < in->len; i++) {
        const tk_piece *p = &in->data[i];
        const char *s = buf->data + p->off;
        size_t n = p->len;
        if (pt->add_prefix_space && s[0] != ' ') {
            c->tmp.len = 0;
            if (!tk_bytes_put(&c->tmp, " ", 1) || !tk_bytes_put(&c->tmp, s, n)) return oom(c);
            s = c->tmp.data;
            n = c->tmp.len;
        }
        if (!pt->re) {
            size_t at = dst->len;
            if (!put_byte_level(c->t, dst, s, n)) return oom(c);
            if (!push_piece(out, at, dst->len - at, p->first)) return oom(c);
            continue;
        }
        rn_status st = find_events(c, pt, pt->re, s, n);
        if (st != RN_OK) return st;
        for (size_t k = 0; k < c->ev_len; k++) {
            size_t at = dst->len;
            if (!put_byte_level(c->t, dst, s + c->ev[k].s, c->ev[k].e - c->ev[k].s)) return oom(c);
            if (!push_piece(out, at, dst->len - at, p->first && c->ev[k].s == 0)) return oom(c);
        }
    }
    return RN_OK;
}

static rn_status pre_metaspace(enc_ctx *c, const tk_pretok *pt, int cur) {
    const tk_bytes *buf = &c->buf[cur];
    const tk_pieces *in = &c->pieces[cur];
    tk_bytes *dst = &c->buf[1 - cur];
    tk_pieces *out = &c->pieces[1 - cur];
    const char *rep = pt->replacement;
    size_t rl = pt->replacement_len;
    dst->len = 0;
    out->len = 0;
    for (size_t i = 0; i < in->len; i++) {
        const tk_piece *p = &in->data[i];
        const char *s = buf->data + p->off;
        size_t at = dst->len;
        /* spaces become the replacement, then the prefix is added unless the piece now starts
         * with it */
        bool starts = s[0] == ' ' || (p->len >= rl && memcmp(s, rep, rl) == 0);
        if (!starts &&
            (pt->prepend == TK_PREPEND_ALWAYS || (pt->prepend == TK_PREPEND_FIRST && p->first)))
            if (!tk_bytes_put(dst, rep, rl)) return oom(c);
        for (size_t k = 0; k < p->len;) {
            size_t j = k;
            while (j < p->len && s[j] != ' ') j++;
            if (!tk_bytes_put(dst, s + k, j - k)) return oom(c);
            if (j < p->len && !tk_bytes_put(dst, rep, rl)) return oom(c);
            k = j + 1;
        }
        size_t end = dst->len;
        if (!pt->split) {
            if (!push_piece(out, at, end - at, p->first)) return oom(c);
            continue;
        }
        /* split before every replacement character (MergedWithNext) */
        size_t start = at;
        for (size_t k = at + 1; k + rl <= end; k++) {
            if (memcmp(dst->data + k, rep, rl) == 0) {
                if (!push_piece(out, start, k - start, p->first && start == at)) return oom(c);
                start = k;
                k += rl - 1;
            }
        }
        if (!push_piece(out, start, end - start, p->first && start == at)) return oom(c);
    }
    return RN_OK;
}

/* ---- BPE ------------------------------------------------------------------------------- */

static bool heap_less(const tk_heap_entry *a, const tk_heap_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static bool heap_push(enc_ctx *c, tk_heap_entry e) {
    if (!tk_grow((void **)&c->heap, &c->heap_cap, c->heap_len + 1, sizeof *c->heap)) return false;
    size_t i = c->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&e, &c->heap[parent])) break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = e;
    return true;
}

static tk_heap_entry heap_pop(enc_ctx *c) {
    tk_heap_entry top = c->heap[0], last = c->heap[--c->heap_len];
    size_t i = 0, n = c->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && heap_less(&c->heap[child + 1], &c->heap[child])) child++;
        if (!heap_less(&c->heap[child], &last)) break;
        c->heap[i] = c->heap[child];
        i = child;
    }
    if (n) c->heap[i] = last;
    return top;
}

static bool try_pair(enc_ctx *c, int32_t pos) {
    int32_t r = c->next[pos];
    uint32_t rank;
    int32_t merged;
    if (r >= 0 && tk_mergemap_get(&c->t->merges, c->sym[pos], c->sym[r], &rank, &merged))
        return heap_push(c, (tk_heap_entry){rank, (uint32_t)pos, c->sym[pos], c->sym[r]});
    return true;
}

/* Room for `need` symbols (a character is one symbol, or one per byte when it falls back). */
static bool grow_symbols(enc_ctx *c, size_t need) {
    size_t cap = c->sym_cap;
    if (!tk_grow((void **)&c->sym, &cap, need, sizeof *c->sym)) return false;
    cap = c->sym_cap;
    if (!tk_grow((void **)&c->next, &cap, need, sizeof *c->next)) return false;
    cap = c->sym_cap;
    if (!tk_grow((void **)&c->prev, &cap, need, sizeof *c->prev)) return false;
    c->sym_cap = cap;
    return true;
}

/* One piece to ids: its characters as symbols, then the lowest-ranked merge of two neighbours,
 * the leftmost among equals, until none applies. */
static rn_status bpe(enc_ctx *c, const char *s, size_t n) {
    const rn_tokenizer *t = c->t;
    if (t->ignore_merges) {
        int32_t id = tk_strmap_get(t, &t->vocab, s, n);
        if (id >= 0) return tk_ids_push(&c->out, id) ? RN_OK : oom(c);
    }
    if (n > INT32_MAX) return rn_fail(c->err, RN_ERR_LIMIT, "a piece of %zu bytes is too long", n);

    /* symbols: characters in the vocabulary, else their bytes' <0xNN> tokens, else unk */
    int32_t k = 0;
    bool last_unk = false;
    for (size_t i = 0; i < n;) {
        size_t len = tk_utf8_len((unsigned char)s[i]);
        if ((size_t)k + len > c->sym_cap && !grow_symbols(c, (size_t)k + len)) return oom(c);
        int32_t id = tk_strmap_get(t, &t->vocab, s + i, len);
        if (id >= 0) {
            c->sym[k++] = id;
            last_unk = false;
        } else {
            bool bytes = t->byte_fallback;
            for (size_t b = 0; bytes && b < len; b++)
                bytes = t->byte_token[(unsigned char)s[i + b]] >= 0;
            if (bytes) {
                for (size_t b = 0; b < len; b++)
                    c->sym[k++] = t->byte_token[(unsigned char)s[i + b]];
                last_unk = false;
            } else if (t->unk >= 0) {
                if (!(t->fuse_unk && last_unk)) c->sym[k++] = t->unk;
                last_unk = true;
            } else {
                size_t cl;
                uint32_t cp = tk_utf8_decode((const unsigned char *)s + i, &cl);
                return rn_fail(c->err, RN_ERR_TOKENIZER,
                               "character U+%04X has no token, and the tokenizer has neither "
                               "byte_fallback nor an unk_token", (unsigned)cp);
            }
        }
        i += len;
    }
    if (k == 1) return tk_ids_push(&c->out, c->sym[0]) ? RN_OK : oom(c);

    for (int32_t i = 0; i < k; i++) {
        c->next[i] = i + 1 < k ? i + 1 : -1;
        c->prev[i] = i - 1;
    }
    c->heap_len = 0;
    for (int32_t i = 0; i + 1 < k; i++)
        if (!try_pair(c, i)) return oom(c);
    while (c->heap_len) {
        tk_heap_entry e = heap_pop(c);
        int32_t pos = (int32_t)e.pos;
        /* stale: a slot's token only ever grows, so a changed id means a merge happened there */
        if (c->sym[pos] != e.left) continue;
        int32_t r = c->next[pos];
        if (r < 0 || c->sym[r] != e.right) continue;
        uint32_t rank;
        tk_mergemap_get(&t->merges, e.left, e.right, &rank, &c->sym[pos]);
        c->sym[r] = -1;
        c->next[pos] = c->next[r];
        if (c->next[r] >= 0) c->prev[c->next[r]] = pos;
        if ((c->prev[pos] >= 0 && !try_pair(c, c->prev[pos])) || !try_pair(c, pos)) return oom(c);
    }
    for (int32_t i = 0; i >= 0; i = c->next[i])
        if (!tk_ids_push(&c->out, c->sym[i])) return oom(c);
    return RN_OK;
}

/* ---- sections and added tokens --------------------------------------------------------- */

/* One stretch of text between added tokens. */
static rn_status encode_section(enc_ctx *c, const char *text, size_t n, bool first) {
    const rn_tokenizer *t = c->t;
    c->buf[0].len = 0;
    if (!tk_bytes_put(&c->buf[0], text, n)) return oom(c);
    int cur;
    rn_status s = normalize(c, &cur);
    if (s != RN_OK) return s;
    if (c->buf[cur].len == 0) return RN_OK;
    c->pieces[cur].len = 0;
    if (!push_piece(&c->pieces[cur], 0, c->buf[cur].len, first)) return oom(c);
    for (size_t i = 0; i < t->n_pre; i++) {
        const tk_pretok *pt = &t->pre[i];
        switch (pt->kind) {
        case TK_PRE_SPLIT: s = pre_split(c, pt, cur); break;
        case TK_PRE_BYTELEVEL: s = pre_byte_level(c, pt, cur); break;
        case TK_PRE_METASPACE: s = pre_metaspace(c, pt, cur); break;
        }
        if (s != RN_OK) return s;
        cur = 1 - cur;
    }
    const tk_pieces *pieces = &c->pieces[cur];
    for (size_t i = 0; i < pieces->len; i++) {
        const tk_piece *p = &pieces->data[i];
        if ((s = bpe(c, c->buf[cur].data + p->off, p->len)) != RN_OK) return s;
    }
    return RN_OK;
}

/* The leftmost added token at or after `from`, the longest one starting there. */
static bool next_added(const rn_tokenizer *t, const unsigned char *s, size_t n, size_t from,
                       size_t *ms, size_t *me, int32_t *id) {
    if (!t->trie_nodes) return false;
    for (size_t i = from; i < n; i++) {
        if (!(t->trie_first[s[i] >> 3] & (1u << (s[i] & 7)))) continue;
        uint32_t node = 0;
        int32_t found = -1;
        size_t end = 0;
        for (size_t j = i; j < n; j++) {
            uint64_t key = (((uint64_t)node << 8) | s[j]) + 1;
            size_t h = (size_t)tk_hash(&key, sizeof key) & t->trie_mask;
            while (t->trie_keys[h] && t->trie_keys[h] != key) h = (h + 1) & t->trie_mask;
            if (!t->trie_keys[h]) break;
            node = t->trie_child[h];
            if (t->trie_id[node] >= 0) {
                found = t->trie_id[node];
                end = j + 1;
            }
        }
        if (found >= 0) {
            *ms = i;
            *me = end;
            *id = found;
            return true;
        }
    }
    return false;
}

/* JavaScript's trimStart/trimEnd on s[*a..*b): the whitespace beside lstrip/rstrip tokens. */
static void trim_start(const char *s, size_t *a, size_t b) {
    while (*a < b) {
        size_t len;
        uint32_t cp = tk_utf8_decode((const unsigned char *)s + *a, &len);
        if (!tk_is_js_space(cp)) break;
        *a += len;
    }
}

static void trim_end(const char *s, size_t a, size_t *b) {
    while (*b > a) {
        size_t start = *b - 1, len;
        while (start > a && ((unsigned char)s[start] & 0xc0) == 0x80) start--;
        uint32_t cp = tk_utf8_decode((const unsigned char *)s + start, &len);
        if (!tk_is_js_space(cp)) break;
        *b = start;
    }
}

/* Text that is valid UTF-8 as it is, or a repaired copy in `fixed`: each maximal invalid
 * subsequence becomes U+FFFD. */
static bool repair_utf8(const char *text, size_t len, tk_bytes *fixed, bool *changed) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, copied = 0;
    *changed = false;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t v = tk_utf8_valid(s + i, len - i);
        if (v) {
            i += v;
            continue;
        }
        if (!tk_bytes_put(fixed, text + copied, i - copied) ||
            !tk_bytes_put(fixed, TK_REPLACEMENT, 3))
            return false;
        i += tk_utf8_invalid_run(s + i, len - i);
        copied = i;
        *changed = true;
    }
    if (*changed && !tk_bytes_put(fixed, text + copied, len - copied)) return false;
    return true;
}

static void ctx_free(enc_ctx *c) {
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mc);
    for (int i = 0; i < 2; i++) {
        free(c->buf[i].data);
        free(c->pieces[i].data);
    }
    free(c->tmp.data);
    free(c->ev);
    free(c->sym);
    free(c->next);
    free(c->prev);
    free(c->heap);
    free(c->out.data);
}

rn_status tokenizer_encode(const rn_tokenizer *t, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *n, rn_error *err) {
    if (!t || !ids || !n || (!text && len))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "tokenizer_encode: NULL argument");
    *ids = NULL;
    *n = 0;
    if (len > RN_TOKENIZER_MAX_TEXT)
        return rn_fail(err, RN_ERR_LIMIT,
                       "a text of %zu bytes is more than the %zu one encode takes", len,
                       RN_TOKENIZER_MAX_TEXT);
    enc_ctx c = {.t = t, .err = err};
    tk_bytes fixed = {0};
    rn_status s = RN_OK;
    bool changed;
    c.md = pcre2_match_data_create(1, NULL);
    c.mc = pcre2_match_context_create(NULL);
    if (!c.md || !c.mc || !repair_utf8(text, len, &fixed, &changed)) {
        s = oom(&c);
        goto done;
    }
    if (changed) {
        text = fixed.data;
        len = fixed.len;
    }
    /* PCRE2's default limit of 10 million backtracking steps per match is reached by a
     * tokenizer regex such as Llama 3's \s*[\r\n]+ on a run of some millions of spaces, whose
     * cost is linear in the run: the limit grows with the text instead. */
    uint64_t limit = 10000000u + 16u * (uint64_t)len;
    pcre2_set_match_limit(c.mc, limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit);
    if (add_special && !tk_ids_append(&c.out, t->prefix, t->n_prefix)) {
        s = oom(&c);
        goto done;
    }
    size_t start = 0, pos = 0;
    bool strip_next = false;   /* the added token before asked for rstrip */
    for (;;) {
        size_t ms = len, me = len;
        int32_t id = -1;
        bool found = next_added(t, (const unsigned char *)text, len, pos, &ms, &me, &id);
        size_t a = start, b = found ? ms : len;
        if (strip_next) trim_start(text, &a, b);
        if (found && (t->tok_flags[id] & TK_LSTRIP)) trim_end(text, a, &b);
        if (b > a && (s = encode_section(&c, text + a, b - a, a == 0)) != RN_OK) goto done;
        if (!found) break;
        if (!tk_ids_push(&c.out, id)) {
            s = oom(&c);
            goto done;
        }
        strip_next = (t->tok_flags[id] & TK_RSTRIP) != 0;
        start = pos = me;
    }
    if (add_special && !tk_ids_append(&c.out, t->suffix, t->n_suffix)) {
        s = oom(&c);
        goto done;
    }
    *ids = c.out.data;
    *n = c.out.len;
    c.out.data = NULL;
done:
    free(fixed.data);
    ctx_free(&c);
    return s;
}
