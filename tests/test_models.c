/*
 * test_models.c: the bad-input matrix of the models layer (safetensors, config.json,
 * checkpoint directories), in the manner of llama.cpp's test-gguf: every malformed input is
 * built on disk from a good one by a byte-level edit, and must give its exact rn_status with a
 * message that names the file and the tensor or key. Success cases check that what was written
 * comes back (values within the dtype's precision, shapes, counts).
 *
 * Prints one line per case (and each error message when RN_TEST_VERBOSE is set); returns
 * nonzero when any case fails. Run under valgrind by ctest (models_valgrind) to show that no
 * error path leaks.
 */
#define _XOPEN_SOURCE 700   /* mkdtemp, nftw */

#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dtype.h"
#include "model_writer.h"
#include "quantize.h"

static int g_cases, g_failures;
static char g_dir[256];

/* ---- reporting ---------------------------------------------------------------------------- */

static void report(bool ok, const char *group, const char *label, const char *fmt, ...) RN_PRINTF(4, 5);
static void report(bool ok, const char *group, const char *label, const char *fmt, ...) {
    g_cases++;
    if (!ok) g_failures++;
    printf("%s %-10s %-44s ", ok ? "ok  " : "FAIL", group, label);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* The status is exactly `expect`; on an error the message is non-empty and holds each of the
 * `mentions` (file path, tensor or key; NULL entries are skipped). */
static void expect_status(const char *group, const char *label, rn_status got, rn_status expect,
                          const rn_error *err, const char *mention1, const char *mention2) {
    bool ok = got == expect;
    const char *missing = NULL;
    if (ok && expect != RN_OK) {
        if (err->message[0] == '\0') missing = "(any message)";
        else if (mention1 && !strstr(err->message, mention1)) missing = mention1;
        else if (mention2 && !strstr(err->message, mention2)) missing = mention2;
        ok = missing == NULL;
    }
    if (ok) {
        report(true, group, label, "%s", rn_status_str(got));
        if (got != RN_OK && getenv("RN_TEST_VERBOSE")) printf("     %s\n", err->message);
    } else if (got != expect) {
        report(false, group, label, "expected %s, got %s: %s", rn_status_str(expect),
               rn_status_str(got), got == RN_OK ? "" : err->message);
    } else {
        report(false, group, label, "%s but the message lacks '%s': %s", rn_status_str(got),
               missing, err->message);
    }
}

/* ---- files -------------------------------------------------------------------------------- */

static void die(const char *what, const char *path) {
    fprintf(stderr, "test_models: %s %s\n", what, path);
    exit(2);
}

static void path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create", path);
    if (len && fwrite(data, 1, len, f) != len) die("cannot write", path);
    if (fclose(f) != 0) die("cannot close", path);
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) die("cannot read", path);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

/* A safetensors file from its parts; `n_field` is what bytes 0-7 say, whatever the header. */
static void write_st_raw(const char *path, uint64_t n_field, const void *header, size_t hlen,
                         const void *data, size_t dlen) {
    size_t total = 8 + hlen + dlen;
    unsigned char *buf = malloc(total ? total : 1);
    if (!buf) die("no memory for", path);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n_field >> (8 * i));
    if (hlen) memcpy(buf + 8, header, hlen);
    if (dlen) memcpy(buf + 8 + hlen, data, dlen);
    write_file(path, buf, total);
    free(buf);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* ---- the base safetensors file ------------------------------------------------------------ */

/* Written by rn_st_write; every malformed variant is an edit of its header or data. */
static const float k_alpha[6] = {0.5f, -1.25f, 3.0f, 1e-3f, -7.5f, 2.0f};   /* [2, 3] */
static const float k_beta[4] = {1.0f, 2.0f, -3.0f, 4.5f};                   /* [4] */
static const float k_gamma[4] = {-0.25f, 0.125f, 100.0f, -1e5f};            /* [2, 2] */
static const char k_base_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"alpha\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"beta\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]},"
    "\"gamma.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[40,56]}}";

static char *g_header;        /* the base header, padding included */
static size_t g_header_len;
static unsigned char *g_data; /* the base data region, 56 bytes */
static size_t g_data_len;

