/* serve_http.c: the HTTP face of `retnet serve`, on libmicrohttpd (one thread per connection).
 *
 * A connection's thread collects the body (refusing one over --max-body with 413 from its
 * Content-Length, or after reading a chunked one), checks the API key, parses the request and
 * hands a job to the scheduler. It then waits for the job's text (a plain response) or sends
 * it as server-sent events as it grows, at the client's pace: the scheduler only appends to the
 * job, so a slow reader never holds up the batch. A client that goes away marks its job
 * abandoned, and the scheduler drops the sequence at its next step. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "serve.h"

#define SESSION_LOCK_TIMEOUT_MS 30000

typedef struct conn {
    serve_http_config *cfg;
    char *body;
    size_t len, cap;
    int too_large;
    int answered;              /* a response is queued already (an early 413) */
    serve_job *job;            /* a plain (non-streamed) completion's job */
} conn;

/* ---- responses ---------------------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, char *text,
                                 const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json_retry(struct MHD_Connection *c, unsigned status, cJSON *root,
                                       const char *retry_after) {
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return MHD_NO;
    return send_text(c, status, "application/json", text, retry_after);
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *root) {
    return send_json_retry(c, status, root, NULL);
}

static const char *error_type(unsigned status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 409: return "conflict_error";
    case 503: return "server_overloaded";
    case 500: case 507: return "server_error";
    default: return "invalid_request_error";
    }
}

static cJSON *error_body(unsigned status, const char *code, const char *message) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", error_type(status));
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    return root;
}

static enum MHD_Result send_error(serve_http_config *cfg, struct MHD_Connection *c, unsigned status,
                                  const char *code, const char *fmt, ...) {
    char message[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&cfg->metrics->errors, 1);
    return send_json_retry(c, status, error_body(status, code, message), status == 503 ? "1" : NULL);
}

/* ---- authentication ----------------------------------------------------------------------- */

/* Compares in time that depends on the key's length only, not on where a guess goes wrong. */
static int key_matches(const char *expected, const char *given) {
    size_t n = strlen(expected), m = given ? strlen(given) : 0;
    volatile unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(expected[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

static int authorized(const serve_http_config *cfg, struct MHD_Connection *c) {
    if (!cfg->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    return key_matches(cfg->api_key, h + 7);
}

/* ---- the completion objects --------------------------------------------------------------- */

typedef struct stream {
    serve_job *job;
    serve_http_config *cfg;
    char id[40];
    long created;
    size_t sent;               /* bytes of the job's text sent */
    int stage;                 /* 0 text, 1 final chunk sent, 2 usage sent, 3 [DONE] sent */
    int role_sent;
    char *pending;             /* an event being written */
    size_t pending_len, pending_off;
} stream;

/* Our extension: where the request's time went, in milliseconds. */
static void timings_object(cJSON *parent, const serve_job *job) {
    cJSON *t = cJSON_AddObjectToObject(parent, "timings");
    cJSON_AddNumberToObject(t, "queue_ms", (double)(job->admitted_ns - job->enqueued_ns) * 1e-6);
    cJSON_AddNumberToObject(t, "resume_ms", (double)job->resume_ns * 1e-6);
    cJSON_AddNumberToObject(t, "prefill_ms", (double)job->prefill_ns * 1e-6);
    cJSON_AddNumberToObject(t, "decode_ms", (double)job->decode_ns * 1e-6);
    cJSON_AddNumberToObject(t, "save_ms", (double)job->save_ns * 1e-6);
}

static void usage_object(cJSON *parent, const serve_job *job) {
    cJSON *u = cJSON_AddObjectToObject(parent, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)job->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)job->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(job->n_prompt + job->completion_tokens));
}

static cJSON *completion_head(const serve_http_config *cfg, const serve_job *job, const char *id, long created,
                              int chunk) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    const char *object = job->req.kind == SERVE_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                     : "text_completion";
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)created);
    cJSON_AddStringToObject(root, "model", cfg->model_name);
    if (job->req.session[0]) cJSON_AddStringToObject(root, "session", job->req.session);
    return root;
}

