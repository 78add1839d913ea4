/* serve_scheduler.c: continuous batching on one device.
 *
 * One thread owns the device. It keeps a batch session (rn_session_init_batch, --parallel rows)
 * whose first `n_rows` rows are the sequences being decoded, each at its own position, and
 * loops:
 *   1. take queued jobs while rows are free: resolve the conversation (serve_sessions), tokenize
 *      the prompt;
 *   2. prefill up to --prefill-piece tokens of the waiting prompts (short ones whole, a long one
 *      in pieces of whole chunks, in the chunkwise form from the conversation's state), so that
 *      a long prompt arriving costs the running streams one piece's time per step, not the
 *      whole prompt; a finished prompt's session is copied into the next free row;
 *   3. sample every row's next token from its logits (each job's own sampler, as `retnet
 *      generate` samples: the same seed gives the same tokens), step rows [0, n_rows) together
 *      (rn_session_decode_rows), append the text, and retire rows that end: a conversation's
 *      row is copied out and committed, and the last row moves into the hole. While every
 *      row is greedy (temperature 0, no repeat penalty) the step is rn_session_decode_greedy:
 *      the argmax on the device, the same token the sampler would choose, and no logits read
 *      back (at batch 32 of a 1.3B model the logits are 8 MB a step).
 * Tokens are sampled and fed exactly as `retnet generate` does: the end-of-sequence token ends
 * the answer unfed; every other token is fed, also the last one, so a conversation's state
 * holds its whole history. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

typedef struct row {
    serve_job *job;
    rn_session *session;       /* the conversation's working copy (prefill, and after the row) */
    rn_sampler *sampler;
    rn_detokenizer *detok;
    int32_t recent[256];
    size_t n_recent;
    uint64_t position;
    size_t prefilled;          /* prompt tokens fed so far */
    size_t search_from;        /* where stop strings are looked for (after an echoed prompt) */
    int32_t next_token;        /* sampled for the coming step */
    bool device_greedy;        /* the sampler is the argmax: a greedy step can choose for it */
    bool next_known;           /* next_token came from the last (greedy) step: nothing to sample */
    rn_status sampled;         /* RN_OK, or why not (RN_ERR_CANCELLED: the client went away) */
} row;

/* A conversation whose answer ended, on its way to its file (commit_thread). */
typedef struct commit {
    serve_job *job;
    rn_session *session;
    const char *reason;
    struct commit *next;
} commit;

struct serve_scheduler {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    serve_job *head, *tail;    /* the queue, under `lock` */
    int queued, draining, started;

    rn_model *model;
    const rn_tokenizer *tokenizer;
    serve_sessions *sessions;
    serve_limits limits;
    serve_metrics *metrics;
    size_t vocab, piece, chunk;
    int32_t eos;
    rn_session *batch;
    row *rows;                 /* [parallel]: decoding rows first, then prompts being fed */
    int n_rows, n_waiting;     /* decoding rows; prompts after them */
    int32_t *step_tokens;
    int32_t *greedy_next;      /* a greedy step's choices, by row */
    const float *logits;       /* the batch's logits while a round of sampling reads them */
    double rate_tokens, rate_start;
    rn_session **spare;        /* sessions of finished requests, for new ones (up to --parallel) */
    int n_spare;

    /* Conversations are saved by their own thread: a large state's file takes far longer than
     * a decoding step, and the batch does not wait for it (the request does). */
    pthread_t committer;
    pthread_mutex_t commit_lock;
    pthread_cond_t commit_ready;
    commit *commits, *commits_tail;
    int commit_stop, committer_started;

    /* Sampling is host work per row (a top-k over the vocabulary): helpers share it. */
    pthread_t *samplers;
    int n_samplers, sample_stop;
    pthread_mutex_t sample_lock;
    pthread_cond_t sample_go, sample_done;
    unsigned sample_round;
    int sample_busy;
    atomic_int sample_next;
};

