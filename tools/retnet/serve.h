/* serve.h: what the files of `retnet serve` share.
 *
 *   serve.c            the command: options, model, HTTP daemon, signals, the drain
 *   serve_request.c    request bodies (JSON) into serve_request: no device, fuzzed on its own
 *   serve_chat.c       chat messages into a prompt, by the few templates the server renders
 *   serve_http.c       routes, authentication, limits, responses and server-sent events
 *   serve_scheduler.c  the one thread that drives the device: continuous batching
 *   serve_sessions.c   named conversations: parked on the device, in host memory or on disk
 *
 * Threads: libmicrohttpd runs one thread per connection; each request becomes a job handed to
 * the scheduler thread, which alone calls into the library's device functions. A job's output
 * grows under its own lock and the connection's thread sends it at the client's pace, so a
 * slow reader never holds up the batch. */
#ifndef RN_SERVE_H
#define RN_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

#define SERVE_MAX_STOPS 4
#define SERVE_SESSION_ID_MAX 64
#define SERVE_MAX_MESSAGES 256

/* Limits, each a flag of `retnet serve`. */
typedef struct serve_limits {
    size_t max_body;           /* bytes of a request body (413 above) */
    size_t max_prompt;         /* tokens of a prompt, after the chat template */
    long max_tokens;           /* largest max_tokens a request may ask for */
    long default_max_tokens;   /* max_tokens when a request gives none */
    int parallel;              /* sequences decoded together */
    int queue;                 /* requests waiting for a free row (503 above) */
    long max_sessions;         /* session files kept in --state-dir (new sessions refused above) */
    uint64_t device_budget;    /* bytes of session state parked on the device */
    uint64_t host_budget;      /* bytes of session state parked in host memory */
    size_t prefill_piece;      /* prompt tokens prefilled between two decoding steps */
} serve_limits;

/* ---- requests (serve_request.c) ----------------------------------------------------------- */

typedef enum serve_kind { SERVE_COMPLETION, SERVE_CHAT } serve_kind;

typedef struct serve_message {
    char *role, *content;
} serve_message;

typedef struct serve_request {
    serve_kind kind;
    char *prompt;                  /* text (completions) */
    int32_t *prompt_ids;           /* or token ids (completions) */
    size_t n_prompt_ids;
    int has_prompt_ids;
    serve_message messages[SERVE_MAX_MESSAGES];  /* chat */
    int n_messages;
    long max_tokens;
    rn_sampling sampling;
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
    int stream, echo, include_usage;
    char session[SERVE_SESSION_ID_MAX + 1];  /* "" when none */
} serve_request;

/* Parses a JSON body into `out` (zeroed first; free with serve_request_free, also after a
 * failure). Returns 0, or an HTTP status (400) with the reason in `err`. Unknown fields are
 * ignored, as OpenAI's API does. */
int serve_request_parse(const char *body, size_t len, serve_kind kind, const serve_limits *limits,
                        serve_request *out, char *err, size_t err_cap);
void serve_request_free(serve_request *r);
/* Whether `id` may name a session: 1 to 64 of [A-Za-z0-9_-]. Never a path. */
int serve_session_id_valid(const char *id);

/* ---- chat templates (serve_chat.c) -------------------------------------------------------- */

typedef enum serve_template { SERVE_TEMPLATE_NONE, SERVE_TEMPLATE_CHATML, SERVE_TEMPLATE_LLAMA2,
                              SERVE_TEMPLATE_PLAIN } serve_template;

/* The template of --chat-template NAME ("auto": the model's tokenizer_config.json). Returns 0,
 * or 1 with the reason in `err` (a name this server does not know). */
int serve_template_choose(const char *name, const char *model_dir, serve_template *out, char *err, size_t cap);
const char *serve_template_name(serve_template t);
/* The prompt text of `r`'s messages in template `t`, ending where the assistant's answer
 * begins, in a heap string; NULL when out of memory. */
char *serve_chat_render(serve_template t, const serve_request *r);

/* ---- jobs: one request on its way through the scheduler ----------------------------------- */

