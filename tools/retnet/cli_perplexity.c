/* cli_perplexity.c: `retnet perplexity`, a model's perplexity on a text.
 *
 * In the manner of llama.cpp's perplexity tool: the whole text is tokenized, cut into
 * non-overlapping windows of --context tokens (the tail that does not fill a window is left
 * out), each window is fed to an empty session with logits for every position, and only the
 * second half of each window is scored, so that every scored token has at least half a window
 * of context. Per scored token the negative log-likelihood comes from a log-softmax in double;
 * perplexity is exp(mean NLL) and its standard error llama.cpp's estimate,
 * PPL * sqrt(var(NLL) / (count - 1)) with the population variance. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *perplexity_usage =
    "usage: retnet perplexity --model DIR -f FILE [options]\n"
    "\n"
    "The model's perplexity on a text, as llama.cpp's perplexity tool computes it. The text is\n"
    "tokenized whole (special tokens written in it, such as <|endoftext|>, are read as such; a\n"
    "BOS is put first when the tokenizer's files ask for one, and then also replaces the first\n"
    "token of every window, as llama.cpp does; no EOS is added), then cut into non-overlapping\n"
    "windows of N tokens (the last partial window is dropped; a text shorter than N is one\n"
    "window). Each window runs from an empty state with logits for every position, and the\n"
    "tokens after the first N/2 of the window are scored: the logits at positions N/2 .. N-2\n"
    "(from 0) predict the tokens at N/2+1 .. N-1, 255 tokens per window of 512 (a 2-token\n"
    "window scores its second token). Printed: PPL = exp(mean NLL) +/- its standard error\n"
    "(llama.cpp's estimate), the mean NLL in nats, the tokens scored, and the top-1 agreement:\n"
    "the fraction of scored positions where the most likely token (lowest id on ties) is the\n"
    "next token of the text.\n"
    "\n"
    "  --model DIR        checkpoint directory with tokenizer.json\n"
    "  -f, --file FILE    the text (\"-\": standard input)\n"
    "  --context N        window length in tokens (default 512)\n"
    "  --mode M           retention form: chunkwise (default), parallel or recurrent; the three\n"
    "                     give the same perplexity up to rounding\n"
    "  --chunk-size N     chunk of the chunkwise form (default: the config's recurrent_chunk_size)\n"
    "  --weights W        device storage of the weight matrices: f32, f16, bf16, q8 or q4 (default: the\n"
    "                     checkpoint's own)\n"
    CLI_PRECISION_HELP
    "  --json             one JSON object on standard output: ppl, ppl_stderr, nll, tokens,\n"
    "                     top1, windows, context, mode, seconds (forward passes and scoring),\n"
    "                     text_tokens\n"
    "  --device D, --no-cache   as for the other commands\n"
    "  -h, --help         this text\n"
    "\n"
    "A progress line with the running perplexity goes to standard error when it is a terminal.\n";

typedef struct ppl_options {
    const char *model, *file, *device, *weights;
    long context, chunk_size;
    rn_mode mode;
    int json, no_cache;
} ppl_options;

/* Returns -1 when the options are good, else the exit code (0 after --help). */
static int parse_perplexity(int argc, char **argv, ppl_options *o) {
    memset(o, 0, sizeof *o);
    o->context = 512;
    o->mode = RN_MODE_CHUNKWISE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(perplexity_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--no-cache")) {
            o->no_cache = 1;
            continue;
        }
        if (a[0] != '-') return cli_usage_error("perplexity: unexpected argument '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("perplexity: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->file = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--mode")) {
            if (!cli_parse_mode(v, &o->mode))
                return cli_usage_error("--mode must be parallel, chunkwise or recurrent, not '%s'", v);
        } else if (!strcmp(a, "--precision")) {
            if (!cli_set_precision(v)) return cli_usage_error("--precision must be f32, f16, bf16 or auto, not '%s'", v);
        } else if (!strcmp(a, "--weights")) {
            rn_weights w;
            if (!cli_parse_weights(v, &w)) return cli_usage_error("--weights must be f32, f16, bf16, q8 or q4, not '%s'", v);
            o->weights = v;
        } else if (!strcmp(a, "--context")) {
            if (!cli_parse_long(v, 2, 1L << 20, &o->context))
                return cli_usage_error("--context must be 2..1048576, not '%s'", v);
        } else if (!strcmp(a, "--chunk-size")) {
            if (!cli_parse_long(v, 1, 1L << 20, &o->chunk_size))
                return cli_usage_error("--chunk-size must be 1..1048576, not '%s'", v);
        } else {
            return cli_usage_error("unknown perplexity option '%s'", a);
        }
    }
    if (!o->model) return cli_usage_error("perplexity: --model DIR is required%s", "");
    if (!o->file) return cli_usage_error("perplexity: -f FILE is required%s", "");
    return -1;
}

