/* serve.c: `retnet serve`, an OpenAI-compatible HTTP server (serve.h maps its files).
 *
 * Start-up loads the model and opens the state directory before listening, so that a server
 * that says it listens can answer. SIGTERM and SIGINT drain: new requests get 503, running
 * and queued ones finish (their conversations are committed as each ends), then the process
 * exits. Files are created owner-only (umask 077): state files hold the conversations. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cli.h"
#include "serve.h"

static const char *serve_usage =
    "usage: retnet serve --model DIR [options]\n"
    "\n"
    "An HTTP server with OpenAI's API: POST /v1/completions and /v1/chat/completions (streamed as\n"
    "server-sent events with \"stream\": true), POST /tokenize {\"content\"} and /detokenize\n"
    "{\"tokens\"}, GET /v1/models, /health (no key needed) and /metrics (Prometheus text), and\n"
    "GET/DELETE /v1/sessions/ID. Requests are decoded together in one batch (continuous\n"
    "batching); a new prompt is prefilled in pieces between decoding steps.\n"
    "\n"
    "Conversations (our extension): a request with \"session\": \"ID\" (1 to 64 of A-Z a-z 0-9 _ -)\n"
    "continues that conversation from its saved state, appending the new prompt, and saves the\n"
    "state again when the answer ends; the first request with a new ID starts it. The history is\n"
    "never sent or read again: the state is a fixed size whatever its length. A failed or\n"
    "abandoned request leaves the conversation as it was. Requests on one session run one after\n"
    "another (a request waits up to 30 s for the one before it, then gets 409). GET\n"
    "/v1/sessions/ID says how many tokens a conversation holds and where it is parked; DELETE\n"
    "forgets it (404 for an unknown ID). Responses also carry \"timings\" in ms: queue, resume,\n"
    "prefill, decode, save. Sampling defaults are `retnet generate`'s (temperature 0.8, top_k\n"
    "40, top_p 0.95, min_p 0.05, repeat_penalty 1.1, seed 0), so a request and the command with\n"
    "the same seed give the same text.\n"
    "\n"
    "  --model DIR          checkpoint directory (tokenizer.json for text prompts)\n"
    "  --preset NAME        instead of --model: a shipped shape (tiny, torchscale-1.3b, ...; see\n"
    "                       `retnet bench --help`) with random f16 weights and no tokenizer, for\n"
    "                       benchmarks: prompts are token ids\n"
    "  --host H             address to bind (default 127.0.0.1: this machine only)\n"
    "  --port P             port (default 8080; 0: any free port, printed at start)\n"
    "  --parallel N         sequences decoded together (default 16)\n"
    "  --queue N            requests waiting for a free sequence; more get 503 with Retry-After\n"
    "                       (default 256)\n"
    "  --state-dir DIR      keep conversations in DIR (one <ID>.state file each, written\n"
    "                       atomically after every answer, owner-only), so they survive a restart\n"
    "                       or a crash; several servers may share DIR (a per-session file lock\n"
    "                       orders their requests). Without it conversations live in memory only\n"
    "  --api-key K          require 'Authorization: Bearer K' on every endpoint but /health\n"
    "                       (default: $RETNET_API_KEY; none when unset)\n"
    "  --chat-template T    auto (default: the model's tokenizer_config.json chat_template, when\n"
    "                       it is ChatML or Llama 2), chatml, llama2, plain (\"User: ...\" lines,\n"
    "                       for base models) or none; without one /v1/chat/completions is a 400\n"
    "  --max-body BYTES     largest request body (default 1048576; 413 above)\n"
    "  --max-prompt-tokens N  largest prompt (default 16384)\n"
    "  --max-tokens N       largest max_tokens a request may ask for (default 4096); also the\n"
    "                       default for chat requests (completions default to 16, as OpenAI's)\n"
    "  --max-sessions N     session files kept in --state-dir; a new session beyond it gets\n"
    "                       507 (default 10000)\n"
    "  --session-memory MB  session states parked on the device (default 256)\n"
    "  --host-memory MB     session states parked in host memory beyond that (default 1024);\n"
    "                       older ones stay on disk only (or, without --state-dir, are dropped)\n"
    "  --prefill-piece N    prompt tokens fed between two decoding steps (default 512; rounded\n"
    "                       down to whole chunks)\n"
    "  --weights W, --precision P, --device D, --no-cache   as for the other commands\n"
    "  -h, --help           this text\n";

typedef struct serve_options {
    const char *model, *preset, *host, *state_dir, *api_key, *chat_template, *device, *weights;
    long port;
    int no_cache;
    serve_limits limits;
} serve_options;

static int parse_serve(int argc, char **argv, serve_options *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->api_key = getenv("RETNET_API_KEY");
    if (o->api_key && !*o->api_key) o->api_key = NULL;
    serve_limits *l = &o->limits;
    l->max_body = 1 << 20;
    l->max_prompt = 16384;
    l->max_tokens = 4096;
    l->default_max_tokens = 4096;
    l->parallel = 16;
    l->queue = 256;
    l->max_sessions = 10000;
    l->device_budget = 256ull << 20;
    l->host_budget = 1024ull << 20;
    l->prefill_piece = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(serve_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--no-cache")) {
            o->no_cache = 1;
            continue;
        }
        if (a[0] != '-') return cli_usage_error("serve: unexpected argument '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("serve: %s needs a value", a);
        const char *v = argv[++i];
        long n;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--preset")) o->preset = v;
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--state-dir")) o->state_dir = v;
        else if (!strcmp(a, "--api-key")) o->api_key = *v ? v : NULL;
        else if (!strcmp(a, "--chat-template")) o->chat_template = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--precision")) {
            if (!cli_set_precision(v)) return cli_usage_error("--precision must be f32, f16, bf16 or auto, not '%s'", v);
        } else if (!strcmp(a, "--weights")) {
            rn_weights w;
            if (!cli_parse_weights(v, &w)) return cli_usage_error("--weights must be f32, f16, bf16, q8 or q4, not '%s'", v);
            o->weights = v;
        } else if (!strcmp(a, "--port")) {
            if (!cli_parse_long(v, 0, 65535, &o->port)) return cli_usage_error("--port must be 0..65535, not '%s'", v);
        } else if (!strcmp(a, "--parallel")) {
            if (!cli_parse_long(v, 1, 1024, &n)) return cli_usage_error("--parallel must be 1..1024, not '%s'", v);
            l->parallel = (int)n;
        } else if (!strcmp(a, "--queue")) {
            if (!cli_parse_long(v, 0, 1 << 20, &n)) return cli_usage_error("--queue must be 0..1048576, not '%s'", v);
            l->queue = (int)n;
        } else if (!strcmp(a, "--max-body")) {
            if (!cli_parse_long(v, 64, 1L << 30, &n)) return cli_usage_error("--max-body must be 64..2^30, not '%s'", v);
            l->max_body = (size_t)n;
        } else if (!strcmp(a, "--max-prompt-tokens")) {
            if (!cli_parse_long(v, 1, 1L << 24, &n)) return cli_usage_error("--max-prompt-tokens must be 1..2^24, not '%s'", v);
            l->max_prompt = (size_t)n;
        } else if (!strcmp(a, "--max-tokens")) {
            if (!cli_parse_long(v, 1, 1L << 24, &n)) return cli_usage_error("--max-tokens must be 1..2^24, not '%s'", v);
            l->max_tokens = l->default_max_tokens = n;
        } else if (!strcmp(a, "--max-sessions")) {
            if (!cli_parse_long(v, 0, 1L << 30, &l->max_sessions)) return cli_usage_error("--max-sessions must be 0..2^30, not '%s'", v);
        } else if (!strcmp(a, "--session-memory")) {
            if (!cli_parse_long(v, 0, 1L << 24, &n)) return cli_usage_error("--session-memory must be 0..2^24 MB, not '%s'", v);
            l->device_budget = (uint64_t)n << 20;
        } else if (!strcmp(a, "--host-memory")) {
            if (!cli_parse_long(v, 0, 1L << 24, &n)) return cli_usage_error("--host-memory must be 0..2^24 MB, not '%s'", v);
            l->host_budget = (uint64_t)n << 20;
        } else if (!strcmp(a, "--prefill-piece")) {
            if (!cli_parse_long(v, 1, 1L << 20, &n)) return cli_usage_error("--prefill-piece must be 1..2^20, not '%s'", v);
            l->prefill_piece = (size_t)n;
        } else {
            return cli_usage_error("serve: unknown option '%s' (see retnet serve --help)", a);
        }
    }
    if (!o->model == !o->preset) return cli_usage_error("serve: give one of --model DIR or --preset NAME%s", "");
    return -1;
}

/* The model's name in responses: its directory's last component. */
static const char *model_name(const char *dir) {
    static char name[256];
    snprintf(name, sizeof name, "%s", dir);
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/') name[--n] = '\0';
    const char *slash = strrchr(name, '/');
    return slash ? slash + 1 : name;
}

