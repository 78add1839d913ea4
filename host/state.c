/*
 * state.c: saving, restoring and copying a session, whole or one row of a batch.
 *
 * Layout of a state (file or buffer), host byte order (a marker word refuses one from a host of
 * the other order):
 *   "RNSTATE1"  u32 order marker 0x01020304  u32 version
 *   u64 model fingerprint  u64 position
 *   u32 layers, heads, dk, dv, vocab, recent-token count n
 *   i32 recent[256]          the last n tokens, oldest first, then zeros (version 1: recent[n])
 *   f32 logits[vocab]        after the last token
 *   per layer: f32 state[heads*dk*dv], f32 scale[heads]   (the scale of position - 1)
 *   u64 checksum of everything before it (state_checksum)
 * Version 2 keeps room for every recent token, so that every state of a model has one size
 * (rn_session_state_bytes: a caller can keep states in fixed slots); version 1 files, sized by
 * their count, still load.
 *
 * The device is needed only to download or upload the state: the checksum and the file's I/O
 * run outside the context's lock, so that a large state being written or read does not hold up
 * the other sessions of the context (a server's batch) for longer than its transfer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

#define STATE_MAGIC "RNSTATE1"
#define STATE_ORDER 0x01020304u
#define STATE_VERSION 2u

typedef struct state_header {
    char magic[8];
    uint32_t order, version;
    uint64_t fingerprint, position;
    uint32_t layers, heads, dk, dv, vocab, n_recent;
} state_header;

static size_t recent_count(uint64_t position) {
    return position < RN_RECENT_TOKENS ? (size_t)position : RN_RECENT_TOKENS;
}

/* Row `row`'s last min(capacity, position, 256) tokens, oldest first. */
static size_t row_recent(const rn_session *s, int64_t row, int32_t *tokens, size_t capacity) {
    const uint64_t position = s->positions[row];
    const int32_t *ring = rn_session_ring(s, row);
    size_t n = recent_count(position);
    if (n > capacity) n = capacity;
    for (size_t i = 0; i < n; i++) tokens[i] = ring[(position - n + i) % RN_RECENT_TOKENS];
    return n;
}

size_t rn_session_recent(const rn_session *s, int32_t *tokens, size_t capacity) {
    if (!s || !tokens || s->batch != 1) return 0;
    return row_recent(s, 0, tokens, capacity);
}

/* Rows a greedy step left on the device are read back here, once, under the lock; the
 * session's logits as a caller sees them do not change, only where they are held, so the
 * const session is written through (it is never a const object: sessions are allocated). */
const float *rn_session_logits(const rn_session *s) {
    if (!s) return NULL;
    if (s->rows_on_device == 0) return s->last_logits;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    rn_status st = rn_context_unlock(ctx, rn_session_fetch_logits_locked((rn_session *)s));
    return st == RN_OK ? s->last_logits : NULL;
}

/* The slot holding the scale of the last position consumed (retention_step.cl's double buffer). */
static size_t scale_slot(uint64_t position) {
    return position ? (size_t)((position - 1) & 1) : 0;
}

static state_header header_of(const rn_session *s) {
    const rn_config *c = &s->model->cfg;
    state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.order = STATE_ORDER;
    h.version = STATE_VERSION;
    h.fingerprint = s->model->fingerprint;
    h.position = s->positions[0];
    h.layers = (uint32_t)c->layers;
    h.heads = (uint32_t)c->heads;
    h.dk = (uint32_t)c->key_head_dim;
    h.dv = (uint32_t)c->value_head_dim;
    h.vocab = (uint32_t)c->vocab_size;
    h.n_recent = (uint32_t)recent_count(h.position);
    return h;
}

/* FNV-1a over the bytes in version 1. From version 2 the same recurrence over 8-byte words
 * (each product folded back onto its low half), then the tail bytes: eight times fewer steps on
 * the tens of MiB of a large model's state, which every save and every load hashes. It guards
 * against corruption, not tampering. */