/* Tokens of the text, with a BOS first when the tokenizer adds one (found by encoding the empty
 * text with its special tokens). *bos is that BOS, or -1. */
static int tokenize_text(const ppl_options *o, const char *text, size_t len, int32_t **ids, size_t *n,
                         int32_t *bos) {
    rn_tokenizer *tok = NULL;
    rn_status st = rn_tokenizer_load(o->model, &tok);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: loading the tokenizer of '%s' failed: %s: %s\n", o->model, rn_status_str(st),
                rn_last_error());
        return 1;
    }
    int32_t *probe = NULL, *body = NULL;
    size_t n_probe = 0, n_body = 0;
    st = rn_tokenizer_encode(tok, "", 0, 1, &probe, &n_probe);
    if (st == RN_OK) st = rn_tokenizer_encode(tok, text, len, 0, &body, &n_body);
    *bos = -1;
    if (st == RN_OK && n_probe > 0 && rn_tokenizer_bos(tok) >= 0 && probe[0] == rn_tokenizer_bos(tok))
        *bos = probe[0];
    rn_free(probe);
    rn_tokenizer_free(tok);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: tokenizing '%s' failed: %s: %s\n", o->file, rn_status_str(st), rn_last_error());
        rn_free(body);
        return 1;
    }
    size_t extra = *bos >= 0 ? 1 : 0;
    *ids = malloc((n_body + extra) * sizeof **ids);
    if (!*ids) {
        rn_free(body);
        fprintf(stderr, "retnet: out of memory for %zu tokens\n", n_body);
        return 1;
    }
    if (extra) (*ids)[0] = *bos;
    if (n_body) memcpy(*ids + extra, body, n_body * sizeof *body);
    *n = n_body + extra;
    rn_free(body);
    return 0;
}

/* Running sums over the scored tokens. */
typedef struct ppl_sums {
    double nll, nll2;  /* sum of NLL and of its square */
    size_t count, top1;
} ppl_sums;

static double ppl_of(const ppl_sums *s) {
    return s->count ? exp(s->nll / (double)s->count) : NAN;
}

/* llama.cpp's estimate: PPL * sqrt((E[nll^2] - E[nll]^2) / (count - 1)). */
static double ppl_stderr_of(const ppl_sums *s) {
    if (s->count < 2) return NAN;
    double mean = s->nll / (double)s->count, var = s->nll2 / (double)s->count - mean * mean;
    return var > 0.0 ? ppl_of(s) * sqrt(var / (double)(s->count - 1)) : 0.0;
}

/* Scores logits row `row` (vocab floats) against `target`: a log-softmax in double. Returns 0
 * when a logit is not finite. */
static int score_row(const float *row, size_t vocab, int32_t target, ppl_sums *s) {
    double max = -INFINITY;
    size_t best = 0;
    for (size_t j = 0; j < vocab; j++) {
        if (!isfinite(row[j])) return 0;
        if (row[j] > max) max = row[j], best = j;
    }
    double sum = 0.0;
    for (size_t j = 0; j < vocab; j++) sum += exp((double)row[j] - max);
    double nll = max + log(sum) - (double)row[target];
    s->nll += nll;
    s->nll2 += nll * nll;
    s->count++;
    s->top1 += best == (size_t)target;
    return 1;
}

