/* serve_request.c: request bodies into serve_request.
 *
 * The body is untrusted: its nesting is bounded before cJSON (which recurses) sees it, every
 * field is type-checked and range-checked, and the first problem is reported by field name.
 * Fields this server does not use are ignored, as OpenAI's API ignores them. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "serve.h"

#define MAX_DEPTH 16

static int reject(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return 400;
}

/* What cJSON would take but must not: nesting deeper than MAX_DEPTH outside strings (a body
 * of a million '[' would exhaust a thread's stack in its recursion), and "\u0000" in a string
 * (cJSON's strings end at it, so "a\u0000/../b" would read as "a"). */
static const char *prescan(const char *s, size_t len) {
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\' && i + 5 < len && !strncmp(s + i + 1, "u0000", 5)) return "a string holds \\u0000";
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') in_string = 1;
        else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH) return "the body nests deeper than 16 levels";
        } else if (c == '}' || c == ']') depth--;
    }
    return NULL;
}

int serve_session_id_valid(const char *id) {
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
        if (n >= SERVE_SESSION_ID_MAX) return 0;
    }
    return n > 0;
}

/* A number field in [lo, hi]; absent or null keeps *out. */
static int number_field(const cJSON *root, const char *name, double lo, double hi, double *out, char *err,
                        size_t cap) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble))
        return reject(err, cap, "'%s' must be a number", name);
    if (f->valuedouble < lo || f->valuedouble > hi)
        return reject(err, cap, "'%s' is %g, outside [%g, %g]", name, f->valuedouble, lo, hi);
    *out = f->valuedouble;
    return 0;
}

static int integer_field(const cJSON *root, const char *name, double lo, double hi, double *out, char *err,
                         size_t cap) {
    double v = *out;
    int st = number_field(root, name, lo, hi, &v, err, cap);
    if (st) return st;
    if (v != floor(v)) return reject(err, cap, "'%s' must be an integer", name);
    *out = v;
    return 0;
}

static int bool_field(const cJSON *root, const char *name, int *out, char *err, size_t cap) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsBool(f)) return reject(err, cap, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(f);
    return 0;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* prompt: a string, or an array of token ids (one prompt per request). */
static int parse_prompt(const cJSON *root, const serve_limits *lim, serve_request *r, char *err, size_t cap) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p)) return reject(err, cap, "'prompt' is required");
    if (cJSON_IsString(p)) {
        r->prompt = dup_string(p->valuestring);
        return r->prompt ? 0 : reject(err, cap, "out of memory");
    }
    if (!cJSON_IsArray(p)) return reject(err, cap, "'prompt' must be a string or an array of token ids");
    int n = cJSON_GetArraySize(p);
    if (n > 0 && cJSON_IsString(cJSON_GetArrayItem(p, 0)))
        return reject(err, cap, "'prompt' holds %d strings; this server takes one prompt per request", n);
    if ((size_t)n > lim->max_prompt)
        return reject(err, cap, "'prompt' has %d tokens, over the limit of %zu (--max-prompt-tokens)", n,
                      lim->max_prompt);
    r->prompt_ids = malloc(((size_t)n + 1) * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return reject(err, cap, "out of memory");
    r->has_prompt_ids = 1;
    const cJSON *item;
    cJSON_ArrayForEach(item, p) {
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
        if (!cJSON_IsNumber(item) || v < 0 || v > INT32_MAX || v != floor(v))
            return reject(err, cap, "'prompt'[%zu] must be a token id (an integer >= 0)", r->n_prompt_ids);
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)v;
    }
    return 0;
}

/* messages: [{"role": "system"|"user"|"assistant", "content": string}, ...]. */
static int parse_messages(const cJSON *root, serve_request *r, char *err, size_t cap) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) == 0)
        return reject(err, cap, "'messages' must be a non-empty array");
    if (cJSON_GetArraySize(m) > SERVE_MAX_MESSAGES)
        return reject(err, cap, "'messages' has %d entries, over the limit of %d", cJSON_GetArraySize(m),
                      SERVE_MAX_MESSAGES);
    const cJSON *item;
    cJSON_ArrayForEach(item, m) {
        int i = r->n_messages;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(item, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
        if (!cJSON_IsObject(item) || !cJSON_IsString(role))
            return reject(err, cap, "'messages'[%d] must be an object with a string 'role'", i);
        if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant"))
            return reject(err, cap, "'messages'[%d].role must be system, user or assistant", i);
        if (!cJSON_IsString(content))
            return reject(err, cap, "'messages'[%d].content must be a string", i);
        r->messages[i].role = dup_string(role->valuestring);
        r->messages[i].content = dup_string(content->valuestring);
        r->n_messages++;
        if (!r->messages[i].role || !r->messages[i].content) return reject(err, cap, "out of memory");
    }
    return 0;
}