static uint64_t state_checksum(uint32_t version, const unsigned char *buf, size_t n) {
    if (version == 1) return rn_fnv1a(RN_FNV_OFFSET, buf, n);
    uint64_t h = RN_FNV_OFFSET, word;
    size_t i = 0;
    for (; i + sizeof word <= n; i += sizeof word) {
        memcpy(&word, buf + i, sizeof word);
        h = (h ^ word) * 0x100000001b3ull;
        h ^= h >> 32;
    }
    return rn_fnv1a(h, buf + i, n - i);
}

/* Recent-token entries stored: version 1 stored only those it had. */
static size_t recent_slots(const state_header *h) {
    return h->version == 1 ? h->n_recent : RN_RECENT_TOKENS;
}

/* Everything before the checksum. */
static size_t payload_bytes(const state_header *h) {
    size_t per_layer = ((size_t)h->heads * h->dk * h->dv + h->heads) * sizeof(float);
    return sizeof *h + recent_slots(h) * sizeof(int32_t) + (size_t)h->vocab * sizeof(float) + h->layers * per_layer;
}

/* State files, buffers and copies hold one sequence. */
static bool single(const rn_session *s, const char *what) {
    if (s->batch == 1) return true;
    rn_fail(&s->model->ctx->err, RN_ERR_INVALID_ARGUMENT, "%s takes a session of one sequence, not a batch of %lld",
            what, (long long)s->batch);
    return false;
}

static size_t state_bytes(const rn_session *s) {
    state_header h = header_of(s);
    return payload_bytes(&h) + sizeof(uint64_t);
}

/* Serialises the session into buf (state_bytes(s) bytes), all but the checksum (seal). */
static rn_status serialize_locked(const rn_session *s, void *buffer, size_t capacity) {
    if (!buffer) return RN_ERR_INVALID_ARGUMENT;
    if (!single(s, "saving a state")) return RN_ERR_INVALID_ARGUMENT;
    rn_model *m = s->model;
    rt_runtime *rt = &m->ctx->rt;
    state_header h = header_of(s);
    const size_t size = payload_bytes(&h), state_floats = (size_t)h.heads * h.dk * h.dv;
    if (capacity < size + sizeof(uint64_t))
        return rn_fail(&m->ctx->err, RN_ERR_INVALID_ARGUMENT, "a state takes %zu bytes; the buffer has %zu",
                       size + sizeof(uint64_t), capacity);
    /* The logits saved are the current ones, wherever they are held (rn_session_logits). */
    rn_status fetched = rn_session_fetch_logits_locked((rn_session *)s);
    if (fetched != RN_OK) return fetched;
    unsigned char *buf = buffer, *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    int32_t recent[RN_RECENT_TOKENS] = {0};
    row_recent(s, 0, recent, RN_RECENT_TOKENS);
    memcpy(p, recent, sizeof recent);
    p += sizeof recent;
    memcpy(p, s->last_logits, (size_t)h.vocab * sizeof(float));
    p += (size_t)h.vocab * sizeof(float);
    const size_t slot = scale_slot(h.position);
    rn_status st = RN_OK;
    for (uint32_t l = 0; l < h.layers && st == RN_OK; l++) {
        st = rt_buffer_read(rt, &s->state[l], 0, p, state_floats * sizeof(float));
        p += state_floats * sizeof(float);
        if (st == RN_OK) st = rt_buffer_read(rt, &s->scale[2 * l + slot], 0, p, h.heads * sizeof(float));
        p += h.heads * sizeof(float);
    }
    return st;
}

/* Appends the checksum to a serialised state. */
static void seal(unsigned char *buf) {
    state_header h;
    memcpy(&h, buf, sizeof h);
    const size_t size = payload_bytes(&h);
    uint64_t sum = state_checksum(h.version, buf, size);
    memcpy(buf + size, &sum, sizeof sum);
}

static rn_status refuse(rn_error *err, const char *what, const char *why) {
    return rn_fail(err, RN_ERR_STATE_FILE, "%s %s", what, why);
}

