/*
 * quantize.c: a checkpoint written back quantized (quantize.h).
 *
 * The output's layout is settled before a byte is written: the list of output tensors (each
 * matrix as its .qweight then its .qscale, everything else as it was), their offsets, and the
 * header. Then each tensor's bytes go to their place with pwrite: a matrix a piece at a time,
 * through rn_convert (which gives a piece's quants and then its scales, dtype.h), the quants to
 * the .qweight's region and the scales to the .qscale's.
 */
#define _POSIX_C_SOURCE 200809L   /* pwrite, fsync, O_CLOEXEC */

#include "quantize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dtype.h"

#define PIECE ((uint64_t)1 << 22)   /* elements converted at a time: a multiple of 32 */

typedef enum out_kind { OUT_COPY, OUT_QWEIGHT, OUT_QSCALE } out_kind;

/* One tensor of the output. */
typedef struct out_tensor {
    const st_tensor *src;
    out_kind kind;
    char *name;
    const char *dtype;
    uint64_t shape[ST_MAX_RANK];
    int rank;
    uint64_t begin, nbytes;           /* in the data region */
} out_tensor;

typedef struct plan {
    out_tensor *t;
    size_t n;
    uint64_t total_in;                /* input bytes, for progress */
} plan;

static void plan_free(plan *p) {
    for (size_t i = 0; p->t && i < p->n; i++) free(p->t[i].name);
    free(p->t);
    memset(p, 0, sizeof *p);
}

/* The role tensors kept in the model's weight type (host/model.c's matrix uploads). */
static size_t role_matrices(const rn_checkpoint *ck, const st_tensor **out) {
    size_t n = 0;
    out[n++] = ck->embed;
    if (!ck->config.share_embed) out[n++] = ck->output;
    for (int64_t l = 0; l < ck->config.layers; l++) {
        const rn_layer_tensors *L = &ck->layers[l];
        const st_tensor *all[] = {L->q_proj, L->k_proj, L->v_proj, L->g_proj, L->out_proj, L->fc1, L->gate, L->fc2};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            if (all[i]) out[n++] = all[i];
    }
    return n;
}

/* Whether file tensor `t` holds a role matrix: the matrix itself, or the fused parent of one. */
static bool holds_matrix(const st_tensor *t, const st_tensor *const *roles, size_t n) {
    uintptr_t lo = (uintptr_t)t->data, hi = lo + (uintptr_t)t->nbytes;
    for (size_t i = 0; i < n; i++) {
        uintptr_t at = (uintptr_t)roles[i]->data;
        if (t->nbytes > 0 && at >= lo && at < hi) return true;
    }
    return false;
}

static rn_status add(plan *p, size_t cap, const st_tensor *src, out_kind kind, const char *suffix, rn_error *err) {
    if (p->n == cap) return rn_fail(err, RN_ERR_LIMIT, "quantize: too many tensors");
    out_tensor *o = &p->t[p->n];
    memset(o, 0, sizeof *o);
    size_t len = strlen(src->name) + strlen(suffix);
    if (len > ST_MAX_NAME_BYTES)
        return rn_fail(err, RN_ERR_LIMIT, "tensor '%.200s': the name with '%s' is over %d bytes", src->name, suffix,
                       ST_MAX_NAME_BYTES);
    o->name = malloc(len + 1);
    if (!o->name) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory");
    snprintf(o->name, len + 1, "%s%s", src->name, suffix);
    p->n++;
    o->src = src;
    o->kind = kind;
    return RN_OK;
}

