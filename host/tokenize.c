/* tokenize.c: the public tokenizer calls, over models/tokenizer. No device: a failure's message
 * goes to the calling thread's rn_last_error. */
#include <stdlib.h>

#include "engine.h"
#include "tokenizer.h"

rn_status rn_tokenizer_load(const char *model_dir, rn_tokenizer **out) {
    rn_error err = {{0}};
    if (!model_dir || !out)
        return rn_thread_fail(rn_fail(&err, RN_ERR_INVALID_ARGUMENT, "rn_tokenizer_load: NULL argument"), &err);
    return rn_thread_fail(tokenizer_load(model_dir, out, &err), &err);
}

void rn_tokenizer_free(rn_tokenizer *t) {
    tokenizer_free(t);
}

rn_status rn_tokenizer_encode(const rn_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                              size_t *n) {
    rn_error err = {{0}};
    return rn_thread_fail(tokenizer_encode(t, text, len, add_special != 0, ids, n, &err), &err);
}

rn_status rn_tokenizer_decode(const rn_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                              size_t *len) {
    rn_error err = {{0}};
    return rn_thread_fail(tokenizer_decode(t, ids, n, skip_special != 0, text, len, &err), &err);
}

int32_t rn_tokenizer_bos(const rn_tokenizer *t) {
    return t ? tokenizer_bos(t) : -1;
}

int32_t rn_tokenizer_eos(const rn_tokenizer *t) {
    return t ? tokenizer_eos(t) : -1;
}

size_t rn_tokenizer_vocab_size(const rn_tokenizer *t) {
    return t ? tokenizer_vocab_size(t) : 0;
}

void rn_free(void *memory) {
    free(memory);
}

/* The public detokenizer is models/tokenizer's rn_detok under the API's name. */
rn_status rn_detokenizer_init(const rn_tokenizer *t, unsigned flags, rn_detokenizer **out) {
    rn_error err = {{0}};
    unsigned own = ((flags & RN_DETOKENIZE_SKIP_SPECIAL) ? RN_DETOK_SKIP_SPECIAL : 0) |
                   ((flags & RN_DETOKENIZE_CONTINUE) ? RN_DETOK_CONTINUE : 0);
    if (flags & ~(RN_DETOKENIZE_SKIP_SPECIAL | RN_DETOKENIZE_CONTINUE))
        return rn_thread_fail(rn_fail(&err, RN_ERR_INVALID_ARGUMENT, "unknown detokenizer flags 0x%x", flags), &err);
    return rn_thread_fail(rn_detok_init(t, own, (rn_detok **)out, &err), &err);
}

rn_status rn_detokenizer_push(rn_detokenizer *d, int32_t id, const char **bytes, size_t *len) {
    rn_error err = {{0}};
    return rn_thread_fail(rn_detok_push((rn_detok *)d, id, bytes, len, &err), &err);
}

rn_status rn_detokenizer_flush(rn_detokenizer *d, const char **bytes, size_t *len) {
    rn_error err = {{0}};
    return rn_thread_fail(rn_detok_flush((rn_detok *)d, bytes, len, &err), &err);
}

void rn_detokenizer_free(rn_detokenizer *d) {
    rn_detok_free((rn_detok *)d);
}