static void make_base(void) {
    char path[512];
    path_in(path, sizeof path, "base.safetensors");
    rn_st_entry entries[3] = {
        {.name = "alpha", .dtype = ST_F32, .rank = 2, .shape = {2, 3}, .data = k_alpha},
        {.name = "beta", .dtype = ST_F32, .rank = 1, .shape = {4}, .data = k_beta},
        {.name = "gamma.weight", .dtype = ST_F32, .rank = 2, .shape = {2, 2}, .data = k_gamma},
    };
    rn_error err = {{0}};
    rn_status s = rn_st_write(path, entries, 3, &err);
    if (s != RN_OK) die(err.message, path);
    size_t len;
    unsigned char *file = read_all(path, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | file[i];
    g_header_len = (size_t)n;
    g_header = malloc(g_header_len + 1);
    memcpy(g_header, file + 8, g_header_len);
    g_header[g_header_len] = '\0';
    g_data_len = len - 8 - g_header_len;
    g_data = malloc(g_data_len);
    memcpy(g_data, file + 8 + g_header_len, g_data_len);
    free(file);

    /* the edits below are written against this text: a writer change must show here first */
    bool ok = strncmp(g_header, k_base_header, strlen(k_base_header)) == 0 && g_header_len % 8 == 0 &&
              g_data_len == 56 && strspn(g_header + strlen(k_base_header), " ") ==
                                      g_header_len - strlen(k_base_header);
    report(ok, "writer", "base header text and padding", "%zu header bytes", g_header_len);
    if (!ok) die("unexpected base header", g_header);
}

/* The base header with `from` replaced by `to` (first occurrence), padding kept. */
static char *edit_header(const char *from, const char *to) {
    const char *at = strstr(g_header, from);
    if (!at) die("edit target not in the base header:", from);
    size_t pre = (size_t)(at - g_header), fl = strlen(from), tl = strlen(to);
    char *out = malloc(g_header_len - fl + tl + 1);
    memcpy(out, g_header, pre);
    memcpy(out + pre, to, tl);
    strcpy(out + pre + tl, at + fl);
    return out;
}

/* The base header without its padding. */
static char *bare_header(void) {
    size_t n = g_header_len;
    while (n && g_header[n - 1] == ' ') n--;
    char *out = malloc(n + 1);
    memcpy(out, g_header, n);
    out[n] = '\0';
    return out;
}

/* ---- safetensors cases -------------------------------------------------------------------- */

typedef enum st_build {
    BUILD_EDIT,            /* header edit `from` -> `to` (or the base when from is NULL) */
    BUILD_HEADER,          /* `to` is the whole header; data: the base data cut to `data_len` */
    BUILD_MISSING,
    BUILD_DIRECTORY,
    BUILD_EMPTY,
    BUILD_SHORT,
    BUILD_TRUNCATED,       /* base data minus 4 bytes */
    BUILD_TRAILING,        /* base data plus 8 bytes */
    BUILD_GAP,             /* edit, and 4 more data bytes so only the gap is wrong */
    BUILD_N_ZERO,
    BUILD_N_PAST_END,
    BUILD_N_OVER_CAP,      /* a real header of ST_MAX_HEADER_BYTES + 8 bytes */
    BUILD_N_HUGE,
    BUILD_NOT_BRACE,       /* a space before '{' */
    BUILD_GARBAGE,         /* "x" after the JSON */
    BUILD_TAB_PADDING,
    BUILD_NUL_PADDING,
    BUILD_NUL_NAME,
    BUILD_DEPTH_64,        /* nesting at the cap: parses, then fails as an entry */
    BUILD_DEPTH_65,
    BUILD_DEPTH_100000,
    BUILD_NUMBER_100K,
    BUILD_NAME_512,
    BUILD_NAME_513,
} st_build;

typedef struct st_case {
    const char *label;
    st_build build;
    const char *from, *to;
    rn_status expect;
    const char *mention;   /* besides the path */
    size_t data_len;       /* BUILD_HEADER only */
} st_case;

#define BETA "\"beta\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]}"
#define ALPHA_SHAPE "\"shape\":[2,3]"

static const st_case k_st_cases[] = {
    /* files */
    {"ok: base file", BUILD_EDIT, NULL, NULL, RN_OK, NULL, 0},
    {"missing file", BUILD_MISSING, NULL, NULL, RN_ERR_IO, NULL, 0},
    {"a directory", BUILD_DIRECTORY, NULL, NULL, RN_ERR_IO, NULL, 0},
    {"empty file", BUILD_EMPTY, NULL, NULL, RN_ERR_TRUNCATED, NULL, 0},
    {"file of 5 bytes", BUILD_SHORT, NULL, NULL, RN_ERR_TRUNCATED, NULL, 0},
    {"data 4 bytes short", BUILD_TRUNCATED, NULL, NULL, RN_ERR_TRUNCATED, "gamma.weight", 0},
    /* header length */
    {"header length 0", BUILD_N_ZERO, NULL, NULL, RN_ERR_HEADER_SIZE, NULL, 0},
    {"header length past the end", BUILD_N_PAST_END, NULL, NULL, RN_ERR_HEADER_SIZE, NULL, 0},
    {"header length over the cap", BUILD_N_OVER_CAP, NULL, NULL, RN_ERR_HEADER_SIZE, NULL, 0},
    {"header length 2^64-1", BUILD_N_HUGE, NULL, NULL, RN_ERR_HEADER_SIZE, NULL, 0},
    /* header bytes */
    {"header starts with a space", BUILD_NOT_BRACE, NULL, NULL, RN_ERR_JSON, NULL, 0},
    {"header is an array", BUILD_HEADER, NULL, "[]      ", RN_ERR_JSON, NULL, 0},
    {"garbage after the JSON", BUILD_GARBAGE, NULL, NULL, RN_ERR_JSON, NULL, 0},
    {"second object after the JSON", BUILD_HEADER, NULL, "{} {}   ", RN_ERR_JSON, NULL, 0},
    {"tab in the padding", BUILD_TAB_PADDING, NULL, NULL, RN_ERR_JSON, NULL, 0},
    {"NUL in the padding", BUILD_NUL_PADDING, NULL, NULL, RN_ERR_JSON, NULL, 0},
    {"NUL in a name", BUILD_NUL_NAME, NULL, NULL, RN_ERR_JSON, NULL, 0},
    {"\\u0000 in a name", BUILD_EDIT, "\"alpha\"", "\"al\\u0000pha\"", RN_ERR_JSON, NULL, 0},
    {"UTF-8 overlong '/'", BUILD_EDIT, "\"alpha\"", "\"al\xc0\xafpha\"", RN_ERR_JSON, NULL, 0},
    {"UTF-8 overlong 3-byte", BUILD_EDIT, "\"alpha\"", "\"al\xe0\x80\xafpha\"", RN_ERR_JSON, NULL, 0},
    {"UTF-8 surrogate", BUILD_EDIT, "\"alpha\"", "\"al\xed\xa0\x80pha\"", RN_ERR_JSON, NULL, 0},
    {"UTF-8 above U+10FFFF", BUILD_EDIT, "\"alpha\"", "\"al\xf4\x90\x80\x80pha\"", RN_ERR_JSON, NULL, 0},
    {"UTF-8 lone continuation", BUILD_EDIT, "\"alpha\"", "\"al\x80pha\"", RN_ERR_JSON, NULL, 0},
    {"UTF-8 cut sequence", BUILD_EDIT, "\"alpha\"", "\"al\xe2\x82pha\"", RN_ERR_JSON, NULL, 0},
    {"UTF-8 5-byte form", BUILD_EDIT, "\"alpha\"", "\"al\xf8\x88\x80\x80\x80pha\"", RN_ERR_JSON, NULL, 0},
    {"ok: UTF-8 name", BUILD_EDIT, "\"alpha\"", "\"\xce\xb1\xce\xbb\xcf\x86\xce\xb1\xf0\x9f\x98\x80\"", RN_OK, NULL, 0},
    {"raw control byte in a name", BUILD_EDIT, "\"alpha\"", "\"al\x01pha\"", RN_ERR_JSON, NULL, 0},
    {"control byte as whitespace", BUILD_EDIT, ",\"beta\"", ",\x01\"beta\"", RN_ERR_JSON, NULL, 0},
    {"ok: JSON whitespace inside", BUILD_EDIT, ",\"beta\":{", ",\n\t\"beta\" :\r\n {", RN_OK, NULL, 0},
    {"syntax: missing comma", BUILD_EDIT, "\"F32\",\"shape\":[4]", "\"F32\" \"shape\":[4]", RN_ERR_JSON, NULL, 0},
    {"syntax: trailing comma", BUILD_EDIT, "[24,40]}", "[24,40],}", RN_ERR_JSON, NULL, 0},
    {"syntax: unclosed string", BUILD_HEADER, NULL, "{\"alpha}", RN_ERR_JSON, NULL, 0},
    {"nesting at the cap (64)", BUILD_DEPTH_64, NULL, NULL, RN_ERR_TENSOR_ENTRY, "deep", 0},
    {"nesting over the cap (65)", BUILD_DEPTH_65, NULL, NULL, RN_ERR_JSON, NULL, 0},
    {"nesting 100000 '['", BUILD_DEPTH_100000, NULL, NULL, RN_ERR_JSON, NULL, 0},
    {"number of 100k digits", BUILD_NUMBER_100K, NULL, NULL, RN_ERR_JSON, NULL, 0},
    /* names */
    {"duplicate name", BUILD_EDIT, "\"beta\"", "\"alpha\"", RN_ERR_DUPLICATE, "alpha", 0},
    {"duplicate name via escape", BUILD_EDIT, "\"beta\"", "\"\\u0061lpha\"", RN_ERR_DUPLICATE, "alpha", 0},
    {"duplicate __metadata__", BUILD_EDIT, "{\"__metadata__\"", "{\"__metadata__\":{},\"__metadata__\"", RN_ERR_DUPLICATE, "__metadata__", 0},
    {"empty name", BUILD_EDIT, "\"beta\"", "\"\"", RN_ERR_TENSOR_ENTRY, NULL, 0},
    {"ok: name of 512 bytes", BUILD_NAME_512, NULL, NULL, RN_OK, NULL, 0},
    {"name of 513 bytes", BUILD_NAME_513, NULL, NULL, RN_ERR_TENSOR_ENTRY, "xxxxxxxx", 0},
    {"escaped control char in a name", BUILD_EDIT, "\"beta\"", "\"be\\u0001ta\"", RN_ERR_TENSOR_ENTRY, "be?ta", 0},
    {"DEL in a name", BUILD_EDIT, "\"beta\"", "\"be\x7fta\"", RN_ERR_TENSOR_ENTRY, "be?ta", 0},
    /* __metadata__ */
    {"__metadata__ not an object", BUILD_EDIT, "{\"format\":\"pt\"}", "\"pt\"", RN_ERR_TENSOR_ENTRY, "__metadata__", 0},
    {"__metadata__ value a number", BUILD_EDIT, "\"format\":\"pt\"", "\"format\":1", RN_ERR_TENSOR_ENTRY, "format", 0},
    {"__metadata__ value an object", BUILD_EDIT, "\"format\":\"pt\"", "\"format\":{}", RN_ERR_TENSOR_ENTRY, "format", 0},
    {"__metadata__ duplicate key", BUILD_EDIT, "\"format\":\"pt\"", "\"format\":\"pt\",\"format\":\"np\"", RN_ERR_DUPLICATE, "format", 0},
    /* entries */
    {"entry not an object", BUILD_EDIT, BETA, "\"beta\":[24,40]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"entry missing dtype", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\",", "\"beta\":{", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"entry missing shape", BUILD_EDIT, "\"shape\":[4],", "", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"entry missing data_offsets", BUILD_EDIT, ",\"data_offsets\":[24,40]", "", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"entry with an extra key", BUILD_EDIT, "[24,40]}", "[24,40],\"extra\":1}", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"entry with a key twice", BUILD_EDIT, "\"shape\":[4],", "\"shape\":[4],\"shape\":[4],", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"entry key in other case", BUILD_EDIT, "\"beta\":{\"dtype\"", "\"beta\":{\"Dtype\"", RN_ERR_TENSOR_ENTRY, "beta", 0},
    /* dtype */
    {"unknown dtype F33", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":\"F33\"", RN_ERR_UNKNOWN_DTYPE, "beta", 0},
    {"unknown dtype f32 (case)", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":\"f32\"", RN_ERR_UNKNOWN_DTYPE, "beta", 0},
    {"unsupported dtype I8", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":\"I8\"", RN_ERR_UNSUPPORTED_DTYPE, "beta", 0},
    {"unsupported dtype F64", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":\"F64\"", RN_ERR_UNSUPPORTED_DTYPE, "beta", 0},
    {"unsupported dtype F8_E4M3", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":\"F8_E4M3\"", RN_ERR_UNSUPPORTED_DTYPE, "beta", 0},
    {"unsupported dtype BOOL", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":\"BOOL\"", RN_ERR_UNSUPPORTED_DTYPE, "beta", 0},
    {"unsupported dtype F4", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":\"F4\"", RN_ERR_UNSUPPORTED_DTYPE, "beta", 0},
    {"dtype not a string", BUILD_EDIT, "\"beta\":{\"dtype\":\"F32\"", "\"beta\":{\"dtype\":32", RN_ERR_TENSOR_ENTRY, "beta", 0},
    /* shape */
    {"shape negative", BUILD_EDIT, "\"shape\":[4]", "\"shape\":[-4]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"shape fractional", BUILD_EDIT, "\"shape\":[4]", "\"shape\":[4.5]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"shape 2^48", BUILD_EDIT, "\"shape\":[4]", "\"shape\":[281474976710656]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"shape entry a string", BUILD_EDIT, "\"shape\":[4]", "\"shape\":[\"4\"]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"shape entry a bool", BUILD_EDIT, "\"shape\":[4]", "\"shape\":[true]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"shape not an array", BUILD_EDIT, "\"shape\":[4]", "\"shape\":4", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"rank 5", BUILD_EDIT, ALPHA_SHAPE, "\"shape\":[1,2,1,3,1]", RN_ERR_TENSOR_ENTRY, "alpha", 0},
    {"ok: rank 4", BUILD_EDIT, ALPHA_SHAPE, "\"shape\":[1,2,1,3]", RN_OK, NULL, 0},
    {"element count overflow", BUILD_EDIT, ALPHA_SHAPE,
     "\"shape\":[281474976710655,281474976710655,281474976710655]", RN_ERR_TENSOR_ENTRY, "alpha", 0},
    {"byte count overflow", BUILD_EDIT, ALPHA_SHAPE, "\"shape\":[281474976710655,65536]",
     RN_ERR_TENSOR_ENTRY, "alpha", 0},
    {"shape wraps to the right size", BUILD_EDIT, ALPHA_SHAPE,
     "\"shape\":[4294967296,4294967296,6]", RN_ERR_TENSOR_ENTRY, "alpha", 0},
    /* data_offsets */
    {"data_offsets of length 3", BUILD_EDIT, "[24,40]", "[24,40,40]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"data_offsets of length 1", BUILD_EDIT, "[24,40]", "[24]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"data_offsets not an array", BUILD_EDIT, "[24,40]", "24", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"data_offsets negative", BUILD_EDIT, "[24,40]", "[-24,40]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"data_offsets fractional", BUILD_EDIT, "[24,40]", "[24,40.5]", RN_ERR_TENSOR_ENTRY, "beta", 0},
    {"data_offsets begin > end", BUILD_EDIT, "[24,40]", "[40,24]", RN_ERR_OFFSETS, "beta", 0},
    {"end - begin != nbytes", BUILD_EDIT, "\"shape\":[4]", "\"shape\":[5]", RN_ERR_OFFSETS, "beta", 0},
    {"offsets overlap", BUILD_EDIT, "[24,40]", "[16,32]", RN_ERR_OFFSETS, "beta", 0},
    {"two tensors on one range", BUILD_EDIT, "[24,40]", "[0,16]", RN_ERR_OFFSETS, NULL, 0},
    {"gap between tensors", BUILD_GAP, "[40,56]", "[44,60]", RN_ERR_OFFSETS, "gamma.weight", 0},
    {"first tensor not at 0", BUILD_HEADER, NULL,
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", RN_ERR_OFFSETS, "'a'", 8},
    {"trailing bytes after the data", BUILD_TRAILING, NULL, NULL, RN_ERR_OFFSETS, "trailing", 0},
    {"no tensors but data", BUILD_HEADER, NULL, "{}", RN_ERR_OFFSETS, NULL, 8},
    {"end far past the file", BUILD_EDIT, "[40,56]", "[40,56000]", RN_ERR_OFFSETS, "gamma.weight", 0},
    /* valid corner cases */
    {"ok: no tensors", BUILD_HEADER, NULL, "{}", RN_OK, NULL, 0},
    {"ok: metadata only", BUILD_HEADER, NULL, "{\"__metadata__\":{\"a\":\"b\"}}", RN_OK, NULL, 0},
    {"ok: scalar and empty tensors", BUILD_HEADER, NULL,
     "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
     "\"z\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
     "\"h\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}", RN_OK, NULL, 8},
};

static void build_st_case(const st_case *c, const char *path) {
    char *h = NULL;
    unsigned char *data = NULL;
    switch (c->build) {
    case BUILD_EDIT:
        h = c->from ? edit_header(c->from, c->to) : bare_header();
        write_st_raw(path, strlen(h), h, strlen(h), g_data, g_data_len);
        break;
    case BUILD_HEADER:
        write_st_raw(path, strlen(c->to), c->to, strlen(c->to), g_data, c->data_len);
        break;
    case BUILD_MISSING:
        break;
    case BUILD_DIRECTORY:
        if (mkdir(path, 0700) != 0) die("cannot mkdir", path);
        break;
    case BUILD_EMPTY:
        write_file(path, "", 0);
        break;
    case BUILD_SHORT:
        write_file(path, "\x10\0\0\0\0", 5);
        break;
    case BUILD_TRUNCATED:
        write_st_raw(path, g_header_len, g_header, g_header_len, g_data, g_data_len - 4);
        break;
    case BUILD_TRAILING:
    case BUILD_GAP: {
        size_t extra = c->build == BUILD_TRAILING ? 8 : 4;
        data = calloc(1, g_data_len + extra);
        memcpy(data, g_data, g_data_len);
        h = c->from ? edit_header(c->from, c->to) : bare_header();
        write_st_raw(path, strlen(h), h, strlen(h), data, g_data_len + extra);
        break;
    }
    case BUILD_N_ZERO:
        write_st_raw(path, 0, g_header, g_header_len, g_data, g_data_len);
        break;
    case BUILD_N_PAST_END:
        write_st_raw(path, g_header_len + g_data_len + 1, g_header, g_header_len, g_data, g_data_len);
        break;
    case BUILD_N_OVER_CAP: {
        size_t n = (size_t)ST_MAX_HEADER_BYTES + 8;
        h = malloc(n);
        memset(h, ' ', n);
        memcpy(h, g_header, g_header_len);
        write_st_raw(path, n, h, n, g_data, g_data_len);
        break;
    }
    case BUILD_N_HUGE:
        write_st_raw(path, UINT64_MAX, g_header, g_header_len, g_data, g_data_len);
        break;
    case BUILD_NOT_BRACE:
        h = malloc(g_header_len + 2);
        h[0] = ' ';
        strcpy(h + 1, g_header);
        write_st_raw(path, g_header_len + 1, h, g_header_len + 1, g_data, g_data_len);
        break;
    case BUILD_GARBAGE:
    case BUILD_TAB_PADDING:
    case BUILD_NUL_PADDING: {
        char *bare = bare_header();
        size_t n = strlen(bare);
        h = malloc(n + 8);
        memcpy(h, bare, n);
        memcpy(h + n, c->build == BUILD_GARBAGE ? "x  " : c->build == BUILD_TAB_PADDING ? " \t " : " \0 ", 3);
        write_st_raw(path, n + 3, h, n + 3, g_data, g_data_len);
        free(bare);
        break;
    }
    case BUILD_NUL_NAME:
        h = edit_header("\"alpha\"", "\"alXha\"");
        *strchr(h, 'X') = '\0';
        write_st_raw(path, g_header_len, h, g_header_len, g_data, g_data_len);
        break;
    case BUILD_DEPTH_64:
    case BUILD_DEPTH_65:
    case BUILD_DEPTH_100000: {
        /* the root object is level 1; "deep" holds the rest as arrays */
        size_t levels = c->build == BUILD_DEPTH_64 ? 63 : c->build == BUILD_DEPTH_65 ? 64 : 100000;
        bool closed = c->build != BUILD_DEPTH_100000;
        h = malloc(2 * levels + 16);
        size_t n = 0;
        n += (size_t)sprintf(h, "{\"deep\":");
        memset(h + n, '[', levels);
        n += levels;
        if (closed) {
            memset(h + n, ']', levels);
            n += levels;
            h[n++] = '}';
        }
        write_st_raw(path, n, h, n, NULL, 0);
        break;
    }
    case BUILD_NUMBER_100K: {
        const char *pre = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1", *post = "],\"data_offsets\":[0,4]}}";
        size_t digits = 100000, n = strlen(pre) + digits + strlen(post);
        h = malloc(n + 1);
        strcpy(h, pre);
        memset(h + strlen(pre), '0', digits);
        strcpy(h + strlen(pre) + digits, post);
        write_st_raw(path, n, h, n, g_data, 4);
        break;
    }
    case BUILD_NAME_512:
    case BUILD_NAME_513: {
        size_t len = c->build == BUILD_NAME_512 ? 512 : 513;
        char *name = malloc(len + 3);
        name[0] = '"';
        memset(name + 1, 'x', len);
        strcpy(name + 1 + len, "\"");
        h = edit_header("\"beta\"", name);
        write_st_raw(path, strlen(h), h, strlen(h), g_data, g_data_len);
        free(name);
        break;
    }
    }
    free(h);
    free(data);
}

static void test_st_matrix(void) {
    for (size_t i = 0; i < sizeof k_st_cases / sizeof *k_st_cases; i++) {
        const st_case *c = &k_st_cases[i];
        char path[512], file[64];
        snprintf(file, sizeof file, "st_case_%02zu.safetensors", i);
        path_in(path, sizeof path, file);
        build_st_case(c, path);
        rn_error err = {{0}};
        st_file *f = NULL;
        rn_status s = st_open(path, &f, &err);
        expect_status("st", c->label, s, c->expect, &err, path, c->mention);
        if ((s == RN_OK) != (f != NULL))
            report(false, "st", c->label, "output handle %s on %s", f ? "set" : "NULL", rn_status_str(s));
        st_close(f);
    }
}

/* ---- safetensors success: values, lookups, dtypes ----------------------------------------- */

static bool same_floats(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof *a) == 0;
}

static void test_st_base_values(void) {
    char path[512];
    path_in(path, sizeof path, "base.safetensors");
    rn_error err = {{0}};
    st_file *f = NULL;
    rn_status s = st_open(path, &f, &err);
    if (s != RN_OK) {
        report(false, "st", "base values", "%s: %s", rn_status_str(s), err.message);
        return;
    }
    const st_tensor *a = st_find(f, "alpha"), *b = st_find(f, "beta"), *g = st_find(f, "gamma.weight");
    bool ok = st_count(f) == 3 && a && b && g && st_at(f, 0) == a && st_at(f, 1) == b &&
              st_at(f, 2) == g && st_at(f, 3) == NULL && st_find(f, "gamma") == NULL &&
              st_find(f, "Alpha") == NULL && a->rank == 2 && a->shape[0] == 2 && a->shape[1] == 3 &&
              a->elements == 6 && a->nbytes == 24 && a->dtype == ST_F32 && b->rank == 1 &&
              g->elements == 4;
    float buf[6];
    if (ok) {
        st_to_f32(a->dtype, a->data, a->elements, buf);
        ok = same_floats(buf, k_alpha, 6);
        st_to_f32(b->dtype, b->data, b->elements, buf);
        ok = ok && same_floats(buf, k_beta, 4);
        st_to_f32(g->dtype, g->data, g->elements, buf);
        ok = ok && same_floats(buf, k_gamma, 4);
    }
    report(ok, "st", "base: lookups, shapes and F32 values", "%zu tensors", st_count(f));
    st_close(f);
}

/* Values a float converter must get right: signed zeros, the subnormal and overflow edges,
 * ties, infinities and NaN. */
static const float k_probe[] = {
    0.0f, -0.0f, 1.0f, -2.5f, 3.14159265f, 1e-3f, 65504.0f, 65519.0f, 65520.0f, 1e6f,
    0x1p-14f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 0x1.ffcp-15f, 5.96e-8f, 1e-10f,
    1.0f + 0x1p-11f, 1.0f + 0x3p-11f, 1.0f + 0x1p-8f, 1.0f + 0x3p-8f, 3.0e38f, -3.4e38f,
    INFINITY, -INFINITY, NAN,
};

static void test_st_dtypes(void) {
    const size_t n = sizeof k_probe / sizeof *k_probe;
    static const st_dtype dtypes[] = {ST_F32, ST_F16, ST_BF16};
    for (size_t d = 0; d < 3; d++) {
        st_dtype dt = dtypes[d];
        char path[512], file[64];
        snprintf(file, sizeof file, "probe_%s.safetensors", st_dtype_name(dt));
        path_in(path, sizeof path, file);
        rn_st_entry e = {.name = "probe", .dtype = dt, .rank = 1, .shape = {n}, .data = k_probe};
        rn_error err = {{0}};
        st_file *f = NULL;
        rn_status s = rn_st_write(path, &e, 1, &err);
        if (s == RN_OK) s = st_open(path, &f, &err);
        if (s != RN_OK) {
            report(false, "dtype", st_dtype_name(dt), "%s: %s", rn_status_str(s), err.message);
            continue;
        }
        const st_tensor *t = st_find(f, "probe");
        float got[sizeof k_probe / sizeof *k_probe];
        st_to_f32(t->dtype, t->data, t->elements, got);
        /* relative precision of round-to-nearest, and the smallest step near zero */
        double rel = dt == ST_F32 ? 0 : dt == ST_F16 ? 0x1p-11 : 0x1p-8;
        double tiny = dt == ST_F16 ? 0x1p-25 : 0;
        double max = dt == ST_F16 ? 65504.0 : dt == ST_BF16 ? 3.3895313892515355e38 : 3.4028234663852886e38;
        size_t bad = n;
        for (size_t i = 0; i < n && bad == n; i++) {
            float x = k_probe[i], y = got[i];
            bool ok;
            if (isnan(x)) ok = isnan(y);
            else if (isinf(x)) ok = y == x;
            else if (fabs(x) >= max * (1 + rel / 2)) ok = isinf(y) && !signbit(y) == !signbit(x);
            else if (x == 0) ok = y == 0 && !signbit(y) == !signbit(x);
            else ok = fabs((double)y - x) <= fabs(x) * rel + tiny && (y == 0 || !signbit(y) == !signbit(x));
            if (!ok) bad = i;
        }
        report(bad == n, "dtype", st_dtype_name(dt), bad == n ? "%zu values within precision"
               : "value %zu: wrote %.9g, read %.9g", bad == n ? n : bad,
               bad == n ? 0.0 : (double)k_probe[bad], bad == n ? 0.0 : (double)got[bad]);
        st_close(f);
    }

    /* round to nearest even, at the exact ties and edges */
    struct {
        float x;
        uint16_t f16, bf16;
    } k_rne[] = {
        {1.0f, 0x3c00, 0x3f80},
        {1.0f + 0x1p-11f, 0x3c00, 0x3f80},            /* tie -> even */
        {1.0f + 0x3p-11f, 0x3c02, 0x3f80},            /* tie -> even, upwards */
        {1.0f + 0x1p-8f, 0x3c04, 0x3f80},             /* bf16 tie -> even */
        {1.0f + 0x3p-8f, 0x3c0c, 0x3f82},             /* bf16 tie -> even, upwards */
        {65504.0f, 0x7bff, 0x4780},                   /* bf16: 65504 rounds up to 65536 */
        {65519.0f, 0x7bff, 0x4780},
        {65520.0f, 0x7c00, 0x4780},                   /* f16 overflow at the tie */
        {0x1p-24f, 0x0001, 0x3380},
        {0x1p-25f, 0x0000, 0x3300},                   /* tie with zero -> zero */
        {0x1.8p-25f, 0x0001, 0x3340},
        {0x1.ffcp-15f, 0x0400, 0x3880},               /* largest subnormal + half: carries */
        {-0.0f, 0x8000, 0x8000},
        {INFINITY, 0x7c00, 0x7f80},
    };
    size_t bad = 0;
    for (size_t i = 0; i < sizeof k_rne / sizeof *k_rne; i++) {
        uint16_t h = rn_float_to_half(k_rne[i].x), b = rn_float_to_bf16(k_rne[i].x);
        if (h != k_rne[i].f16 || b != k_rne[i].bf16) {
            printf("     rne %.9g: f16 %04x (want %04x), bf16 %04x (want %04x)\n", (double)k_rne[i].x,
                   h, k_rne[i].f16, b, k_rne[i].bf16);
            bad++;
        }
    }
    uint16_t qnan = rn_float_to_half(NAN), bnan = rn_float_to_bf16(NAN);
    bool nan_ok = (qnan & 0x7c00) == 0x7c00 && (qnan & 0x3ff) && (bnan & 0x7f80) == 0x7f80 && (bnan & 0x7f);
    report(bad == 0 && nan_ok, "dtype", "f16/bf16 round to nearest even", "%zu mismatches", bad);

    /* every f16 bit pattern widens exactly: compare with a double-precision decode */
    bad = 0;
    for (uint32_t v = 0; v < 0x10000; v++) {
        unsigned char le[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
        float y;
        st_to_f32(ST_F16, le, 1, &y);
        int e = (int)((v >> 10) & 0x1f), m = (int)(v & 0x3ff);
        double want = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
        if (v & 0x8000) want = -want;
        bool ok = isnan(want) ? isnan(y) : (double)y == want && !signbit(y) == !signbit(want);
        if (!ok) bad++;
        /* and back again: f16 -> f32 -> f16 is the identity outside NaN */
        if (!isnan(want) && rn_float_to_half(y) != v) bad++;
    }
    report(bad == 0, "dtype", "all 65536 f16 patterns", "%zu mismatches", bad);

    /* mixed dtypes: the writer puts the widest first, so F32 data stays 4-aligned */
    char path[512];
    path_in(path, sizeof path, "mixed.safetensors");
    float three[3] = {1, 2, 3};
    rn_st_entry mixed[] = {
        {.name = "h", .dtype = ST_F16, .rank = 1, .shape = {3}, .data = three},
        {.name = "f", .dtype = ST_F32, .rank = 1, .shape = {3}, .data = three},
        {.name = "b", .dtype = ST_BF16, .rank = 1, .shape = {3}, .data = three},
    };
    rn_error err = {{0}};
    st_file *f = NULL;
    rn_status s = rn_st_write(path, mixed, 3, &err);
    if (s == RN_OK) s = st_open(path, &f, &err);
    bool ok = s == RN_OK;
    if (ok) {
        const st_tensor *t = st_find(f, "f");
        float got[3];
        ok = t && ((uintptr_t)t->data % 4) == 0 && st_at(f, 0) == st_find(f, "h");
        for (size_t i = 0; ok && i < 3; i++) {
            const st_tensor *u = st_at(f, i);
            st_to_f32(u->dtype, u->data, 3, got);
            ok = same_floats(got, three, 3);
        }
    }
    report(ok, "dtype", "mixed dtypes, aligned layout", "%s", ok ? "" : err.message);
    st_close(f);
}

/* Q8_0 and Q4_0 blocks (models/dtype.c): the layout the kernels read (an array's quants, then
 * its little-endian fp16 scales; Q4_0's element 2k in the low nibble of byte k, 2k + 1 in the
 * high one), every element within half a step d of its value (d = the fp16 scale read back),
 * an exact zero block, the element of largest magnitude kept exactly in Q4_0 (it maps to
 * q = 0), and a scale beyond fp16 refused. */
static void test_quantized_blocks(void) {
    float x[32], y[32];
    for (int i = 0; i < 32; i++) x[i] = (float)sin(1.7 * i + 0.3) * (i == 5 ? 3.0f : 1.0f);
    for (int t = 0; t < 2; t++) {
        const st_dtype q = t ? ST_Q4_0 : ST_Q8_0;
        unsigned char codes[32] = {0};
        uint16_t dh;
        bool ok = rn_quantize_block(q, x, &dh, codes) && rn_block_bytes(q) == (t ? 18u : 34u);
        rn_dequantize_block(q, dh, codes, y);
        const float d = rn_half_to_float(dh);
        double worst = 0;
        for (int i = 0; i < 32; i++) worst = fmax(worst, fabs((double)y[i] - x[i]));
        /* Q8_0: |x| <= 127 d, so rounding is within d/2. Q4_0: [-8 d, 7 d] covers every value
         * but the far end of the other sign, clamped to 7 d: within |d| + |d|/2 there. */
        ok = ok && worst <= fabs(d) * (t ? 1.5 : 0.5) + 1e-7;
        ok = ok && (!t || fabs(y[5] - x[5]) <= fabs(x[5]) * 0x1p-11);
        int layout_ok = 1;
        for (int i = 0; i < 32; i++) {
            int code = t ? ((codes[i / 2] >> (4 * (i & 1))) & 15) - 8 : (signed char)codes[i];
            if (code * d != y[i]) layout_ok = 0;
        }
        report(ok && layout_ok, "quantize", st_dtype_name(q), "worst error %.3g with d %.3g, layout %s", worst, d,
               layout_ok ? "as documented" : "WRONG");
        /* A two-block array through rn_convert: the quants of both, then both scales. */
        float two[64], back[64];
        unsigned char stored[68];
        for (int i = 0; i < 64; i++) two[i] = i < 32 ? x[i] : 0.25f * x[i - 32];
        rn_convert(ST_F32, two, 64, q, stored, NULL);
        rn_convert(q, stored, 64, ST_F32, back, NULL);
        const unsigned qb = t ? 32u : 64u;
        bool arranged = rn_storage_bytes(q, 64) == qb + 4 && back[0] == y[0] &&
                        (uint16_t)(stored[qb] | stored[qb + 1] << 8) == dh;
        for (int i = 0; i < 64; i++) arranged &= fabs(back[i] - two[i]) <= fabs(d) * 1.5;
        report(arranged, "quantize", st_dtype_name(q), "an array: quants, then scales");
        float zeros[32] = {0}, none[32];
        rn_quantize_block(q, zeros, &dh, codes);
        rn_dequantize_block(q, dh, codes, none);
        bool all_zero = true;
        for (int i = 0; i < 32; i++) all_zero &= none[i] == 0.0f;
        report(all_zero, "quantize", st_dtype_name(q), "a zero block stays zero");
        float huge[32];
        for (int i = 0; i < 32; i++) huge[i] = 1e9f;
        report(!rn_quantize_block(q, huge, &dh, codes), "quantize", st_dtype_name(q), "a scale beyond fp16 is refused");
        uint64_t at = 99;
        report(!rn_convert(ST_F32, huge, 32, q, stored, &at) && at == 0, "quantize", st_dtype_name(q),
               "rn_convert reports the overflowing block");
    }
}

static void test_writer_errors(void) {
    char path[512];
    path_in(path, sizeof path, "writer_bad.safetensors");
    float one = 1;
    struct {
        const char *label;
        rn_st_entry e[2];
        size_t n;
        rn_status expect;
    } cases[] = {
        {"duplicate names", {{"a", ST_F32, 0, {0}, &one}, {"a", ST_F32, 0, {0}, &one}}, 2, RN_ERR_INVALID_ARGUMENT},
        {"empty name", {{"", ST_F32, 0, {0}, &one}}, 1, RN_ERR_INVALID_ARGUMENT},
        {"control char in name", {{"a\nb", ST_F32, 0, {0}, &one}}, 1, RN_ERR_INVALID_ARGUMENT},
        {"name __metadata__", {{"__metadata__", ST_F32, 0, {0}, &one}}, 1, RN_ERR_INVALID_ARGUMENT},
        {"rank 5", {{"a", ST_F32, 5, {1, 1, 1, 1}, &one}}, 1, RN_ERR_INVALID_ARGUMENT},
        {"no data", {{"a", ST_F32, 1, {1}, NULL}}, 1, RN_ERR_INVALID_ARGUMENT},
        {"size past 2^48", {{"a", ST_F32, 2, {1u << 30, 1u << 30}, &one}}, 1, RN_ERR_LIMIT},
        {"ok: escaped quote in name", {{"a\"b\\c", ST_F32, 0, {0}, &one}}, 1, RN_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rn_error err = {{0}};
        rn_status s = rn_st_write(path, cases[i].e, cases[i].n, &err);
        if (s == RN_OK) {
            st_file *f = NULL;
            s = st_open(path, &f, &err);
            if (s == RN_OK && !st_find(f, cases[i].e[0].name)) s = RN_ERR_MISSING_TENSOR;
            st_close(f);
        }
        expect_status("writer", cases[i].label, s, cases[i].expect, &err, NULL, NULL);
    }
    rn_error err = {{0}};
    rn_status s = rn_st_write("/nonexistent-dir/x.safetensors", NULL, 0, &err);
    expect_status("writer", "unwritable path", s, RN_ERR_IO, &err, "/nonexistent-dir/x.safetensors", NULL);
}

/* ---- config.json -------------------------------------------------------------------------- */

/* The base config, one key per row; a case replaces, adds or (value NULL) removes one key. */
static const char *const k_cfg_base[][2] = {
    {"vocab_size", "100"},
    {"decoder_embed_dim", "64"},
    {"decoder_value_embed_dim", "96"},
    {"decoder_retention_heads", "2"},
    {"decoder_ffn_embed_dim", "128"},
    {"decoder_layers", "2"},
};

typedef struct cfg_case {
    const char *key, *value;   /* key NULL: the base */
    rn_status expect;
} cfg_case;

static const cfg_case k_cfg_cases[] = {
    {NULL, NULL, RN_OK},
    /* integers */
    {"vocab_size", NULL, RN_ERR_CONFIG},
    {"vocab_size", "null", RN_ERR_CONFIG},
    {"vocab_size", "0", RN_ERR_CONFIG},
    {"vocab_size", "-5", RN_ERR_CONFIG},
    {"vocab_size", "\"100\"", RN_ERR_CONFIG},
    {"vocab_size", "100.5", RN_ERR_CONFIG},
    {"vocab_size", "true", RN_ERR_CONFIG},
    {"vocab_size", "[100]", RN_ERR_CONFIG},
    {"vocab_size", "16777217", RN_ERR_CONFIG},
    {"vocab_size", "1e2", RN_OK},
    {"vocab_size", "16777216", RN_OK},
    {"decoder_embed_dim", "0", RN_ERR_CONFIG},
    {"decoder_embed_dim", "-64", RN_ERR_CONFIG},
    {"decoder_embed_dim", "65537", RN_ERR_CONFIG},
    {"decoder_embed_dim", "2147483712", RN_ERR_CONFIG},
    {"decoder_embed_dim", "1e300", RN_ERR_CONFIG},
    {"decoder_embed_dim", "1e400", RN_ERR_CONFIG},
    {"decoder_value_embed_dim", "0", RN_ERR_CONFIG},
    {"decoder_ffn_embed_dim", "-1", RN_ERR_CONFIG},
    {"decoder_ffn_embed_dim", "\"128\"", RN_ERR_CONFIG},
    {"decoder_layers", "0", RN_ERR_CONFIG},
    {"decoder_layers", "1025", RN_ERR_CONFIG},
    {"decoder_layers", "2.0", RN_OK},
    {"decoder_retention_heads", "0", RN_ERR_CONFIG},
    {"decoder_retention_heads", "1025", RN_ERR_CONFIG},
    {"decoder_retention_heads", "3", RN_ERR_CONFIG},    /* does not divide D = 64 */
    {"decoder_retention_heads", "64", RN_ERR_CONFIG},   /* divides D, not Dv = 96 */
    {"decoder_retention_heads", "32", RN_OK},           /* dk = 2, dv = 3 */
    {"decoder_embed_dim", "66", RN_ERR_CONFIG},         /* dk = 33 is odd */
    {"recurrent_chunk_size", "0", RN_ERR_CONFIG},
    {"recurrent_chunk_size", "-512", RN_ERR_CONFIG},
    {"recurrent_chunk_size", "4097", RN_ERR_CONFIG},
    {"recurrent_chunk_size", "4096", RN_OK},
    /* layernorm_eps */
    {"layernorm_eps", "0", RN_ERR_CONFIG},
    {"layernorm_eps", "-1e-6", RN_ERR_CONFIG},
    {"layernorm_eps", "1e400", RN_ERR_CONFIG},
    {"layernorm_eps", "\"1e-6\"", RN_ERR_CONFIG},
    {"layernorm_eps", "1e-5", RN_OK},
    /* booleans */
    {"no_scale_embedding", "1", RN_ERR_CONFIG},
    {"no_scale_embedding", "\"true\"", RN_ERR_CONFIG},
    {"no_scale_embedding", "false", RN_OK},
    {"layernorm_embedding", "0", RN_ERR_CONFIG},
    {"layernorm_embedding", "true", RN_OK},
    {"share_decoder_input_output_embed", "\"yes\"", RN_ERR_CONFIG},
    {"share_decoder_input_output_embed", "true", RN_OK},
    {"decoder_normalize_before", "0", RN_ERR_CONFIG},
    {"decoder_normalize_before", "false", RN_OK},
    {"deepnorm", "1", RN_ERR_CONFIG},
    {"deepnorm", "true", RN_OK},
    /* activation */
    {"activation_fn", "\"swish\"", RN_OK},
    {"activation_fn", "\"silu\"", RN_OK},
    {"activation_fn", "\"relu\"", RN_ERR_UNSUPPORTED_CONFIG},
    {"activation_fn", "\"GELU\"", RN_ERR_UNSUPPORTED_CONFIG},
    {"activation_fn", "\"\"", RN_ERR_UNSUPPORTED_CONFIG},
    {"activation_fn", "5", RN_ERR_CONFIG},
    /* settings refused by name */
    {"moe_freq", "1", RN_ERR_UNSUPPORTED_CONFIG},
    {"moe_freq", "0", RN_OK},
    {"moe_freq", "\"1\"", RN_ERR_CONFIG},
    {"moe_expertnum", "8", RN_ERR_UNSUPPORTED_CONFIG},
    {"multiway", "true", RN_ERR_UNSUPPORTED_CONFIG},
    {"multiway", "false", RN_OK},
    {"xpos_rel_pos", "true", RN_ERR_UNSUPPORTED_CONFIG},
    {"use_glu", "false", RN_ERR_UNSUPPORTED_CONFIG},
    {"use_glu", "true", RN_OK},
    {"use_lm_decay", "true", RN_OK},                   /* syncdoth's decays, computed */
    {"use_lm_decay", "1", RN_ERR_CONFIG},
    {"use_ffn_rms_norm", "true", RN_ERR_UNSUPPORTED_CONFIG},
    {"use_ffn_rms_norm", "false", RN_OK},
    {"tie_word_embeddings", "true", RN_OK},
    {"tie_word_embeddings", "\"true\"", RN_ERR_CONFIG},
    {"forward_impl", "\"chunkwise\"", RN_OK},           /* ignored */
    {"hidden_size", "64", RN_ERR_CONFIG},               /* fla's key beside decoder_* ones */
    {"no_output_layer", "true", RN_ERR_UNSUPPORTED_CONFIG},
    {"subln", "true", RN_OK},
    {"subln", "false", RN_OK},
    {"subln", "1", RN_ERR_CONFIG},
    {"model_type", "\"retnet\"", RN_OK},
    {"model_type", "\"llama\"", RN_ERR_UNSUPPORTED_CONFIG},
    {"model_type", "3", RN_ERR_CONFIG},
    /* keys the runtime does not read */
    {"architectures", "[\"RetNetForCausalLM\"]", RN_OK},
    {"torch_dtype", "\"float16\"", RN_OK},
    {"Vocab_Size", "100", RN_OK},   /* an unknown key: case matters, vocab_size is still read */
};

/* Builds a JSON object from `base` (n key/value rows) with one key replaced, removed (value
 * NULL) or added. */
static char *json_text(const char *const (*base)[2], size_t nbase, const char *key, const char *value) {
    char *out = malloc(4096);
    size_t n = (size_t)sprintf(out, "{");
    bool seen = false;
    for (size_t i = 0; i < nbase; i++) {
        const char *k = base[i][0], *v = base[i][1];
        if (key && strcmp(key, k) == 0) {
            seen = true;
            v = value;
        }
        if (v) n += (size_t)sprintf(out + n, "%s\"%s\": %s", n > 1 ? ", " : "", k, v);
    }
    if (key && !seen) n += (size_t)sprintf(out + n, ", \"%s\": %s", key, value);
    sprintf(out + n, "}");
    return out;
}

/* The base torchscale config with one key replaced, removed or added. */
static char *config_text(const char *key, const char *value) {
    return json_text(k_cfg_base, sizeof k_cfg_base / sizeof *k_cfg_base, key, value);
}

static void test_config_matrix(void) {
    for (size_t i = 0; i < sizeof k_cfg_cases / sizeof *k_cfg_cases; i++) {
        const cfg_case *c = &k_cfg_cases[i];
        char *json = config_text(c->key, c->value);
        char label[96];
        if (c->key) snprintf(label, sizeof label, "%s = %s", c->key, c->value ? c->value : "(absent)");
        else snprintf(label, sizeof label, "ok: base");
        rn_config cfg;
        rn_error err = {{0}};
        rn_status s = rn_config_parse(json, strlen(json), &cfg, &err);
        /* the message must name the key, except for cross-field checks naming others */
        const char *mention = c->key && c->value && strcmp(c->key, "decoder_retention_heads") != 0 &&
                                      strcmp(c->key, "decoder_embed_dim") != 0
                                  ? c->key
                                  : NULL;
        if (c->key && !c->value) mention = c->key;
        expect_status("config", label, s, c->expect, &err, mention, NULL);
        free(json);
    }

    /* the base config's values, defaults and derived fields */
    char *json = config_text(NULL, NULL);
    rn_config c;
    rn_error err = {{0}};
    rn_status s = rn_config_parse(json, strlen(json), &c, &err);
    bool ok = s == RN_OK && c.vocab_size == 100 && c.embed_dim == 64 && c.value_embed_dim == 96 &&
              c.heads == 2 && c.ffn_dim == 128 && c.layers == 2 && c.chunk_size == 512 &&
              c.activation == RN_ACT_GELU && c.layernorm_eps == 1e-6 && c.no_scale_embedding &&
              !c.layernorm_embedding && !c.share_embed && c.normalize_before && !c.deepnorm &&
              c.key_head_dim == 32 && c.value_head_dim == 48;
    report(ok, "config", "defaults and derived fields", "dk %lld dv %lld", (long long)c.key_head_dim,
           (long long)c.value_head_dim);
    free(json);
    const char *swish = "{\"vocab_size\":5,\"decoder_embed_dim\":8,\"decoder_value_embed_dim\":8,"
                        "\"decoder_retention_heads\":1,\"activation_fn\":\"silu\",\"layernorm_eps\":1e-5,"
                        "\"recurrent_chunk_size\":7,\"share_decoder_input_output_embed\":true}";
    s = rn_config_parse(swish, strlen(swish), &c, &err);
    ok = s == RN_OK && c.activation == RN_ACT_SWISH && c.layernorm_eps == 1e-5 && c.chunk_size == 7 &&
         c.share_embed && c.key_head_dim == 8;
    report(ok, "config", "values read", "%s", rn_status_str(s));

    /* whole documents */
#define NUL_DOC "{\"vocab_size\": 5,\0 \"x\": 1}"
    /* a config that loads but for the bytes in `member` */
#define CFG_OK_DOC(member) "{\"vocab_size\": 6, \"decoder_value_embed_dim\": 768, " member "}"
    static const struct {
        const char *label, *json;
        size_t len;   /* 0: strlen */
        rn_status expect;
    } docs[] = {
        {"empty document", "", 0, RN_ERR_JSON},
        {"not JSON", "vocab_size = 5", 0, RN_ERR_JSON},
        {"root an array", "[1, 2]", 0, RN_ERR_JSON},
        {"root a string", "\"retnet\"", 0, RN_ERR_JSON},
        {"garbage after the object", "{\"vocab_size\": 5} x", 0, RN_ERR_JSON},
        {"trailing comma", "{\"vocab_size\": 5,}", 0, RN_ERR_JSON},
        {"duplicate key", "{\"vocab_size\": 5, \"vocab_size\": 6}", 0, RN_ERR_JSON},
        {"NUL inside", NUL_DOC, sizeof NUL_DOC - 1, RN_ERR_JSON},
        {"invalid UTF-8 (overlong '/')", CFG_OK_DOC("\"x\": \"a\xc0\xaf\""), 0, RN_ERR_JSON},
        {"raw control byte in a string", CFG_OK_DOC("\"x\": \"a\x01\""), 0, RN_ERR_JSON},
        {"\\u0000 in a string", CFG_OK_DOC("\"model_type\": \"retnet\\u0000x\""), 0, RN_ERR_JSON},
        {"unclosed object", "{\"vocab_size\": 5", 0, RN_ERR_JSON},
        {"syntax error names line 3", "{\n  \"vocab_size\": 5,\n  \"x\" 1\n}", 0, RN_ERR_JSON},
        {"ok: whitespace around", " \n\t{\"vocab_size\": 6, \"decoder_value_embed_dim\": 768}\r\n ", 0, RN_OK},
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        size_t len = docs[i].len ? docs[i].len : strlen(docs[i].json);
        s = rn_config_parse(docs[i].json, len, &c, &err);
        expect_status("config", docs[i].label, s, docs[i].expect, &err,
                      strstr(docs[i].label, "duplicate") ? "vocab_size"
                      : strstr(docs[i].label, "line 3")  ? "line 3"
                                                         : NULL,
                      NULL);
    }

    /* hostile documents */
    size_t big = 100000;
    char *deep = malloc(big + 8);
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', big);
    s = rn_config_parse(deep, big + 5, &c, &err);
    expect_status("config", "nesting 100000 '['", s, RN_ERR_JSON, &err, NULL, NULL);
    free(deep);
    char *number = malloc(big + 32);
    int pre = sprintf(number, "{\"vocab_size\": 1");
    memset(number + pre, '0', big);
    strcpy(number + pre + big, "}");
    s = rn_config_parse(number, strlen(number), &c, &err);
    expect_status("config", "number of 100k digits", s, RN_ERR_JSON, &err, NULL, NULL);
    free(number);
}

static void test_config_files(void) {
    char path[512];
    rn_config c;
    rn_error err = {{0}};

    path_in(path, sizeof path, "no-such-config.json");
    rn_status s = rn_config_load(path, &c, &err);
    expect_status("config", "file missing", s, RN_ERR_IO, &err, path, NULL);

    path_in(path, sizeof path, "config-dir.json");
    mkdir(path, 0700);
    s = rn_config_load(path, &c, &err);
    expect_status("config", "file is a directory", s, RN_ERR_IO, &err, path, NULL);

    /* a valid object padded past RN_MAX_CONFIG_BYTES */
    path_in(path, sizeof path, "big-config.json");
    size_t n = RN_MAX_CONFIG_BYTES + 16;
    char *big = malloc(n);
    memset(big, ' ', n);
    char *json = config_text(NULL, NULL);
    memcpy(big, json, strlen(json));
    write_file(path, big, n);
    s = rn_config_load(path, &c, &err);
    expect_status("config", "file of 1 MiB + 16 bytes", s, RN_ERR_LIMIT, &err, path, NULL);
    free(big);

    path_in(path, sizeof path, "good-config.json");
    write_file(path, json, strlen(json));
    s = rn_config_load(path, &c, &err);
    expect_status("config", "ok: file", s, RN_OK, &err, NULL, NULL);
    free(json);

    path_in(path, sizeof path, "bad-config.json");
    json = config_text("layernorm_eps", "-1");
    write_file(path, json, strlen(json));
    s = rn_config_load(path, &c, &err);
    expect_status("config", "file error names the file", s, RN_ERR_CONFIG, &err, path, "layernorm_eps");
    free(json);

    /* the writer's config.json reads back to the same config */
    rn_config w = {.embed_dim = 48, .value_embed_dim = 72, .heads = 3, .ffn_dim = 80, .layers = 3,
                   .vocab_size = 77, .chunk_size = 9, .activation = RN_ACT_SWISH,
                   .layernorm_eps = 1e-5, .no_scale_embedding = false, .layernorm_embedding = true,
                   .share_embed = true, .normalize_before = false, .deepnorm = true};
    path_in(path, sizeof path, "written-config.json");
    s = rn_write_config(path, &w, &err);
    if (s == RN_OK) s = rn_config_load(path, &c, &err);
    bool ok = s == RN_OK && c.embed_dim == 48 && c.value_embed_dim == 72 && c.heads == 3 &&
              c.ffn_dim == 80 && c.layers == 3 && c.vocab_size == 77 && c.chunk_size == 9 &&
              c.activation == RN_ACT_SWISH && c.layernorm_eps == 1e-5 && !c.no_scale_embedding &&
              c.layernorm_embedding && c.share_embed && !c.normalize_before && c.deepnorm &&
              c.key_head_dim == 16 && c.value_head_dim == 24;
    report(ok, "config", "rn_write_config round trip", "%s %s", rn_status_str(s), ok ? "" : err.message);
}

/* ---- checkpoints -------------------------------------------------------------------------- */

static rn_config tiny_config(void) {
    return (rn_config){.embed_dim = 16, .value_embed_dim = 24, .heads = 2, .ffn_dim = 32,
                       .layers = 2, .vocab_size = 50, .chunk_size = 8, .activation = RN_ACT_SWISH,
                       .layernorm_eps = 1e-6, .no_scale_embedding = true,
                       .layernorm_embedding = false, .share_embed = false,
                       .normalize_before = true, .deepnorm = false};
}

static uint64_t expected_parameters(const rn_config *c) {
    uint64_t D = (uint64_t)c->embed_dim, Dv = (uint64_t)c->value_embed_dim, F = (uint64_t)c->ffn_dim;
    uint64_t V = (uint64_t)c->vocab_size, L = (uint64_t)c->layers;
    uint64_t per_layer = 2 * D * D + 2 * Dv * D + D * Dv + D + 3 * F * D + D;
    return V * D * (c->share_embed ? 1 : 2) + L * per_layer + (c->layernorm_embedding ? D : 0) +
           (c->normalize_before ? D : 0);
}

static rn_status make_model(const char *name, const rn_config *cfg, st_dtype dtype, bool rel_pos,
                            double qk_gain, char *dir, size_t cap) {
    path_in(dir, cap, name);
    rn_writer_options o;
    rn_writer_options_default(&o);
    o.seed = 42;
    o.dtype = dtype;
    o.write_rel_pos = rel_pos;
    o.qk_gain = qk_gain;
    rn_error err = {{0}};
    rn_status s = rn_write_random_model(dir, cfg, &o, &err);
    if (s != RN_OK) printf("     rn_write_random_model(%s): %s\n", name, err.message);
    return s;
}

/* Copies the safetensors file `src` to `dst`, dropping the tensors in `drop`, giving `reshape`
 * a new shape (same data), and adding `extra`. */
static void rewrite_file(const char *src, const char *dst, const char *const *drop,
                         const char *reshape, int rank, uint64_t d0, uint64_t d1,
                         const rn_st_entry *extra) {
    rn_error err = {{0}};
    st_file *f = NULL;
    if (st_open(src, &f, &err) != RN_OK) die(err.message, src);
    size_t n = st_count(f);
    rn_st_entry *e = calloc(n + 1, sizeof *e);
    float **data = calloc(n, sizeof *data);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_at(f, i);
        bool dropped = false;
        for (const char *const *d = drop; d && *d; d++) dropped |= strcmp(*d, t->name) == 0;
        if (dropped) continue;
        data[i] = malloc((t->elements ? t->elements : 1) * sizeof **data);
        st_to_f32(t->dtype, t->data, t->elements, data[i]);
        e[m] = (rn_st_entry){.name = t->name, .dtype = t->dtype, .rank = t->rank, .data = data[i]};
        memcpy(e[m].shape, t->shape, sizeof t->shape);
        if (reshape && strcmp(reshape, t->name) == 0) {
            e[m].rank = rank;
            e[m].shape[0] = d0;
            e[m].shape[1] = d1;
        }
        m++;
    }
    if (extra) e[m++] = *extra;
    if (rn_st_write(dst, e, m, &err) != RN_OK) die(err.message, dst);
    for (size_t i = 0; i < n; i++) free(data[i]);
    free(data);
    free(e);
    st_close(f);
}

/* Copies `src`'s model.safetensors into `dst_dir` (config.json too), as rewrite_file edits it. */
static void rewrite_model(const char *src_dir, const char *dst_dir, const char *const *drop,
                          const char *reshape, int rank, uint64_t d0, uint64_t d1,
                          const rn_st_entry *extra) {
    char src[512], dst[512];
    mkdir(dst_dir, 0700);
    snprintf(src, sizeof src, "%s/model.safetensors", src_dir);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dst_dir);
    rewrite_file(src, dst, drop, reshape, rank, d0, d1, extra);
    snprintf(src, sizeof src, "%s/config.json", src_dir);
    snprintf(dst, sizeof dst, "%s/config.json", dst_dir);
    size_t len;
    unsigned char *cfg = read_all(src, &len);
    write_file(dst, cfg, len);
    free(cfg);
}

/* A checkpoint opens, with the tensors, counts and optional parts its config implies. */
static void expect_model(const char *label, const char *dir, const rn_config *cfg, bool rel_pos) {
    rn_checkpoint *ck = NULL;
    rn_error err = {{0}};
    rn_status s = rn_checkpoint_open(dir, &ck, &err);
    if (s != RN_OK) {
        report(false, "checkpoint", label, "%s: %s", rn_status_str(s), err.message);
        return;
    }
    uint64_t params = expected_parameters(cfg);
    unsigned size = st_dtype_size(ck->embed->dtype);
    uint64_t bytes = params * size +
                     (rel_pos ? (uint64_t)(ck->config.key_head_dim + ck->config.heads) * size : 0);
    bool ok = ck->parameters == params && ck->tensor_bytes == bytes && ck->embed &&
              (ck->embed_norm != NULL) == cfg->layernorm_embedding &&
              (ck->final_norm != NULL) == cfg->normalize_before &&
              (cfg->share_embed ? ck->output == ck->embed : ck->output && ck->output != ck->embed) &&
              (ck->angle != NULL) == rel_pos && (ck->decay != NULL) == rel_pos;
    for (int64_t l = 0; ok && l < cfg->layers; l++) {
        const rn_layer_tensors *L = &ck->layers[l];
        ok = L->q_proj && L->k_proj && L->v_proj && L->g_proj && L->out_proj && L->retention_norm &&
             L->fc1 && L->gate && L->fc2 && L->ffn_norm && L->v_proj->shape[0] == (uint64_t)cfg->value_embed_dim &&
             L->out_proj->shape[1] == (uint64_t)cfg->value_embed_dim;
    }
    report(ok, "checkpoint", label, "%llu parameters, %llu bytes", (unsigned long long)ck->parameters,
           (unsigned long long)ck->tensor_bytes);
    rn_checkpoint_close(ck);
}

/* Every tensor of `dir` against the same tensor of `ref_dir` (an F32 model, same seed). */
static void expect_same_values(const char *label, const char *dir, const char *ref_dir, double rel,
                               double tiny, double scale_q) {
    rn_checkpoint *a = NULL, *b = NULL;
    rn_error err = {{0}};
    if (rn_checkpoint_open(dir, &a, &err) != RN_OK || rn_checkpoint_open(ref_dir, &b, &err) != RN_OK) {
        report(false, "checkpoint", label, "%s", err.message);
        rn_checkpoint_close(a);
        return;
    }
    size_t n = st_count(a->shards[0]), bad = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_at(a->shards[0], i), *r = rn_checkpoint_find(b, t->name);
        if (!r && strncmp(t->name, "retnet_rel_pos.", 15) == 0) continue;   /* not in the reference */
        if (!r || r->elements != t->elements) {
            bad++;
            continue;
        }
        float *x = malloc(t->elements * sizeof *x), *y = malloc(t->elements * sizeof *y);
        st_to_f32(t->dtype, t->data, t->elements, x);
        st_to_f32(r->dtype, r->data, r->elements, y);
        bool q = strstr(t->name, "q_proj") || strstr(t->name, "k_proj");
        double k = q ? scale_q : 1.0;
        for (uint64_t j = 0; j < t->elements; j++) {
            double want = k * y[j], d = fabs(x[j] - want);
            if (d > fabs(want) * rel + tiny) bad++;
            if (want != 0 && d / fabs(want) > worst) worst = d / fabs(want);
        }
        free(x);
        free(y);
    }
    report(bad == 0, "checkpoint", label, "%zu tensors, worst relative error %.3g", n, worst);
    rn_checkpoint_close(a);
    rn_checkpoint_close(b);
}