/* One choice: text (or a chat message / delta) and the finish reason (NULL: null). */
static void add_choice(cJSON *root, const serve_job *job, const char *text, size_t len, const char *finish,
                       int chunk, int with_role) {
    cJSON *choices = cJSON_AddArrayToObject(root, "choices"), *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    if (job->req.kind == SERVE_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(choice, chunk ? "delta" : "message");
        if (with_role) cJSON_AddStringToObject(m, "role", "assistant");
        if (len || !chunk) cJSON_AddStringToObject(m, "content", copy ? copy : "");
    } else {
        cJSON_AddStringToObject(choice, "text", copy ? copy : "");
        cJSON_AddNullToObject(choice, "logprobs");
    }
    free(copy);
    if (finish) cJSON_AddStringToObject(choice, "finish_reason", finish);
    else cJSON_AddNullToObject(choice, "finish_reason");
}

static void make_id(char *id, size_t cap, serve_kind kind) {
    static atomic_ullong counter;
    snprintf(id, cap, "%s-%llx%llx", kind == SERVE_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)time(NULL),
             (unsigned long long)atomic_fetch_add(&counter, 1));
}

/* The status and OpenAI code of a job that failed. */
static enum MHD_Result send_job_error(serve_http_config *cfg, struct MHD_Connection *c, const serve_job *job) {
    unsigned status = job->error_status == 499 ? 400 : (unsigned)job->error_status;
    return send_error(cfg, c, status, status == 507 ? "too_many_sessions" : NULL, "%s", job->error);
}

/* ---- streaming ---------------------------------------------------------------------------- */

static void stream_set_event(stream *st, cJSON *root) {
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(st->pending);
    st->pending = NULL;
    st->pending_len = st->pending_off = 0;
    if (!json) return;
    size_t n = strlen(json);
    st->pending = malloc(n + 9);
    if (st->pending) st->pending_len = (size_t)snprintf(st->pending, n + 9, "data: %s\n\n", json);
    free(json);
}

static void stream_set_raw(stream *st, const char *text) {
    free(st->pending);
    st->pending = strdup(text);
    st->pending_len = st->pending ? strlen(text) : 0;
    st->pending_off = 0;
}

/* Prepares the next event: new text, then the end (finish reason, usage, or an error), then
 * [DONE]; a comment line every second while there is nothing, which also finds clients that
 * left. Returns 0 when the stream is over. */
static int stream_next(stream *st) {
    serve_job *job = st->job;
    pthread_mutex_lock(&job->lock);
    if (!job->done && job->releasable <= st->sent) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&job->changed, &job->lock, &until);
    }
    int more = 1;
    if (st->stage == 3) {
        more = 0;
    } else if (job->releasable > st->sent) {
        cJSON *root = completion_head(st->cfg, job, st->id, st->created, 1);
        add_choice(root, job, job->text.s + st->sent, job->releasable - st->sent, NULL, 1, !st->role_sent);
        st->role_sent = 1;
        st->sent = job->releasable;
        stream_set_event(st, root);
    } else if (job->done && st->stage == 0) {
        if (job->error_status) {
            unsigned status = job->error_status == 499 ? 400 : (unsigned)job->error_status;
            stream_set_event(st, error_body(status, NULL, job->error));
        } else {
            cJSON *root = completion_head(st->cfg, job, st->id, st->created, 1);
            add_choice(root, job, "", 0, job->finish_reason, 1, !st->role_sent);
            timings_object(root, job);
            stream_set_event(st, root);
        }
        st->stage = job->req.include_usage && !job->error_status ? 1 : 2;
    } else if (job->done && st->stage == 1) {
        /* As OpenAI sends it: a last chunk with no choices and the usage. */
        cJSON *root = completion_head(st->cfg, job, st->id, st->created, 1);
        cJSON_AddArrayToObject(root, "choices");
        usage_object(root, job);
        stream_set_event(st, root);
        st->stage = 2;
    } else if (job->done) {
        stream_set_raw(st, "data: [DONE]\n\n");
        st->stage = 3;
    } else {
        stream_set_raw(st, ": waiting\n\n");
    }
    pthread_mutex_unlock(&job->lock);
    return more;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    while (st->pending_off >= st->pending_len) {
        if (!stream_next(st)) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!st->pending) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->pending_len - st->pending_off;
    if (n > max) n = max;
    memcpy(buf, st->pending + st->pending_off, n);
    st->pending_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    if (!st->job->done) atomic_store(&st->job->abandoned, 1);
    serve_job_release(st->job);
    free(st->pending);
    free(st);
}

