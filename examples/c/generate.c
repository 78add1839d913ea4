/*
 * generate.c: the smallest complete program on libretnet, as documentation. Loads a model
 * directory, feeds a prompt and prints a sampled continuation. Build against an installed
 * copy with pkg-config alone:
 *
 *     cc generate.c $(pkg-config --cflags --libs retnet-cl) -o generate
 *     ./generate examples/kjv-retnet "And God said," 32
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <retnet.h>

/* Prints what failed, with the library's message, and returns the exit status. */
static int failed(const char *what, rn_status st, rn_context *ctx) {
    fprintf(stderr, "%s: %s: %s\n", what, rn_status_str(st), ctx ? rn_context_last_error(ctx) : rn_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT TOKENS\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *prompt = argv[2];
    const int max_tokens = atoi(argv[3]);

    rn_context *ctx = NULL;
    rn_model *model = NULL;
    rn_session *session = NULL;
    rn_tokenizer *tokenizer = NULL;
    rn_detokenizer *detokenizer = NULL;
    rn_sampler *sampler = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 0;
    rn_status st;

    /* The default device: $RETNET_DEVICE, else the first GPU, else the first device. */
    char message[1024];
    if ((st = rn_context_init(&ctx, NULL, message, sizeof message)) != RN_OK) {
        fprintf(stderr, "no device: %s: %s\n", rn_status_str(st), message);
        return 1;
    }
    if ((st = rn_model_load(ctx, dir, NULL, &model)) != RN_OK) rc = failed("loading the model", st, ctx);
    if (!rc && (st = rn_tokenizer_load(dir, &tokenizer)) != RN_OK) rc = failed("loading the tokenizer", st, NULL);
    if (!rc && (st = rn_tokenizer_encode(tokenizer, prompt, strlen(prompt), 1, &ids, &n_ids)) != RN_OK)
        rc = failed("encoding", st, NULL);
    if (!rc && (st = rn_session_init(model, &session)) != RN_OK) rc = failed("a session", st, ctx);
    if (!rc && (st = rn_session_prefill(session, ids, n_ids, RN_MODE_CHUNKWISE, 0, NULL)) != RN_OK)
        rc = failed("the prompt", st, ctx);

    rn_sampling sampling;
    rn_sampling_default(&sampling);  /* temperature 0.8, top-k 40, top-p 0.95, seed 0 */
    rn_model_info info;
    rn_model_info_get(model, &info);
    if (!rc && (st = rn_sampler_init(&sampling, (size_t)info.vocab_size, &sampler)) != RN_OK)
        rc = failed("the sampler", st, NULL);
    if (!rc && (st = rn_detokenizer_init(tokenizer, RN_DETOKENIZE_CONTINUE | RN_DETOKENIZE_SKIP_SPECIAL,
                                         &detokenizer)) != RN_OK)
        rc = failed("the detokenizer", st, NULL);

    fputs(prompt, stdout);
    for (int i = 0; !rc && i < max_tokens; i++) {
        int32_t recent[64], token;
        size_t n_recent = rn_session_recent(session, recent, 64);
        /* Each draw depends on the seed and the position only. */
        if ((st = rn_sampler_sample(sampler, rn_session_logits(session), recent, n_recent,
                                    rn_session_position(session), &token)) != RN_OK) {
            rc = failed("sampling", st, NULL);
            break;
        }
        if (token == rn_tokenizer_eos(tokenizer)) break;
        if ((st = rn_session_decode(session, token, NULL)) != RN_OK) {
            rc = failed("decoding", st, ctx);
            break;
        }
        const char *piece;
        size_t len;
        if ((st = rn_detokenizer_push(detokenizer, token, &piece, &len)) != RN_OK) {
            rc = failed("detokenizing", st, NULL);
            break;
        }
        fwrite(piece, 1, len, stdout);
    }
    const char *rest;
    size_t len;
    if (!rc && rn_detokenizer_flush(detokenizer, &rest, &len) == RN_OK) fwrite(rest, 1, len, stdout);
    putchar('\n');

    rn_detokenizer_free(detokenizer);
    rn_sampler_free(sampler);
    rn_free(ids);
    rn_tokenizer_free(tokenizer);
    rn_session_free(session);
    rn_model_free(model);
    rn_context_free(ctx);
    return rc;
}
