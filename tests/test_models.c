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
#include <unistd.h>

#include "checkpoint.h"
#include "model_writer.h"

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
        uint16_t h = rn_f32_to_f16(k_rne[i].x), b = rn_f32_to_bf16(k_rne[i].x);
        if (h != k_rne[i].f16 || b != k_rne[i].bf16) {
            printf("     rne %.9g: f16 %04x (want %04x), bf16 %04x (want %04x)\n", (double)k_rne[i].x,
                   h, k_rne[i].f16, b, k_rne[i].bf16);
            bad++;
        }
    }
    uint16_t qnan = rn_f32_to_f16(NAN), bnan = rn_f32_to_bf16(NAN);
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
        if (!isnan(want) && rn_f32_to_f16(y) != v) bad++;
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
    {"use_lm_decay", "true", RN_ERR_UNSUPPORTED_CONFIG},
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

/* Builds the base config with one key replaced, removed or added. */
static char *config_text(const char *key, const char *value) {
    char *out = malloc(4096);
    size_t n = (size_t)sprintf(out, "{");
    bool seen = false;
    for (size_t i = 0; i < sizeof k_cfg_base / sizeof *k_cfg_base; i++) {
        const char *k = k_cfg_base[i][0], *v = k_cfg_base[i][1];
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

/* Copies `src`'s model.safetensors into `dst_dir` (config.json too), dropping the tensors in
 * `drop`, giving `reshape` a new shape (same data), and adding `extra`. */
static void rewrite_model(const char *src_dir, const char *dst_dir, const char *const *drop,
                          const char *reshape, int rank, uint64_t d0, uint64_t d1,
                          const rn_st_entry *extra) {
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/model.safetensors", src_dir);
    mkdir(dst_dir, 0700);
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
    snprintf(dst, sizeof dst, "%s/model.safetensors", dst_dir);
    if (rn_st_write(dst, e, m, &err) != RN_OK) die(err.message, dst);
    for (size_t i = 0; i < n; i++) free(data[i]);
    free(data);
    free(e);
    st_close(f);
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
    size_t n = st_count(a->file), bad = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_at(a->file, i), *r = st_find(b->file, t->name);
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

/* ---- main --------------------------------------------------------------------------------- */

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/rn_test_models_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) die("cannot create a temporary directory under", g_dir);

    make_base();
    test_st_matrix();
    test_st_base_values();
    test_st_dtypes();
    test_writer_errors();
    test_config_matrix();
    test_config_files();
    test_checkpoints();

    free(g_header);
    free(g_data);
    nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%d cases, %d failed\n", g_cases, g_failures);
    return g_failures ? 1 : 0;
}