static void expect_open(const char *label, const char *dir, rn_status expect, const char *m1,
                        const char *m2) {
    rn_checkpoint *ck = NULL;
    rn_error err = {{0}};
    rn_status s = rn_checkpoint_open(dir, &ck, &err);
    expect_status("checkpoint", label, s, expect, &err, m1, m2);
    if ((s == RN_OK) != (ck != NULL)) report(false, "checkpoint", label, "handle and status disagree");
    rn_checkpoint_close(ck);
}

static void test_checkpoints(void) {
    char f32[512], dir[512], other[512];
    rn_config c = tiny_config();
    if (make_model("m_f32", &c, ST_F32, false, 1.0, f32, sizeof f32) != RN_OK) {
        report(false, "checkpoint", "write the f32 model", "cannot continue");
        return;
    }
    expect_model("ok: f32 untied", f32, &c, false);

    /* variants of the config */
    rn_config v = c;
    v.share_embed = true;
    if (make_model("m_tied", &v, ST_F32, false, 1.0, dir, sizeof dir) == RN_OK)
        expect_model("ok: tied embeddings", dir, &v, false);
    v = c;
    v.layernorm_embedding = true;
    if (make_model("m_lnemb", &v, ST_F32, false, 1.0, dir, sizeof dir) == RN_OK)
        expect_model("ok: layernorm_embedding", dir, &v, false);
    v = c;
    v.normalize_before = false;
    if (make_model("m_postnorm", &v, ST_F32, false, 1.0, dir, sizeof dir) == RN_OK)
        expect_model("ok: post-norm (no layer_norm)", dir, &v, false);
    v = c;
    v.deepnorm = true;
    v.activation = RN_ACT_GELU;
    if (make_model("m_deepnorm", &v, ST_F32, false, 1.0, dir, sizeof dir) == RN_OK)
        expect_model("ok: deepnorm, gelu", dir, &v, false);

    /* dtypes: the same seed gives the same values, rounded */
    if (make_model("m_f16", &c, ST_F16, false, 1.0, dir, sizeof dir) == RN_OK) {
        expect_model("ok: f16", dir, &c, false);
        expect_same_values("f16 values = f32 values", dir, f32, 0x1p-11, 0x1p-25, 1.0);
    }
    if (make_model("m_bf16", &c, ST_BF16, true, 1.0, dir, sizeof dir) == RN_OK) {
        expect_model("ok: bf16 with rel-pos", dir, &c, true);
        expect_same_values("bf16 values = f32 values", dir, f32, 0x1p-8, 0, 1.0);
    }
    if (make_model("m_qk4", &c, ST_F32, false, 4.0, dir, sizeof dir) == RN_OK)
        expect_same_values("qk_gain 4 scales q/k only", dir, f32, 0, 0, 4.0);

    /* determinism: the same seed writes the same bytes */
    if (make_model("m_f32_again", &c, ST_F32, false, 1.0, dir, sizeof dir) == RN_OK) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/model.safetensors", f32);
        snprintf(b, sizeof b, "%s/model.safetensors", dir);
        size_t la, lb;
        unsigned char *x = read_all(a, &la), *y = read_all(b, &lb);
        report(la == lb && memcmp(x, y, la) == 0, "writer", "same seed, same bytes", "%zu bytes", la);
        free(x);
        free(y);
    }

    /* rel-pos: the buffers and the computed values agree, and look like torchscale's */
    if (make_model("m_relpos", &c, ST_F32, true, 1.0, dir, sizeof dir) == RN_OK) {
        rn_checkpoint *a = NULL, *b = NULL;
        rn_error err = {{0}};
        bool ok = rn_checkpoint_open(dir, &a, &err) == RN_OK && rn_checkpoint_open(f32, &b, &err) == RN_OK;
        if (ok) {
            int64_t dk = a->config.key_head_dim, H = a->config.heads;   /* tiny_config has no derived fields */
            float ang_a[64], dec_a[8], ang_b[64], dec_b[8];
            rn_checkpoint_rel_pos(a, ang_a, dec_a);
            rn_checkpoint_rel_pos(b, ang_b, dec_b);
            ok = a->angle && !b->angle && same_floats(ang_a, ang_b, (size_t)dk) &&
                 same_floats(dec_a, dec_b, (size_t)H) && ang_b[0] == 1.0f && ang_b[1] == 1.0f &&
                 fabs(ang_b[dk - 1] - 1e-4) < 1e-9 && ang_b[dk - 2] == ang_b[dk - 1] &&
                 fabs(dec_b[0] - log(31.0 / 32.0)) < 1e-8 && fabs(dec_b[1] - log(63.0 / 64.0)) < 1e-8;
        }
        report(ok, "checkpoint", "rel-pos buffers = computed values", "%s", ok ? "" : err.message);
        rn_checkpoint_close(a);
        rn_checkpoint_close(b);

        /* dk = 2: torch.linspace(0, 1, 1) is [0], so the one angle is 1 */
        rn_checkpoint two = {.config = {.key_head_dim = 2, .heads = 24}};
        float ang2[2], dec24[24];
        rn_checkpoint_rel_pos(&two, ang2, dec24);
        ok = ang2[0] == 1.0f && ang2[1] == 1.0f && dec24[19] < 0 && dec24[20] == 0 && dec24[23] == 0;
        report(ok, "checkpoint", "rel-pos dk=2; heads >= 20 do not decay", "angle %g, decay[19] %g",
               (double)ang2[0], (double)dec24[19]);

        /* a buffer of the wrong shape is refused, by name */
        float bad_angle[10] = {0};
        rn_st_entry wrong = {.name = "retnet_rel_pos.angle", .dtype = ST_F32, .rank = 1, .shape = {10},
                             .data = bad_angle};
        const char *drop[] = {"retnet_rel_pos.angle", NULL};
        path_in(other, sizeof other, "m_relpos_bad");
        rewrite_model(dir, other, drop, NULL, 0, 0, 0, &wrong);
        expect_open("rel-pos angle of wrong shape", other, RN_ERR_TENSOR_SHAPE, "retnet_rel_pos.angle", "[10]");
    }

    /* missing tensors: all of them listed */
    const char *drop3[] = {"layers.0.ffn.gate.weight", "layers.1.retention.k_proj.weight",
                           "layer_norm.weight", NULL};
    path_in(dir, sizeof dir, "m_missing3");
    rewrite_model(f32, dir, drop3, NULL, 0, 0, 0, NULL);
    rn_checkpoint *ck = NULL;
    rn_error err = {{0}};
    rn_status s = rn_checkpoint_open(dir, &ck, &err);
    bool all = s == RN_ERR_MISSING_TENSOR && strstr(err.message, drop3[0]) &&
               strstr(err.message, drop3[1]) && strstr(err.message, drop3[2]) &&
               strstr(err.message, "3 tensors") && strstr(err.message, "model.safetensors");
    report(all, "checkpoint", "3 missing tensors, all listed", "%s: %s", rn_status_str(s), err.message);
    rn_checkpoint_close(ck);

    const char *drop_out[] = {"output_projection.weight", NULL};
    path_in(dir, sizeof dir, "m_no_output");
    rewrite_model(f32, dir, drop_out, NULL, 0, 0, 0, NULL);
    expect_open("untied without output_projection", dir, RN_ERR_MISSING_TENSOR, "output_projection.weight", NULL);

    /* many missing: a config with more layers than the file; the list is capped */
    path_in(dir, sizeof dir, "m_missing_many");
    rewrite_model(f32, dir, NULL, NULL, 0, 0, 0, NULL);
    v = c;
    v.layers = 5;
    char cfg_path[600];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    rn_write_config(cfg_path, &v, &err);
    expect_open("30 missing tensors, capped list", dir, RN_ERR_MISSING_TENSOR, "30 tensors", "...");

    /* shapes */
    path_in(dir, sizeof dir, "m_transposed");
    rewrite_model(f32, dir, NULL, "layers.1.retention.v_proj.weight", 2, 16, 24, NULL);
    expect_open("v_proj transposed", dir, RN_ERR_TENSOR_SHAPE, "layers.1.retention.v_proj.weight",
                "[16, 24]");
    expect_open("v_proj transposed (expected shape)", dir, RN_ERR_TENSOR_SHAPE, "[24, 16]", NULL);
    path_in(dir, sizeof dir, "m_flat_norm");
    rewrite_model(f32, dir, NULL, "layers.0.final_layer_norm.weight", 2, 4, 4, NULL);
    expect_open("norm weight of rank 2", dir, RN_ERR_TENSOR_SHAPE, "layers.0.final_layer_norm.weight", NULL);
    path_in(dir, sizeof dir, "m_vocab");
    rewrite_model(f32, dir, NULL, NULL, 0, 0, 0, NULL);
    v = c;
    v.vocab_size = 60;
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    rn_write_config(cfg_path, &v, &err);
    expect_open("vocab larger than the embedding", dir, RN_ERR_TENSOR_SHAPE, "embed_tokens.weight", "[60, 16]");

    /* tied: a stray output_projection.weight, even of the wrong shape, is ignored; unknown
     * tensors are ignored */
    v = c;
    v.share_embed = true;
    if (make_model("m_tied2", &v, ST_F32, false, 1.0, other, sizeof other) == RN_OK) {
        float junk[6] = {0};
        rn_st_entry stray = {.name = "output_projection.weight", .dtype = ST_F32, .rank = 2,
                             .shape = {2, 3}, .data = junk};
        path_in(dir, sizeof dir, "m_tied_stray");
        rewrite_model(other, dir, NULL, NULL, 0, 0, 0, &stray);
        expect_model("ok: tied, stray output_projection ignored", dir, &v, false);
        rn_st_entry unknown = {.name = "decoder.version", .dtype = ST_F32, .rank = 1, .shape = {2},
                               .data = junk};
        path_in(dir, sizeof dir, "m_unknown");
        rewrite_model(other, dir, NULL, NULL, 0, 0, 0, &unknown);
        expect_model("ok: unknown tensor ignored", dir, &v, false);
    }

    /* files */
    path_in(dir, sizeof dir, "m_no_config");
    rewrite_model(f32, dir, NULL, NULL, 0, 0, 0, NULL);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    remove(cfg_path);
    expect_open("missing config.json", dir, RN_ERR_IO, "config.json", NULL);
    path_in(dir, sizeof dir, "m_no_model");
    rewrite_model(f32, dir, NULL, NULL, 0, 0, 0, NULL);
    snprintf(cfg_path, sizeof cfg_path, "%s/model.safetensors", dir);
    remove(cfg_path);
    expect_open("missing model.safetensors", dir, RN_ERR_IO, "model.safetensors", NULL);
    path_in(dir, sizeof dir, "no-such-dir");
    expect_open("missing directory", dir, RN_ERR_IO, "no-such-dir", NULL);
    path_in(dir, sizeof dir, "base.safetensors");
    expect_open("a file, not a directory", dir, RN_ERR_IO, "base.safetensors", "not a directory");
    path_in(dir, sizeof dir, "m_bad_config");
    rewrite_model(f32, dir, NULL, NULL, 0, 0, 0, NULL);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    write_file(cfg_path, "{\"vocab_size\": 50, \"multiway\": true}", 36);
    expect_open("config refused first", dir, RN_ERR_UNSUPPORTED_CONFIG, "multiway", "config.json");
    path_in(dir, sizeof dir, "m_bad_st");
    rewrite_model(f32, dir, NULL, NULL, 0, 0, 0, NULL);
    snprintf(cfg_path, sizeof cfg_path, "%s/model.safetensors", dir);
    write_file(cfg_path, "\x02\0\0\0\0\0\0\0{}", 10);
    expect_open("safetensors error passed on", dir, RN_ERR_MISSING_TENSOR, "embed_tokens.weight", NULL);
    write_file(cfg_path, "\x02\0\0\0\0\0\0\0[]", 10);
    expect_open("safetensors status passed on", dir, RN_ERR_JSON, "model.safetensors", NULL);

    /* the writer refuses an invalid config with the loader's status, and bad options */
    v = c;
    v.heads = 3;
    path_in(dir, sizeof dir, "m_invalid");
    rn_writer_options o;
    rn_writer_options_default(&o);
    s = rn_write_random_model(dir, &v, &o, &err);
    expect_status("writer", "random model, heads not dividing D", s, RN_ERR_CONFIG, &err, "config.json", NULL);
    o.qk_gain = -1;
    s = rn_write_random_model(dir, &c, &o, &err);
    expect_status("writer", "random model, qk_gain < 0", s, RN_ERR_INVALID_ARGUMENT, &err, NULL, NULL);
}