static rn_status make_plan(const rn_checkpoint *ck, st_dtype scheme, plan *p, rn_error *err) {
    memset(p, 0, sizeof *p);
    size_t files = 0;
    for (size_t s = 0; s < ck->n_shards; s++) files += st_count(ck->shards[s]);
    const st_tensor **roles = malloc((2 + 8 * (size_t)ck->config.layers) * sizeof *roles);
    const size_t cap = 2 * files + 1;
    p->t = calloc(cap, sizeof *p->t);
    if (!roles || !p->t) {
        free(roles);
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory for %zu tensors", files);
    }
    const size_t n_roles = role_matrices(ck, roles);
    rn_status st = RN_OK;
    for (size_t i = 0; i < n_roles && st == RN_OK; i++)
        if (roles[i]->elements % 32 != 0)
            st = rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG,
                         "%s storage needs whole blocks of 32; tensor '%s' has %llu elements",
                         st_dtype_name(scheme), roles[i]->name, (unsigned long long)roles[i]->elements);
    uint64_t at = 0;
    for (size_t s = 0; s < ck->n_shards && st == RN_OK; s++) {
        for (size_t j = 0; j < st_count(ck->shards[s]) && st == RN_OK; j++) {
            const st_tensor *t = st_at(ck->shards[s], j);
            if (rn_checkpoint_find(ck, t->name) != t) continue;   /* not in the index: never read */
            if (!holds_matrix(t, roles, n_roles)) {
                if ((st = add(p, cap, t, OUT_COPY, "", err)) != RN_OK) break;
                out_tensor *o = &p->t[p->n - 1];
                o->dtype = st_dtype_name(t->dtype);
                o->rank = t->rank;
                memcpy(o->shape, t->shape, sizeof o->shape);
                o->nbytes = t->nbytes;
                o->begin = at;
                at += o->nbytes;
                p->total_in += t->nbytes;
                continue;
            }
            /* Rows of whole blocks keep the matrix's shape: [rows, quant bytes of a row] and
             * [rows, cols / 32]. Otherwise blocks run across rows and both are flat. */
            const uint64_t rows = t->shape[0], cols = t->shape[1], blocks = rows * cols / 32;
            const bool by_row = cols % 32 == 0;
            if ((st = add(p, cap, t, OUT_QWEIGHT, RN_QWEIGHT_SUFFIX, err)) != RN_OK) break;
            out_tensor *w = &p->t[p->n - 1];
            *w = (out_tensor){.src = t, .kind = OUT_QWEIGHT, .name = w->name, .dtype = "U8", .rank = by_row ? 2 : 1,
                              .shape = {by_row ? rows : rn_quant_bytes(scheme, rows * cols),
                                        by_row ? rn_quant_bytes(scheme, cols) : 0},
                              .begin = at, .nbytes = rn_quant_bytes(scheme, rows * cols)};
            at += w->nbytes;
            if ((st = add(p, cap, t, OUT_QSCALE, RN_QSCALE_SUFFIX, err)) != RN_OK) break;
            out_tensor *sc = &p->t[p->n - 1];
            *sc = (out_tensor){.src = t, .kind = OUT_QSCALE, .name = sc->name, .dtype = "F16", .rank = by_row ? 2 : 1,
                               .shape = {by_row ? rows : blocks, by_row ? cols / 32 : 0}, .begin = at,
                               .nbytes = blocks * 2};
            at += sc->nbytes;
            p->total_in += t->nbytes;
            for (size_t k = p->n - 2; k < p->n && st == RN_OK; k++)
                if (rn_checkpoint_find(ck, p->t[k].name))
                    st = rn_fail(err, RN_ERR_DUPLICATE, "tensor '%.200s' is already in the checkpoint; it would "
                                 "be written twice", p->t[k].name);
        }
    }
    free(roles);
    if (st != RN_OK) plan_free(p);
    return st;
}

/* The header JSON, padded with spaces to a multiple of 8 bytes. */
static rn_status make_header(const plan *p, st_dtype scheme, char **out, size_t *len, rn_error *err) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    bool ok = root && meta && cJSON_AddItemToObject(root, "__metadata__", meta);
    if (!ok) cJSON_Delete(meta);
    ok = ok && cJSON_AddStringToObject(meta, "format", "pt") &&
         cJSON_AddStringToObject(meta, RN_QUANT_KEY, scheme == ST_Q8_0 ? "q8_0" : "q4_0") &&
         cJSON_AddStringToObject(meta, RN_QUANT_VERSION_KEY, RN_QUANT_VERSION);
    for (size_t i = 0; ok && i < p->n; i++) {
        const out_tensor *o = &p->t[i];
        cJSON *e = cJSON_AddObjectToObject(root, o->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        ok = e && cJSON_AddStringToObject(e, "dtype", o->dtype) && shape;
        for (int d = 0; ok && d < o->rank; d++) ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)o->shape[d]));
        cJSON *offsets = ok ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = ok && offsets && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)o->begin)) &&
             cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(o->begin + o->nbytes)));
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory for the header");
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *h = malloc(padded + 1);
    if (!h) {
        free(json);
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory for the header");
    }
    memcpy(h, json, n);
    memset(h + n, ' ', padded - n);
    h[padded] = '\0';
    free(json);
    if (padded > ST_MAX_HEADER_BYTES) {
        free(h);
        return rn_fail(err, RN_ERR_LIMIT, "quantize: a header of %zu bytes, over the reader's cap", padded);
    }
    *out = h;
    *len = padded;
    return RN_OK;
}

