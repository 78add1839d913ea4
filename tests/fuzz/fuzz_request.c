/*
 * fuzz_request: serve_request_parse (tools/retnet/serve_request.c, `retnet serve`'s request
 * bodies) on arbitrary bytes, exactly `size` of them (no terminating NUL, so a read past the
 * length is an AddressSanitizer report), as a completion and as a chat request. A refused body
 * must give 400 and a reason; an accepted one must hold only what the parser promises: a prompt
 * (text or token ids within --max-prompt-tokens) or 1..SERVE_MAX_MESSAGES messages of a known
 * role, max_tokens and the sampling parameters within their documented ranges, at most
 * SERVE_MAX_STOPS non-empty stop strings, a valid session id or none. An accepted chat request
 * is then rendered in each template (serve_chat.c), which must hold every user message.
 * serve_request_free runs after every call (LeakSanitizer checks the error paths).
 */
#include <string.h>

#include "fuzz_common.h"
#include "serve.h"

static void check_request(const serve_request *r, serve_kind kind, const serve_limits *lim) {
    fuzz_check(r->kind == kind, "kind %d, asked %d", (int)r->kind, (int)kind);
    if (kind == SERVE_COMPLETION) {
        fuzz_check((r->prompt != NULL) != (r->has_prompt_ids != 0), "prompt %p, has_prompt_ids %d",
                   (void *)r->prompt, r->has_prompt_ids);
        fuzz_check(!r->has_prompt_ids || r->prompt_ids != NULL, "has_prompt_ids without ids");
        fuzz_check(r->n_prompt_ids <= lim->max_prompt, "%zu prompt ids over the limit %zu", r->n_prompt_ids,
                   lim->max_prompt);
        for (size_t i = 0; i < r->n_prompt_ids; i++) fuzz_check(r->prompt_ids[i] >= 0, "prompt id %d", r->prompt_ids[i]);
        fuzz_check(r->n_messages == 0, "%d messages in a completion", r->n_messages);
    } else {
        fuzz_check(r->n_messages >= 1 && r->n_messages <= SERVE_MAX_MESSAGES, "%d messages", r->n_messages);
        for (int i = 0; i < r->n_messages; i++) {
            const char *role = r->messages[i].role;
            fuzz_check(role && r->messages[i].content, "message %d incomplete", i);
            fuzz_check(!strcmp(role, "system") || !strcmp(role, "user") || !strcmp(role, "assistant"),
                       "message %d role '%s'", i, role);
        }
        fuzz_check(r->prompt == NULL && !r->has_prompt_ids, "a prompt in a chat request");
        fuzz_check(!r->echo, "echo in a chat request");
    }
    fuzz_check(r->max_tokens >= 0 && r->max_tokens <= lim->max_tokens, "max_tokens %ld", r->max_tokens);
    const rn_sampling *s = &r->sampling;
    fuzz_check(s->temperature >= 0 && s->temperature <= 100, "temperature %g", (double)s->temperature);
    fuzz_check(s->top_p > 0 && s->top_p <= 1, "top_p %g", (double)s->top_p);
    fuzz_check(s->top_k >= 0, "top_k %d", (int)s->top_k);
    fuzz_check(s->min_p >= 0 && s->min_p < 1, "min_p %g", (double)s->min_p);
    fuzz_check(s->repeat_penalty > 0, "repeat_penalty %g", (double)s->repeat_penalty);
    fuzz_check(r->n_stops >= 0 && r->n_stops <= SERVE_MAX_STOPS, "%d stops", r->n_stops);
    for (int i = 0; i < r->n_stops; i++) fuzz_check(r->stops[i] && r->stops[i][0], "stop %d empty", i);
    fuzz_check(r->stream == 0 || r->stream == 1, "stream %d", r->stream);
    fuzz_check(r->include_usage == 0 || r->include_usage == 1, "include_usage %d", r->include_usage);
    fuzz_check(r->session[0] == '\0' || serve_session_id_valid(r->session), "session '%s'", r->session);
}

static void check_render(const serve_request *r) {
    static const serve_template templates[] = {SERVE_TEMPLATE_CHATML, SERVE_TEMPLATE_LLAMA2, SERVE_TEMPLATE_PLAIN};
    for (size_t t = 0; t < sizeof templates / sizeof *templates; t++) {
        char *text = serve_chat_render(templates[t], r);
        fuzz_check(text != NULL, "serve_chat_render(%s) failed", serve_template_name(templates[t]));
        for (int i = 0; i < r->n_messages; i++) {
            /* Llama 2 folds a system prompt into the next user turn (dropped without one). */
            if (templates[t] == SERVE_TEMPLATE_LLAMA2 && !strcmp(r->messages[i].role, "system")) continue;
            fuzz_check(strstr(text, r->messages[i].content) != NULL, "%s: message %d missing",
                       serve_template_name(templates[t]), i);
        }
        free(text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Small limits, so that the limit paths are reached too. */
    serve_limits lim = {0};
    lim.max_body = 1 << 20;
    lim.max_prompt = 64;
    lim.max_tokens = 4096;
    lim.default_max_tokens = 256;
    static const serve_kind kinds[] = {SERVE_COMPLETION, SERVE_CHAT};
    for (int k = 0; k < 2; k++) {
        serve_request r;
        char err[512];
        err[0] = '\0';
        int st = serve_request_parse((const char *)data, size, kinds[k], &lim, &r, err, sizeof err);
        if (st == 0) {
            check_request(&r, kinds[k], &lim);
            if (kinds[k] == SERVE_CHAT) check_render(&r);
        } else {
            fuzz_check(st == 400, "status %d", st);
            fuzz_check(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL, "status %d without a reason", st);
        }
        serve_request_free(&r);
    }
    return 0;
}
