/* cli_common.c: what the retnet command's subcommands share (cli.h): argument parsers, opening
 * the device and the model with the common options, presets, progress bars, reading text. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "retnet: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun `retnet --help` for usage\n");
    return 2;
}

int cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* Parses "5,17,3" into a heap array. */
int cli_parse_tokens(const char *s, int32_t **out, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return 0;
    size_t count = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            free(ids);
            return 0;
        }
        ids[count++] = (int32_t)v;
        if (*end == '\0') break;
        p = end + 1;
    }
    *out = ids;
    *n = count;
    return 1;
}

int cli_parse_mode(const char *s, rn_mode *mode) {
    if (!s) return 0;
    if (!strcmp(s, "parallel")) *mode = RN_MODE_PARALLEL;
    else if (!strcmp(s, "chunkwise")) *mode = RN_MODE_CHUNKWISE;
    else if (!strcmp(s, "recurrent")) *mode = RN_MODE_RECURRENT;
    else return 0;
    return 1;
}

const char *cli_mode_name(rn_mode m) {
    return m == RN_MODE_PARALLEL ? "parallel" : m == RN_MODE_CHUNKWISE ? "chunkwise" : "recurrent";
}

/* Where the presets are: $RETNET_PRESET_DIR, else share/retnet-cl/presets beside the folder of
 * this program (bin/), which is where both the build tree and an installed copy keep them. */
static const char *preset_dir(char *buf, size_t size) {
    const char *dir = getenv("RETNET_PRESET_DIR");
    if (dir && *dir) return dir;
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return "share/retnet-cl/presets";
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';  /* .../bin */
    snprintf(buf, size, "%s/../share/retnet-cl/presets", exe);
    return buf;
}

/* The names of the presets in `dir`, for an error message. */
static void list_presets(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "retnet: no preset folder at '%s' (set RETNET_PRESET_DIR)\n", dir);
        return;
    }
    fprintf(stderr, "retnet: the presets in %s:", dir);
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".json")) fprintf(stderr, " %.*s", (int)(len - 5), e->d_name);
    }
    fputc('\n', stderr);
    closedir(d);
}

/* A preset name is a file in the preset folder; anything with a slash or ending in .json is a
 * path. NULL, after listing the presets, when the name is none of them. */
const char *cli_preset_path(const char *name, char *buf, size_t size) {
    size_t len = strlen(name);
    if (strchr(name, '/') || (len > 5 && !strcmp(name + len - 5, ".json"))) return name;
    char dir_buf[2048];
    const char *dir = preset_dir(dir_buf, sizeof dir_buf);
    snprintf(buf, size, "%s/%s.json", dir, name);
    if (access(buf, R_OK) == 0) return buf;
    fprintf(stderr, "retnet: no preset named '%s'\n", name);
    list_presets(dir);
    return NULL;
}

int cli_report(rn_context *ctx, rn_status st, const char *what) {
    fprintf(stderr, "retnet: %s failed: %s: %s\n", what, rn_status_str(st), rn_context_last_error(ctx));
    return 1;
}

double cli_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A progress bar on standard error when it is a terminal, for work that has taken more than a
 * second, redrawn at most ten times a second. */
void cli_progress_start(cli_progress *p, const char *what) {
    p->what = what;
    p->start = cli_seconds();
    p->last = 0.0;
    p->shown = 0;
}

void cli_progress_update(void *user, uint64_t done, uint64_t total) {
    cli_progress *p = user;
    double now = cli_seconds(), elapsed = now - p->start;
    if (elapsed < 1.0 || total == 0 || !isatty(STDERR_FILENO)) return;
    if (done < total && now - p->last < 0.1) return;
    p->last = now;
    int width = 40, filled = (int)(width * (double)done / (double)total);
    fprintf(stderr, "\r%s [%.*s%*s] %5.1f%%  %.1f s", p->what, filled, "########################################",
            width - filled, "", 100.0 * (double)done / (double)total, elapsed);
    p->shown = 1;
}

void cli_progress_end(cli_progress *p) {
    if (p->shown) fputs("\r\033[K", stderr);
    p->shown = 0;
}

static const struct { const char *name; rn_precision precision; } precisions[] = {
    {"f32", RN_PRECISION_F32}, {"f16", RN_PRECISION_F16}, {"bf16", RN_PRECISION_BF16}, {"auto", RN_PRECISION_AUTO}};
static int precision_chosen;  /* an index into precisions */

int cli_set_precision(const char *name) {
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++)
        if (!strcmp(name, precisions[i].name)) {
            precision_chosen = (int)i;
            return 1;
        }
    return 0;
}

