/*
 * tokenizer_decode.c: ids to text, whole or streamed (tokenizer.h).
 *
 * Each id's text goes through the decoder steps on its own (Replace, ByteFallback, ByteLevel,
 * Metaspace, a per-token Strip); a Strip after a Fuse acts on the start and the end of the
 * whole text, the end by holding back up to `stop` characters until more text comes. The bytes
 * that come out then pass a UTF-8 assembler that keeps an incomplete character until the next
 * token completes it and turns each maximal invalid subsequence into U+FFFD, so that what is
 * handed out is always valid UTF-8. tokenizer_decode is the streaming decoder run to the end.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"

struct rn_detok {
    const rn_tokenizer *t;
    unsigned flags;
    size_t count;           /* tokens decoded (not skipped) since the start of the text */
    size_t strip_left;      /* whole-text Strip: leading characters still to drop */
    size_t held;            /* whole-text Strip: trailing characters held back */
    tk_bytes a, b;          /* one token's text through the steps */
    tk_bytes out;           /* what the last call hands out */
    unsigned char pend[4];  /* an incomplete UTF-8 character */
    size_t n_pend, need;
};

/* The whole-text Strip step, if any (it is the last step when present). */
static const tk_decoder *whole_strip(const rn_tokenizer *t) {
    return t->n_dec && t->dec[t->n_dec - 1].kind == TK_DEC_STRIP && t->dec[t->n_dec - 1].whole_text
               ? &t->dec[t->n_dec - 1]
               : NULL;
}

static void start_text(rn_detok *d) {
    const tk_decoder *ws = whole_strip(d->t);
    bool cont = d->flags & RN_DETOK_CONTINUE;
    d->count = cont ? 1 : 0;
    d->strip_left = ws && !cont ? ws->start : 0;
    d->held = 0;
    d->n_pend = 0;
}

/* ---- UTF-8 assembly -------------------------------------------------------------------- */

static bool put_replacement(tk_bytes *out) { return tk_bytes_put(out, TK_REPLACEMENT, 3); }

static bool assemble(rn_detok *d, const char *bytes, size_t n, tk_bytes *out) {
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)bytes[i];
        if (d->n_pend) {
            unsigned char lo = 0x80, hi = 0xbf;
            if (d->n_pend == 1) tk_utf8_lead(d->pend[0], &lo, &hi);
            if (x >= lo && x <= hi) {
                d->pend[d->n_pend++] = x;
                if (d->n_pend == d->need) {
                    if (!tk_bytes_put(out, d->pend, d->n_pend)) return false;
                    d->n_pend = 0;
                }
                continue;
            }
            /* the held bytes are a maximal invalid subpart; x starts afresh */
            if (!put_replacement(out)) return false;
            d->n_pend = 0;
        }
        if (x < 0x80) {
            if (!tk_bytes_put(out, &x, 1)) return false;
            continue;
        }
        unsigned char lo, hi;
        size_t len = tk_utf8_lead(x, &lo, &hi);
        if (len == 0) {
            if (!put_replacement(out)) return false;
            continue;
        }
        d->pend[0] = x;
        d->n_pend = 1;
        d->need = len;
    }
    return true;
}

/* ---- the decoder steps ----------------------------------------------------------------- */

static bool replace_bytes(const tk_bytes *in, tk_bytes *out, const char *pat, size_t m,
                          const char *rep, size_t r) {
    out->len = 0;
    if (!tk_bytes_reserve(out, in->len)) return false;
    size_t i = 0;
    while (i < in->len) {
        if (i + m <= in->len && memcmp(in->data + i, pat, m) == 0) {
            if (!tk_bytes_put(out, rep, r)) return false;
            i += m;
        } else {
            if (!tk_bytes_put(out, in->data + i, 1)) return false;
            i++;
        }
    }
    return true;
}

static bool starts_with(const tk_bytes *b, size_t at, const char *s, size_t n) {
    return b->len - at >= n && memcmp(b->data + at, s, n) == 0;
}

/* GPT-2's byte-level characters back to bytes; a text with another character is kept as it
 * is, as the tokenizers library does. */