/* Checks a state's bytes for session s (of one sequence) without touching it or the device:
 * needs no lock. `what` names the source in messages ("state file 'x'", "state buffer"). */
static rn_status check_state(const rn_session *s, const void *buffer, size_t size, const char *what,
                             rn_error *err, state_header *out) {
    const unsigned char *buf = buffer;
    state_header want = header_of(s), h;
    if (size > state_bytes(s)) return refuse(err, what, "is larger than any state of this model");
    if (size < sizeof h) return refuse(err, what, "is truncated: shorter than its header");
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, STATE_MAGIC, 8) != 0) return refuse(err, what, "is not a retnet-cl state");
    if (h.order != STATE_ORDER) return refuse(err, what, "was written on a host of the other byte order");
    if (h.version != 1 && h.version != STATE_VERSION)
        return rn_fail(err, RN_ERR_STATE_FILE, "%s has format version %u; this build reads versions 1 to %u", what,
                       h.version, STATE_VERSION);
    if (h.fingerprint != want.fingerprint || h.layers != want.layers || h.heads != want.heads || h.dk != want.dk ||
        h.dv != want.dv || h.vocab != want.vocab)
        return refuse(err, what, "belongs to another model (its fingerprint or shape differs from this one's)");
    if (h.n_recent > RN_RECENT_TOKENS || h.n_recent > h.position || h.n_recent != recent_count(h.position))
        return refuse(err, what, "is corrupt: bad recent-token count");
    if (size != payload_bytes(&h) + sizeof(uint64_t)) return refuse(err, what, "is truncated or has trailing bytes");
    uint64_t sum;
    memcpy(&sum, buf + size - sizeof sum, sizeof sum);
    if (sum != state_checksum(h.version, buf, size - sizeof sum)) return refuse(err, what, "is corrupt: checksum mismatch");
    if (h.position >= (uint64_t)INT32_MAX) return refuse(err, what, "is at a position past the kernels' range");
    int32_t recent[RN_RECENT_TOKENS];
    memcpy(recent, buf + sizeof h, h.n_recent * sizeof(int32_t));
    for (uint32_t i = 0; i < h.n_recent; i++)
        if (recent[i] < 0 || (uint32_t)recent[i] >= h.vocab)
            return refuse(err, what, "is corrupt: a recent token outside the vocabulary");
    *out = h;
    return RN_OK;
}

/* Overwrites the session with a state check_state accepted (header h). */
static rn_status apply_locked(rn_session *s, const void *buffer, const state_header *hp) {
    const state_header h = *hp;
    rn_model *m = s->model;
    const unsigned char *p = (const unsigned char *)buffer + sizeof h;
    int32_t recent[RN_RECENT_TOKENS];
    memcpy(recent, p, h.n_recent * sizeof(int32_t));
    p += recent_slots(&h) * sizeof(int32_t);
    rt_runtime *rt = &m->ctx->rt;
    const size_t state_floats = (size_t)h.heads * h.dk * h.dv, slot = scale_slot(h.position);
    s->positions[0] = h.position;
    int32_t *ring = rn_session_ring(s, 0);
    for (uint32_t i = 0; i < h.n_recent; i++) ring[(h.position - h.n_recent + i) % RN_RECENT_TOKENS] = recent[i];
    memcpy(s->last_logits, p, (size_t)h.vocab * sizeof(float));
    rn_session_logits_on_device(s, 0, false);
    p += (size_t)h.vocab * sizeof(float);
    rn_status st = RN_OK;
    for (uint32_t l = 0; l < h.layers && st == RN_OK; l++) {
        st = rt_buffer_write(rt, &s->state[l], 0, p, state_floats * sizeof(float));
        p += state_floats * sizeof(float);
        if (st == RN_OK) st = rt_buffer_write(rt, &s->scale[2 * l + slot], 0, p, h.heads * sizeof(float));
        p += h.heads * sizeof(float);
    }
    if (st != RN_OK) rn_session_reset_locked(s);  /* a device failure half-way: empty, not mixed */
    return st;
}