uint64_t serve_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- a job's output ----------------------------------------------------------------------- */

/* Cuts the text where the earliest stop string after `from` begins; returns 1 when one was found. Otherwise
 * marks releasable what no stop string can still claim: all but the longest stop's length - 1
 * bytes, backed off to a UTF-8 boundary. */
static int find_stop(serve_job *job, size_t from) {
    if (!job->text.s) return 0;  /* nothing appended yet (a token that ended mid-character) */
    const char *first = NULL;
    size_t longest = 0;
    for (int i = 0; i < job->req.n_stops; i++) {
        const char *hit = strstr(job->text.s + from, job->req.stops[i]);
        if (hit && (!first || hit < first)) first = hit;
        size_t n = strlen(job->req.stops[i]);
        if (n > longest) longest = n;
    }
    if (first) {
        job->text.len = (size_t)(first - job->text.s);
        job->text.s[job->text.len] = '\0';
        job->releasable = job->text.len;
        return 1;
    }
    size_t keep = longest ? longest - 1 : 0;
    size_t r = job->text.len > from + keep ? job->text.len - keep : from;
    while (r > from && r < job->text.len && ((unsigned char)job->text.s[r] & 0xC0) == 0x80) r--;
    if (r > job->releasable) job->releasable = r;
    return 0;
}

static void finish_job(serve_job *job, const char *reason, int status, const char *error) {
    pthread_mutex_lock(&job->lock);
    job->releasable = job->text.len;
    job->finish_reason = reason;
    job->error_status = status;
    if (error) snprintf(job->error, sizeof job->error, "%s", error);
    job->done = 1;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->lock);
}

/* ---- rows --------------------------------------------------------------------------------- */

static void row_clear(serve_scheduler *s, row *r) {
    rn_sampler_free(r->sampler);
    rn_detokenizer_free(r->detok);
    if (r->session && s->n_spare < s->limits.parallel) s->spare[s->n_spare++] = r->session;
    else rn_session_free(r->session);
    if (r->job) {
        if (r->job->req.session[0]) serve_sessions_unlock(s->sessions, r->job->req.session, r->job->session_lock_fd);
        r->job->session_lock_fd = -1;
        serve_job_release(r->job);
    }
    memset(r, 0, sizeof *r);
}

/* Ends a job that failed or was abandoned: its conversation keeps the state it had before. */
static void fail_row(serve_scheduler *s, row *r, int status, const char *error) {
    if (r->job) {
        finish_job(r->job, NULL, status, error);
        atomic_fetch_add(&s->metrics->errors, 1);
    }
    row_clear(s, r);
}

/* Ends a job that ran to its end: flushes the text and commits the conversation. `in_batch`:
 * the row's state is in batch row `index` (else in r->session). */
static void complete_row(serve_scheduler *s, row *r, int in_batch, int index, const char *reason) {
    serve_job *job = r->job;
    const char *bytes;
    size_t len;
    pthread_mutex_lock(&job->lock);
    if (r->detok && rn_detokenizer_flush(r->detok, &bytes, &len) == RN_OK && !cli_text_append(&job->text, bytes, len))
        find_stop(job, r->search_from);
    pthread_mutex_unlock(&job->lock);

    if (job->decode_start_ns) job->decode_ns = serve_now_ns() - job->decode_start_ns;
    if (!job->req.session[0]) {
        finish_job(job, reason, 0, NULL);
        row_clear(s, r);
        return;
    }
    rn_status st = in_batch ? rn_session_copy_row(r->session, 0, s->batch, (size_t)index) : RN_OK;
    commit *c = st == RN_OK ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        char err[512];
        snprintf(err, sizeof err, "copying the session out of the batch: %s", rn_status_str(st));
        return fail_row(s, r, 500, err);
    }
    /* The job, its session lock and the state go to the committer. */
    c->job = job;
    c->session = r->session;
    c->reason = reason;
    r->job = NULL;
    r->session = NULL;
    row_clear(s, r);
    pthread_mutex_lock(&s->commit_lock);
    if (s->commits_tail) s->commits_tail->next = c;
    else s->commits = c;
    s->commits_tail = c;
    pthread_cond_signal(&s->commit_ready);
    pthread_mutex_unlock(&s->commit_lock);
}