/* ---- families: config.json ---------------------------------------------------------------- */

/* fla-hub/retnet-1.3B-100B's config.json, key for key. */
static const char *const k_fla_base[][2] = {
    {"architectures", "[\"RetNetForCausalLM\"]"}, {"attn_mode", "\"fused_chunk\""},
    {"bos_token_id", "1"}, {"conv_size", "4"}, {"elementwise_affine", "true"}, {"eos_token_id", "2"},
    {"expand_k", "1"}, {"expand_v", "2"}, {"feature_map", "null"}, {"fuse_cross_entropy", "true"},
    {"fuse_norm", "true"}, {"hidden_act", "\"swish\""}, {"hidden_ratio", "2"},
    {"hidden_size", "2048"}, {"initializer_range", "0.02"}, {"intermediate_size", "null"},
    {"max_position_embeddings", "2048"}, {"model_type", "\"retnet\""}, {"norm_eps", "1e-06"},
    {"num_heads", "8"}, {"num_hidden_layers", "24"}, {"num_kv_heads", "null"},
    {"rms_norm_eps", "1e-06"}, {"share_conv_kernel", "true"}, {"tie_word_embeddings", "false"},
    {"torch_dtype", "\"bfloat16\""}, {"transformers_version", "\"4.40.2\""}, {"use_cache", "true"},
    {"use_output_gate", "true"}, {"use_short_conv", "false"}, {"vocab_size", "32000"},
};

