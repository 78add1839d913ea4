/*
 * cli_generate.c: `retnet generate`, one prompt or an interactive conversation.
 *
 * A prompt is encoded with the model's tokenizer.json (or given as ids), prefilled in the
 * chunkwise form when the session is empty (recurrently when it continues a conversation or
 * a restored state), and continued token by token: sample from the session's last logits,
 * feed the token, print its text as soon as it forms whole characters. Every generated token
 * is fed, so a state saved at the end continues exactly where an uninterrupted run would.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "rn_common.h"
#include "sampler.h"
#include "tokenizer.h"

static volatile sig_atomic_t interrupted = 0;

static void on_interrupt(int signal_number) {
    (void)signal_number;
    interrupted = 1;
}

typedef struct generator {
    const options *o;
    rn_context *ctx;
    rn_model *model;
    rn_session *session;
    rn_tokenizer *tokenizer;  /* NULL when prompts and output are token ids */
    rn_sampler *sampler;
    size_t vocab;
    rn_mode mode;
    double prefill_seconds, decode_seconds;
    uint64_t prefill_tokens, decode_tokens;
    char *output;             /* this turn's text, for --stop */
    size_t output_len, output_cap;
} generator;

static int fail(generator *g, rn_status st, const rn_error *err, const char *what) {
    if (err) {
        fprintf(stderr, "retnet: %s failed: %s: %s\n", what, rn_status_str(st), err->message);
        return 1;
    }
    return cli_report(g->ctx, st, what);
}

static int feed_prompt(generator *g, const int32_t *ids, size_t n) {
    if (n == 0) return 0;
    /* The parallel and chunkwise forms start from an empty state. */
    rn_mode mode = rn_session_position(g->session) == 0 ? g->mode : RN_MODE_RECURRENT;
    double t0 = cli_seconds();
    rn_status st = rn_session_prefill(g->session, ids, n, mode, (size_t)g->o->chunk_size, NULL);
    g->prefill_seconds += cli_seconds() - t0;
    g->prefill_tokens += n;
    return st == RN_OK ? 0 : fail(g, st, NULL, "the prompt");
}

static int append_output(generator *g, const char *bytes, size_t len) {
    if (g->output_len + len + 1 > g->output_cap) {
        size_t cap = (g->output_len + len + 1) * 2;
        char *grown = realloc(g->output, cap);
        if (!grown) return 1;
        g->output = grown;
        g->output_cap = cap;
    }
    memcpy(g->output + g->output_len, bytes, len);
    g->output_len += len;
    g->output[g->output_len] = '\0';
    return 0;
}

/* Whether a --stop string ends within the last `fresh` bytes of the output. */
static int stop_reached(const generator *g, size_t fresh) {
    for (int i = 0; i < g->o->n_stops; i++) {
        size_t len = strlen(g->o->stops[i]);
        size_t from = g->output_len > fresh + len ? g->output_len - fresh - len : 0;
        if (strstr(g->output + from, g->o->stops[i])) return 1;
    }
    return 0;
}

/* Generates up to `max` tokens, printing them; stops early at the end-of-sequence token, a
 * --stop string or Ctrl-C. */