static rn_status write_at(int fd, const char *path, const void *data, uint64_t n, uint64_t offset, rn_error *err) {
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)n;
        ssize_t w = pwrite(fd, p, chunk, (off_t)offset);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return rn_fail(err, RN_ERR_IO, "%s: write failed: %s", path, w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (uint64_t)w;
        offset += (uint64_t)w;
    }
    return RN_OK;
}

/* A temporary file in `dir` for `name`: ".<name>.tmp-<pid>-<n>", created exclusively. */
static rn_status create_temp(const char *dir, const char *name, char **path, int *fd_out, rn_error *err) {
    static unsigned counter;
    size_t cap = strlen(dir) + strlen(name) + 64;
    for (int attempt = 0; attempt < 100; attempt++) {
        char *p = malloc(cap);
        if (!p) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory");
        snprintf(p, cap, "%s/.%s.tmp-%ld-%u", dir, name, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            *path = p;
            *fd_out = fd;
            return RN_OK;
        }
        int e = errno;
        free(p);
        if (e != EEXIST) return rn_fail(err, RN_ERR_IO, "%s: cannot create a file there: %s", dir, strerror(e));
    }
    return rn_fail(err, RN_ERR_IO, "%s: cannot find a free temporary name", dir);
}

static rn_status finish_file(int fd, const char *path, rn_error *err) {
    rn_status st = RN_OK;
    if (fsync(fd) != 0) st = rn_fail(err, RN_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && st == RN_OK) st = rn_fail(err, RN_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

static rn_status write_model(const plan *p, st_dtype scheme, const char *out_dir,
                             char **tmp_path, void (*progress)(void *, uint64_t, uint64_t), void *user,
                             rn_error *err) {
    char *header = NULL;
    size_t hlen = 0;
    rn_status st = make_header(p, scheme, &header, &hlen, err);
    if (st != RN_OK) return st;
    int fd = -1;
    if ((st = create_temp(out_dir, "model.safetensors", tmp_path, &fd, err)) != RN_OK) {
        free(header);
        return st;
    }
    unsigned char length[8];
    for (int i = 0; i < 8; i++) length[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    const char *path = *tmp_path;
    st = write_at(fd, path, length, 8, 0, err);
    if (st == RN_OK) st = write_at(fd, path, header, hlen, 8, err);
    free(header);
    const uint64_t base = 8 + (uint64_t)hlen;
    unsigned char *staging = malloc((size_t)PIECE * sizeof(float));
    if (st == RN_OK && !staging) st = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory for the staging buffer");
    uint64_t done = 0;
    for (size_t i = 0; i < p->n && st == RN_OK; i++) {
        const out_tensor *o = &p->t[i];
        const st_tensor *t = o->src;
        if (o->kind == OUT_QSCALE) continue;   /* written with its .qweight */
        if (o->kind == OUT_COPY) {
            st = write_at(fd, path, t->data, t->nbytes, base + o->begin, err);
            done += t->nbytes;
            if (progress) progress(user, done, p->total_in);
            continue;
        }
        const out_tensor *scales = &p->t[i + 1];
        const unsigned size = st_dtype_size(t->dtype);
        for (uint64_t at = 0; st == RN_OK && at < t->elements; at += PIECE) {
            uint64_t count = t->elements - at < PIECE ? t->elements - at : PIECE, bad = 0;
            if (!rn_convert(t->dtype, (const unsigned char *)t->data + at * size, count, scheme, staging, &bad)) {
                st = rn_fail(err, RN_ERR_LIMIT,
                             "tensor '%s': element %llu is too large for %s: its block's scale would overflow fp16",
                             t->name, (unsigned long long)(at + bad), st_dtype_name(scheme));
                break;
            }
            const uint64_t qbytes = rn_quant_bytes(scheme, count);
            st = write_at(fd, path, staging, qbytes, base + o->begin + rn_quant_bytes(scheme, at), err);
            if (st == RN_OK) st = write_at(fd, path, staging + qbytes, count / 32 * 2, base + scales->begin + at / 32 * 2, err);
            done += count * size;
            if (progress) progress(user, done, p->total_in);
        }
    }
    free(staging);
    rn_status closed = finish_file(fd, path, err);
    return st != RN_OK ? st : closed;
}

/* `src` copied to a temporary in `out_dir`; *tmp_path NULL when `src` does not exist. */
static rn_status copy_file(const char *src, const char *out_dir, const char *name, char **tmp_path, rn_error *err) {
    *tmp_path = NULL;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        if (errno == ENOENT) return RN_OK;
        return rn_fail(err, RN_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    }
    int fd = -1;
    rn_status st = create_temp(out_dir, name, tmp_path, &fd, err);
    if (st != RN_OK) {
        close(in);
        return st;
    }
    char buf[65536];
    uint64_t at = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = rn_fail(err, RN_ERR_IO, "%s: read failed: %s", src, strerror(errno));
            break;
        }
        if (r == 0) break;
        if ((st = write_at(fd, *tmp_path, buf, (uint64_t)r, at, err)) != RN_OK) break;
        at += (uint64_t)r;
    }
    close(in);
    rn_status closed = finish_file(fd, *tmp_path, err);
    return st != RN_OK ? st : closed;
}

/* mkdir -p */
static rn_status make_dirs(const char *dir, rn_error *err) {
    char *p = strdup(dir);
    if (!p) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory");
    rn_status st = RN_OK;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n && st == RN_OK; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        struct stat sb;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            st = rn_fail(err, RN_ERR_IO, "%s: cannot create the directory: %s", p, strerror(errno));
        else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = rn_fail(err, RN_ERR_IO, "%s: not a directory", p);
        p[i] = c;
    }
    free(p);
    return st;
}

