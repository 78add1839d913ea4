/* cli.h: what the retnet command's files share: the options and small helpers. */
#ifndef RN_CLI_H
#define RN_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "retnet.h"

#define CLI_MAX_STOPS 8

typedef struct options {
    const char *command, *model, *tokens, *mode, *output, *device, *weights;
    const char *prompt, *prompt_file, *text, *text_file, *decode;
    const char *state_save, *state_load;
    const char *stops[CLI_MAX_STOPS];
    int n_stops;
    long chunk_size, n_generate, top_k, repeat_last_n;
    double temperature, top_p, min_p, repeat_penalty;
    unsigned long long seed;
    int no_cache, interactive;
} options;

int cli_usage_error(const char *fmt, const char *arg);
int cli_report(rn_context *ctx, rn_status st, const char *what);
/* A decimal integer in [lo, hi] into *out; 0 when s is anything else. */
int cli_parse_long(const char *s, long lo, long hi, long *out);
int cli_parse_tokens(const char *s, int32_t **out, size_t *n);
int cli_parse_mode(const char *s, rn_mode *mode);
const char *cli_mode_name(rn_mode mode);
double cli_seconds(void);
/* --precision's value ("f32", "f16", "bf16", "auto") for cli_context_options to apply; 0 for
 * anything else. cli_precision_name: the value in effect ("f32" unless set). */
int cli_set_precision(const char *name);
const char *cli_precision_name(void);
#define CLI_PRECISION_HELP                                                                          \
    "  --precision P      of the products: f32 (default, exact), f16 or bf16 (the linear\n"      \
    "                     layers of prompts and batches and a prompt's retention products on the\n" \
    "                     matrix engine, NVIDIA tensor cores, where the weights are stored in\n"   \
    "                     that type; inputs rounded once, fp32 accumulation), or auto (the\n"     \
    "                     engine where the device has one, else f32); the engine adds some\n"   \
    "                     sums in no fixed order, so two runs may differ in the last bit\n"
/* Context options for --device/--no-cache/--precision, with the tuning knobs from the environment. */
void cli_context_options(const char *device, int no_cache, rn_context_options *opts);
/* Opens the device; prints the reason and returns an exit code on failure. */
int cli_open_context(const char *device, int no_cache, rn_context **ctx);
/* Opens the device and loads --model; prints the reason and returns an exit code on failure,
 * with *ctx and *model NULL. */
int cli_open_model(const options *o, rn_context **ctx, rn_model **model);
/* The config file of a preset: NAME in $RETNET_PRESET_DIR, else in share/retnet-cl/presets beside
 * the program's bin/; a NAME with a slash or ending in .json is a path already. NULL, after
 * listing the presets on standard error, when it is none of them. */
const char *cli_preset_path(const char *name, char *buf, size_t size);
/* "f32", "f16", "bf16", "q8" or "q4" into *out; 0 for anything else. */
int cli_parse_weights(const char *name, rn_weights *out);
/* --weights' value (NULL or unknown: `fallback`). */
rn_weights cli_weights(const char *w, rn_weights fallback);

/* A progress bar on standard error for long work (loading, prompts), when it is a terminal. */
typedef struct cli_progress {
    const char *what;
    double start, last;
    int shown;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what);
void cli_progress_update(void *user, uint64_t done, uint64_t total);  /* an rn_progress_fn */
void cli_progress_end(cli_progress *p);
/* A text that grows at its end, NUL-terminated (zero-initialise it; free `s`). */
typedef struct cli_text {
    char *s;
    size_t len, cap;
} cli_text;
/* Appends n bytes: 0, or 1 when out of memory (the text left as it was). */
int cli_text_append(cli_text *t, const char *bytes, size_t n);
/* Reads a whole file ("-": standard input) into a NUL-terminated heap buffer. */
int cli_read_text(const char *path, char **text, size_t *len);

int cmd_generate(const options *o);
int cmd_tokenize(const options *o);
int cmd_selftest(const options *o);
int cmd_bench(int argc, char **argv);       /* parses its own options */
int cmd_perplexity(int argc, char **argv);  /* parses its own options */
int cmd_quantize(int argc, char **argv);    /* parses its own options */
int cmd_serve(int argc, char **argv);       /* parses its own options */

#endif /* RN_CLI_H */