/* What an OK case must also read: one field of the config. */
typedef enum fla_field { F_NONE, F_FFN, F_KV, F_DK, F_DV, F_GATE, F_AFFINE, F_TIED, F_EPS_E9 } fla_field;

typedef struct fla_case {
    const char *key, *value;   /* key NULL: the base */
    rn_status expect;
    fla_field field;
    int64_t want;
} fla_case;

static const fla_case k_fla_cases[] = {
    {NULL, NULL, RN_OK, F_FFN, 2816},
    /* the MLP width rule and its override */
    {"intermediate_size", "1000", RN_OK, F_FFN, 1000},
    {"intermediate_size", "0", RN_ERR_CONFIG, F_NONE, 0},
    {"intermediate_size", "-5", RN_ERR_CONFIG, F_NONE, 0},
    {"intermediate_size", "\"1000\"", RN_ERR_CONFIG, F_NONE, 0},
    {"hidden_ratio", NULL, RN_OK, F_FFN, 2816},             /* absent: the class default 2 */
    {"hidden_ratio", "null", RN_OK, F_FFN, 5632},           /* None: GatedMLP's 4 -> 5461 -> 5632 */
    {"hidden_ratio", "3", RN_OK, F_FFN, 4096},
    {"hidden_ratio", "0", RN_ERR_CONFIG, F_NONE, 0},
    /* heads and dims */
    {"num_kv_heads", "2", RN_OK, F_KV, 2},
    {"num_kv_heads", "1", RN_OK, F_KV, 1},
    {"num_kv_heads", "3", RN_ERR_CONFIG, F_NONE, 0},        /* does not divide 8 */
    {"num_kv_heads", "16", RN_ERR_CONFIG, F_NONE, 0},
    {"num_kv_heads", "0", RN_ERR_CONFIG, F_NONE, 0},
    {"num_heads", "3", RN_ERR_CONFIG, F_NONE, 0},
    {"expand_k", "0.5", RN_OK, F_DK, 128},
    {"expand_k", "0.3", RN_ERR_CONFIG, F_NONE, 0},          /* 614 keys over 8 heads */
    {"expand_k", "0", RN_ERR_CONFIG, F_NONE, 0},
    {"expand_k", "\"1\"", RN_ERR_CONFIG, F_NONE, 0},
    {"expand_v", "1", RN_OK, F_DV, 256},
    {"expand_v", "0.0001", RN_ERR_CONFIG, F_NONE, 0},       /* int(0.2048) = 0 */
    {"hidden_size", "2056", RN_ERR_CONFIG, F_NONE, 0},      /* dk = 257 is odd */
    {"hidden_size", "0", RN_ERR_CONFIG, F_NONE, 0},
    {"num_hidden_layers", "1025", RN_ERR_CONFIG, F_NONE, 0},
    {"vocab_size", "0", RN_ERR_CONFIG, F_NONE, 0},
    /* flags */
    {"use_output_gate", "false", RN_OK, F_GATE, 0},
    {"elementwise_affine", "false", RN_OK, F_AFFINE, 0},
    {"elementwise_affine", "1", RN_ERR_CONFIG, F_NONE, 0},
    {"tie_word_embeddings", "true", RN_OK, F_TIED, 1},
    {"fuse_norm", "false", RN_OK, F_NONE, 0},
    {"norm_eps", NULL, RN_OK, F_EPS_E9, 1000},              /* falls back to rms_norm_eps */
    {"norm_eps", "1e-05", RN_OK, F_EPS_E9, 10000},
    {"norm_eps", "0", RN_ERR_CONFIG, F_NONE, 0},
    {"hidden_act", "\"silu\"", RN_OK, F_NONE, 0},
    {"hidden_act", "\"gelu\"", RN_ERR_UNSUPPORTED_CONFIG, F_NONE, 0},
    /* what fla has and this runtime does not */
    {"feature_map", "\"relu\"", RN_ERR_UNSUPPORTED_CONFIG, F_NONE, 0},
    {"attn", "{\"layers\": [1, 3], \"num_heads\": 8}", RN_ERR_UNSUPPORTED_CONFIG, F_NONE, 0},
    {"attn", "null", RN_OK, F_NONE, 0},
    {"attnres_block_size", "4", RN_ERR_UNSUPPORTED_CONFIG, F_NONE, 0},
    {"use_short_conv", "true", RN_OK, F_NONE, 0},           /* never reaches the layer in fla */
    /* the family itself */
    {"model_type", "\"llama\"", RN_ERR_UNSUPPORTED_CONFIG, F_NONE, 0},
    {"model_type", NULL, RN_ERR_CONFIG, F_NONE, 0},
    {"decoder_layers", "2", RN_ERR_CONFIG, F_NONE, 0},      /* both families' keys */
};

static int64_t fla_field_value(const rn_config *c, fla_field f) {
    switch (f) {
    case F_FFN: return c->ffn_dim;
    case F_KV: return c->kv_heads;
    case F_DK: return c->key_head_dim;
    case F_DV: return c->value_head_dim;
    case F_GATE: return c->output_gate;
    case F_AFFINE: return c->head_norm_weight;
    case F_TIED: return c->share_embed;
    case F_EPS_E9: return (int64_t)llround(c->layernorm_eps * 1e9);
    case F_NONE: break;
    }
    return 0;
}

static void test_family_configs(void) {
    for (size_t i = 0; i < sizeof k_fla_cases / sizeof *k_fla_cases; i++) {
        const fla_case *c = &k_fla_cases[i];
        char *json = json_text(k_fla_base, sizeof k_fla_base / sizeof *k_fla_base, c->key, c->value);
        char label[96];
        if (c->key) snprintf(label, sizeof label, "fla %s = %.30s", c->key, c->value ? c->value : "(absent)");
        else snprintf(label, sizeof label, "ok: fla-hub 1.3B config");
        rn_config cfg;
        rn_error err = {{0}};
        rn_status s = rn_config_parse(json, strlen(json), &cfg, &err);
        /* cross-field checks name what they found, not necessarily the key edited */
        const char *mention = c->key && c->value && strcmp(c->key, "hidden_size") != 0 &&
                                      strcmp(c->key, "expand_k") != 0 && strcmp(c->key, "num_heads") != 0 &&
                                      strcmp(c->key, "decoder_layers") != 0
                                  ? c->key
                                  : NULL;
        if (s == c->expect && s == RN_OK && c->field != F_NONE && fla_field_value(&cfg, c->field) != c->want) {
            report(false, "config", label, "read %lld, expected %lld",
                   (long long)fla_field_value(&cfg, c->field), (long long)c->want);
        } else {
            expect_status("config", label, s, c->expect, &err, mention, NULL);
        }
        free(json);
    }

    /* the hub config: every field the engine reads */
    char *json = json_text(k_fla_base, sizeof k_fla_base / sizeof *k_fla_base, NULL, NULL);
    rn_config c;
    rn_error err = {{0}};
    rn_status s = rn_config_parse(json, strlen(json), &c, &err);
    bool ok = s == RN_OK && c.family == RN_FAMILY_FLA && c.embed_dim == 2048 && c.layers == 24 &&
              c.heads == 8 && c.kv_heads == 8 && c.key_embed_dim == 2048 && c.value_embed_dim == 4096 &&
              c.key_head_dim == 256 && c.value_head_dim == 512 && c.ffn_dim == 2816 &&
              c.vocab_size == 32000 && c.layernorm_eps == 1e-6 && c.activation == RN_ACT_SWISH &&
              c.no_scale_embedding && !c.layernorm_embedding && !c.share_embed && c.normalize_before &&
              !c.deepnorm && c.rope_half && c.plain_retention && c.head_norm_weight && c.output_gate &&
              !c.use_lm_decay && c.chunk_size > 0;
    report(ok, "config", "fla: every field of the 1.3B config", "%s", rn_status_str(s));
    free(json);
    report(rn_fla_intermediate_size(2048, 2) == 2816 && rn_fla_intermediate_size(2560, 2) == 3584 &&
               rn_fla_intermediate_size(2048, 4) == 5632 && rn_fla_intermediate_size(2048, 0) == 0 &&
               rn_fla_intermediate_size(2048, NAN) == 0,
           "config", "fla MLP rule (2816, 3584, 5632)", "%lld", (long long)rn_fla_intermediate_size(2048, 2));

    /* torchscale and syncdoth: the new fields as the engine expects them */
    json = config_text(NULL, NULL);
    s = rn_config_parse(json, strlen(json), &c, &err);
    ok = s == RN_OK && c.family == RN_FAMILY_TORCHSCALE && c.key_embed_dim == c.embed_dim &&
         c.kv_heads == c.heads && c.output_gate && !c.rope_half && !c.plain_retention &&
         !c.head_norm_weight && !c.use_lm_decay;
    report(ok, "config", "torchscale: family fields", "%s", rn_status_str(s));
    free(json);
    json = config_text("tie_word_embeddings", "true");
    s = rn_config_parse(json, strlen(json), &c, &err);
    ok = s == RN_OK && c.family == RN_FAMILY_SYNCDOTH && c.share_embed && c.key_embed_dim == 64 &&
         c.kv_heads == 2 && c.output_gate && !c.rope_half && !c.plain_retention && !c.head_norm_weight;
    report(ok, "config", "syncdoth guessed from tie_word_embeddings", "%s", rn_status_str(s));
    free(json);
    json = config_text("use_lm_decay", "true");
    s = rn_config_parse(json, strlen(json), &c, &err);
    report(s == RN_OK && c.use_lm_decay && c.family == RN_FAMILY_SYNCDOTH, "config",
           "syncdoth use_lm_decay read", "%s", rn_status_str(s));
    free(json);

    static const struct {
        const char *label, *json;
        rn_status expect;
        const char *mention, *mention2;
    } docs[] = {
        {"neither family: keys listed", "{\"vocab_size\": 5, \"n_layer\": 2, \"n_embd\": 64}",
         RN_ERR_CONFIG, "keys found: vocab_size, n_layer, n_embd", "hidden_size"},
        {"neither family: empty object", "{}", RN_ERR_CONFIG, "(none)", NULL},
        {"hidden_size without model_type", "{\"hidden_size\": 64, \"num_heads\": 2}", RN_ERR_CONFIG,
         "model_type", NULL},
        /* a torchscale config all defaults but one key: RetNetConfig's own defaults do not fit
         * together (3 heads, Dv 1280), which shows they were read */
        {"torchscale key alone: the defaults", "{\"vocab_size\": 50, \"activation_fn\": \"swish\"}",
         RN_ERR_CONFIG, "decoder_value_embed_dim = 1280", NULL},
        {"tie_word_embeddings contradicts share_...",
         "{\"vocab_size\": 5, \"decoder_layers\": 1, \"tie_word_embeddings\": true, "
         "\"share_decoder_input_output_embed\": false}",
         RN_ERR_CONFIG, "tie_word_embeddings", "share_decoder_input_output_embed"},
        {"ok: tie_word_embeddings agrees",
         "{\"vocab_size\": 5, \"decoder_value_embed_dim\": 768, \"tie_word_embeddings\": true, "
         "\"share_decoder_input_output_embed\": true}",
         RN_OK, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        s = rn_config_parse(docs[i].json, strlen(docs[i].json), &c, &err);
        expect_status("config", docs[i].label, s, docs[i].expect, &err, docs[i].mention, docs[i].mention2);
    }
}

/* ---- families: checkpoints ---------------------------------------------------------------- */

static rn_config tiny_fla(int64_t kv_heads, bool gate, bool affine, bool tied) {
    return (rn_config){.family = RN_FAMILY_FLA, .embed_dim = 16, .key_embed_dim = 16,
                       .value_embed_dim = 32, .heads = 2, .kv_heads = kv_heads, .ffn_dim = 32,
                       .layers = 2, .vocab_size = 50, .chunk_size = 512, .activation = RN_ACT_SWISH,
                       .layernorm_eps = 1e-6, .no_scale_embedding = true, .normalize_before = true,
                       .share_embed = tied, .rope_half = true, .plain_retention = true,
                       .head_norm_weight = affine, .output_gate = gate};
}

static uint64_t expected_parameters_any(const rn_config *c) {
    if (c->family != RN_FAMILY_FLA) return expected_parameters(c);
    uint64_t D = (uint64_t)c->embed_dim, K = (uint64_t)c->key_embed_dim, Dv = (uint64_t)c->value_embed_dim;
    uint64_t I = (uint64_t)c->ffn_dim, V = (uint64_t)c->vocab_size, L = (uint64_t)c->layers;
    uint64_t G = (uint64_t)(c->heads / c->kv_heads), dv = Dv / (uint64_t)c->heads;
    uint64_t per_layer = 2 * D + K * D + (K / G) * D + (Dv / G) * D + (c->output_gate ? Dv * D : 0) +
                         D * Dv + (c->head_norm_weight ? dv : 0) + 3 * I * D;
    return V * D * (c->share_embed ? 1 : 2) + D + L * per_layer;
}

static rn_status make_model_opts(const char *name, const rn_config *cfg, const rn_writer_options *o,
                                 char *dir, size_t cap) {
    path_in(dir, cap, name);
    rn_error err = {{0}};
    rn_status s = rn_write_random_model(dir, cfg, o, &err);
    if (s != RN_OK) printf("     rn_write_random_model(%s): %s\n", name, err.message);
    return s;
}

static bool has_shape(const st_tensor *t, uint64_t d0, uint64_t d1) {
    return t && t->shape[0] == d0 && (t->rank == 1 ? d1 == 0 : t->rank == 2 && t->shape[1] == d1);
}

/* A checkpoint opens as `cfg`'s family with every role in place and shaped as checkpoint.h says. */
static void expect_family_model(const char *label, const char *dir, const rn_config *cfg, size_t shards) {
    rn_checkpoint *ck = NULL;
    rn_error err = {{0}};
    rn_status s = rn_checkpoint_open(dir, &ck, &err);
    if (s != RN_OK) {
        report(false, "family", label, "%s: %s", rn_status_str(s), err.message);
        return;
    }
    const rn_config *c = &ck->config;
    bool fla = cfg->family == RN_FAMILY_FLA;
    uint64_t D = (uint64_t)cfg->embed_dim, V = (uint64_t)cfg->vocab_size, F = (uint64_t)cfg->ffn_dim;
    uint64_t K = fla ? (uint64_t)cfg->key_embed_dim : D, Dv = (uint64_t)cfg->value_embed_dim;
    uint64_t G = fla ? (uint64_t)(cfg->heads / cfg->kv_heads) : 1;
    bool ok = c->family == cfg->family && ck->n_shards == (shards ? shards : 1) &&
              ck->indexed == (shards > 0) && ck->parameters == expected_parameters_any(cfg) &&
              c->key_embed_dim == (int64_t)K && c->kv_heads == (fla ? cfg->kv_heads : cfg->heads) &&
              c->rope_half == fla && c->plain_retention == fla &&
              c->output_gate == (fla ? cfg->output_gate : true) &&
              c->head_norm_weight == (fla && cfg->head_norm_weight) &&
              has_shape(ck->embed, V, D) && has_shape(ck->final_norm, D, 0) &&
              (cfg->share_embed ? ck->output == ck->embed : has_shape(ck->output, V, D) && ck->output != ck->embed) &&
              (fla ? !ck->angle && !ck->decay : true);
    for (int64_t l = 0; ok && l < cfg->layers; l++) {
        const rn_layer_tensors *L = &ck->layers[l];
        ok = has_shape(L->q_proj, K, D) && has_shape(L->k_proj, K / G, D) && has_shape(L->v_proj, Dv / G, D) &&
             has_shape(L->out_proj, D, Dv) && has_shape(L->retention_norm, D, 0) &&
             has_shape(L->fc1, F, D) && has_shape(L->gate, F, D) && has_shape(L->fc2, D, F) &&
             has_shape(L->ffn_norm, D, 0) &&
             ((fla && !cfg->output_gate) ? L->g_proj == NULL : has_shape(L->g_proj, Dv, D)) &&
             ((fla && cfg->head_norm_weight) ? has_shape(L->head_norm, Dv / (uint64_t)cfg->heads, 0)
                                             : L->head_norm == NULL);
    }
    report(ok, "family", label, "%s, %llu parameters, %zu file%s", rn_family_name(c->family),
           (unsigned long long)ck->parameters, ck->n_shards, ck->n_shards == 1 ? "" : "s");
    rn_checkpoint_close(ck);
}

static bool same_tensor_bytes(const st_tensor *a, const st_tensor *b) {
    if (!a || !b) return a == b;
    return a->dtype == b->dtype && a->rank == b->rank && a->nbytes == b->nbytes &&
           memcmp(a->shape, b->shape, sizeof a->shape) == 0 && memcmp(a->data, b->data, a->nbytes) == 0;
}

/* Every tensor of `a_dir` (across its shards) is in `b_dir` with byte-equal data, the counts
 * agree, and so does every role the loader hands out (fused halves included). */
static void expect_same_checkpoint(const char *label, const char *a_dir, const char *b_dir) {
    rn_checkpoint *a = NULL, *b = NULL;
    rn_error err = {{0}};
    if (rn_checkpoint_open(a_dir, &a, &err) != RN_OK || rn_checkpoint_open(b_dir, &b, &err) != RN_OK) {
        report(false, "family", label, "%s", err.message);
        rn_checkpoint_close(a);
        return;
    }
    size_t na = 0, nb = 0, bad = 0;
    const char *first_bad = NULL;
    for (size_t i = 0; i < a->n_shards; i++) {
        for (size_t j = 0; j < st_count(a->shards[i]); j++, na++) {
            const st_tensor *t = st_at(a->shards[i], j);
            if (!same_tensor_bytes(t, rn_checkpoint_find(b, t->name))) {
                if (!bad++) first_bad = t->name;
            }
        }
    }
    for (size_t i = 0; i < b->n_shards; i++) nb += st_count(b->shards[i]);
    bool roles = a->parameters == b->parameters && a->tensor_bytes == b->tensor_bytes &&
                 a->config.family == b->config.family && same_tensor_bytes(a->embed, b->embed) &&
                 same_tensor_bytes(a->output, b->output) && same_tensor_bytes(a->final_norm, b->final_norm);
    for (int64_t l = 0; roles && l < a->config.layers; l++) {
        const rn_layer_tensors *x = &a->layers[l], *y = &b->layers[l];
        roles = same_tensor_bytes(x->q_proj, y->q_proj) && same_tensor_bytes(x->k_proj, y->k_proj) &&
                same_tensor_bytes(x->v_proj, y->v_proj) && same_tensor_bytes(x->g_proj, y->g_proj) &&
                same_tensor_bytes(x->out_proj, y->out_proj) && same_tensor_bytes(x->head_norm, y->head_norm) &&
                same_tensor_bytes(x->retention_norm, y->retention_norm) &&
                same_tensor_bytes(x->fc1, y->fc1) && same_tensor_bytes(x->gate, y->gate) &&
                same_tensor_bytes(x->fc2, y->fc2) && same_tensor_bytes(x->ffn_norm, y->ffn_norm);
    }
    report(bad == 0 && na == nb && roles, "family", label, "%zu tensors byte-equal%s%s", na,
           bad ? ", first differing: " : "", bad ? first_bad : "");
    rn_checkpoint_close(a);
    rn_checkpoint_close(b);
}

/* Replaces the first `from` in the file with `to`. */
static void edit_file(const char *path, const char *from, const char *to) {
    size_t len;
    unsigned char *text = read_all(path, &len);
    text[len] = '\0';
    char *at = strstr((char *)text, from);
    if (!at) die("edit target not in", path);
    size_t pre = (size_t)(at - (char *)text), fl = strlen(from), tl = strlen(to);
    char *out = malloc(len - fl + tl + 1);
    memcpy(out, text, pre);
    memcpy(out + pre, to, tl);
    memcpy(out + pre + tl, at + fl, len - pre - fl);
    write_file(path, out, len - fl + tl);
    free(out);
    free(text);
}

static int copy_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);
static char g_copy_to[512];
static size_t g_copy_from_len;

