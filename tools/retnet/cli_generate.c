/*
 * cli_generate.c: `retnet generate`, one prompt or an interactive conversation.
 *
 * A prompt is encoded with the model's tokenizer.json (or given as ids), prefilled in the
 * chosen form (chunkwise by default; a prompt that continues a conversation or a restored
 * state takes chunkwise for parallel, the one prompt form that starts from a state), and
 * continued token by token: sample from the session's last logits,
 * feed the token, print its text as soon as it forms whole characters. Every generated token
 * is fed, so a state saved at the end continues exactly where an uninterrupted run would.
 * Greedy decoding without a repeat penalty (--temp 0 --repeat-penalty 1) needs no logits on the
 * host: after the first token (from the prompt's logits) each step takes the argmax on the
 * device and reads back only the token (rn_session_decode_greedy), the same tokens the sampler
 * would choose.
 *
 * Ctrl-C asks the library to cancel (rn_context_cancel, from the signal handler) and stops the
 * loop here: a long prompt stops between layers, an answer between tokens.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t interrupted = 0;
static rn_context *interrupt_context;  /* set before the handler is installed */

static void on_interrupt(int signal_number) {
    (void)signal_number;
    interrupted = 1;
    if (interrupt_context) rn_context_cancel(interrupt_context, 1);
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
    bool device_greedy;       /* temperature 0 without a repeat penalty: the argmax on the device */
    double warmup_seconds, prefill_seconds, decode_seconds;
    int warmed;
    uint64_t prefill_tokens, decode_tokens;
    cli_text output;          /* this turn's text, for --stop */
} generator;

/* A failure of a call without a context (tokenizer, sampler) when `no_context`. */
static int fail(generator *g, rn_status st, int no_context, const char *what) {
    if (no_context || !g->ctx) {
        fprintf(stderr, "retnet: %s failed: %s: %s\n", what, rn_status_str(st), rn_last_error());
        return 1;
    }
    return cli_report(g->ctx, st, what);
}

/* The form of the next prompt: the chosen one, except that the parallel form starts from an
 * empty state only; a prompt continuing the session then takes the chunkwise form, which
 * continues a state at the same cost per token (the recurrent form would be slower). */
static rn_mode prompt_mode(const generator *g) {
    return rn_session_position(g->session) != 0 && g->mode == RN_MODE_PARALLEL ? RN_MODE_CHUNKWISE : g->mode;
}

static int feed_prompt(generator *g, const int32_t *ids, size_t n) {
    if (n == 0) return 0;
    if (!g->warmed) {
        /* Kernels compile on their first launch on some drivers (PoCL, CLBlast's routines): do
         * it on a scratch session and time it apart, so the rates below are the model's. A
         * prompt longer than one product of the project kernel takes the SGEMM path: warm it
         * with enough tokens for two chunks. */
        rn_model_info info;
        rn_model_info_get(g->model, &info);
        size_t chunk = g->o->chunk_size > 0 ? (size_t)g->o->chunk_size : (size_t)info.chunk_size;
        size_t warm = n <= 32 ? n : (2 * chunk + 1 < n ? 2 * chunk + 1 : n);
        rn_mode warm_mode = prompt_mode(g);
        double w0 = cli_seconds();
        rn_status st = rn_model_warmup(g->model, warm_mode == RN_MODE_RECURRENT ? 0 : warm, warm_mode);
        g->warmup_seconds = cli_seconds() - w0;
        g->warmed = 1;
        if (st == RN_ERR_CANCELLED) return 0;
        if (st != RN_OK) return fail(g, st, 0, "warming up the kernels");
    }
    rn_mode mode = prompt_mode(g);
    cli_progress bar;
    cli_progress_start(&bar, "prompt");
    rn_session_set_progress(g->session, cli_progress_update, &bar);
    double t0 = cli_seconds();
    uint64_t before = rn_session_position(g->session);
    rn_status st = rn_session_prefill(g->session, ids, n, mode, (size_t)g->o->chunk_size, NULL);
    g->prefill_seconds += cli_seconds() - t0;
    g->prefill_tokens += st == RN_OK ? n : rn_session_position(g->session) - before;
    rn_session_set_progress(g->session, NULL, NULL);
    cli_progress_end(&bar);
    if (st == RN_ERR_CANCELLED) return 0;  /* Ctrl-C: `interrupted` tells the caller */
    return st == RN_OK ? 0 : fail(g, st, 0, "the prompt");
}