/* Saves each finished conversation (its file first, with a state directory), then completes its
 * request and lets the next request on that session in. */
static void *commit_thread(void *arg) {
    serve_scheduler *s = arg;
    pthread_mutex_lock(&s->commit_lock);
    for (;;) {
        while (!s->commits && !s->commit_stop) pthread_cond_wait(&s->commit_ready, &s->commit_lock);
        commit *c = s->commits;
        if (!c) break;
        s->commits = c->next;
        if (!s->commits) s->commits_tail = NULL;
        pthread_mutex_unlock(&s->commit_lock);

        serve_job *job = c->job;
        char err[512];
        uint64_t t0 = serve_now_ns();
        int status = serve_sessions_commit(s->sessions, job->req.session, c->session, err, sizeof err);
        job->save_ns = serve_now_ns() - t0;
        finish_job(job, status ? NULL : c->reason, status, status ? err : NULL);
        if (status) atomic_fetch_add(&s->metrics->errors, 1);
        serve_sessions_unlock(s->sessions, job->req.session, job->session_lock_fd);
        job->session_lock_fd = -1;
        serve_job_release(job);
        free(c);
        pthread_mutex_lock(&s->commit_lock);
    }
    pthread_mutex_unlock(&s->commit_lock);
    return NULL;
}

/* Prompts being fed sit after the decoding rows, in arrival order: moves them `by` slots down
 * so that they start at `to`. */
static void close_gap(serve_scheduler *s, int to, int by) {
    memmove(&s->rows[to], &s->rows[to + by], (size_t)s->n_waiting * sizeof(row));
    memset(&s->rows[to + s->n_waiting], 0, (size_t)by * sizeof(row));
}

/* Removes decoding row i: the last decoding row moves into its place (its state and logits by
 * rn_session_copy_row), with the token it was just given. */
static void remove_row(serve_scheduler *s, int i) {
    int last = s->n_rows - 1;
    if (i != last) {
        rn_status st = rn_session_copy_row(s->batch, (size_t)i, s->batch, (size_t)last);
        if (st != RN_OK) {
            /* The batch cannot be trusted: end every sequence in it. */
            for (int j = 0; j < s->n_rows; j++)
                if (j != i) fail_row(s, &s->rows[j], 500, "the device failed while reordering the batch");
            int n = s->n_rows;
            s->n_rows = 0;
            close_gap(s, 0, n);
            return;
        }
        s->rows[i] = s->rows[last];
        s->step_tokens[i] = s->step_tokens[last];
    }
    s->n_rows--;
    close_gap(s, last, 1);
}

/* ---- taking jobs -------------------------------------------------------------------------- */