/* ---- completions -------------------------------------------------------------------------- */

static enum MHD_Result completion(serve_http_config *cfg, struct MHD_Connection *c, conn *cn, serve_kind kind) {
    atomic_fetch_add(&cfg->metrics->requests, 1);
    char err[512];
    serve_job *job = serve_job_new();
    if (!job) return send_error(cfg, c, 500, NULL, "out of host memory");
    int status = serve_request_parse(cn->body, cn->len, kind, cfg->limits, &job->req, err, sizeof err);
    if (status) {
        serve_job_release(job);
        return send_error(cfg, c, (unsigned)status, NULL, "%s", err);
    }
    if (kind == SERVE_CHAT) {
        if (cfg->chat_template == SERVE_TEMPLATE_NONE) {
            serve_job_release(job);
            return send_error(cfg, c, 400, "no_chat_template",
                              "the model has no chat template this server can render (its tokenizer_config.json "
                              "has no chat_template in the ChatML or Llama 2 form); start the server with "
                              "--chat-template chatml, llama2 or plain, or use /v1/completions");
        }
        job->req.prompt = serve_chat_render(cfg->chat_template, &job->req);
        if (!job->req.prompt) {
            serve_job_release(job);
            return send_error(cfg, c, 500, NULL, "out of host memory");
        }
    }
    if (job->req.session[0]) {
        int fd = serve_sessions_lock(cfg->sessions, job->req.session, SESSION_LOCK_TIMEOUT_MS, err, sizeof err);
        if (fd <= -2) {
            serve_job_release(job);
            return send_error(cfg, c, fd == -2 ? 409 : 500, fd == -2 ? "session_busy" : NULL, "%s", err);
        }
        job->session_lock_fd = fd;
    }
    status = atomic_load(&cfg->draining) ? 503 : serve_scheduler_submit(cfg->scheduler, job);
    if (status) {
        atomic_fetch_add(&cfg->metrics->rejected_busy, 1);
        if (job->req.session[0]) serve_sessions_unlock(cfg->sessions, job->req.session, job->session_lock_fd);
        serve_job_release(job);
        return send_error(cfg, c, 503, "overloaded",
                          atomic_load(&cfg->draining) ? "the server is shutting down"
                                                      : "the queue is full (--queue); retry later");
    }

    char id[40];
    make_id(id, sizeof id, kind);
    long created = (long)time(NULL);
    if (job->req.stream) {
        stream *st = calloc(1, sizeof *st);
        if (!st) {
            atomic_store(&job->abandoned, 1);
            serve_job_release(job);
            return MHD_NO;
        }
        st->job = job;
        st->cfg = cfg;
        st->created = created;
        snprintf(st->id, sizeof st->id, "%s", id);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
        if (!r) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }

    /* A plain response: this connection's thread waits for the whole answer. */
    cn->job = job;
    pthread_mutex_lock(&job->lock);
    while (!job->done) pthread_cond_wait(&job->changed, &job->lock);
    pthread_mutex_unlock(&job->lock);
    if (job->error_status) return send_job_error(cfg, c, job);
    cJSON *root = completion_head(cfg, job, id, created, 0);
    add_choice(root, job, job->text.s ? job->text.s : "", job->text.len, job->finish_reason, 0, 1);
    usage_object(root, job);
    timings_object(root, job);
    return send_json(c, MHD_HTTP_OK, root);
}