static int generate(generator *g, long max) {
    rn_error err = {{0}};
    rn_detok *detok = NULL;
    rn_status st = RN_OK;
    if (g->tokenizer) {
        /* The output continues the prompt: keep a leading space the decoder would strip. */
        st = rn_detok_init(g->tokenizer, RN_DETOK_CONTINUE | RN_DETOK_SKIP_SPECIAL, &detok, &err);
        if (st != RN_OK) return fail(g, st, &err, "the detokenizer");
    }
    const int32_t eos = g->tokenizer ? rn_tokenizer_eos(g->tokenizer) : -1;
    g->output_len = 0;
    int rc = 0;
    double t0 = cli_seconds();
    for (long i = 0; i < max && !interrupted && rc == 0; i++) {
        int32_t recent[256], token;
        size_t n_recent = rn_session_recent(g->session, recent, 256);
        st = rn_sampler_sample(g->sampler, rn_session_logits(g->session), recent, n_recent,
                               rn_session_position(g->session), &token, &err);
        if (st != RN_OK) {
            rc = fail(g, st, &err, "sampling");
            break;
        }
        if (token == eos) break;
        st = rn_session_decode(g->session, token, NULL);
        if (st != RN_OK) {
            rc = fail(g, st, NULL, "decoding");
            break;
        }
        g->decode_tokens++;
        if (!detok) {
            printf(i ? ",%d" : "%d", token);
            fflush(stdout);
            continue;
        }
        const char *bytes;
        size_t len;
        st = rn_detok_push(detok, token, &bytes, &len, &err);
        if (st != RN_OK) {
            rc = fail(g, st, &err, "detokenizing");
            break;
        }
        fwrite(bytes, 1, len, stdout);
        fflush(stdout);
        if (append_output(g, bytes, len)) rc = fail(g, RN_ERR_OUT_OF_HOST_MEMORY, &err, "keeping the output");
        if (g->o->n_stops && stop_reached(g, len)) break;
    }
    g->decode_seconds += cli_seconds() - t0;
    if (detok) {
        const char *bytes;
        size_t len;
        if (rn_detok_flush(detok, &bytes, &len, &err) == RN_OK) fwrite(bytes, 1, len, stdout);
        rn_detok_free(detok);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return rc;
}

/* Encodes text (a BOS only at the start of a session) or parses ids, then feeds them. */
static int feed_text(generator *g, const char *text, size_t len) {
    rn_error err = {{0}};
    int32_t *ids = NULL;
    size_t n = 0;
    bool first = rn_session_position(g->session) == 0;
    rn_status st = rn_tokenizer_encode(g->tokenizer, text, len, first, &ids, &n, &err);
    if (st != RN_OK) return fail(g, st, &err, "tokenizing the prompt");
    int rc = feed_prompt(g, ids, n);
    free(ids);
    return rc;
}

static int interactive(generator *g, long max) {
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        fputs("> ", stderr);
        fflush(stderr);
        interrupted = 0;
        errno = 0;
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) break;  /* end of input, or Ctrl-C while waiting: the session ends */
        rc = feed_text(g, line, (size_t)got);
        if (rc == 0) rc = generate(g, max);
        if (rc) break;
        if (interrupted) fputs("[stopped]\n", stderr);
    }
    free(line);
    fputc('\n', stderr);
    return rc;
}

static int open_generator(const options *o, generator *g) {
    memset(g, 0, sizeof *g);
    g->o = o;
    g->mode = RN_MODE_CHUNKWISE;
    if (o->mode && !cli_parse_mode(o->mode, &g->mode))
        return cli_usage_error("--mode must be parallel, chunkwise or recurrent, not '%s'", o->mode);
    rn_sampling sampling;
    rn_sampling_default(&sampling);
    sampling.temperature = (float)o->temperature;
    sampling.top_k = (int32_t)o->top_k;
    sampling.top_p = (float)o->top_p;
    sampling.min_p = (float)o->min_p;
    sampling.repeat_penalty = (float)o->repeat_penalty;
    sampling.repeat_last_n = (int32_t)o->repeat_last_n;
    sampling.seed = o->seed;
    rn_error err = {{0}};
    rn_status st = rn_sampling_check(&sampling, &err);
    if (st != RN_OK) return cli_usage_error("%s", err.message);
    int rc = cli_open_model(o, &g->ctx, &g->model);
    if (rc) return rc;
    rn_model_info info;
    rn_model_info_get(g->model, &info);
    g->vocab = (size_t)info.vocab_size;
    /* Text in and out needs the model's tokenizer.json; token ids need nothing. A resumed
     * state without a prompt prints text when the model has a tokenizer, ids otherwise. */
    bool text_prompt = o->prompt || o->prompt_file || o->interactive || (!o->tokens && !o->state_load);
    char *tokenizer_path = rn_path_join(o->model, "tokenizer.json");
    bool have_tokenizer = tokenizer_path && access(tokenizer_path, F_OK) == 0;
    free(tokenizer_path);
    if (!o->tokens && (have_tokenizer || text_prompt)) {
        st = rn_tokenizer_load(o->model, &g->tokenizer, &err);
        if (st != RN_OK) return fail(g, st, &err, "loading the tokenizer (or pass --tokens IDS)");
    }
    st = rn_sampler_init(&sampling, g->vocab, &g->sampler, &err);
    if (st != RN_OK) return fail(g, st, &err, "the sampler");
    st = rn_session_init(g->model, &g->session);
    if (st == RN_OK && o->state_load) st = rn_session_load(g->session, o->state_load);
    if (st != RN_OK) return cli_report(g->ctx, st, o->state_load ? "loading the state" : "creating a session");
    return 0;
}