/* Resolves a new job's conversation and prompt into row r. Returns 0 or fails the row. */
static int admit(serve_scheduler *s, row *r) {
    serve_job *job = r->job;
    char err[512];
    job->admitted_ns = serve_now_ns();
    if (job->req.session[0]) {
        int status = serve_sessions_checkout(s->sessions, job->req.session, &r->session, err, sizeof err);
        if (status) return fail_row(s, r, status, err), 1;
    } else if (s->n_spare) {
        /* A session of an earlier request, emptied: no device memory to allocate. */
        r->session = s->spare[--s->n_spare];
        if (rn_session_reset(r->session) != RN_OK) return fail_row(s, r, 500, "resetting a session failed"), 1;
    } else if (rn_session_init(s->model, &r->session) != RN_OK) {
        return fail_row(s, r, 500, "no device memory for a new session"), 1;
    }
    job->resume_ns = serve_now_ns() - job->admitted_ns;
    r->position = rn_session_position(r->session);
    const serve_request *q = &job->req;
    rn_status st = RN_OK;
    if (q->has_prompt_ids) {
        job->n_prompt = q->n_prompt_ids;
        job->prompt = malloc((q->n_prompt_ids + 1) * sizeof *job->prompt);
        if (job->prompt) memcpy(job->prompt, q->prompt_ids, q->n_prompt_ids * sizeof *job->prompt);
        else st = RN_ERR_OUT_OF_HOST_MEMORY;
        for (size_t i = 0; st == RN_OK && i < job->n_prompt; i++)
            if (job->prompt[i] < 0 || (size_t)job->prompt[i] >= s->vocab) {
                snprintf(err, sizeof err, "'prompt'[%zu] = %d is outside the vocabulary [0, %zu)", i,
                         job->prompt[i], s->vocab);
                return fail_row(s, r, 400, err), 1;
            }
    } else if (s->tokenizer) {
        /* A BOS only where the conversation starts, as `retnet generate` does. */
        st = rn_tokenizer_encode(s->tokenizer, q->prompt, strlen(q->prompt), r->position == 0, &job->prompt,
                                 &job->n_prompt);
    } else {
        return fail_row(s, r, 400, "the model has no tokenizer.json: send the prompt as token ids"), 1;
    }
    if (st != RN_OK) {
        snprintf(err, sizeof err, "tokenizing the prompt: %s: %s", rn_status_str(st), rn_last_error());
        return fail_row(s, r, 400, err), 1;
    }
    if (job->n_prompt > s->limits.max_prompt) {
        snprintf(err, sizeof err, "the prompt has %zu tokens, over the limit of %zu (--max-prompt-tokens)",
                 job->n_prompt, s->limits.max_prompt);
        return fail_row(s, r, 400, err), 1;
    }
    if (job->n_prompt == 0 && r->position == 0)
        return fail_row(s, r, 400, "the prompt is empty and the session holds no tokens: nothing to continue"), 1;
    atomic_fetch_add(&s->metrics->prompt_tokens, job->n_prompt);

    if (q->echo) {
        pthread_mutex_lock(&job->lock);
        if (!q->has_prompt_ids) {
            cli_text_append(&job->text, q->prompt, strlen(q->prompt));
        } else if (s->tokenizer) {
            char *text = NULL;
            size_t len = 0;
            if (rn_tokenizer_decode(s->tokenizer, job->prompt, job->n_prompt, 1, &text, &len) == RN_OK)
                cli_text_append(&job->text, text, len);
            rn_free(text);
        }
        r->search_from = job->text.len;
        job->releasable = job->text.len;
        pthread_mutex_unlock(&job->lock);
    }
    return 0;
}

/* The prompt is in r->session: set up sampling and move it into the next decoding row. */
static int start_decoding(serve_scheduler *s, row *r, int index) {
    char err[512];
    rn_status st = rn_sampler_init(&r->job->req.sampling, s->vocab, &r->sampler);
    r->device_greedy = rn_sampling_is_argmax(&r->job->req.sampling);
    if (st == RN_OK && s->tokenizer)
        st = rn_detokenizer_init(s->tokenizer, RN_DETOKENIZE_CONTINUE | RN_DETOKENIZE_SKIP_SPECIAL, &r->detok);
    if (st != RN_OK) {
        snprintf(err, sizeof err, "sampling settings: %s", rn_last_error());
        return fail_row(s, r, 400, err), 1;
    }
    r->n_recent = rn_session_recent(r->session, r->recent, 256);
    r->position = rn_session_position(r->session);
    if (r->job->req.max_tokens == 0) {
        complete_row(s, r, 0, index, "length");
        return 1;
    }
    st = rn_session_copy_row(s->batch, (size_t)index, r->session, 0);
    if (st != RN_OK) return fail_row(s, r, 500, "copying the session into the batch failed"), 1;
    r->job->decode_start_ns = serve_now_ns();
    return 0;
}