/* Writes `size` bytes beside `path` and renames them over it, so that a failure leaves any old
 * file intact; flushed to the disk first. No lock: plain file work. */
static rn_status write_atomically(const char *path, const unsigned char *buf, size_t size, rn_error *err) {
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory");
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    rn_status st = RN_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = rn_fail(err, RN_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    } else {
        bool ok = fwrite(buf, 1, size, f) == size && fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
        if (!ok || rename(tmp, path) != 0) {
            st = rn_fail(err, RN_ERR_IO, "writing the state to '%s' failed: %s", path, strerror(errno));
            remove(tmp);
        }
    }
    free(tmp);
    return st;
}

/* Records a failure found outside the lock as the context's last error. */
static rn_status fail_unlocked(rn_context *ctx, rn_status st, const rn_error *local) {
    rn_context_lock(ctx);
    ctx->err = *local;
    return rn_context_unlock(ctx, st);
}

/* The state into a heap buffer, sealed: the lock is held for the download only. */
static rn_status serialize(const rn_session *s, unsigned char **out, size_t *size) {
    rn_context *ctx = s->model->ctx;
    *size = s->batch == 1 ? state_bytes(s) : 0;
    *out = *size ? malloc(*size) : NULL;
    rn_context_lock(ctx);
    rn_status st;
    if (!single(s, "saving a state")) st = RN_ERR_INVALID_ARGUMENT;
    else if (!*out) st = rn_fail(&ctx->err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for a %zu-byte state", *size);
    else st = serialize_locked(s, *out, *size);
    st = rn_context_unlock(ctx, st);
    if (st == RN_OK) seal(*out);
    return st;
}

/* Checks `buffer` outside the lock, then overwrites the session under it. */
static rn_status load_checked(rn_session *s, const void *buffer, size_t size, const char *what) {
    rn_context *ctx = s->model->ctx;
    rn_error local = {{0}};
    state_header h;
    memset(&h, 0, sizeof h);
    rn_status st = s->batch == 1 ? check_state(s, buffer, size, what, &local, &h) : RN_OK;
    rn_context_lock(ctx);
    if (!single(s, "loading a state")) st = RN_ERR_INVALID_ARGUMENT;
    else if (st != RN_OK) ctx->err = local;
    else st = apply_locked(s, buffer, &h);
    return rn_context_unlock(ctx, st);
}

/* Row dst_row of dst becomes a copy of row src_row of src: device state and both scale slots,
 * position, recent tokens, last logits. Rows of one batch are disjoint regions of the same
 * buffers, which OpenCL copies like any other. */
static rn_status copy_row_locked(rn_session *dst, int64_t dst_row, const rn_session *src, int64_t src_row) {
    if (dst == src && dst_row == src_row) return RN_OK;
    const rn_config *c = &src->model->cfg;
    rt_runtime *rt = &src->model->ctx->rt;
    const size_t state_row = (size_t)(c->heads * c->key_head_dim * c->value_head_dim) * sizeof(float);
    const size_t scale_row = (size_t)c->heads * sizeof(float), V = (size_t)c->vocab_size;
    /* The source row's current logits, wherever they are held (rn_session_logits). */
    rn_status st = rn_session_fetch_logits_locked((rn_session *)src);
    if (st != RN_OK) return st;
    for (int64_t l = 0; l < c->layers && st == RN_OK; l++) {
        st = rt_buffer_copy_at(rt, &src->state[l], (size_t)src_row * state_row, &dst->state[l],
                               (size_t)dst_row * state_row, state_row);
        for (int slot = 0; slot < 2 && st == RN_OK; slot++)
            st = rt_buffer_copy_at(rt, &src->scale[2 * l + slot], (size_t)src_row * scale_row,
                                   &dst->scale[2 * l + slot], (size_t)dst_row * scale_row, scale_row);
    }
    if (st != RN_OK) {
        rn_error saved = dst->model->ctx->err;
        rn_session_reset_row_locked(dst, dst_row);  /* half copied: empty, not mixed */
        dst->model->ctx->err = saved;
        return st;
    }
    dst->positions[dst_row] = src->positions[src_row];
    memcpy(rn_session_ring(dst, dst_row), rn_session_ring(src, src_row), RN_RECENT_TOKENS * sizeof(int32_t));
    memcpy(dst->last_logits + (size_t)dst_row * V, src->last_logits + (size_t)src_row * V, V * sizeof(float));
    rn_session_logits_on_device(dst, dst_row, false);
    return RN_OK;
}

static rn_status rn_session_copy_locked(const rn_session *src, rn_session **out) {
    if (!src || !out) return RN_ERR_INVALID_ARGUMENT;
    if (!single(src, "rn_session_copy")) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    rn_session *s = NULL;
    rn_status st = rn_session_init_locked(src->model, &s);
    if (st == RN_OK) st = copy_row_locked(s, 0, src, 0);
    if (st == RN_OK) st = rt_finish(&src->model->ctx->rt);
    if (st != RN_OK) {
        rn_session_free_locked(s);
        return st;
    }
    *out = s;
    return RN_OK;
}

/* ---- the public calls: each holds the context's lock throughout (engine.h) ------------------ */

rn_status rn_session_save(const rn_session *s, const char *path) {
    if (!s || !path) return RN_ERR_INVALID_ARGUMENT;
    unsigned char *buf = NULL;
    size_t size = 0;
    rn_status st = serialize(s, &buf, &size);
    if (st == RN_OK) {
        rn_error local = {{0}};
        st = write_atomically(path, buf, size, &local);
        if (st != RN_OK) st = fail_unlocked(s->model->ctx, st, &local);
    }
    free(buf);
    return st;
}

rn_status rn_session_load(rn_session *s, const char *path) {
    if (!s || !path) return RN_ERR_INVALID_ARGUMENT;
    size_t what_len = strlen(path) + 32;
    char *what = malloc(what_len);
    if (!what) return RN_ERR_OUT_OF_HOST_MEMORY;
    snprintf(what, what_len, "state file '%s'", path);
    rn_error local = {{0}};
    char *buf = NULL;
    size_t size = 0;
    rn_status st = rn_read_file(path, state_bytes(s), &buf, &size, &local);
    if (st == RN_ERR_LIMIT) st = refuse(&local, what, "is larger than any state of this model");
    st = st == RN_OK ? load_checked(s, buf, size, what) : fail_unlocked(s->model->ctx, st, &local);
    free(buf);
    free(what);
    return st;
}

rn_status rn_session_copy(const rn_session *src, rn_session **out) {
    if (!src) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = src->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_session_copy_locked(src, out));
}