int cmd_perplexity(int argc, char **argv) {
    ppl_options o;
    int rc = parse_perplexity(argc, argv, &o);
    if (rc >= 0) return rc;

    char *text = NULL;
    size_t len = 0;
    if (cli_read_text(o.file, &text, &len)) return 1;
    int32_t *ids = NULL, bos = -1;
    size_t n = 0;
    rc = tokenize_text(&o, text, len, &ids, &n, &bos);
    free(text);
    if (rc) return rc;
    if (n < 2) {
        fprintf(stderr, "retnet: '%s' is %zu token%s long: perplexity needs at least 2\n", o.file, n,
                n == 1 ? "" : "s");
        free(ids);
        return 1;
    }

    size_t context = (size_t)o.context < n ? (size_t)o.context : n;
    size_t windows = n / context;
    /* the first scored row of logits: N/2, or 0 in a 2-token window */
    size_t first = context / 2 < context - 2 ? context / 2 : context - 2;

    options mo;
    memset(&mo, 0, sizeof mo);
    mo.model = o.model;
    mo.device = o.device;
    mo.weights = o.weights;
    mo.no_cache = o.no_cache;
    rn_context *ctx = NULL;
    rn_model *model = NULL;
    rn_session *session = NULL;
    int32_t *window = NULL;
    float *logits = NULL;
    rc = cli_open_model(&mo, &ctx, &model);
    if (rc) {
        free(ids);
        return rc;
    }
    rn_model_info info;
    rn_model_info_get(model, &info);
    size_t vocab = (size_t)info.vocab_size;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= vocab) {
            fprintf(stderr, "retnet: the tokenizer gave id %d, outside the model's vocabulary of %zu\n", ids[i], vocab);
            rc = 1;
            goto done;
        }
    window = malloc(context * sizeof *window);
    logits = context <= SIZE_MAX / sizeof(float) / vocab ? malloc(context * vocab * sizeof *logits) : NULL;
    if (!window || !logits) {
        fprintf(stderr, "retnet: out of memory for the logits of %zu x %zu\n", context, vocab);
        rc = 1;
        goto done;
    }
    rn_status st = rn_session_init(model, &session);
    if (st != RN_OK) {
        rc = cli_report(ctx, st, "creating a session");
        goto done;
    }

    const int progress = isatty(STDERR_FILENO);
    ppl_sums sums = {0};
    double start = cli_seconds();
    for (size_t w = 0; w < windows; w++) {
        memcpy(window, ids + w * context, context * sizeof *window);
        if (bos >= 0) window[0] = bos;
        st = rn_session_reset(session);
        if (st == RN_OK) st = rn_session_prefill(session, window, context, o.mode, (size_t)o.chunk_size, logits);
        if (st != RN_OK) {
            if (progress) fputc('\n', stderr);
            rc = cli_report(ctx, st, "the forward pass");
            goto done;
        }
        for (size_t p = first; p + 1 < context; p++)
            if (!score_row(logits + p * vocab, vocab, window[p + 1], &sums)) {
                if (progress) fputc('\n', stderr);
                fprintf(stderr, "retnet: non-finite logits at position %zu of window %zu\n", p, w + 1);
                rc = 1;
                goto done;
            }
        if (progress) {
            double el = cli_seconds() - start;
            fprintf(stderr, "\r\033[K[%zu/%zu] PPL %.4f  %.1f s  (%.0f tokens/s)", w + 1, windows, ppl_of(&sums), el,
                    (double)(w + 1) * (double)context / el);
            fflush(stderr);
        }
    }
    double seconds = cli_seconds() - start;
    if (progress) fputc('\n', stderr);

    double ppl = ppl_of(&sums), err = ppl_stderr_of(&sums), nll = sums.nll / (double)sums.count;
    double top1 = (double)sums.top1 / (double)sums.count;
    if (o.json) {
        printf("{\"ppl\": %.9g, \"ppl_stderr\": %.9g, \"nll\": %.9g, \"tokens\": %zu, \"top1\": %.9g, "
               "\"windows\": %zu, \"context\": %zu, \"mode\": \"%s\", \"seconds\": %.6f, \"text_tokens\": %zu}\n",
               ppl, isfinite(err) ? err : 0.0, nll, sums.count, top1, windows, context, cli_mode_name(o.mode), seconds, n);
    } else {
        printf("text:       %s, %zu tokens\n", o.file, n);
        printf("windows:    %zu of %zu tokens (%s), %zu token%s scored (the second half of each)\n", windows,
               context, cli_mode_name(o.mode), sums.count, sums.count == 1 ? "" : "s");
        if (isfinite(err)) printf("PPL = %.4f +/- %.5f\n", ppl, err);
        else printf("PPL = %.4f\n", ppl);
        printf("mean NLL:   %.6f nats/token\n", nll);
        printf("top-1:      %.4f (%zu of %zu)\n", top1, sums.top1, sums.count);
        printf("time:       %.2f s (%.0f tokens/s)\n", seconds, (double)windows * (double)context / seconds);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) rc = 1;

done:
    rn_session_free(session);
    free(logits);
    free(window);
    rn_model_free(model);
    rn_context_free(ctx);
    free(ids);
    return rc;
}