/* Feeds one piece of the first waiting prompt; when it is whole, the row starts decoding. */
static size_t prefill_piece(serve_scheduler *s, size_t budget) {
    int index = s->n_rows;
    row *r = &s->rows[index];
    serve_job *job = r->job;
    size_t n = 0;
    if (atomic_load(&job->abandoned)) {
        fail_row(s, r, 499, "the client went away");
    } else {
        /* The rest of the prompt when it fits the budget, else whole chunks of it. */
        n = job->n_prompt - r->prefilled;
        if (n > budget) n = budget / s->chunk * s->chunk;
        if (n == 0 && job->n_prompt > r->prefilled) return 0;
        uint64_t t0 = serve_now_ns();
        rn_status st = n ? rn_session_prefill(r->session, job->prompt + r->prefilled, n, RN_MODE_CHUNKWISE, 0, NULL)
                         : RN_OK;
        job->prefill_ns += serve_now_ns() - t0;
        if (st != RN_OK) {
            char err[512];
            snprintf(err, sizeof err, "the prompt: %s: %s", rn_status_str(st), rn_last_error());
            fail_row(s, r, 500, err);
        } else if ((r->prefilled += n) < job->n_prompt) {
            return n;  /* more pieces next time round */
        } else if (start_decoding(s, r, index) == 0) {
            s->n_rows++;
            s->n_waiting--;
            return n;
        }
    }
    /* The row was retired: the waiting prompts move up. */
    s->n_waiting--;
    close_gap(s, index, 1);
    return n;
}

/* Up to --prefill-piece prompt tokens between two steps: a long prompt's next piece, or several
 * short prompts whole, so that a wave of new requests starts together instead of one a step. */
static void prefill_some(serve_scheduler *s) {
    size_t budget = s->piece;
    while (s->n_waiting && budget) {
        int before = s->n_waiting;
        size_t fed = prefill_piece(s, budget);
        if (fed == 0 && s->n_waiting == before) break;  /* the next prompt wants a whole chunk */
        budget -= fed < budget ? fed : budget;
        if (s->n_waiting == before) break;              /* a long prompt took the budget */
    }
}

/* ---- one decoding step -------------------------------------------------------------------- */

/* Samples rows from the shared counter until none is left; every row is its own sampler. */
static void sample_rows(serve_scheduler *s) {
    for (int i; (i = atomic_fetch_add(&s->sample_next, 1)) < s->n_rows;) {
        row *r = &s->rows[i];
        if (atomic_load(&r->job->abandoned)) r->sampled = RN_ERR_CANCELLED;
        else if (r->next_known) r->sampled = RN_OK;
        else if (!s->logits) r->sampled = RN_ERR_OPENCL;  /* rn_session_logits could not read them back */
        else
            r->sampled = rn_sampler_sample(r->sampler, s->logits + (size_t)i * s->vocab, r->recent, r->n_recent,
                                           r->position, &r->next_token);
    }
}

static void *sampler_thread(void *arg) {
    serve_scheduler *s = arg;
    unsigned seen = 0;
    pthread_mutex_lock(&s->sample_lock);
    for (;;) {
        while (s->sample_round == seen && !s->sample_stop) pthread_cond_wait(&s->sample_go, &s->sample_lock);
        if (s->sample_stop) break;
        seen = s->sample_round;
        pthread_mutex_unlock(&s->sample_lock);
        sample_rows(s);
        pthread_mutex_lock(&s->sample_lock);
        if (--s->sample_busy == 0) pthread_cond_signal(&s->sample_done);
    }
    pthread_mutex_unlock(&s->sample_lock);
    return NULL;
}