/* ---- the small endpoints ------------------------------------------------------------------ */

static enum MHD_Result tokenize(serve_http_config *cfg, struct MHD_Connection *c, const conn *cn) {
    if (!cfg->tokenizer) return send_error(cfg, c, 400, NULL, "the model has no tokenizer.json");
    cJSON *root = cn->len ? cJSON_ParseWithLength(cn->body, cn->len) : NULL;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(root, "content");
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(root, "add_special");
    if (!cJSON_IsString(content)) {
        cJSON_Delete(root);
        return send_error(cfg, c, 400, NULL, "the body must be a JSON object with a string 'content'");
    }
    int32_t *ids = NULL;
    size_t n = 0;
    rn_status st = rn_tokenizer_encode(cfg->tokenizer, content->valuestring, strlen(content->valuestring),
                                       cJSON_IsTrue(special), &ids, &n);
    cJSON_Delete(root);
    if (st != RN_OK) return send_error(cfg, c, 400, NULL, "tokenizing: %s", rn_last_error());
    cJSON *out = cJSON_CreateObject(), *tokens = cJSON_AddArrayToObject(out, "tokens");
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(tokens, cJSON_CreateNumber(ids[i]));
    rn_free(ids);
    return send_json(c, MHD_HTTP_OK, out);
}

static enum MHD_Result detokenize(serve_http_config *cfg, struct MHD_Connection *c, const conn *cn) {
    if (!cfg->tokenizer) return send_error(cfg, c, 400, NULL, "the model has no tokenizer.json");
    cJSON *root = cn->len ? cJSON_ParseWithLength(cn->body, cn->len) : NULL;
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    if (!cJSON_IsArray(tokens)) {
        cJSON_Delete(root);
        return send_error(cfg, c, 400, NULL, "the body must be a JSON object with an array 'tokens'");
    }
    size_t n = (size_t)cJSON_GetArraySize(tokens), i = 0;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    const cJSON *t;
    cJSON_ArrayForEach(t, tokens) {
        if (!ids || !cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= (double)rn_tokenizer_vocab_size(cfg->tokenizer)) {
            free(ids);
            cJSON_Delete(root);
            return send_error(cfg, c, 400, NULL, "'tokens'[%zu] is not a token id of this model", i);
        }
        ids[i++] = (int32_t)t->valuedouble;
    }
    cJSON_Delete(root);
    char *text = NULL;
    size_t len = 0;
    rn_status st = rn_tokenizer_decode(cfg->tokenizer, ids, n, 0, &text, &len);
    free(ids);
    if (st != RN_OK) return send_error(cfg, c, 400, NULL, "detokenizing: %s", rn_last_error());
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "content", text);
    rn_free(text);
    return send_json(c, MHD_HTTP_OK, out);
}

static enum MHD_Result models(serve_http_config *cfg, struct MHD_Connection *c) {
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", cfg->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "retnet-cl");
    return send_json(c, MHD_HTTP_OK, root);
}