static int copy_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    if (flag != FTW_F) return 0;
    char dst[600];
    snprintf(dst, sizeof dst, "%s%s", g_copy_to, path + g_copy_from_len);
    size_t len;
    unsigned char *data = read_all(path, &len);
    write_file(dst, data, len);
    free(data);
    return 0;
}

/* A flat copy of a checkpoint directory under a new name in g_dir. */
static void copy_dir(const char *src, const char *name, char *dst, size_t cap) {
    path_in(dst, cap, name);
    nftw(dst, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(dst, 0700) != 0) die("cannot mkdir", dst);
    snprintf(g_copy_to, sizeof g_copy_to, "%s", dst);
    g_copy_from_len = strlen(src);
    nftw(src, copy_entry, 16, FTW_PHYS);
}

/* A tensor of `dir` as a writer entry named `name` (data malloc'd: free e->data). */
static rn_st_entry entry_from(const char *dir, const char *tensor, const char *name) {
    rn_checkpoint *ck = NULL;
    rn_error err = {{0}};
    if (rn_checkpoint_open(dir, &ck, &err) != RN_OK) die(err.message, dir);
    const st_tensor *t = rn_checkpoint_find(ck, tensor);
    if (!t) die("no such tensor:", tensor);
    float *data = malloc(t->elements * sizeof *data);
    st_to_f32(t->dtype, t->data, t->elements, data);
    rn_st_entry e = {.name = name, .dtype = t->dtype, .rank = t->rank, .data = data};
    memcpy(e.shape, t->shape, sizeof t->shape);
    rn_checkpoint_close(ck);
    return e;
}

/* The bad-index matrix on a copy of a 3-shard checkpoint of one family. */
static void test_shard_errors(const char *family, const char *sharded) {
    char dir[512], name[96], label[96], path[600], other[600];
#define CASE_DIR(tag) (snprintf(name, sizeof name, "bad_%s_%s", family, tag), copy_dir(sharded, name, dir, sizeof dir), \
                       snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir))
#define LABEL(what) (snprintf(label, sizeof label, "%s: %s", family, what), label)
    static const struct {
        const char *tag, *from, *to;
        rn_status expect;
        const char *mention;
    } edits[] = {
        {"missing_file", "\"model-00002-of-00003.safetensors\"", "\"model-00009-of-00003.safetensors\"",
         RN_ERR_IO, "model-00009-of-00003.safetensors"},
        {"slash", "\"model-00001-of-00003.safetensors\"", "\"sub/model-00001-of-00003.safetensors\"",
         RN_ERR_TENSOR_ENTRY, "sub/model-00001"},
        {"dotdot", "\"model-00001-of-00003.safetensors\"", "\"../model-00001-of-00003.safetensors\"",
         RN_ERR_TENSOR_ENTRY, "../model-00001"},
        {"dotdot_plain", "\"model-00001-of-00003.safetensors\"", "\"..\"", RN_ERR_TENSOR_ENTRY, "'..'"},
        {"absolute", "\"model-00001-of-00003.safetensors\"", "\"/etc/passwd\"", RN_ERR_TENSOR_ENTRY,
         "/etc/passwd"},
        {"backslash", "\"model-00001-of-00003.safetensors\"", "\"a\\\\model-00001-of-00003.safetensors\"",
         RN_ERR_TENSOR_ENTRY, "plain file name"},
        {"empty_name", "\"model-00001-of-00003.safetensors\"", "\"\"", RN_ERR_TENSOR_ENTRY, "plain file name"},
        {"value_number", ": \"model-00001-of-00003.safetensors\"", ": 1", RN_ERR_TENSOR_ENTRY, "must be a string"},
        {"value_null", ": \"model-00001-of-00003.safetensors\"", ": null", RN_ERR_TENSOR_ENTRY, "must be a string"},
        {"map_array", "\"weight_map\": {", "\"weight_map\": [], \"x\": {", RN_ERR_TENSOR_ENTRY, "weight_map"},
        {"map_missing", "\"weight_map\"", "\"weight_mop\"", RN_ERR_TENSOR_ENTRY, "weight_map is missing"},
        {"tensor_name_control", "\"weight_map\": {", "\"weight_map\": {\"a\\u0001b\": \"model-00001-of-00003.safetensors\", ",
         RN_ERR_TENSOR_ENTRY, "control character"},
        {"tensor_name_empty", "\"weight_map\": {", "\"weight_map\": {\"\": \"model-00001-of-00003.safetensors\", ",
         RN_ERR_TENSOR_ENTRY, "empty"},
        {"not_json", "{", "weight_map = {", RN_ERR_JSON, "model.safetensors.index.json"},
        {"root_dup", "\"metadata\"", "\"weight_map\": {}, \"metadata\"", RN_ERR_JSON, "weight_map"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        CASE_DIR(edits[i].tag);
        edit_file(path, edits[i].from, edits[i].to);
        snprintf(label, sizeof label, "%s: index %s", family, edits[i].tag);
        expect_open(label, dir, edits[i].expect, edits[i].mention, NULL);
    }

    /* whole-document cases */
    CASE_DIR("map_empty");
    write_file(path, "{\"weight_map\": {}}", 18);
    expect_open(LABEL("index weight_map empty"), dir, RN_ERR_TENSOR_ENTRY, "empty", NULL);
    CASE_DIR("map_string");
    write_file(path, "{\"weight_map\": \"model.safetensors\"}", 35);
    expect_open(LABEL("index weight_map a string"), dir, RN_ERR_TENSOR_ENTRY, "weight_map", NULL);
    CASE_DIR("index_empty_file");
    write_file(path, "", 0);
    expect_open(LABEL("index empty file"), dir, RN_ERR_JSON, "model.safetensors.index.json", NULL);

    /* a tensor listed twice, in the wrong shard, in two shards, or not at all */
    rn_checkpoint *ck = NULL;
    rn_error err = {{0}};
    if (rn_checkpoint_open(sharded, &ck, &err) != RN_OK) die(err.message, sharded);
    const char *t0 = st_at(ck->shards[0], 0)->name;   /* shards[0] is model-00001-of-00003 */
    char from[600], to[600];

    CASE_DIR("map_dup");
    snprintf(to, sizeof to, "\"weight_map\": {\n    \"%s\": \"model-00001-of-00003.safetensors\",", t0);
    edit_file(path, "\"weight_map\": {", to);
    expect_open(LABEL("index lists a tensor twice"), dir, RN_ERR_DUPLICATE, t0, "twice");

    CASE_DIR("wrong_shard");
    snprintf(from, sizeof from, "\"%s\": \"model-00001-of-00003.safetensors\"", t0);
    snprintf(to, sizeof to, "\"%s\": \"model-00002-of-00003.safetensors\"", t0);
    edit_file(path, from, to);
    expect_open(LABEL("index names the wrong shard"), dir, RN_ERR_MISSING_TENSOR, t0,
                "model-00002-of-00003.safetensors");

    CASE_DIR("two_shards");
    rn_st_entry extra = entry_from(sharded, t0, t0);
    snprintf(from, sizeof from, "%s/model-00003-of-00003.safetensors", sharded);
    snprintf(to, sizeof to, "%s/model-00003-of-00003.safetensors", dir);
    rewrite_file(from, to, NULL, NULL, 0, 0, 0, &extra);
    free((void *)extra.data);
    expect_open(LABEL("tensor in two shards"), dir, RN_ERR_DUPLICATE, t0, "two shards");

    /* a tensor the model needs, its line taken out of the map (never the last line) */
    CASE_DIR("unlisted");
    const char *need = ck->layers[1].fc2->name;
    snprintf(from, sizeof from, "\"%s\": ", need);
    size_t len;
    char *text = (char *)read_all(path, &len);
    text[len] = '\0';
    char *at = strstr(text, from), *line = at, *next = at ? strchr(at, '\n') : NULL;
    if (!at || !next || next[-1] != ',') die("unexpected index layout", path);
    while (line > text && line[-1] != '\n') line--;
    memmove(line, next + 1, strlen(next + 1) + 1);
    write_file(path, text, strlen(text));
    free(text);
    expect_open(LABEL("needed tensor not in the map"), dir, RN_ERR_MISSING_TENSOR, need, "index.json");

    /* a corrupt shard: st_open's own status, naming the shard */
    CASE_DIR("corrupt_shard");
    snprintf(to, sizeof to, "%s/model-00002-of-00003.safetensors", dir);
    write_file(to, "\x02\0\0\0\0\0\0\0[]", 10);
    expect_open(LABEL("corrupt shard"), dir, RN_ERR_JSON, "model-00002-of-00003.safetensors", NULL);

    /* a shard file missing from the directory */
    CASE_DIR("deleted_shard");
    snprintf(to, sizeof to, "%s/model-00003-of-00003.safetensors", dir);
    remove(to);
    expect_open(LABEL("shard file deleted"), dir, RN_ERR_IO, "model-00003-of-00003.safetensors", NULL);
    rn_checkpoint_close(ck);

    /* the index wins over a stale model.safetensors */
    CASE_DIR("stale_single");
    snprintf(other, sizeof other, "%s/model.safetensors", dir);
    write_file(other, "not a safetensors file", 22);
    rn_status s = rn_checkpoint_open(dir, &ck, &err);
    report(s == RN_OK && ck->indexed && ck->n_shards == 3, "shards", LABEL("index preferred to model.safetensors"),
           "%s %s", rn_status_str(s), s == RN_OK ? "" : err.message);
    rn_checkpoint_close(ck);
#undef CASE_DIR
#undef LABEL
}