/* Every decoding row's next token, the helpers and this thread together. */
static void sample_all(serve_scheduler *s) {
    atomic_store(&s->sample_next, 0);
    /* Once, here: rows a greedy step left on the device are read back by this call. */
    s->logits = NULL;
    for (int i = 0; i < s->n_rows && !s->logits; i++)
        if (!s->rows[i].next_known) s->logits = rn_session_logits(s->batch);
    if (s->n_samplers == 0 || s->n_rows < 4) {
        sample_rows(s);
        return;
    }
    pthread_mutex_lock(&s->sample_lock);
    s->sample_busy = s->n_samplers;
    s->sample_round++;
    pthread_cond_broadcast(&s->sample_go);
    pthread_mutex_unlock(&s->sample_lock);
    sample_rows(s);
    pthread_mutex_lock(&s->sample_lock);
    while (s->sample_busy) pthread_cond_wait(&s->sample_done, &s->sample_lock);
    pthread_mutex_unlock(&s->sample_lock);
}

static void decode_step(serve_scheduler *s) {
    /* Sample each row's token; rows that end here (end of sequence, gone client) leave first. */
    uint64_t t0 = serve_now_ns();
    sample_all(s);
    uint64_t t1 = serve_now_ns();
    atomic_fetch_add(&s->metrics->sample_ns, t1 - t0);
    for (int i = 0; i < s->n_rows;) {
        row *r = &s->rows[i];
        int32_t token = r->next_token;
        rn_status st = r->sampled;
        if (st == RN_OK && token != s->eos) {
            s->step_tokens[i++] = token;
            continue;
        }
        if (st == RN_OK) complete_row(s, r, 1, i, "stop");
        else fail_row(s, r, st == RN_ERR_CANCELLED ? 499 : 500, st == RN_ERR_CANCELLED ? "the client went away"
                                                                                      : "sampling failed");
        remove_row(s, i);
    }
    if (s->n_rows == 0) return;

    t1 = serve_now_ns();
    bool greedy = true;
    for (int i = 0; i < s->n_rows; i++) greedy = greedy && s->rows[i].device_greedy;
    rn_status st = greedy ? rn_session_decode_greedy(s->batch, (size_t)s->n_rows, s->step_tokens, s->greedy_next)
                          : rn_session_decode_rows(s->batch, (size_t)s->n_rows, s->step_tokens, NULL);
    for (int i = 0; i < s->n_rows; i++) {
        s->rows[i].next_known = greedy && st == RN_OK;
        if (s->rows[i].next_known) s->rows[i].next_token = s->greedy_next[i];
    }
    atomic_fetch_add(&s->metrics->step_ns, serve_now_ns() - t1);
    atomic_fetch_add(&s->metrics->steps, 1);
    if (greedy) atomic_fetch_add(&s->metrics->greedy_steps, 1);
    if (st != RN_OK) {
        char err[512];
        snprintf(err, sizeof err, "decoding: %s", rn_status_str(st));
        int n = s->n_rows;
        for (int i = 0; i < n; i++) fail_row(s, &s->rows[i], 500, err);
        s->n_rows = 0;
        close_gap(s, 0, n);
        return;
    }
    atomic_fetch_add(&s->metrics->completion_tokens, (unsigned long long)s->n_rows);
    s->rate_tokens += s->n_rows;
    double now = (double)serve_now_ns() * 1e-9;
    if (now - s->rate_start >= 1.0) {
        s->metrics->tokens_per_second = s->rate_tokens / (now - s->rate_start);
        s->rate_tokens = 0;
        s->rate_start = now;
    }

    for (int i = 0; i < s->n_rows;) {
        row *r = &s->rows[i];
        serve_job *job = r->job;
        int32_t token = s->step_tokens[i];
        r->position++;
        if (r->n_recent == 256) memmove(r->recent, r->recent + 1, 255 * sizeof *r->recent);
        r->recent[r->n_recent < 256 ? r->n_recent++ : 255] = token;
        int stopped = 0;
        pthread_mutex_lock(&job->lock);
        job->completion_tokens++;
        const char *bytes = NULL;
        size_t len = 0;
        if (r->detok) {
            if (rn_detokenizer_push(r->detok, token, &bytes, &len) == RN_OK && len) cli_text_append(&job->text, bytes, len);
        } else {
            char id[16];
            int n = snprintf(id, sizeof id, job->completion_tokens > 1 ? ",%d" : "%d", token);
            cli_text_append(&job->text, id, (size_t)n);
        }
        stopped = job->req.n_stops ? find_stop(job, r->search_from) : (job->releasable = job->text.len, 0);
        pthread_cond_broadcast(&job->changed);
        long done = (long)job->completion_tokens;
        pthread_mutex_unlock(&job->lock);
        if (stopped || done >= job->req.max_tokens) {
            complete_row(s, r, 1, i, stopped ? "stop" : "length");
            remove_row(s, i);
        } else {
            i++;
        }
    }
}

