/*
 * fuzz_tokenizer: tokenizer_load_files on an arbitrary tokenizer.json (no
 * tokenizer_config.json). When it loads, a fixed text with every kind of trouble in it (added
 * tokens, spaces, digits, non-ASCII, an invalid UTF-8 byte) is encoded and its ids decoded,
 * both at once and through the streaming decoder, whose output must be exactly the same text;
 * a few fixed ids are decoded too, and an id past the vocabulary must be refused.
 */
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer.h"

static const char k_text[] =
    "<s>Hello  world, it's 2024!\n\tcaf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 "
    "\xff x</s><|endoftext|> ab\xe2\x96\x81" "cd  ";

/* Streams ids through a detokenizer and compares with `want`; frees what it made. */
static void check_stream(const rn_tokenizer *t, const int32_t *ids, size_t n, bool skip,
                         const char *want, size_t want_len) {
    rn_error err;
    err.message[0] = '\0';
    rn_detok *d = NULL;
    rn_status st = rn_detok_init(t, skip ? RN_DETOK_SKIP_SPECIAL : 0, &d, &err);
    fuzz_check(st == RN_OK, "rn_detok_init: %s %s", rn_status_str(st), err.message);
    char *got = malloc(want_len + 1);
    fuzz_check(got != NULL, "malloc");
    size_t got_len = 0;
    bool fits = true;
    for (size_t i = 0; i <= n; i++) {
        const char *bytes = NULL;
        size_t len = 0;
        st = i < n ? rn_detok_push(d, ids[i], &bytes, &len, &err) : rn_detok_flush(d, &bytes, &len, &err);
        fuzz_check(st == RN_OK, "detok %s: %s %s", i < n ? "push" : "flush", rn_status_str(st), err.message);
        if (len > want_len - got_len) fits = false;
        if (fits && len) memcpy(got + got_len, bytes, len);
        if (fits) got_len += len;
    }
    fuzz_check(fits && got_len == want_len && memcmp(got, want, want_len) == 0,
               "streaming decode (skip_special %d) differs from tokenizer_decode", (int)skip);
    free(got);
    rn_detok_free(d);
}

static void check_decode(const rn_tokenizer *t, const int32_t *ids, size_t n) {
    for (int skip = 0; skip < 2; skip++) {
        rn_error err;
        err.message[0] = '\0';
        char *text = NULL;
        size_t len = 0;
        rn_status st = tokenizer_decode(t, ids, n, skip != 0, &text, &len, &err);
        fuzz_check(st == RN_OK, "decode of valid ids: %s %s", rn_status_str(st), err.message);
        fuzz_check(text != NULL && text[len] == '\0', "decode output not terminated");
        check_stream(t, ids, n, skip != 0, text, len);
        free(text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfd_write(data, size);
    rn_error err;
    err.message[0] = '\0';
    rn_tokenizer *t = NULL;
    rn_status st = tokenizer_load_files(path, NULL, &t, &err);
    if (st != RN_OK) {
        fuzz_check(t == NULL, "load failed with %s but returned a tokenizer", rn_status_str(st));
        fuzz_check(err.message[0] != '\0', "load failed with %s and no message", rn_status_str(st));
        return 0;
    }
    size_t vocab = tokenizer_vocab_size(t);
    fuzz_check(vocab > 0 && vocab <= (size_t)RN_TOKENIZER_MAX_VOCAB, "vocab size %zu", vocab);
    int32_t bos = tokenizer_bos(t), eos = tokenizer_eos(t);
    fuzz_check(bos >= -1 && bos < (int64_t)vocab && eos >= -1 && eos < (int64_t)vocab, "bos %d eos %d", bos, eos);

    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        st = tokenizer_encode(t, k_text, sizeof k_text - 1, special != 0, &ids, &n, &err);
        if (st == RN_OK) {
            for (size_t i = 0; i < n; i++)
                fuzz_check(ids[i] >= 0 && (size_t)ids[i] < vocab, "encode gave id %d of %zu", ids[i], vocab);
            check_decode(t, ids, n);
        } else {
            fuzz_check(err.message[0] != '\0', "encode failed with %s and no message", rn_status_str(st));
        }
        free(ids);
    }

    /* Fixed ids at both ends of the vocabulary (those that are tokens: ids may have gaps),
     * then one past it. */
    const int32_t candidates[6] = {0, 1, 2, 3, (int32_t)(vocab - 1), (int32_t)(vocab / 2)};
    int32_t fixed[6];
    size_t n_fixed = 0;
    for (size_t i = 0; i < 6; i++) {
        const char *tok = tokenizer_token(t, candidates[i]);
        (void)tokenizer_is_special(t, candidates[i]);
        if (!tok) continue;
        int32_t found = tokenizer_find(t, tok, strlen(tok));
        fuzz_check(found >= 0 && (size_t)found < vocab, "token %d's text not found", candidates[i]);
        fixed[n_fixed++] = candidates[i];
    }
    if (n_fixed) check_decode(t, fixed, n_fixed);
    int32_t past = (int32_t)vocab;
    char *text = NULL;
    size_t len = 0;
    st = tokenizer_decode(t, &past, 1, false, &text, &len, &err);
    fuzz_check(st == RN_ERR_INVALID_ARGUMENT, "decode of id %d past the vocabulary gave %s", past, rn_status_str(st));
    free(text);
    fuzz_check(tokenizer_token(t, past) == NULL && tokenizer_token(t, -1) == NULL, "token of a bad id");
    tokenizer_free(t);
    return 0;
}