size_t rn_session_state_bytes(const rn_session *s) {
    return s && s->batch == 1 ? state_bytes(s) : 0;
}

rn_status rn_session_save_buffer(const rn_session *s, void *buffer, size_t capacity) {
    if (!s || !buffer) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    rn_status st = rn_context_unlock(ctx, serialize_locked(s, buffer, capacity));
    if (st == RN_OK) seal(buffer);
    return st;
}

rn_status rn_session_load_buffer(rn_session *s, const void *buffer, size_t size) {
    if (!s || (!buffer && size)) return RN_ERR_INVALID_ARGUMENT;
    return load_checked(s, buffer, size, "state buffer");
}

rn_status rn_session_copy_row(rn_session *dst, size_t dst_row, const rn_session *src, size_t src_row) {
    if (!dst || !src) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = dst->model->ctx;
    rn_context_lock(ctx);
    rn_status st;
    if (dst->model != src->model)
        st = rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT, "rn_session_copy_row between sessions of different models");
    else if (dst_row >= (size_t)dst->batch || src_row >= (size_t)src->batch)
        st = rn_fail(&ctx->err, RN_ERR_INVALID_ARGUMENT, "row %zu of %lld to row %zu of %lld: a row out of range",
                     src_row, (long long)src->batch, dst_row, (long long)dst->batch);
    else
        st = copy_row_locked(dst, (int64_t)dst_row, src, (int64_t)src_row);
    return rn_context_unlock(ctx, st);
}