/* ---- the thread --------------------------------------------------------------------------- */

static void *run(void *arg) {
    serve_scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        /* Take queued jobs while rows are free. */
        while (s->head && s->n_rows + s->n_waiting < s->limits.parallel) {
            serve_job *job = s->head;
            s->head = job->next;
            if (!s->head) s->tail = NULL;
            s->queued--;
            atomic_store(&s->metrics->queued, s->queued);
            pthread_mutex_unlock(&s->lock);
            row *r = &s->rows[s->n_rows + s->n_waiting];
            memset(r, 0, sizeof *r);
            r->job = job;
            if (admit(s, r) == 0) s->n_waiting++;
            pthread_mutex_lock(&s->lock);
        }
        if (s->n_rows == 0 && s->n_waiting == 0) {
            atomic_store(&s->metrics->active, 0);
            if (s->draining && !s->head) break;
            if (!s->head) pthread_cond_wait(&s->wake, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        if (s->n_waiting) prefill_some(s);
        if (s->n_rows) decode_step(s);
        atomic_store(&s->metrics->active, s->n_rows + s->n_waiting);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

serve_scheduler *serve_scheduler_start(rn_model *model, const rn_tokenizer *tokenizer, serve_sessions *sessions,
                                       const serve_limits *limits, serve_metrics *metrics, char *err,
                                       size_t cap) {
    serve_scheduler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_mutex_init(&s->commit_lock, NULL);
    pthread_cond_init(&s->commit_ready, NULL);
    pthread_mutex_init(&s->sample_lock, NULL);
    pthread_cond_init(&s->sample_go, NULL);
    pthread_cond_init(&s->sample_done, NULL);
    s->model = model;
    s->tokenizer = tokenizer;
    s->sessions = sessions;
    s->limits = *limits;
    s->metrics = metrics;
    s->eos = tokenizer ? rn_tokenizer_eos(tokenizer) : -1;
    rn_model_info info;
    rn_model_info_get(model, &info);
    s->vocab = (size_t)info.vocab_size;
    /* Pieces of whole chunks: a prompt fed in pieces is then the same computation as one call. */
    s->chunk = info.chunk_size > 0 ? (size_t)info.chunk_size : 1;
    s->piece = limits->prefill_piece < s->chunk ? s->chunk : limits->prefill_piece / s->chunk * s->chunk;
    rn_status st = rn_session_init_batch(model, (size_t)limits->parallel, &s->batch);
    s->rows = calloc((size_t)limits->parallel + 1, sizeof *s->rows);
    s->step_tokens = calloc((size_t)limits->parallel, sizeof *s->step_tokens);
    s->greedy_next = calloc((size_t)limits->parallel, sizeof *s->greedy_next);
    s->spare = calloc((size_t)limits->parallel, sizeof *s->spare);
    s->rate_start = (double)serve_now_ns() * 1e-9;
    if (st != RN_OK || !s->rows || !s->step_tokens || !s->greedy_next || !s->spare) {
        snprintf(err, cap, "a batch of %d sequences: %s", limits->parallel,
                 st != RN_OK ? rn_status_str(st) : "out of host memory");
        serve_scheduler_free(s);
        return NULL;
    }
    /* Half the cores sample (the other half serve connections and the driver), at most 8. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int helpers = cores > 2 ? (int)(cores / 2) - 1 : 0;
    if (helpers > 7) helpers = 7;
    s->samplers = helpers ? calloc((size_t)helpers, sizeof *s->samplers) : NULL;
    for (int i = 0; s->samplers && i < helpers; i++)
        if (pthread_create(&s->samplers[i], NULL, sampler_thread, s) == 0) s->n_samplers++;
    if (pthread_create(&s->committer, NULL, commit_thread, s) == 0) s->committer_started = 1;
    if (!s->committer_started || pthread_create(&s->thread, NULL, run, s) != 0) {
        snprintf(err, cap, "cannot start the scheduler's threads");
        serve_scheduler_free(s);
        return NULL;
    }
    s->started = 1;
    return s;
}

int serve_scheduler_submit(serve_scheduler *s, serve_job *job) {
    pthread_mutex_lock(&s->lock);
    int status = 0;
    if (s->draining) status = 503;
    else if (s->queued >= s->limits.queue) status = 503;
    else {
        atomic_fetch_add(&job->refs, 1);
        job->enqueued_ns = serve_now_ns();
        job->next = NULL;
        if (s->tail) s->tail->next = job;
        else s->head = job;
        s->tail = job;
        s->queued++;
        atomic_store(&s->metrics->queued, s->queued);
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return status;
}

void serve_scheduler_drain(serve_scheduler *s) {
    if (!s || !s->started) return;
    pthread_mutex_lock(&s->lock);
    s->draining = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->started = 0;
    /* The last answers' conversations are saved before the drain returns. */
    pthread_mutex_lock(&s->commit_lock);
    s->commit_stop = 1;
    pthread_cond_signal(&s->commit_ready);
    pthread_mutex_unlock(&s->commit_lock);
    pthread_join(s->committer, NULL);
    s->committer_started = 0;
}

void serve_scheduler_free(serve_scheduler *s) {
    if (!s) return;
    serve_scheduler_drain(s);
    if (s->committer_started) {  /* started, but the scheduler thread was not */
        pthread_mutex_lock(&s->commit_lock);
        s->commit_stop = 1;
        pthread_cond_signal(&s->commit_ready);
        pthread_mutex_unlock(&s->commit_lock);
        pthread_join(s->committer, NULL);
    }
    pthread_mutex_lock(&s->sample_lock);
    s->sample_stop = 1;
    pthread_cond_broadcast(&s->sample_go);
    pthread_mutex_unlock(&s->sample_lock);
    for (int i = 0; i < s->n_samplers; i++) pthread_join(s->samplers[i], NULL);
    free(s->samplers);
    rn_session_free(s->batch);
    free(s->rows);
    free(s->step_tokens);
    free(s->greedy_next);
    for (int i = 0; i < s->n_spare; i++) rn_session_free(s->spare[i]);
    free(s->spare);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->commit_lock);
    pthread_cond_destroy(&s->commit_ready);
    pthread_mutex_destroy(&s->sample_lock);
    pthread_cond_destroy(&s->sample_go);
    pthread_cond_destroy(&s->sample_done);
    free(s);
}

/* ---- jobs --------------------------------------------------------------------------------- */

serve_job *serve_job_new(void) {
    serve_job *job = calloc(1, sizeof *job);
    if (!job) return NULL;
    pthread_mutex_init(&job->lock, NULL);
    pthread_cond_init(&job->changed, NULL);
    job->session_lock_fd = -1;
    atomic_init(&job->refs, 1);
    atomic_init(&job->abandoned, 0);
    return job;
}

void serve_job_release(serve_job *job) {
    if (!job || atomic_fetch_sub(&job->refs, 1) != 1) return;
    serve_request_free(&job->req);
    free(job->prompt);
    free(job->text.s);
    pthread_mutex_destroy(&job->lock);
    pthread_cond_destroy(&job->changed);
    free(job);
}