/* --model as every command opens it, or --preset's shape with random f16 weights. */
static int open_model(const serve_options *so, rn_context **ctx, rn_model **model) {
    options o = {0};
    o.model = so->model;
    o.device = so->device;
    o.weights = so->weights;
    o.no_cache = so->no_cache;
    if (so->model) return cli_open_model(&o, ctx, model);
    char path_buf[4096], message[1024];
    const char *config = cli_preset_path(so->preset, path_buf, sizeof path_buf);
    if (!config) return 2;
    rn_context_options copts;
    cli_context_options(so->device, so->no_cache, &copts);
    rn_status st = rn_context_init(ctx, &copts, message, sizeof message);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: %s: %s\n", rn_status_str(st), message);
        return 1;
    }
    rn_model_options mo;
    rn_model_options_default(&mo);
    mo.weights = cli_weights(so->weights, RN_WEIGHTS_F16);
    st = rn_model_random(*ctx, config, &mo, 1, model);
    if (st != RN_OK) {
        cli_report(*ctx, st, "making the preset's model");
        rn_context_free(*ctx);
        *ctx = NULL;
        return 1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    serve_options so;
    int rc = parse_serve(argc, argv, &so);
    if (rc >= 0) return rc;

    char err[1024];
    serve_template tpl;
    if (serve_template_choose(so.chat_template, so.model ? so.model : "", &tpl, err, sizeof err))
        return cli_usage_error("%s", err);
    umask(077);
    /* Signals go to the main thread alone, which waits for them below; every thread started
     * from here on inherits the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    rn_context *ctx = NULL;
    rn_model *model = NULL;
    if ((rc = open_model(&so, &ctx, &model))) return rc;
    rn_tokenizer *tokenizer = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", so.model ? so.model : "");
    if (so.model && access(path, F_OK) == 0 && rn_tokenizer_load(so.model, &tokenizer) != RN_OK) {
        fprintf(stderr, "retnet: serve: %s\n", rn_last_error());
        rn_model_free(model);
        rn_context_free(ctx);
        return 1;
    }
    /* Kernels some drivers build at their first launch (and CLBlast's, per shape) are built
     * now, not in the first request: a prompt piece and a decoding step. */
    rn_status warm = rn_model_warmup(model, so.limits.prefill_piece, RN_MODE_CHUNKWISE);
    if (warm != RN_OK) {
        cli_report(ctx, warm, "warming up the kernels");
        rn_tokenizer_free(tokenizer);
        rn_model_free(model);
        rn_context_free(ctx);
        return 1;
    }
    serve_metrics metrics;
    memset(&metrics, 0, sizeof metrics);
    serve_sessions *sessions = serve_sessions_new(model, so.state_dir, &so.limits, err, sizeof err);
    serve_scheduler *scheduler =
        sessions ? serve_scheduler_start(model, tokenizer, sessions, &so.limits, &metrics, err, sizeof err) : NULL;
    serve_http_config cfg = {.model_name = model_name(so.model ? so.model : so.preset), .api_key = so.api_key, .chat_template = tpl,
                             .tokenizer = tokenizer, .limits = &so.limits, .scheduler = scheduler,
                             .sessions = sessions, .metrics = &metrics};
    atomic_init(&cfg.draining, 0);
    struct MHD_Daemon *daemon = scheduler ? serve_http_start(&cfg, so.host, (int)so.port, err, sizeof err) : NULL;
    if (!daemon) {
        fprintf(stderr, "retnet: serve: %s\n", err);
        rc = 1;
    } else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
        int port = info ? info->port : (int)so.port;
        fprintf(stderr,
                "retnet: serving %s on http://%s%s%s:%d/ (%s; %d sequences at once; chat template %s; %s; %s)\n",
                cfg.model_name, strchr(so.host, ':') ? "[" : "", so.host, strchr(so.host, ':') ? "]" : "", port,
                !strcmp(so.host, "127.0.0.1") || !strcmp(so.host, "localhost") || !strcmp(so.host, "::1")
                    ? "this machine only: --host 0.0.0.0 to accept others"
                    : "open to the network",
                so.limits.parallel, serve_template_name(tpl),
                so.state_dir ? "conversations kept in --state-dir" : "conversations in memory only",
                so.api_key ? "API key required" : "no API key");
        int sig = 0;
        sigwait(&stop, &sig);
        fprintf(stderr, "retnet: %s: draining (running requests finish, new ones get 503)\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT");
        atomic_store(&cfg.draining, 1);
        /* No new connections; requests on open ones get 503 from the draining flag. */
        MHD_socket listener = MHD_quiesce_daemon(daemon);
        serve_scheduler_drain(scheduler);
        MHD_stop_daemon(daemon);
        if (listener != MHD_INVALID_SOCKET) close(listener);
        fprintf(stderr, "retnet: served %llu requests, %llu tokens; stopped\n",
                (unsigned long long)atomic_load(&metrics.requests),
                (unsigned long long)atomic_load(&metrics.completion_tokens));
    }
    serve_scheduler_free(scheduler);
    serve_sessions_free(sessions);
    rn_tokenizer_free(tokenizer);
    rn_model_free(model);
    rn_context_free(ctx);
    return rc;
}