static void test_families(void) {
    char plain[512], sharded[512], dir[512], other[512];
    rn_writer_options o;
    rn_error err = {{0}};

    /* one small model per family and layout; unsharded and 3-sharded copies are byte-equal */
    struct {
        const char *name;
        rn_config cfg;
        st_dtype dtype;
        bool fused;
    } models[] = {
        {"torchscale", tiny_config(), ST_F32, false},
        {"syncdoth", tiny_config(), ST_F16, false},
        {"fla", tiny_fla(2, true, true, false), ST_BF16, false},
        {"fla_fused_gqa", tiny_fla(1, true, true, false), ST_BF16, true},
        {"fla_nogate_noaffine_tied", tiny_fla(2, false, false, true), ST_F32, false},
    };
    models[1].cfg.family = RN_FAMILY_SYNCDOTH;
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char name[96], label[96];
        rn_writer_options_default(&o);
        o.seed = 11;
        o.dtype = models[i].dtype;
        o.fused_mlp = models[i].fused;
        snprintf(name, sizeof name, "fam_%s", models[i].name);
        if (make_model_opts(name, &models[i].cfg, &o, plain, sizeof plain) != RN_OK) {
            report(false, "family", models[i].name, "cannot write");
            continue;
        }
        snprintf(label, sizeof label, "ok: %s (%s)", models[i].name, st_dtype_name(o.dtype));
        expect_family_model(label, plain, &models[i].cfg, 0);
        o.shards = 3;
        snprintf(name, sizeof name, "fam_%s_sharded", models[i].name);
        if (make_model_opts(name, &models[i].cfg, &o, sharded, sizeof sharded) != RN_OK) continue;
        snprintf(label, sizeof label, "ok: %s in 3 shards", models[i].name);
        expect_family_model(label, sharded, &models[i].cfg, 3);
        snprintf(label, sizeof label, "%s: sharded = unsharded", models[i].name);
        expect_same_checkpoint(label, sharded, plain);
        if (i < 3) test_shard_errors(models[i].name, sharded);
    }

    /* one shard with an index is a valid layout too */
    rn_config fla = tiny_fla(2, true, true, false);
    rn_writer_options_default(&o);
    o.shards = 1;
    if (make_model_opts("fam_fla_one_shard", &fla, &o, dir, sizeof dir) == RN_OK)
        expect_family_model("ok: fla, 1 shard + index", dir, &fla, 1);
    o.shards = 1000;
    rn_status s = rn_write_random_model(dir, &fla, &o, &err);
    expect_status("writer", "more shards than tensors", s, RN_ERR_INVALID_ARGUMENT, &err, "shards", NULL);

    /* fla: the fused and the split MLP are the same model */
    rn_writer_options_default(&o);
    o.seed = 5;
    if (make_model_opts("fam_fla_split", &fla, &o, plain, sizeof plain) == RN_OK) {
        o.fused_mlp = true;
        if (make_model_opts("fam_fla_fused", &fla, &o, dir, sizeof dir) == RN_OK) {
            expect_family_model("ok: fla fused MLP", dir, &fla, 0);
            rn_checkpoint *a = NULL, *b = NULL;
            bool ok = rn_checkpoint_open(dir, &a, &err) == RN_OK && rn_checkpoint_open(plain, &b, &err) == RN_OK;
            for (int64_t l = 0; ok && l < fla.layers; l++) {
                const rn_layer_tensors *x = &a->layers[l], *y = &b->layers[l];
                ok = same_tensor_bytes(x->fc1, y->fc1) && same_tensor_bytes(x->gate, y->gate) &&
                     (const unsigned char *)x->gate->data == (const unsigned char *)x->fc1->data + x->fc1->nbytes &&
                     strstr(x->fc1->name, "mlp.gate_proj.weight[rows 0:32]") &&
                     strstr(x->gate->name, "mlp.gate_proj.weight[rows 32:64]");
            }
            ok = ok && a->parameters == b->parameters && a->tensor_bytes == b->tensor_bytes;
            report(ok, "family", "fla: fused halves = split gate/up", "%s", ok ? "" : err.message);
            rn_checkpoint_close(a);
            rn_checkpoint_close(b);

            /* a fused gate_proj of the wrong height */
            const char *drop[] = {NULL};
            path_in(other, sizeof other, "fam_fla_fused_3i");
            rewrite_model(dir, other, drop, "model.layers.1.mlp.gate_proj.weight", 2, 48, 16, NULL);
            expect_open("fla: gate_proj [48, 16], no up_proj", other, RN_ERR_TENSOR_SHAPE,
                        "model.layers.1.mlp.gate_proj.weight", "[64, 16] (fused");
        }
        /* bad input: missing, misshapen, head-norm names */
        const char *drop_o[] = {"model.layers.0.attn.o_proj.weight", NULL};
        path_in(other, sizeof other, "fam_fla_no_o");
        rewrite_model(plain, other, drop_o, NULL, 0, 0, 0, NULL);
        expect_open("fla: o_proj missing", other, RN_ERR_MISSING_TENSOR, drop_o[0], "fla names");
        const char *drop_up[] = {"model.layers.1.mlp.up_proj.weight", NULL};
        path_in(other, sizeof other, "fam_fla_no_up");
        rewrite_model(plain, other, drop_up, NULL, 0, 0, 0, NULL);
        expect_open("fla: up_proj missing, gate_proj [I, D]", other, RN_ERR_MISSING_TENSOR, drop_up[0], NULL);
        path_in(other, sizeof other, "fam_fla_q_t");
        rewrite_model(plain, other, NULL, "model.layers.0.attn.v_proj.weight", 2, 16, 32, NULL);
        expect_open("fla: v_proj transposed", other, RN_ERR_TENSOR_SHAPE, "model.layers.0.attn.v_proj.weight",
                    "[32, 16]");
        path_in(other, sizeof other, "fam_fla_norm");
        rewrite_model(plain, other, NULL, "model.layers.1.attn.g_norm_swish_gate.weight", 1, 8, 0, NULL);
        expect_open("fla: head norm of 8, dv 16", other, RN_ERR_TENSOR_SHAPE, "g_norm_swish_gate", "[16]");
        const char *drop_norm[] = {"model.layers.1.attn.g_norm_swish_gate.weight", NULL};
        path_in(other, sizeof other, "fam_fla_no_norm");
        rewrite_model(plain, other, drop_norm, NULL, 0, 0, 0, NULL);
        expect_open("fla: head norm missing (both names)", other, RN_ERR_MISSING_TENSOR,
                    "model.layers.1.attn.g_norm_swish_gate.weight", "attn.g_norm.weight");
        rn_st_entry renamed = entry_from(plain, drop_norm[0], "model.layers.1.attn.g_norm.weight");
        path_in(other, sizeof other, "fam_fla_g_norm");
        rewrite_model(plain, other, drop_norm, NULL, 0, 0, 0, &renamed);
        expect_family_model("ok: fla head norm as attn.g_norm.weight", other, &fla, 0);
        path_in(other, sizeof other, "fam_fla_two_norms");
        rewrite_model(plain, other, NULL, NULL, 0, 0, 0, &renamed);
        expect_open("fla: both head-norm names", other, RN_ERR_DUPLICATE, "g_norm_swish_gate", "attn.g_norm.weight");
        free((void *)renamed.data);
        const char *drop_head[] = {"lm_head.weight", NULL};
        path_in(other, sizeof other, "fam_fla_no_head");
        rewrite_model(plain, other, drop_head, NULL, 0, 0, 0, NULL);
        expect_open("fla: untied without lm_head", other, RN_ERR_MISSING_TENSOR, "lm_head.weight", NULL);
        /* contradictory config over good weights */
        path_in(other, sizeof other, "fam_fla_kv3");
        rewrite_model(plain, other, NULL, NULL, 0, 0, 0, NULL);
        char cfg_path[600];
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", other);
        edit_file(cfg_path, "\"num_kv_heads\": null", "\"num_kv_heads\": 3");
        expect_open("fla: num_kv_heads 3 of 2 heads", other, RN_ERR_CONFIG, "num_kv_heads", "config.json");
        path_in(other, sizeof other, "fam_fla_gqa_mismatch");
        rewrite_model(plain, other, NULL, NULL, 0, 0, 0, NULL);
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", other);
        edit_file(cfg_path, "\"num_kv_heads\": null", "\"num_kv_heads\": 1");
        expect_open("fla: k_proj of full heads, config GQA", other, RN_ERR_TENSOR_SHAPE,
                    "model.layers.0.attn.k_proj.weight", "[8, 16]");
        path_in(other, sizeof other, "fam_fla_as_torchscale");
        rewrite_model(plain, other, NULL, NULL, 0, 0, 0, NULL);
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", other);
        rn_config ts = tiny_config();
        rn_write_config(cfg_path, &ts, &err);
        expect_open("fla weights, torchscale config", other, RN_ERR_MISSING_TENSOR, "embed_tokens.weight",
                    "torchscale names");
    }

    /* syncdoth: missing, misshapen, contradictory config, buffers */
    rn_config sd = tiny_config();
    sd.family = RN_FAMILY_SYNCDOTH;
    rn_writer_options_default(&o);
    if (make_model_opts("fam_sd", &sd, &o, plain, sizeof plain) == RN_OK) {
        const char *drop_k[] = {"model.layers.1.retention.k_proj.weight", NULL};
        path_in(other, sizeof other, "fam_sd_no_k");
        rewrite_model(plain, other, drop_k, NULL, 0, 0, 0, NULL);
        expect_open("syncdoth: k_proj missing", other, RN_ERR_MISSING_TENSOR, drop_k[0], "syncdoth names");
        const char *drop_head[] = {"lm_head.weight", NULL};
        path_in(other, sizeof other, "fam_sd_no_head");
        rewrite_model(plain, other, drop_head, NULL, 0, 0, 0, NULL);
        expect_open("syncdoth: untied without lm_head", other, RN_ERR_MISSING_TENSOR, "lm_head.weight", NULL);
        path_in(other, sizeof other, "fam_sd_v_t");
        rewrite_model(plain, other, NULL, "model.layers.0.retention.v_proj.weight", 2, 16, 24, NULL);
        expect_open("syncdoth: v_proj transposed", other, RN_ERR_TENSOR_SHAPE,
                    "model.layers.0.retention.v_proj.weight", "[24, 16]");
        float hh[4] = {1, 0, 0, 1};
        rn_st_entry proj = {.name = "model.layers.0.retention.decay_proj.weight", .dtype = ST_F32,
                            .rank = 2, .shape = {2, 2}, .data = hh};
        path_in(other, sizeof other, "fam_sd_decay_proj");
        rewrite_model(plain, other, NULL, NULL, 0, 0, 0, &proj);
        expect_open("syncdoth: tensor-parallel decay_proj refused", other, RN_ERR_UNSUPPORTED_CONFIG,
                    "decay_proj", NULL);
        path_in(other, sizeof other, "fam_sd_contra");
        rewrite_model(plain, other, NULL, NULL, 0, 0, 0, NULL);
        char cfg_path[600];
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", other);
        edit_file(cfg_path, "\"use_glu\": true", "\"use_glu\": true, \"share_decoder_input_output_embed\": true");
        expect_open("syncdoth: tie_word_embeddings vs share_...", other, RN_ERR_CONFIG, "tie_word_embeddings",
                    "config.json");
        edit_file(cfg_path, ", \"share_decoder_input_output_embed\": true", "");
        edit_file(cfg_path, "\"use_ffn_rms_norm\": false", "\"use_ffn_rms_norm\": true");
        expect_open("syncdoth: use_ffn_rms_norm refused", other, RN_ERR_UNSUPPORTED_CONFIG, "use_ffn_rms_norm", NULL);
        /* torchscale names under a syncdoth-looking config: the names decide */
        rn_config ts = tiny_config();
        if (make_model("fam_ts_named", &ts, ST_F32, false, 1.0, dir, sizeof dir) == RN_OK) {
            snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
            edit_file(cfg_path, "\"deepnorm\": false", "\"deepnorm\": false, \"tie_word_embeddings\": false");
            expect_family_model("ok: torchscale names, syncdoth keys", dir, &ts, 0);
        }
    }

    /* syncdoth buffers override; use_lm_decay without buffers is computed */
    float learned[2] = {-0.5f, -0.01f};
    rn_writer_options_default(&o);
    o.decay = learned;
    if (make_model_opts("fam_sd_learned", &sd, &o, dir, sizeof dir) == RN_OK) {
        rn_checkpoint *ck = NULL;
        bool ok = rn_checkpoint_open(dir, &ck, &err) == RN_OK;
        float angle[8], decay[2];
        if (ok) {
            rn_checkpoint_rel_pos(ck, angle, decay);
            ok = ck->decay && ck->angle && strcmp(ck->decay->name, "model.retnet_rel_pos.decay") == 0 &&
                 decay[0] == learned[0] && decay[1] == learned[1] && angle[0] == 1.0f && angle[1] == 1.0f;
        }
        report(ok, "family", "syncdoth: decay buffer overrides", "%s", ok ? "" : err.message);
        rn_checkpoint_close(ck);
    }
    rn_checkpoint lm = {.config = {.family = RN_FAMILY_SYNCDOTH, .key_head_dim = 8, .heads = 4,
                                   .use_lm_decay = true}};
    float angle8[8], decay4[4];
    rn_checkpoint_rel_pos(&lm, angle8, decay4);
    bool ok = true;
    for (int h = 0; h < 4; h++) {
        double t = log(1.0 / 32) + (log(1.0 / 512) - log(1.0 / 32)) * h / 3.0;
        ok = ok && fabs(decay4[h] - log(1 - exp(t))) < 1e-6;
    }
    report(ok && fabs(decay4[0] - log(31.0 / 32)) < 1e-7 && fabs(decay4[3] - log(511.0 / 512)) < 1e-7,
           "family", "syncdoth use_lm_decay values", "decay %g .. %g", (double)decay4[0], (double)decay4[3]);

    /* fla rotation: half-split layout, NeoX frequencies */
    rn_checkpoint neox = {.config = {.family = RN_FAMILY_FLA, .key_head_dim = 8, .heads = 2, .rope_half = true}};
    float a8[8], d2[2];
    rn_checkpoint_rel_pos(&neox, a8, d2);
    ok = a8[0] == 1.0f && a8[4] == 1.0f;
    for (int i = 0; i < 4; i++) ok = ok && a8[i] == a8[i + 4] && fabs(a8[i] - pow(10000.0, -2.0 * i / 8)) < 1e-7;
    ok = ok && fabs(d2[0] - log(31.0 / 32)) < 1e-7 && fabs(d2[1] - log(63.0 / 64)) < 1e-7;
    report(ok, "family", "fla angles: theta_i = 10000^(-2i/dk), twice", "%g %g %g %g", (double)a8[0],
           (double)a8[1], (double)a8[2], (double)a8[3]);

    /* the writer: what it refuses, and exact ratios */
    rn_writer_options_default(&o);
    o.write_rel_pos = true;
    s = rn_write_random_model(dir, &fla, &o, &err);
    expect_status("writer", "fla with rel-pos buffers", s, RN_ERR_INVALID_ARGUMENT, &err, "fla", NULL);
    rn_writer_options_default(&o);
    o.fused_mlp = true;
    rn_config ts = tiny_config();
    s = rn_write_random_model(dir, &ts, &o, &err);
    expect_status("writer", "torchscale with a fused MLP", s, RN_ERR_INVALID_ARGUMENT, &err, "fused", NULL);
    rn_config bad = tiny_fla(3, true, true, false);
    path_in(dir, sizeof dir, "fam_fla_bad");
    s = rn_write_random_model(dir, &bad, NULL, &err);
    expect_status("writer", "fla kv_heads 3 of 2", s, RN_ERR_CONFIG, &err, "num_kv_heads", NULL);
    rn_config third = tiny_fla(2, true, true, false);
    third.embed_dim = 48;   /* expand_k = 1/3: 48 * 0.3333... must give 16 back */
    third.value_embed_dim = 80;
    path_in(dir, sizeof dir, "fam_fla_third");
    s = rn_write_random_model(dir, &third, NULL, &err);
    if (s == RN_OK) expect_family_model("ok: fla expand_k 1/3, expand_v 5/3", dir, &third, 0);
    else report(false, "writer", "fla expand_k 1/3", "%s", err.message);
}

/* ---- the fla-hub 1.3B preset (test_models --fla-1.3b DIR) --------------------------------- */

static const char k_fla_hub_config_json[] =
    "{\n  \"architectures\": [\n    \"RetNetForCausalLM\"\n  ],\n  \"attn_mode\": \"fused_chunk\",\n"
    "  \"bos_token_id\": 1,\n  \"conv_size\": 4,\n  \"elementwise_affine\": true,\n  \"eos_token_id\": 2,\n"
    "  \"expand_k\": 1,\n  \"expand_v\": 2,\n  \"feature_map\": null,\n  \"fuse_cross_entropy\": true,\n"
    "  \"fuse_norm\": true,\n  \"hidden_act\": \"swish\",\n  \"hidden_ratio\": 2,\n  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n  \"intermediate_size\": null,\n  \"max_position_embeddings\": 2048,\n"
    "  \"model_type\": \"retnet\",\n  \"norm_eps\": 1e-06,\n  \"num_heads\": 8,\n  \"num_hidden_layers\": 24,\n"
    "  \"num_kv_heads\": null,\n  \"rms_norm_eps\": 1e-06,\n  \"share_conv_kernel\": true,\n"
    "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"bfloat16\",\n  \"transformers_version\": \"4.40.2\",\n"
    "  \"use_cache\": true,\n  \"use_output_gate\": true,\n  \"use_short_conv\": false,\n  \"vocab_size\": 32000\n}\n";

/* From the hub checkpoint's shapes: per layer q, k [2048, 2048], v, g
 * [4096, 2048], o [2048, 4096], g_norm [512], two norms [2048], gate_proj [5632, 2048] fused,
 * down_proj [2048, 2816]; embeddings and lm_head [32000, 2048]; model.norm [2048]. */
#define FLA_1_3B_PER_LAYER (2 * 2048ull * 2048 + 3 * 4096ull * 2048 + 512 + 2 * 2048 + 5632ull * 2048 + 2048ull * 2816)
#define FLA_1_3B_PARAMETERS (24 * FLA_1_3B_PER_LAYER + 2 * 32000ull * 2048 + 2048)

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_fla_1_3b(const char *parent) {
    snprintf(g_dir, sizeof g_dir, "%s/rn_fla_1_3b_XXXXXX", parent);
    if (!mkdtemp(g_dir)) die("cannot create a temporary directory under", parent);
    rn_config cfg;
    rn_writer_options o;
    rn_writer_preset_fla_1_3b(&cfg, &o);
    rn_error err = {{0}};
    double t0 = seconds_now();
    rn_status s = rn_write_random_model(g_dir, &cfg, &o, &err);
    double written = seconds_now() - t0;
    report(s == RN_OK, "fla-1.3b", "write the preset", "%s in %.1f s %s", rn_status_str(s), written,
           s == RN_OK ? "" : err.message);

    if (s == RN_OK) {
        char path[600];
        snprintf(path, sizeof path, "%s/config.json", g_dir);
        size_t len;
        unsigned char *text = read_all(path, &len);
        report(len == sizeof k_fla_hub_config_json - 1 && memcmp(text, k_fla_hub_config_json, len) == 0,
               "fla-1.3b", "config.json = the hub's, key for key", "%zu bytes", len);
        free(text);

        t0 = seconds_now();
        rn_checkpoint *ck = NULL;
        s = rn_checkpoint_open(g_dir, &ck, &err);
        double opened = seconds_now() - t0;
        expect_status("fla-1.3b", "open", s, RN_OK, &err, NULL, NULL);
        if (s == RN_OK) {
            const rn_config *c = &ck->config;
            bool ok = c->family == RN_FAMILY_FLA && c->embed_dim == 2048 && c->layers == 24 &&
                      c->heads == 8 && c->kv_heads == 8 && c->key_head_dim == 256 && c->value_head_dim == 512 &&
                      c->ffn_dim == 2816 && c->vocab_size == 32000 && !c->share_embed && c->output_gate &&
                      c->head_norm_weight && c->rope_half && c->plain_retention && c->layernorm_eps == 1e-6;
            report(ok, "fla-1.3b", "config fields", "D %lld L %lld H %lld dk %lld dv %lld I %lld V %lld",
                   (long long)c->embed_dim, (long long)c->layers, (long long)c->heads,
                   (long long)c->key_head_dim, (long long)c->value_head_dim, (long long)c->ffn_dim,
                   (long long)c->vocab_size);
            report(ck->parameters == FLA_1_3B_PARAMETERS && ck->parameters == 1351727104ull &&
                       ck->tensor_bytes == 2 * FLA_1_3B_PARAMETERS,
                   "fla-1.3b", "1.35B parameters, bf16", "%llu parameters (expected %llu), %llu bytes",
                   (unsigned long long)ck->parameters, (unsigned long long)FLA_1_3B_PARAMETERS,
                   (unsigned long long)ck->tensor_bytes);
            size_t n = st_count(ck->shards[0]), not_bf16 = 0;
            for (size_t i = 0; i < n; i++) not_bf16 += st_at(ck->shards[0], i)->dtype != ST_BF16;
            ok = n == 1 + 24 * 10 + 2 && not_bf16 == 0 && !rn_checkpoint_find(ck, "model.layers.0.mlp.up_proj.weight") &&
                 has_shape(rn_checkpoint_find(ck, "model.layers.23.mlp.gate_proj.weight"), 5632, 2048) &&
                 has_shape(rn_checkpoint_find(ck, "model.layers.5.attn.g_norm_swish_gate.weight"), 512, 0) &&
                 has_shape(rn_checkpoint_find(ck, "lm_head.weight"), 32000, 2048);
            for (int64_t l = 0; ok && l < 24; l++) {
                const rn_layer_tensors *L = &ck->layers[l];
                ok = has_shape(L->fc1, 2816, 2048) && has_shape(L->gate, 2816, 2048) &&
                     (const unsigned char *)L->gate->data == (const unsigned char *)L->fc1->data + 2816ull * 2048 * 2 &&
                     has_shape(L->k_proj, 2048, 2048) && has_shape(L->v_proj, 4096, 2048) &&
                     has_shape(L->out_proj, 2048, 4096) && has_shape(L->fc2, 2048, 2816);
            }
            report(ok, "fla-1.3b", "names, shapes, dtype, fused halves", "%zu tensors, opened in %.2f s", n, opened);
            rn_checkpoint_close(ck);
        }
        printf("fla-1.3b: wrote %.2f GB in %.1f s (%.0f MB/s)\n", 2.0 * FLA_1_3B_PARAMETERS / 1e9, written,
               2.0 * FLA_1_3B_PARAMETERS / 1e6 / written);
    }
    nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%d cases, %d failed\n", g_cases, g_failures);
    return g_failures ? 1 : 0;
}