static int parse_stops(const cJSON *root, serve_request *r, char *err, size_t cap) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!s || cJSON_IsNull(s)) return 0;
    if (cJSON_IsString(s)) {
        if (!*s->valuestring) return 0;
        r->stops[r->n_stops] = dup_string(s->valuestring);
        return r->stops[r->n_stops++] ? 0 : reject(err, cap, "out of memory");
    }
    if (!cJSON_IsArray(s)) return reject(err, cap, "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(s) > SERVE_MAX_STOPS)
        return reject(err, cap, "'stop' has %d strings, at most %d", cJSON_GetArraySize(s), SERVE_MAX_STOPS);
    const cJSON *item;
    cJSON_ArrayForEach(item, s) {
        if (!cJSON_IsString(item)) return reject(err, cap, "'stop' must hold strings only");
        if (!*item->valuestring) continue;
        r->stops[r->n_stops] = dup_string(item->valuestring);
        if (!r->stops[r->n_stops++]) return reject(err, cap, "out of memory");
    }
    return 0;
}

static int parse_fields(const cJSON *root, serve_kind kind, const serve_limits *lim, serve_request *r, char *err,
                        size_t cap) {
    int st = kind == SERVE_CHAT ? parse_messages(root, r, err, cap) : parse_prompt(root, lim, r, err, cap);
    if (st) return st;

    /* OpenAI's completions default to 16 tokens; chat to "as many as fit": ours is the flag. */
    double max_tokens = kind == SERVE_CHAT ? (double)lim->default_max_tokens : 16;
    if (kind == SERVE_COMPLETION && lim->default_max_tokens < 16) max_tokens = (double)lim->default_max_tokens;
    if ((st = integer_field(root, "max_tokens", 0, (double)lim->max_tokens, &max_tokens, err, cap))) return st;
    if (kind == SERVE_CHAT &&
        (st = integer_field(root, "max_completion_tokens", 0, (double)lim->max_tokens, &max_tokens, err, cap)))
        return st;
    r->max_tokens = (long)max_tokens;

    rn_sampling *s = &r->sampling;
    rn_sampling_default(s);
    /* The defaults are `retnet generate`'s (rn_sampling_default), not OpenAI's, so that a
     * request and the command with the same seed give the same text. */
    double temperature = s->temperature, top_p = s->top_p, top_k = s->top_k, min_p = s->min_p;
    double repeat = s->repeat_penalty, seed = (double)s->seed;
    if ((st = number_field(root, "temperature", 0, 100, &temperature, err, cap))) return st;
    if ((st = number_field(root, "top_p", 1e-9, 1, &top_p, err, cap))) return st;
    if ((st = integer_field(root, "top_k", 0, 1 << 24, &top_k, err, cap))) return st;
    if ((st = number_field(root, "min_p", 0, 0.999999, &min_p, err, cap))) return st;
    if ((st = number_field(root, "repeat_penalty", 1e-6, 1e6, &repeat, err, cap))) return st;
    /* Seeds up to 2^53: beyond, a JSON number is no longer an exact integer. */
    if ((st = integer_field(root, "seed", 0, 9007199254740992.0, &seed, err, cap))) return st;
    s->temperature = (float)temperature;
    s->top_p = (float)top_p;
    s->top_k = (int32_t)top_k;
    s->min_p = (float)min_p;
    s->repeat_penalty = (float)repeat;
    s->seed = (uint64_t)seed;

    if ((st = parse_stops(root, r, err, cap))) return st;
    if ((st = bool_field(root, "stream", &r->stream, err, cap))) return st;
    if (kind == SERVE_COMPLETION && (st = bool_field(root, "echo", &r->echo, err, cap))) return st;
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (cJSON_IsObject(opts) && (st = bool_field(opts, "include_usage", &r->include_usage, err, cap))) return st;

    const cJSON *session = cJSON_GetObjectItemCaseSensitive(root, "session");
    if (session && !cJSON_IsNull(session)) {
        if (!cJSON_IsString(session) || !serve_session_id_valid(session->valuestring))
            return reject(err, cap, "'session' must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-'",
                          SERVE_SESSION_ID_MAX);
        strcpy(r->session, session->valuestring);
    }
    return 0;
}

int serve_request_parse(const char *body, size_t len, serve_kind kind, const serve_limits *lim, serve_request *r,
                        char *err, size_t cap) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    if (len == 0) return reject(err, cap, "the request has no body; it must be a JSON object");
    if (memchr(body, '\0', len)) return reject(err, cap, "the body holds a NUL byte");
    const char *bad = prescan(body, len);
    if (bad) return reject(err, cap, "%s", bad);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) return reject(err, cap, "the body is not valid JSON");
    int st = cJSON_IsObject(root) ? parse_fields(root, kind, lim, r, err, cap)
                                  : reject(err, cap, "the body must be a JSON object");
    cJSON_Delete(root);
    return st;
}

void serve_request_free(serve_request *r) {
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_messages; i++) {
        free(r->messages[i].role);
        free(r->messages[i].content);
    }
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}