static enum MHD_Result metrics(serve_http_config *cfg, struct MHD_Connection *c) {
    const serve_metrics *m = cfg->metrics;
    long device, host, disk;
    serve_sessions_counts(cfg->sessions, &device, &host, &disk);
    char *text = malloc(8192);
    if (!text) return MHD_NO;
    snprintf(text, 8192,
             "# HELP retnet_requests_total Completion requests received.\n# TYPE retnet_requests_total counter\n"
             "retnet_requests_total %llu\n"
             "# HELP retnet_errors_total Requests answered with an error.\n# TYPE retnet_errors_total counter\n"
             "retnet_errors_total %llu\n"
             "# HELP retnet_rejected_total Requests refused with 503 (queue full or draining).\n"
             "# TYPE retnet_rejected_total counter\nretnet_rejected_total %llu\n"
             "# HELP retnet_prompt_tokens_total Prompt tokens prefilled.\n# TYPE retnet_prompt_tokens_total counter\n"
             "retnet_prompt_tokens_total %llu\n"
             "# HELP retnet_completion_tokens_total Tokens generated.\n"
             "# TYPE retnet_completion_tokens_total counter\nretnet_completion_tokens_total %llu\n"
             "# HELP retnet_tokens_per_second Tokens generated per second over the last second of steps.\n"
             "# TYPE retnet_tokens_per_second gauge\nretnet_tokens_per_second %.3f\n"
             "# HELP retnet_queue_length Requests waiting for a row.\n# TYPE retnet_queue_length gauge\n"
             "retnet_queue_length %d\n"
             "# HELP retnet_active_sequences Sequences being prefilled or decoded.\n"
             "# TYPE retnet_active_sequences gauge\nretnet_active_sequences %d\n"
             "# HELP retnet_sessions Conversations kept, by where their state is.\n# TYPE retnet_sessions gauge\n"
             "retnet_sessions{tier=\"device\"} %ld\nretnet_sessions{tier=\"host\"} %ld\n"
             "retnet_sessions{tier=\"disk\"} %ld\n"
             "# HELP retnet_steps_total Decoding steps of the batch.\n# TYPE retnet_steps_total counter\n"
             "retnet_steps_total %llu\n"
             "# HELP retnet_step_sampling_seconds_total Host time sampling the rows' tokens.\n"
             "# TYPE retnet_step_sampling_seconds_total counter\nretnet_step_sampling_seconds_total %.6f\n"
             "# HELP retnet_step_device_seconds_total Time in the batch's decoding calls (device and logits).\n"
             "# TYPE retnet_step_device_seconds_total counter\nretnet_step_device_seconds_total %.6f\n"
             "# HELP retnet_greedy_steps_total Decoding steps whose tokens were chosen on the device (every row greedy).\n"
             "# TYPE retnet_greedy_steps_total counter\nretnet_greedy_steps_total %llu\n",
             (unsigned long long)atomic_load(&m->requests), (unsigned long long)atomic_load(&m->errors),
             (unsigned long long)atomic_load(&m->rejected_busy), (unsigned long long)atomic_load(&m->prompt_tokens),
             (unsigned long long)atomic_load(&m->completion_tokens), atomic_load(&m->tokens_per_second),
             atomic_load(&m->queued), atomic_load(&m->active), device, host, disk,
             (unsigned long long)atomic_load(&m->steps), (double)atomic_load(&m->sample_ns) * 1e-9,
             (double)atomic_load(&m->step_ns) * 1e-9, (unsigned long long)atomic_load(&m->greedy_steps));
    return send_text(c, MHD_HTTP_OK, "text/plain; version=0.0.4", text, NULL);
}

static enum MHD_Result session_endpoint(serve_http_config *cfg, struct MHD_Connection *c, const char *method,
                                        const char *id) {
    if (!serve_session_id_valid(id))
        return send_error(cfg, c, 400, NULL, "a session id is 1 to %d characters of A-Z, a-z, 0-9, '_' and '-'",
                          SERVE_SESSION_ID_MAX);
    if (!strcmp(method, "DELETE")) {
        if (serve_sessions_delete(cfg->sessions, id)) return send_error(cfg, c, 404, NULL, "no session '%s'", id);
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "id", id);
        cJSON_AddBoolToObject(root, "deleted", 1);
        return send_json(c, MHD_HTTP_OK, root);
    }
    uint64_t position;
    const char *tier;
    if (!serve_sessions_describe(cfg->sessions, id, &position, &tier))
        return send_error(cfg, c, 404, NULL, "no session '%s'", id);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "object", "session");
    if (!strcmp(tier, "disk") && position == 0) cJSON_AddNullToObject(root, "tokens");
    else cJSON_AddNumberToObject(root, "tokens", (double)position);
    cJSON_AddStringToObject(root, "tier", tier);
    return send_json(c, MHD_HTTP_OK, root);
}