static bool unmap_byte_level(const rn_tokenizer *t, const tk_bytes *in, tk_bytes *out) {
    out->len = 0;
    if (!tk_bytes_reserve(out, in->len)) return false;
    for (size_t i = 0; i < in->len;) {
        size_t len = tk_utf8_valid((const unsigned char *)in->data + i, in->len - i);
        uint32_t cp = len ? tk_utf8_decode((const unsigned char *)in->data + i, &len) : UINT32_MAX;
        if (cp >= 324 || t->cp_byte[cp] < 0) {
            out->len = 0;
            return tk_bytes_put(out, in->data, in->len);
        }
        out->data[out->len++] = (char)t->cp_byte[cp];
        i += len;
    }
    return true;
}

static void swap(tk_bytes *a, tk_bytes *b) {
    tk_bytes t = *a;
    *a = *b;
    *b = t;
}

/* One token's text through the steps, into d->a. */
static rn_status token_text(rn_detok *d, int32_t id, rn_error *err) {
    const rn_tokenizer *t = d->t;
    tk_bytes *a = &d->a, *b = &d->b;
    a->len = 0;
    if (!tk_bytes_put(a, t->arena + t->tok_off[id], t->tok_len[id])) goto oom;
    bool added = t->tok_flags[id] & TK_ADDED;
    for (size_t i = 0; i < t->n_dec; i++) {
        const tk_decoder *st = &t->dec[i];
        switch (st->kind) {
        case TK_DEC_REPLACE:
            if (!replace_bytes(a, b, st->pattern, st->pattern_len, st->content, st->content_len))
                goto oom;
            swap(a, b);
            break;
        case TK_DEC_BYTE_FALLBACK: {
            int byte = tk_parse_byte_token(a->data, a->len);
            if (byte >= 0) {
                a->data[0] = (char)byte;
                a->len = 1;
            }
            break;
        }
        case TK_DEC_FUSE:
            break;
        case TK_DEC_BYTE_LEVEL:
            if (added) break;   /* added tokens are plain text, as transformers decodes them */
            if (!unmap_byte_level(t, a, b)) goto oom;
            swap(a, b);
            break;
        case TK_DEC_METASPACE:
            if (!replace_bytes(a, b, st->replacement, st->replacement_len, " ", 1)) goto oom;
            swap(a, b);
            if (st->strip_first && d->count == 0 && a->len && a->data[0] == ' ') {
                memmove(a->data, a->data + 1, a->len - 1);
                a->len--;
            }
            break;
        case TK_DEC_STRIP: {
            if (st->whole_text) break;   /* done on the stream, see emit() */
            size_t from = 0, to = a->len, c = st->content_len;
            for (size_t k = 0; k < st->start && starts_with(a, from, st->content, c); k++)
                from += c;
            for (size_t k = 0;
                 k < st->stop && to - from >= c && memcmp(a->data + to - c, st->content, c) == 0;
                 k++)
                to -= c;
            memmove(a->data, a->data + from, to - from);
            a->len = to - from;
            break;
        }
        }
    }
    return RN_OK;
oom:
    return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "out of memory while decoding");
}

/* d->a onto the stream: the whole-text Strip, then UTF-8 assembly into `out`. */
static bool emit(rn_detok *d, tk_bytes *out) {
    const tk_decoder *ws = whole_strip(d->t);
    const char *s = d->a.data;
    size_t n = d->a.len;
    if (!ws) return assemble(d, s, n, out);
    const char *c = ws->content;
    size_t cl = ws->content_len;
    while (d->strip_left && n >= cl && memcmp(s, c, cl) == 0) {
        s += cl;
        n -= cl;
        d->strip_left--;
    }
    if (n == 0) return true;
    d->strip_left = 0;
    /* hold back the trailing run of the strip character, up to `stop` of them */
    size_t run = 0, end = n;
    while (run < ws->stop && end >= cl && memcmp(s + end - cl, c, cl) == 0) {
        end -= cl;
        run++;
    }
    if (end > 0) {   /* other text follows what was held: release it */
        for (; d->held; d->held--)
            if (!assemble(d, c, cl, out)) return false;
    }
    if (!assemble(d, s, end, out)) return false;
    /* the held run may now be longer than `stop`: release the oldest */
    for (d->held += run; d->held > ws->stop; d->held--)
        if (!assemble(d, c, cl, out)) return false;
    return true;
}

/* ---- the public calls ------------------------------------------------------------------ */

static rn_status check_id(const rn_tokenizer *t, int32_t id, rn_error *err) {
    if (id < 0 || (size_t)id >= t->vocab_size || t->tok_off[id] == UINT32_MAX)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                       "token id %d is not in the vocabulary (%zu ids)", id, t->vocab_size);
    return RN_OK;
}