/* ---- quantized checkpoints (retnet quantize) ---------------------------------------------- */

/* The matrices a quantized checkpoint holds as views, in the same order for any checkpoint. */
static size_t matrices_of(const rn_checkpoint *ck, const st_tensor **out) {
    size_t n = 0;
    out[n++] = ck->embed;
    out[n++] = ck->output;
    for (int64_t l = 0; l < ck->config.layers; l++) {
        const rn_layer_tensors *L = &ck->layers[l];
        const st_tensor *all[] = {L->q_proj, L->k_proj, L->v_proj, L->g_proj, L->out_proj, L->fc1, L->gate, L->fc2};
        for (size_t i = 0; i < 8; i++) out[n++] = all[i];
    }
    return n;
}

/* `q` opens as a quantized checkpoint of `scheme` whose every matrix holds exactly the quants and
 * scales rn_convert makes of `orig`'s (what --weights q8|q4 uploads), and whose vectors are
 * `orig`'s bytes. */
static void expect_quantized_of(const char *label, const char *q, const char *orig, st_dtype scheme) {
    rn_checkpoint *a = NULL, *b = NULL;
    rn_error err = {{0}};
    bool ok = rn_checkpoint_open(q, &a, &err) == RN_OK && rn_checkpoint_open(orig, &b, &err) == RN_OK;
    char why[256] = "";
    if (ok && (!a->quantized || a->quantization != scheme || b->quantized || a->parameters != b->parameters ||
               a->config.family != b->config.family)) {
        ok = false;
        snprintf(why, sizeof why, "quantized %d scheme %s parameters %llu/%llu", a->quantized,
                 st_dtype_name(a->quantization), (unsigned long long)a->parameters, (unsigned long long)b->parameters);
    }
    if (ok) {
        const st_tensor *ma[2 + 8 * 8], *mb[2 + 8 * 8];
        size_t n = matrices_of(a, ma);
        matrices_of(b, mb);
        for (size_t i = 0; ok && i < n; i++) {
            if (!ma[i] && !mb[i]) continue;
            const st_tensor *x = ma[i], *y = mb[i];
            if (!x || !y || x->dtype != scheme || !x->scales || x->rank != 2 || x->shape[0] != y->shape[0] ||
                x->shape[1] != y->shape[1] || x->elements != y->elements) {
                ok = false;
                snprintf(why, sizeof why, "matrix %zu (%s): view or shape differs", i, y ? y->name : "?");
                break;
            }
            unsigned char *want = malloc((size_t)rn_storage_bytes(scheme, y->elements));
            rn_convert(y->dtype, y->data, y->elements, scheme, want, NULL);
            uint64_t qb = rn_quant_bytes(scheme, y->elements);
            ok = memcmp(want, x->data, (size_t)qb) == 0 && memcmp(want + qb, x->scales, (size_t)(y->elements / 32 * 2)) == 0;
            if (!ok) snprintf(why, sizeof why, "matrix '%s': quants or scales differ", y->name);
            free(want);
        }
        for (int64_t l = 0; ok && l < a->config.layers; l++) {
            const st_tensor *x = a->layers[l].ffn_norm, *y = b->layers[l].ffn_norm;
            ok = x->dtype == y->dtype && x->nbytes == y->nbytes && memcmp(x->data, y->data, (size_t)x->nbytes) == 0 &&
                 !x->scales;
            if (!ok) snprintf(why, sizeof why, "layer %lld ffn_norm differs", (long long)l);
        }
    }
    report(ok, "quantized", label, "%s", ok ? "" : why[0] ? why : err.message);
    rn_checkpoint_close(a);
    rn_checkpoint_close(b);
}

/* A copy of `src_dir` (model.safetensors and config.json) with the first `old` in the header
 * replaced by `new_` (re-padded); the data is unchanged. */
static void qedit_header(const char *src_dir, const char *dst_dir, const char *old, const char *new_) {
    char src[600], dst[600];
    mkdir(dst_dir, 0700);
    snprintf(src, sizeof src, "%s/model.safetensors", src_dir);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dst_dir);
    size_t len;
    unsigned char *in = read_all(src, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | in[i];
    char *header = malloc((size_t)n + 1);
    memcpy(header, in + 8, (size_t)n);
    header[n] = '\0';
    char *at = strstr(header, old);
    if (!at) die("qedit_header: no match in", src);
    size_t before = (size_t)(at - header), olen = strlen(old), nlen = strlen(new_);
    size_t json = (size_t)n - olen + nlen, padded = (json + 7) / 8 * 8;
    char *h = malloc(padded);
    memcpy(h, header, before);
    memcpy(h + before, new_, nlen);
    memcpy(h + before + nlen, at + olen, (size_t)n - before - olen);
    memset(h + json, ' ', padded - json);
    write_st_raw(dst, padded, h, padded, in + 8 + n, len - 8 - (size_t)n);
    free(h);
    free(header);
    free(in);
    snprintf(src, sizeof src, "%s/config.json", src_dir);
    snprintf(dst, sizeof dst, "%s/config.json", dst_dir);
    unsigned char *cfg = read_all(src, &len);
    write_file(dst, cfg, len);
    free(cfg);
}

static rn_config quantizable_config(void) {
    return (rn_config){.embed_dim = 32, .value_embed_dim = 64, .heads = 2, .ffn_dim = 64,
                       .layers = 2, .vocab_size = 40, .chunk_size = 8, .activation = RN_ACT_SWISH,
                       .layernorm_eps = 1e-6, .no_scale_embedding = true, .share_embed = false,
                       .normalize_before = true};
}

static void test_quantized_checkpoints(void) {
    char orig[512], q[512], dir[512];
    rn_error err = {{0}};
    rn_writer_options o;

    /* every family and layout, both schemes: the views hold what a load-time quantization makes */
    struct {
        const char *name;
        rn_config cfg;
        st_dtype dtype;
        bool fused;
        unsigned shards;
    } models[] = {
        {"torchscale", quantizable_config(), ST_F32, false, 0},
        {"syncdoth", quantizable_config(), ST_F16, false, 2},
        {"fla", tiny_fla(2, true, true, false), ST_BF16, false, 0},
        {"fla_fused_gqa", tiny_fla(1, true, true, false), ST_BF16, true, 0},
        {"fla_tied", tiny_fla(2, false, false, true), ST_F32, false, 0},
    };
    models[1].cfg.family = RN_FAMILY_SYNCDOTH;
    for (size_t i = 2; i < 5; i++) {
        models[i].cfg.embed_dim = models[i].cfg.key_embed_dim = 32;
        models[i].cfg.value_embed_dim = 64;
        models[i].cfg.ffn_dim = 64;
    }
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char name[96], label[128];
        rn_writer_options_default(&o);
        o.seed = 5;
        o.dtype = models[i].dtype;
        o.fused_mlp = models[i].fused;
        o.shards = models[i].shards;
        snprintf(name, sizeof name, "qsrc_%s", models[i].name);
        if (make_model_opts(name, &models[i].cfg, &o, orig, sizeof orig) != RN_OK) {
            report(false, "quantized", models[i].name, "cannot write");
            continue;
        }
        for (int s = 0; s < 2; s++) {
            st_dtype scheme = s ? ST_Q4_0 : ST_Q8_0;
            snprintf(name, sizeof name, "q_%s_%s/out", models[i].name, st_dtype_name(scheme));
            path_in(q, sizeof q, name);
            rn_status st = rn_checkpoint_quantize(orig, q, scheme, NULL, NULL, &err);
            snprintf(label, sizeof label, "ok: %s %s%s", models[i].name, st_dtype_name(scheme),
                     models[i].shards ? " from 2 shards" : "");
            if (st != RN_OK) report(false, "quantized", label, "%s: %s", rn_status_str(st), err.message);
            else expect_quantized_of(label, q, orig, scheme);
        }
    }

    /* the writer's refusals */
    rn_config c = quantizable_config();
    if (make_model("qbase", &c, ST_F32, true, 1.0, orig, sizeof orig) != RN_OK) return;
    path_in(q, sizeof q, "qbase_q8");
    rn_status st = rn_checkpoint_quantize(orig, q, ST_Q8_0, NULL, NULL, &err);
    expect_status("quantized", "write q8 with rel-pos buffers", st, RN_OK, &err, NULL, NULL);
    expect_quantized_of("q8 with rel-pos buffers", q, orig, ST_Q8_0);
    path_in(dir, sizeof dir, "qbase_again");
    st = rn_checkpoint_quantize(q, dir, ST_Q4_0, NULL, NULL, &err);
    expect_status("quantized", "quantizing a quantized checkpoint", st, RN_ERR_UNSUPPORTED_CONFIG, &err,
                  "already quantized", NULL);
    st = rn_checkpoint_quantize(orig, orig, ST_Q8_0, NULL, NULL, &err);
    expect_status("quantized", "into the model's own directory", st, RN_ERR_INVALID_ARGUMENT, &err, orig, NULL);
    st = rn_checkpoint_quantize(orig, dir, ST_F16, NULL, NULL, &err);
    expect_status("quantized", "scheme F16", st, RN_ERR_INVALID_ARGUMENT, &err, "F16", NULL);
    rn_config small = tiny_config();   /* D 16: rows of 16, half a block each */
    char tiny[512];
    if (make_model("qtiny", &small, ST_F32, false, 1.0, tiny, sizeof tiny) == RN_OK) {
        /* Blocks run across rows: written flat, read back as the same quantization. */
        path_in(dir, sizeof dir, "qtiny_q4");
        st = rn_checkpoint_quantize(tiny, dir, ST_Q4_0, NULL, NULL, &err);
        expect_status("quantized", "rows of 16 columns, blocks across rows", st, RN_OK, &err, NULL, NULL);
        if (st == RN_OK) expect_quantized_of("rows of 16 columns", dir, tiny, ST_Q4_0);
    }
    small.vocab_size = 51;             /* the embedding [51, 16]: 25.5 blocks */
    if (make_model("qodd", &small, ST_F32, false, 1.0, tiny, sizeof tiny) == RN_OK) {
        path_in(dir, sizeof dir, "qodd_q8");
        st = rn_checkpoint_quantize(tiny, dir, ST_Q8_0, NULL, NULL, &err);
        expect_status("quantized", "a matrix of 25.5 blocks", st, RN_ERR_UNSUPPORTED_CONFIG, &err,
                      "embed_tokens.weight", "whole blocks");
        struct stat sb;
        report(stat(dir, &sb) != 0, "quantized", "nothing written on refusal", "%s", dir);
    }

    /* the reader's bad-input matrix: header edits of the q8 checkpoint (data unchanged) */
    static const struct {
        const char *label, *old, *new_;
        rn_status expect;
        const char *mention1, *mention2;
    } bad[] = {
        {"unknown scheme", "\"q8_0\"", "\"q5_1\"", RN_ERR_UNSUPPORTED_CONFIG, "q5_1", "retnet_cl.quantization"},
        {"unknown version", "\"retnet_cl.quantization_version\":\"1\"", "\"retnet_cl.quantization_version\":\"2\"",
         RN_ERR_UNSUPPORTED_CONFIG, "'2'", "version 1"},
        {"missing version", "\"retnet_cl.quantization_version\"", "\"retnet_cl.quantization_vers1on\"",
         RN_ERR_UNSUPPORTED_CONFIG, "retnet_cl.quantization_version", "missing"},
        {"version without scheme", "\"retnet_cl.quantization\":", "\"retnet_cl.quantizatio_\":",
         RN_ERR_UNSUPPORTED_CONFIG, "but no retnet_cl.quantization", NULL},
        {"missing qscale", "\"layers.1.ffn.fc2.weight.qscale\"", "\"layers.1.ffn.fc2.weight.qscalf\"",
         RN_ERR_MISSING_TENSOR, "layers.1.ffn.fc2.weight.qscale", "1 tensor"},
        {"missing qweight", "\"embed_tokens.weight.qweight\"", "\"embed_tokens.weight.qweighu\"",
         RN_ERR_MISSING_TENSOR, "embed_tokens.weight.qweight", NULL},
        {"plain name, no pair", "\"layers.0.retention.q_proj.weight.qweight\"", "\"layers.0.retention.q_proj.weight\"",
         RN_ERR_MISSING_TENSOR, "layers.0.retention.q_proj.weight.qweight", NULL},
        {"scale count per row wrong", "\"layers.0.retention.v_proj.weight.qscale\":{\"shape\":[64,1]",
         "\"layers.0.retention.v_proj.weight.qscale\":{\"shape\":[32,2]", RN_ERR_TENSOR_SHAPE,
         "layers.0.retention.v_proj.weight.qscale", "[32, 2]"},
        {"qscale of rank 1", "\"layers.0.retention.v_proj.weight.qscale\":{\"shape\":[64,1]",
         "\"layers.0.retention.v_proj.weight.qscale\":{\"shape\":[64]", RN_ERR_TENSOR_SHAPE,
         "layers.0.retention.v_proj.weight.qscale", "[64, 1]"},
        {"qweight row bytes wrong", "\"layers.1.retention.out_proj.weight.qweight\":{\"shape\":[32,64]",
         "\"layers.1.retention.out_proj.weight.qweight\":{\"shape\":[64,32]", RN_ERR_TENSOR_SHAPE,
         "layers.1.retention.out_proj.weight.qweight", "[32, 64]"},
        {"q8 quants labelled q4_0", "\"q8_0\"", "\"q4_0\"", RN_ERR_TENSOR_SHAPE, ".qweight", "Q4_0"},
        {"qscale dtype BF16", "\"output_projection.weight.qscale\":{\"shape\":[40,1],\"dtype\":\"F16\"",
         "\"output_projection.weight.qscale\":{\"shape\":[40,1],\"dtype\":\"BF16\"", RN_ERR_UNSUPPORTED_DTYPE,
         "output_projection.weight.qscale", "BF16"},
        {"qweight dtype F16", "\"layers.0.ffn.gate.weight.qweight\":{\"shape\":[64,32],\"dtype\":\"U8\"",
         "\"layers.0.ffn.gate.weight.qweight\":{\"shape\":[64,16],\"dtype\":\"F16\"", RN_ERR_UNSUPPORTED_DTYPE,
         "layers.0.ffn.gate.weight.qweight", "U8"},
        {"norm weight as U8", "\"layer_norm.weight\":{\"shape\":[32],\"dtype\":\"F32\"",
         "\"layer_norm.weight\":{\"shape\":[128],\"dtype\":\"U8\"", RN_ERR_UNSUPPORTED_DTYPE,
         "layer_norm.weight", "unquantized"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[64];
        snprintf(name, sizeof name, "qbad_%zu", i);
        path_in(dir, sizeof dir, name);
        qedit_header(q, dir, bad[i].old, bad[i].new_);
        expect_open(bad[i].label, dir, bad[i].expect, bad[i].mention1, bad[i].mention2);
    }
    /* U8 loads as a dtype, but not as an unquantized checkpoint's weight */
    path_in(dir, sizeof dir, "qbad_plain_u8");
    char src[600];
    snprintf(src, sizeof src, "%s", orig);
    qedit_header(src, dir, "\"layer_norm.weight\":{\"dtype\":\"F32\",\"shape\":[32]",
                "\"layer_norm.weight\":{\"dtype\":\"U8\",\"shape\":[128]");
    expect_open("unquantized: norm weight as U8", dir, RN_ERR_UNSUPPORTED_DTYPE, "layer_norm.weight", "U8");
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    /* the 1.3B preset writes 2.7 GB: a mode of its own (ctest models_fla_1_3b) */
    if (argc == 3 && strcmp(argv[1], "--fla-1.3b") == 0) return run_fla_1_3b(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_models [--fla-1.3b DIR]\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/rn_test_models_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) die("cannot create a temporary directory under", g_dir);

    make_base();
    test_st_matrix();
    test_st_base_values();
    test_st_dtypes();
    test_quantized_blocks();
    test_writer_errors();
    test_config_matrix();
    test_config_files();
    test_checkpoints();
    test_family_configs();
    test_families();
    test_quantized_checkpoints();

    free(g_header);
    free(g_data);
    nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%d cases, %d failed\n", g_cases, g_failures);
    return g_failures ? 1 : 0;
}
