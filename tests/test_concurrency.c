/*
 * test_concurrency.c: several sessions on one loaded model, driven from several threads.
 *
 * One small random checkpoint is loaded once. N sessions, each with its own prompt, are run
 * from N threads started together (a chunkwise prefill, then 20 recurrent decode steps, every
 * row of logits kept), then the same sessions are reset and run again one after another on
 * the main thread. The logits must be bit-identical: the context's lock serialises the calls,
 * and nothing a session computes may depend on what another session did in between. Each
 * thread also makes one failing call (a token outside the vocabulary, its own id) and must
 * read its own message back through rn_context_last_error, whatever the other threads did
 * meanwhile (retnet.h, "Threads").
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_model.h"

#define SESSIONS 4
#define PROMPT 13
#define STEPS 20
#define ROUNDS 3      /* each thread's error check is repeated, interleaved with the passes */

static const int64_t V = 61;

typedef struct job {
    int index;
    rn_model *model;
    rn_context *ctx;
    rn_session *session;
    pthread_barrier_t *start;   /* NULL when run sequentially */
    int32_t prompt[PROMPT];
    float *logits;              /* [(PROMPT + STEPS), V] */
    rn_status status;
    char failure[256];
    bool own_error_ok;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    if (j->start) pthread_barrier_wait(j->start);
    j->own_error_ok = true;
    rn_status st = rn_session_reset(j->session);
    if (st == RN_OK) st = rn_session_prefill(j->session, j->prompt, PROMPT, RN_MODE_CHUNKWISE, 4, j->logits);
    /* Greedy continuation from the session's own logits: a session that saw another's state or
     * logits would drift off its sequential twin at once. */
    for (int t = 0; t < STEPS && st == RN_OK; t++) {
        const float *last = rn_session_logits(j->session);
        int32_t next = 0;
        for (int64_t v = 1; v < V; v++)
            if (last[v] > last[next]) next = (int32_t)v;
        st = rn_session_decode(j->session, next, j->logits + (size_t)(PROMPT + t) * (size_t)V);
        if (t % (STEPS / ROUNDS) == 0) {
            /* A refused call with this thread's own token id, read back at once. */
            int32_t bad = (int32_t)(1000 + 100 * j->index + t);
            rn_status refused = rn_session_decode(j->session, bad, NULL);
            char want[32];
            snprintf(want, sizeof want, "token %d ", bad);
            const char *msg = rn_context_last_error(j->ctx);
            if (refused != RN_ERR_INVALID_ARGUMENT || !strstr(msg, want)) {
                j->own_error_ok = false;
                snprintf(j->failure, sizeof j->failure, "expected '%s' in '%s'", want, msg);
            }
        }
    }
    j->status = st;
    if (st != RN_OK)
        snprintf(j->failure, sizeof j->failure, "%s: %s", rn_status_str(st), rn_context_last_error(j->ctx));
    return NULL;
}

int main(void) {
    int failures = 0;
    char dir[] = "/tmp/rn_concurrency_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    rn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.embed_dim = 32;
    cfg.value_embed_dim = 48;
    cfg.heads = 4;
    cfg.ffn_dim = 64;
    cfg.layers = 2;
    cfg.vocab_size = V;
    cfg.chunk_size = 4;
    cfg.activation = RN_ACT_SWISH;
    cfg.layernorm_eps = 1e-6;
    cfg.normalize_before = true;
    char model_dir[64];
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    rn_context *ctx;
    rn_model *model;
    if (!device_model_open(model_dir, &cfg, 23, &ctx, &model)) return 1;

    const size_t rows = PROMPT + STEPS, count = rows * (size_t)V;
    job jobs[SESSIONS];
    float *threaded[SESSIONS];
    uint64_t seed = 0x243f6a8885a308d3ull;
    for (int i = 0; i < SESSIONS; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].index = i;
        jobs[i].model = model;
        jobs[i].ctx = ctx;
        for (int t = 0; t < PROMPT; t++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            jobs[i].prompt[t] = (int32_t)((seed >> 33) % (uint64_t)V);
        }
        threaded[i] = calloc(count, sizeof(float));
        jobs[i].logits = malloc(count * sizeof(float));
        if (rn_session_init(model, &jobs[i].session) != RN_OK) {
            printf("session %d: %s\n", i, rn_context_last_error(ctx));
            return 1;
        }
    }

    /* 1. All sessions at once, from SESSIONS threads released together. */
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, SESSIONS);
    pthread_t threads[SESSIONS];
    for (int i = 0; i < SESSIONS; i++) {
        jobs[i].start = &start;
        if (pthread_create(&threads[i], NULL, run_job, &jobs[i]) != 0) {
            printf("pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < SESSIONS; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < SESSIONS; i++) {
        bool ok = jobs[i].status == RN_OK && jobs[i].own_error_ok;
        printf("  thread %d: prefill %d (chunkwise) + %d decoded, own error messages: %s  %s\n", i, PROMPT,
               STEPS, jobs[i].own_error_ok ? "yes" : "no", ok ? "pass" : "FAIL");
        if (!ok) {
            printf("    %s\n", jobs[i].failure);
            failures++;
        }
        memcpy(threaded[i], jobs[i].logits, count * sizeof(float));
    }

    /* 2. The same sessions one after another. */
    for (int i = 0; i < SESSIONS; i++) {
        jobs[i].start = NULL;
        memset(jobs[i].logits, 0, count * sizeof(float));
        run_job(&jobs[i]);
        bool same = jobs[i].status == RN_OK && memcmp(threaded[i], jobs[i].logits, count * sizeof(float)) == 0;
        size_t differing = 0;
        for (size_t k = 0; k < count; k++) differing += threaded[i][k] != jobs[i].logits[k];
        printf("  session %d: threaded vs sequential, %zu logits: %s  %s\n", i, count,
               same ? "bit-identical" : "differ", same ? "pass" : "FAIL");
        if (!same) {
            printf("    %zu values differ %s\n", differing, jobs[i].failure);
            failures++;
        }
    }
    /* Different prompts must give different logits, or the comparison proves little. */
    bool distinct = memcmp(threaded[0], threaded[1], count * sizeof(float)) != 0;
    printf("  sessions 0 and 1 differ from each other: %s  %s\n", distinct ? "yes" : "no", distinct ? "pass" : "FAIL");
    if (!distinct) failures++;

    for (int i = 0; i < SESSIONS; i++) {
        rn_session_free(jobs[i].session);
        free(jobs[i].logits);
        free(threaded[i]);
    }
    rn_model_free(model);
    uint64_t current = 1;
    rn_context_memory(ctx, &current, NULL);
    if (current != 0) {
        printf("  device memory left after freeing: %llu bytes  FAIL\n", (unsigned long long)current);
        failures++;
    }
    rn_context_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