/* Decodes one id onto `out`. */
static rn_status push_id(rn_detok *d, int32_t id, tk_bytes *out, rn_error *err) {
    const rn_tokenizer *t = d->t;
    rn_status s = check_id(t, id, err);
    if (s != RN_OK) return s;
    if ((d->flags & RN_DETOK_SKIP_SPECIAL) && (t->tok_flags[id] & TK_SPECIAL)) return RN_OK;
    if (t->dec_null) {
        /* no decoder: the tokenizers library joins the tokens with spaces */
        d->a.len = 0;
        if ((d->count && !tk_bytes_put(&d->a, " ", 1)) ||
            !tk_bytes_put(&d->a, t->arena + t->tok_off[id], t->tok_len[id]))
            return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "out of memory while decoding");
    } else if ((s = token_text(d, id, err)) != RN_OK) {
        return s;
    }
    d->count++;
    if (!emit(d, out))
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "out of memory while decoding");
    return RN_OK;
}

/* The end of the text onto `out`: held strip characters are dropped, an incomplete character
 * becomes U+FFFD. */
static rn_status finish(rn_detok *d, tk_bytes *out, rn_error *err) {
    bool ok = !d->n_pend || put_replacement(out);
    start_text(d);
    return ok ? RN_OK : rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "out of memory while decoding");
}

rn_status rn_detok_init(const rn_tokenizer *t, unsigned flags, rn_detok **out, rn_error *err) {
    if (!out) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_detok_init: NULL argument");
    *out = NULL;
    if (!t) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_detok_init: NULL tokenizer");
    if (flags & ~(unsigned)(RN_DETOK_SKIP_SPECIAL | RN_DETOK_CONTINUE))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_detok_init: unknown flags 0x%x", flags);
    rn_detok *d = calloc(1, sizeof *d);
    if (!d) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory for a detokenizer");
    d->t = t;
    d->flags = flags;
    start_text(d);
    *out = d;
    return RN_OK;
}

static rn_status hand_out(rn_detok *d, rn_status s, const char **bytes, size_t *len,
                          rn_error *err) {
    if (s != RN_OK) d->out.len = 0;
    if (!tk_bytes_reserve(&d->out, 0)) {
        *bytes = "";
        *len = 0;
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "out of memory while decoding");
    }
    d->out.data[d->out.len] = '\0';
    *bytes = d->out.data;
    *len = d->out.len;
    return s;
}

rn_status rn_detok_push(rn_detok *d, int32_t id, const char **bytes, size_t *len, rn_error *err) {
    if (!d || !bytes || !len)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_detok_push: NULL argument");
    d->out.len = 0;
    return hand_out(d, push_id(d, id, &d->out, err), bytes, len, err);
}

rn_status rn_detok_flush(rn_detok *d, const char **bytes, size_t *len, rn_error *err) {
    if (!d || !bytes || !len)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "rn_detok_flush: NULL argument");
    d->out.len = 0;
    return hand_out(d, finish(d, &d->out, err), bytes, len, err);
}

void rn_detok_free(rn_detok *d) {
    if (!d) return;
    free(d->a.data);
    free(d->b.data);
    free(d->out.data);
    free(d);
}

rn_status tokenizer_decode(const rn_tokenizer *t, const int32_t *ids, size_t n,
                              bool skip_special, char **text, size_t *len, rn_error *err) {
    if (!t || !text || !len || (!ids && n))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "tokenizer_decode: NULL argument");
    *text = NULL;
    *len = 0;
    rn_detok d = {.t = t, .flags = skip_special ? RN_DETOK_SKIP_SPECIAL : 0};
    start_text(&d);
    tk_bytes out = {0};
    rn_status s = RN_OK;
    for (size_t i = 0; i < n && s == RN_OK; i++) s = push_id(&d, ids[i], &out, err);
    if (s == RN_OK) s = finish(&d, &out, err);
    if (s == RN_OK && !tk_bytes_reserve(&out, 0))
        s = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "out of memory while decoding");
    free(d.a.data);
    free(d.b.data);
    if (s != RN_OK) {
        free(out.data);
        return s;
    }
    out.data[out.len] = '\0';
    *text = out.data;
    *len = out.len;
    return RN_OK;
}