static const char *const k_side_files[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                           "special_tokens_map.json", "generation_config.json"};
#define N_SIDE (sizeof k_side_files / sizeof *k_side_files)

rn_status rn_checkpoint_quantize(const char *model_dir, const char *out_dir, st_dtype scheme,
                                 void (*progress)(void *user, uint64_t done, uint64_t total), void *user,
                                 rn_error *err) {
    if (!model_dir || !out_dir) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "quantize: NULL directory");
    if (scheme != ST_Q8_0 && scheme != ST_Q4_0)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "quantize: the scheme must be Q8_0 or Q4_0, not %s",
                       st_dtype_name(scheme));
    rn_checkpoint *ck = NULL;
    rn_status st = rn_checkpoint_open(model_dir, &ck, err);
    if (st != RN_OK) return st;
    plan p = {0};
    char *tmp_model = NULL, *tmp_side[N_SIDE] = {0}, *final = NULL;
    if (ck->quantized) {
        st = rn_fail(err, RN_ERR_UNSUPPORTED_CONFIG, "%s is already quantized (%s); quantize the original checkpoint",
                     model_dir, st_dtype_name(ck->quantization));
        goto done;
    }
    if ((st = make_plan(ck, scheme, &p, err)) != RN_OK) goto done;
    if ((st = make_dirs(out_dir, err)) != RN_OK) goto done;
    struct stat a, b;
    if (stat(model_dir, &a) == 0 && stat(out_dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        st = rn_fail(err, RN_ERR_INVALID_ARGUMENT, "%s: the output directory is the model's own; choose another",
                     out_dir);
        goto done;
    }
    char *index = rn_path_join(out_dir, "model.safetensors.index.json");
    bool has_index = index && stat(index, &b) == 0;
    free(index);
    if (has_index) {
        st = rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                     "%s holds model.safetensors.index.json, which the loader would read instead of the "
                     "quantized model.safetensors; remove it or choose another directory", out_dir);
        goto done;
    }
    for (size_t i = 0; i < N_SIDE && st == RN_OK; i++) {
        char *src = rn_path_join(model_dir, k_side_files[i]);
        st = src ? copy_file(src, out_dir, k_side_files[i], &tmp_side[i], err)
                 : rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory");
        free(src);
    }
    if (st == RN_OK) st = write_model(&p, scheme, out_dir, &tmp_model, progress, user, err);
    /* into place: the small files, then the model */
    for (size_t i = 0; i <= N_SIDE && st == RN_OK; i++) {
        char **tmp = i < N_SIDE ? &tmp_side[i] : &tmp_model;
        if (!*tmp) continue;
        final = rn_path_join(out_dir, i < N_SIDE ? k_side_files[i] : "model.safetensors");
        if (!final) st = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "quantize: no memory");
        else if (rename(*tmp, final) != 0) st = rn_fail(err, RN_ERR_IO, "%s: rename failed: %s", final, strerror(errno));
        else {
            free(*tmp);
            *tmp = NULL;
        }
        free(final);
        final = NULL;
    }

done:
    for (size_t i = 0; i < N_SIDE; i++) {
        if (tmp_side[i]) unlink(tmp_side[i]);
        free(tmp_side[i]);
    }
    if (tmp_model) unlink(tmp_model);
    free(tmp_model);
    plan_free(&p);
    rn_checkpoint_close(ck);
    return st;
}