const char *cli_precision_name(void) {
    return precisions[precision_chosen].name;
}

/* RETNET_BUILD_OPTIONS: each program's build log on standard error. */
static void print_build_log(void *user, const char *build_options, const char *log) {
    (void)user;
    fprintf(stderr, "build log (options \"%s\"):\n%s\n", build_options, log);
}

void cli_context_options(const char *device, int no_cache, rn_context_options *opts) {
    rn_context_options_default(opts);
    opts->device = device;
    opts->precision = precisions[precision_chosen].precision;
    if (no_cache) opts->program_cache = 0;
    /* The tuning knobs are context options; the command takes them from the environment. */
    const char *wg = getenv("RETNET_WORK_GROUP"), *rows = getenv("RETNET_PROJECT_MAX_ROWS");
    const char *alloc = getenv("RETNET_MAX_ALLOC_MIB");
    if (wg && atol(wg) > 0) opts->work_group = (size_t)atol(wg);
    if (rows && atol(rows) > 0) opts->project_max_rows = (size_t)atol(rows);
    if (alloc && atof(alloc) > 0) opts->max_allocation = (uint64_t)(atof(alloc) * 1048576.0);
    const char *batch_wg = getenv("RETNET_BATCH_WORK_GROUP");
    if (batch_wg && *batch_wg) opts->batch_work_group = atoi(batch_wg);
    const char *build = getenv("RETNET_BUILD_OPTIONS");
    if (build && *build) {
        opts->build_options = build;
        opts->build_log = print_build_log;
    }
}

int cli_open_context(const char *device, int no_cache, rn_context **ctx) {
    rn_context_options opts;
    cli_context_options(device, no_cache, &opts);
    char message[4096];
    rn_status st = rn_context_init(ctx, &opts, message, sizeof message);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: opening the OpenCL device failed: %s: %s\n", rn_status_str(st), message);
        if (st == RN_ERR_NO_PLATFORM)
            fprintf(stderr, "retnet: install an OpenCL driver, or PoCL for the CPU (Debian: pocl-opencl-icd)\n");
        return 1;
    }
    return 0;
}

int cli_parse_weights(const char *name, rn_weights *out) {
    static const struct { const char *name; rn_weights weights; } table[] = {
        {"f32", RN_WEIGHTS_F32}, {"f16", RN_WEIGHTS_F16}, {"bf16", RN_WEIGHTS_BF16},
        {"q8", RN_WEIGHTS_Q8},   {"q4", RN_WEIGHTS_Q4}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(name, table[i].name)) {
            *out = table[i].weights;
            return 1;
        }
    return 0;
}

rn_weights cli_weights(const char *w, rn_weights fallback) {
    rn_weights parsed;
    return w && cli_parse_weights(w, &parsed) ? parsed : fallback;
}

/* On failure both handles are NULL and nothing is left open: callers free what they hold
 * without knowing how far this got. */
int cli_open_model(const options *o, rn_context **ctx, rn_model **model) {
    *ctx = NULL;
    *model = NULL;
    if (!o->model) return cli_usage_error("--model DIR is required%s", "");
    int rc = cli_open_context(o->device, o->no_cache, ctx);
    if (rc) return rc;
    rn_model_options load;
    rn_model_options_default(&load);
    load.weights = cli_weights(o->weights, RN_WEIGHTS_FILE);
    cli_progress bar;
    cli_progress_start(&bar, "loading");
    load.progress = cli_progress_update;
    load.progress_user = &bar;
    rn_status st = rn_model_load(*ctx, o->model, &load, model);
    cli_progress_end(&bar);
    if (st != RN_OK) {
        rc = cli_report(*ctx, st, "loading the model");
        rn_context_free(*ctx);
        *ctx = NULL;
        *model = NULL;
        return rc;
    }
    return 0;
}

int cli_read_text(const char *path, char **text, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "retnet: cannot open '%s': %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t want = cap - n - 1, got = fread(buf + n, 1, want, f);
        n += got;
        /* A short read is the end (or an error): reading on would ask a terminal for a second
         * Ctrl-D. */
        if (got < want) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = !buf || ferror(f);
    if (f != stdin) fclose(f);
    if (failed) {
        fprintf(stderr, "retnet: reading '%s' failed\n", path);
        free(buf);
        return 1;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

int cli_text_append(cli_text *t, const char *bytes, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *grown = realloc(t->s, cap);
        if (!grown) return 1;
        t->s = grown;
        t->cap = cap;
    }
    memcpy(t->s + t->len, bytes, n);
    t->len += n;
    t->s[t->len] = '\0';
    return 0;
}
