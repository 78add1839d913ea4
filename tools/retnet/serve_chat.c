/* serve_chat.c: chat messages into a prompt.
 *
 * A model's chat template is a Jinja program in tokenizer_config.json; embedding a template
 * language for it is out of scope. Instead the server recognises the common simple forms by
 * their markers and renders them itself, and offers them by name (--chat-template):
 *   chatml  <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n
 *   llama2  <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ...
 *   plain   "System: ...\nUser: ...\nAssistant: ...\n" ending with "Assistant:", for base
 *           models that were never taught a format (the demo model)
 * A model whose template is something else gets a 400 that says so, unless a name is given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "serve.h"

const char *serve_template_name(serve_template t) {
    switch (t) {
    case SERVE_TEMPLATE_CHATML: return "chatml";
    case SERVE_TEMPLATE_LLAMA2: return "llama2";
    case SERVE_TEMPLATE_PLAIN: return "plain";
    default: return "none";
    }
}

/* The template named in the model's tokenizer_config.json, by its markers. */
static serve_template from_model(const char *model_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    FILE *f = fopen(path, "rb");
    if (!f) return SERVE_TEMPLATE_NONE;
    char *text = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1L << 24) && fseek(f, 0, SEEK_SET) == 0)
        text = malloc((size_t)n + 1);
    size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
    fclose(f);
    serve_template t = SERVE_TEMPLATE_NONE;
    cJSON *root = text ? cJSON_ParseWithLength(text, got) : NULL;
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(tpl)) {
        if (strstr(tpl->valuestring, "<|im_start|>")) t = SERVE_TEMPLATE_CHATML;
        else if (strstr(tpl->valuestring, "[INST]")) t = SERVE_TEMPLATE_LLAMA2;
    }
    cJSON_Delete(root);
    free(text);
    return t;
}

int serve_template_choose(const char *name, const char *model_dir, serve_template *out, char *err, size_t cap) {
    if (!name || !strcmp(name, "auto")) *out = from_model(model_dir);
    else if (!strcmp(name, "chatml")) *out = SERVE_TEMPLATE_CHATML;
    else if (!strcmp(name, "llama2")) *out = SERVE_TEMPLATE_LLAMA2;
    else if (!strcmp(name, "plain")) *out = SERVE_TEMPLATE_PLAIN;
    else if (!strcmp(name, "none")) *out = SERVE_TEMPLATE_NONE;
    else {
        snprintf(err, cap, "--chat-template must be auto, chatml, llama2, plain or none, not '%s'", name);
        return 1;
    }
    return 0;
}

/* A rendering: the text, and whether memory ran out on the way. */
typedef struct text {
    cli_text t;
    int failed;
} text;

static void put(text *t, const char *s) {
    if (!t->failed && cli_text_append(&t->t, s, strlen(s))) t->failed = 1;
}

static void render_chatml(text *t, const serve_request *r) {
    for (int i = 0; i < r->n_messages; i++) {
        put(t, "<|im_start|>");
        put(t, r->messages[i].role);
        put(t, "\n");
        put(t, r->messages[i].content);
        put(t, "<|im_end|>\n");
    }
    put(t, "<|im_start|>assistant\n");
}

/* Llama 2's form: the system prompt folds into the first user turn. */
static void render_llama2(text *t, const serve_request *r) {
    const char *system = NULL;
    for (int i = 0; i < r->n_messages; i++) {
        const serve_message *m = &r->messages[i];
        if (!strcmp(m->role, "system")) {
            system = m->content;
        } else if (!strcmp(m->role, "user")) {
            put(t, "<s>[INST] ");
            if (system) {
                put(t, "<<SYS>>\n");
                put(t, system);
                put(t, "\n<</SYS>>\n\n");
                system = NULL;
            }
            put(t, m->content);
            put(t, " [/INST]");
        } else {
            put(t, " ");
            put(t, m->content);
            put(t, " </s>");
        }
    }
    if (system) {  /* a system message no user turn followed */
        put(t, "<s>[INST] <<SYS>>\n");
        put(t, system);
        put(t, "\n<</SYS>>\n\n [/INST]");
    }
}

static void render_plain(text *t, const serve_request *r) {
    for (int i = 0; i < r->n_messages; i++) {
        const char *role = r->messages[i].role;
        put(t, !strcmp(role, "system") ? "System: " : !strcmp(role, "user") ? "User: " : "Assistant: ");
        put(t, r->messages[i].content);
        put(t, "\n");
    }
    put(t, "Assistant:");
}

char *serve_chat_render(serve_template tpl, const serve_request *r) {
    text t = {0};
    put(&t, "");
    if (tpl == SERVE_TEMPLATE_CHATML) render_chatml(&t, r);
    else if (tpl == SERVE_TEMPLATE_LLAMA2) render_llama2(&t, r);
    else render_plain(&t, r);
    if (t.failed) {
        free(t.t.s);
        return NULL;
    }
    return t.t.s;
}