/* Whether a --stop string ends within the last `fresh` bytes of the output. */
static int stop_reached(const generator *g, size_t fresh) {
    for (int i = 0; i < g->o->n_stops; i++) {
        size_t len = strlen(g->o->stops[i]);
        size_t from = g->output.len > fresh + len ? g->output.len - fresh - len : 0;
        if (strstr(g->output.s + from, g->o->stops[i])) return 1;
    }
    return 0;
}

/* Generates up to `max` tokens, printing them; stops early at the end-of-sequence token, a
 * --stop string or Ctrl-C. */
static int generate(generator *g, long max) {
    rn_detokenizer *detok = NULL;
    rn_status st = RN_OK;
    if (g->tokenizer) {
        /* The output continues the prompt: keep a leading space the decoder would strip. */
        st = rn_detokenizer_init(g->tokenizer, RN_DETOKENIZE_CONTINUE | RN_DETOKENIZE_SKIP_SPECIAL, &detok);
        if (st != RN_OK) return fail(g, st, 1, "the detokenizer");
    }
    const int32_t eos = g->tokenizer ? rn_tokenizer_eos(g->tokenizer) : -1;
    g->output.len = 0;
    int rc = 0;
    int32_t next = -1;  /* a greedy step's choice: the next token */
    double t0 = cli_seconds();
    for (long i = 0; i < max && !interrupted && rc == 0; i++) {
        int32_t recent[256], token = next;
        if (i == 0 || !g->device_greedy) {
            size_t n_recent = rn_session_recent(g->session, recent, 256);
            const float *logits = rn_session_logits(g->session);
            if (!logits) {  /* those a greedy step left on the device could not be read back */
                fprintf(stderr, "retnet: reading the logits failed: %s\n", rn_context_last_error(g->ctx));
                rc = 1;
                break;
            }
            st = rn_sampler_sample(g->sampler, logits, recent, n_recent, rn_session_position(g->session), &token);
            if (st != RN_OK) {
                rc = fail(g, st, 1, "sampling");
                break;
            }
        }
        if (token == eos) break;
        st = g->device_greedy ? rn_session_decode_greedy(g->session, 1, &token, &next)
                              : rn_session_decode(g->session, token, NULL);
        if (st == RN_ERR_CANCELLED) break;  /* Ctrl-C between the check above and the step */
        if (st != RN_OK) {
            rc = fail(g, st, 0, "decoding");
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
        st = rn_detokenizer_push(detok, token, &bytes, &len);
        if (st != RN_OK) {
            rc = fail(g, st, 1, "detokenizing");
            break;
        }
        fwrite(bytes, 1, len, stdout);
        fflush(stdout);
        if (cli_text_append(&g->output, bytes, len)) {
            fprintf(stderr, "retnet: no memory to keep the output for --stop\n");
            rc = 1;
        }
        if (g->o->n_stops && stop_reached(g, len)) break;
    }
    g->decode_seconds += cli_seconds() - t0;
    if (detok) {
        const char *bytes;
        size_t len;
        if (rn_detokenizer_flush(detok, &bytes, &len) == RN_OK) fwrite(bytes, 1, len, stdout);
        rn_detokenizer_free(detok);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return rc;
}

/* Encodes text (a BOS only at the start of a session) or parses ids, then feeds them. */
static int feed_text(generator *g, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    int first = rn_session_position(g->session) == 0;
    rn_status st = rn_tokenizer_encode(g->tokenizer, text, len, first, &ids, &n);
    if (st != RN_OK) return fail(g, st, 1, "tokenizing the prompt");
    int rc = feed_prompt(g, ids, n);
    rn_free(ids);
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
        rn_context_cancel(g->ctx, 0);
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

/* Whether the folder --state-save writes into exists and takes files: checked before any work,
 * so that a long generation is not lost to a typo at the end. */
static int check_save_target(const char *path) {
    char *dir = strdup(path);
    if (!dir) return 1;
    char *slash = strrchr(dir, '/');
    const char *folder = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    int ok = access(folder, W_OK | X_OK) == 0;
    if (!ok) fprintf(stderr, "retnet: --state-save '%s': cannot write into '%s': %s\n", path, folder, strerror(errno));
    free(dir);
    return ok ? 0 : 1;
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
    g->device_greedy = rn_sampling_is_argmax(&sampling);
    if (o->state_save && check_save_target(o->state_save)) return 1;
    /* Text in and out needs the model's tokenizer.json; token ids need nothing. A resumed
     * state without a prompt prints text when the model has a tokenizer, ids otherwise. */
    if (!o->model) return cli_usage_error("--model DIR is required%s", "");
    bool text_prompt = o->prompt || o->prompt_file || o->interactive || (!o->tokens && !o->state_load);
    size_t path_len = strlen(o->model) + sizeof "/tokenizer.json";
    char *tokenizer_path = malloc(path_len);
    if (tokenizer_path) snprintf(tokenizer_path, path_len, "%s/tokenizer.json", o->model);
    bool have_tokenizer = tokenizer_path && access(tokenizer_path, F_OK) == 0;
    free(tokenizer_path);
    int rc = cli_open_model(o, &g->ctx, &g->model);
    if (rc) return rc;
    rn_status st;
    if (!o->tokens && (have_tokenizer || text_prompt)) {
        st = rn_tokenizer_load(o->model, &g->tokenizer);
        if (st != RN_OK) return fail(g, st, 1, "loading the tokenizer (or pass --tokens IDS)");
    }
    rn_model_info info;
    rn_model_info_get(g->model, &info);
    g->vocab = (size_t)info.vocab_size;
    st = rn_sampler_init(&sampling, g->vocab, &g->sampler);
    if (st != RN_OK) return fail(g, st, 1, "the sampler");
    st = rn_session_init(g->model, &g->session);
    if (st == RN_OK && o->state_load) st = rn_session_load(g->session, o->state_load);
    if (st != RN_OK) return cli_report(g->ctx, st, o->state_load ? "loading the state" : "creating a session");
    return 0;
}

static void close_generator(generator *g) {
    interrupt_context = NULL;
    free(g->output.s);
    rn_sampler_free(g->sampler);
    rn_tokenizer_free(g->tokenizer);
    rn_session_free(g->session);
    rn_model_free(g->model);
    rn_context_free(g->ctx);
    memset(g, 0, sizeof *g);
}

int cmd_generate(const options *o) {
    if (!!o->prompt + !!o->prompt_file + !!o->tokens > 1)
        return cli_usage_error("give one prompt: -p, -f or --tokens%s", "");
    if (o->interactive && (o->prompt_file || o->tokens))
        return cli_usage_error("-i reads its turns from standard input%s", "");
    int32_t *token_ids = NULL;
    size_t n_tokens = 0;
    if (o->tokens && !cli_parse_tokens(o->tokens, &token_ids, &n_tokens))
        return cli_usage_error("--tokens must be comma-separated non-negative ids, not '%s'", o->tokens);
    generator g;
    int rc = open_generator(o, &g);
    if (rc) {
        free(token_ids);
        close_generator(&g);
        return rc;
    }
    long max = o->n_generate >= 0 ? o->n_generate : o->tokens ? 16 : 128;
    interrupt_context = g.ctx;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_interrupt;  /* no SA_RESTART: Ctrl-C interrupts a waiting read */
    sigaction(SIGINT, &action, NULL);
    fprintf(stderr, "retnet: %s on %s\n", o->model, rn_context_device(g.ctx)->name);

    if (o->tokens) {
        rc = feed_prompt(&g, token_ids, n_tokens);
    } else if (o->prompt) {
        rc = feed_text(&g, o->prompt, strlen(o->prompt));
    } else if (o->prompt_file || (!o->interactive && !o->state_load)) {
        if (!o->prompt_file && isatty(STDIN_FILENO))
            fputs("retnet: reading the prompt from standard input; end it with Ctrl-D\n", stderr);
        char *text;
        size_t len;
        rc = cli_read_text(o->prompt_file ? o->prompt_file : "-", &text, &len);
        if (rc == 0) {
            rc = feed_text(&g, text, len);
            free(text);
        }
    }
    free(token_ids);
    if (rc == 0 && interrupted && !o->interactive) {
        fprintf(stderr, "retnet: stopped by Ctrl-C in the prompt\n");
        close_generator(&g);
        return 130;
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
        fprintf(stderr, "retnet: kernel warm-up %.2f s; prefill %llu tokens, %.1f tokens/s; decode %llu tokens, %.1f tokens/s\n",
                g.warmup_seconds, (unsigned long long)g.prefill_tokens, g.prefill_seconds > 0 ? g.prefill_tokens / g.prefill_seconds : 0.0,
                (unsigned long long)g.decode_tokens, g.decode_seconds > 0 ? g.decode_tokens / g.decode_seconds : 0.0);
    close_generator(&g);
    return rc;
}