/* ---- routing ------------------------------------------------------------------------------ */

static enum MHD_Result route(serve_http_config *cfg, struct MHD_Connection *c, conn *cn, const char *url,
                             const char *method) {
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) {
        if (!get) return send_error(cfg, c, 405, NULL, "use GET");
        int draining = atomic_load(&cfg->draining);
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "status", draining ? "draining" : "ok");
        return send_json(c, draining ? 503 : MHD_HTTP_OK, root);
    }
    if (!authorized(cfg, c))
        return send_error(cfg, c, 401, "invalid_api_key", "a valid API key is required: 'Authorization: Bearer KEY'");
    if (cn->too_large)
        return send_error(cfg, c, 413, "body_too_large", "the body is over the limit of %zu bytes (--max-body)",
                          cfg->limits->max_body);
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) {
        if (!post) return send_error(cfg, c, 405, NULL, "use POST");
        return completion(cfg, c, cn, url[4] == 'c' && url[5] == 'h' ? SERVE_CHAT : SERVE_COMPLETION);
    }
    if (!strcmp(url, "/tokenize") || !strcmp(url, "/detokenize")) {
        if (!post) return send_error(cfg, c, 405, NULL, "use POST");
        return url[1] == 't' ? tokenize(cfg, c, cn) : detokenize(cfg, c, cn);
    }
    if (!strcmp(url, "/v1/models")) return get ? models(cfg, c) : send_error(cfg, c, 405, NULL, "use GET");
    if (!strcmp(url, "/metrics")) return get ? metrics(cfg, c) : send_error(cfg, c, 405, NULL, "use GET");
    if (!strncmp(url, "/v1/sessions/", 13)) {
        if (!get && strcmp(method, "DELETE")) return send_error(cfg, c, 405, NULL, "use GET or DELETE");
        return session_endpoint(cfg, c, method, url + 13);
    }
    return send_error(cfg, c, 404, NULL, "no endpoint %s %s", method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)version;
    serve_http_config *cfg = cls;
    conn *cn = *state;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        cn->cfg = cfg;
        *state = cn;
        /* A declared length over the limit is refused before reading the body. */
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (length && strtoull(length, NULL, 10) > cfg->limits->max_body) {
            cn->too_large = cn->answered = 1;
            return send_error(cfg, c, 413, "body_too_large", "the body is over the limit of %zu bytes (--max-body)",
                              cfg->limits->max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cn->too_large && cn->len + *upload_size <= cfg->limits->max_body) {
            if (cn->len + *upload_size + 1 > cn->cap) {
                size_t cap = (cn->len + *upload_size + 1) * 2;
                if (cap > cfg->limits->max_body + 1) cap = cfg->limits->max_body + 1;
                char *grown = realloc(cn->body, cap);
                if (!grown) return MHD_NO;
                cn->body = grown;
                cn->cap = cap;
            }
            memcpy(cn->body + cn->len, upload, *upload_size);
            cn->len += *upload_size;
            cn->body[cn->len] = '\0';
        } else {
            cn->too_large = 1;  /* read on, answer 413 at the end */
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return cn->answered ? MHD_YES : route(cfg, c, cn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    conn *cn = *state;
    if (!cn) return;
    if (cn->job) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) atomic_store(&cn->job->abandoned, 1);
        serve_job_release(cn->job);
    }
    free(cn->body);
    free(cn);
    *state = NULL;
}

struct MHD_Daemon *serve_http_start(serve_http_config *cfg, const char *host, int port, char *err, size_t cap) {
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            snprintf(err, cap, "--host '%s' is not an IPv4 or IPv6 address", host);
            return NULL;
        }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            snprintf(err, cap, "--host '%s' is not an IPv4 or IPv6 address", host);
            return NULL;
        }
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, cfg, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
    if (!d) snprintf(err, cap, "cannot listen on %s port %d (in use, or not an address of this machine)", host, port);
    return d;
}