static void close_generator(generator *g) {
    free(g->output);
    rn_sampler_free(g->sampler);
    rn_tokenizer_free(g->tokenizer);
    rn_session_free(g->session);
    rn_model_free(g->model);
    rn_context_free(g->ctx);
}

int cmd_generate(const options *o) {
    if (!!o->prompt + !!o->prompt_file + !!o->tokens > 1)
        return cli_usage_error("give one prompt: -p, -f or --tokens%s", "");
    if (o->interactive && (o->prompt_file || o->tokens))
        return cli_usage_error("-i reads its turns from standard input%s", "");
    generator g;
    int rc = open_generator(o, &g);
    if (rc) {
        close_generator(&g);
        return rc;
    }
    long max = o->n_generate >= 0 ? o->n_generate : o->tokens ? 16 : 128;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_interrupt;  /* no SA_RESTART: Ctrl-C interrupts a waiting read */
    sigaction(SIGINT, &action, NULL);
    fprintf(stderr, "retnet: %s on %s\n", o->model, rn_context_device(g.ctx)->name);

    if (o->tokens) {
        int32_t *ids;
        size_t n;
        if (!cli_parse_tokens(o->tokens, &ids, &n)) {
            rc = cli_usage_error("--tokens must be comma-separated non-negative ids, not '%s'", o->tokens);
        } else {
            rc = feed_prompt(&g, ids, n);
            free(ids);
        }
    } else if (o->prompt) {
        rc = feed_text(&g, o->prompt, strlen(o->prompt));
    } else if (o->prompt_file || (!o->interactive && !o->state_load)) {
        char *text;
        size_t len;
        rc = cli_read_text(o->prompt_file ? o->prompt_file : "-", &text, &len);
        if (rc == 0) {
            rc = feed_text(&g, text, len);
            free(text);
        }
    }
    if (rc == 0 && rn_session_position(g.session) == 0 && !o->interactive)
        rc = cli_usage_error("the prompt is empty%s", "");
    if (rc == 0 && rn_session_position(g.session) > 0) rc = generate(&g, max);
    if (rc == 0 && o->interactive) rc = interactive(&g, max);
    if (rc == 0 && interrupted && !o->interactive) fputs("retnet: stopped by Ctrl-C\n", stderr);
    if (rc == 0 && o->state_save) {
        rn_status st = rn_session_save(g.session, o->state_save);
        if (st != RN_OK) rc = cli_report(g.ctx, st, "saving the state");
    }
    if (rc == 0)
        fprintf(stderr, "retnet: prefill %llu tokens, %.1f tokens/s; decode %llu tokens, %.1f tokens/s\n",
                (unsigned long long)g.prefill_tokens, g.prefill_seconds > 0 ? g.prefill_tokens / g.prefill_seconds : 0.0,
                (unsigned long long)g.decode_tokens, g.decode_seconds > 0 ? g.decode_tokens / g.decode_seconds : 0.0);
    close_generator(&g);
    return rc;
}