typedef struct serve_job {
    pthread_mutex_t lock;
    pthread_cond_t changed;        /* text grew or the job finished */
    serve_request req;
    int32_t *prompt;               /* tokenized, with BOS when the session starts empty */
    size_t n_prompt;
    int session_lock_fd;           /* flock of the named session's file (-1: none) */
    uint64_t enqueued_ns;
    /* Written by the scheduler under `lock`, read by the connection's thread. */
    cli_text text;                 /* the answer so far, stop strings cut off */
    size_t releasable;             /* bytes of `text` that no stop string can take back */
    size_t completion_tokens;
    int done;
    const char *finish_reason;     /* "stop", "length" */
    /* Where the time went (ns), returned as "timings": waiting for a row, resuming the
     * conversation's state, prefilling the prompt, decoding, saving the state. */
    uint64_t admitted_ns, resume_ns, prefill_ns, decode_start_ns, decode_ns, save_ns;
    int error_status;              /* 0, or the HTTP status of a failure */
    char error[768];
    atomic_int abandoned;          /* the client went away: drop the sequence */
    atomic_int refs;               /* the connection and the scheduler */
    struct serve_job *next;        /* in the scheduler's queue */
} serve_job;

serve_job *serve_job_new(void);
void serve_job_release(serve_job *job);  /* frees it with the last reference */

/* ---- the scheduler (serve_scheduler.c) ---------------------------------------------------- */

typedef struct serve_sessions serve_sessions;

typedef struct serve_metrics {
    atomic_ullong requests, errors, prompt_tokens, completion_tokens, rejected_busy;
    atomic_int queued, active;
    _Atomic double tokens_per_second;  /* decoded, over the last second of steps */
    atomic_ullong steps, sample_ns, step_ns;  /* decoding steps: sampling, and the device's step */
    atomic_ullong greedy_steps;                /* steps whose tokens the device chose */
} serve_metrics;

typedef struct serve_scheduler serve_scheduler;

serve_scheduler *serve_scheduler_start(rn_model *model, const rn_tokenizer *tokenizer, serve_sessions *sessions,
                                       const serve_limits *limits, serve_metrics *metrics, char *err,
                                       size_t cap);
/* Queues a job (one more reference taken). Returns 0, or 503 when the queue is full and 503 when
 * the scheduler is draining. */
int serve_scheduler_submit(serve_scheduler *s, serve_job *job);
/* Stops taking jobs, finishes the running and queued ones, then stops the thread. */
void serve_scheduler_drain(serve_scheduler *s);
void serve_scheduler_free(serve_scheduler *s);

/* ---- sessions (serve_sessions.c) ---------------------------------------------------------- */

/* `state_dir` NULL: sessions live in memory only and end with the process. */
serve_sessions *serve_sessions_new(rn_model *model, const char *state_dir, const serve_limits *limits,
                                   char *err, size_t cap);
void serve_sessions_free(serve_sessions *s);
/* Takes the session's file lock for a request, waiting up to `timeout_ms` while another server
 * holds it: returns the lock's descriptor, -1 without a state directory, or -2 on a timeout
 * and -3 on a file error (`err` says which). Called from connection threads. */
int serve_sessions_lock(serve_sessions *s, const char *id, int timeout_ms, char *err, size_t cap);
void serve_sessions_unlock(serve_sessions *s, const char *id, int fd);
/* Scheduler thread only. A working copy of the session `id` (empty when it is new) in *out,
 * from the device, host memory or its file, whichever is current. Returns 0, or an HTTP status
 * with the reason (507: too many sessions on disk; 500: a file that does not load). */
int serve_sessions_checkout(serve_sessions *s, const char *id, rn_session **out, char *err, size_t cap);
/* Makes `session` (taken over) the current state of `id`: written to its file first when there
 * is a state directory, then kept on the device, older ones moving down the tiers. */
int serve_sessions_commit(serve_sessions *s, const char *id, rn_session *session, char *err, size_t cap);
/* What the store knows of `id`: 0 unknown, else 1 with its position and tier
 * ("device", "host", "disk"). Any thread. */
int serve_sessions_describe(serve_sessions *s, const char *id, uint64_t *position, const char **tier);
/* Forgets `id` everywhere (its file too). 0, or 404 when unknown. Any thread. */
int serve_sessions_delete(serve_sessions *s, const char *id);
/* Sessions on the device, in host memory and on disk. */
void serve_sessions_counts(serve_sessions *s, long *device, long *host, long *disk);

/* ---- HTTP (serve_http.c) ------------------------------------------------------------------ */

typedef struct serve_http_config {
    const char *model_name;
    const char *api_key;           /* NULL: none */
    serve_template chat_template;
    const rn_tokenizer *tokenizer;
    const serve_limits *limits;
    serve_scheduler *scheduler;
    serve_sessions *sessions;
    serve_metrics *metrics;
    atomic_int draining;
} serve_http_config;

struct MHD_Daemon;
struct MHD_Daemon *serve_http_start(serve_http_config *config, const char *host, int port, char *err, size_t cap);

uint64_t serve_now_ns(void);

#endif /* RN_SERVE_H */
