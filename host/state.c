/*
 * state.c: saving, restoring and copying a session.
 *
 * File layout, host byte order (a marker word refuses a file from a host of the other order):
 *   "RNSTATE1"  u32 order marker 0x01020304  u32 version
 *   u64 model fingerprint  u64 position
 *   u32 layers, heads, dk, dv, vocab, recent-token count n
 *   i32 recent[n]            the last tokens, oldest first
 *   f32 logits[vocab]        after the last token
 *   per layer: f32 state[heads*dk*dv], f32 scale[heads]   (the scale of position - 1)
 *   u64 FNV-1a of everything before it
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

#define STATE_MAGIC "RNSTATE1"
#define STATE_ORDER 0x01020304u
#define STATE_VERSION 1u

typedef struct state_header {
    char magic[8];
    uint32_t order, version;
    uint64_t fingerprint, position;
    uint32_t layers, heads, dk, dv, vocab, n_recent;
} state_header;

static size_t recent_count(const rn_session *s) {
    return s->position < RN_RECENT_TOKENS ? (size_t)s->position : RN_RECENT_TOKENS;
}

size_t rn_session_recent(const rn_session *s, int32_t *tokens, size_t capacity) {
    if (!s || !tokens || s->batch != 1) return 0;
    size_t n = recent_count(s);
    if (n > capacity) n = capacity;
    for (size_t i = 0; i < n; i++) tokens[i] = s->recent[(s->position - n + i) % RN_RECENT_TOKENS];
    return n;
}

const float *rn_session_logits(const rn_session *s) {
    return s ? s->last_logits : NULL;
}

/* The slot holding the scale of the last position consumed (session.c's double buffer). */
static size_t scale_slot(const rn_session *s) {
    return s->position ? (size_t)((s->position - 1) & 1) : 0;
}

static state_header header_of(const rn_session *s) {
    const rn_config *c = &s->model->cfg;
    state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.order = STATE_ORDER;
    h.version = STATE_VERSION;
    h.fingerprint = s->model->fingerprint;
    h.position = s->position;
    h.layers = (uint32_t)c->layers;
    h.heads = (uint32_t)c->heads;
    h.dk = (uint32_t)c->key_head_dim;
    h.dv = (uint32_t)c->value_head_dim;
    h.vocab = (uint32_t)c->vocab_size;
    h.n_recent = (uint32_t)recent_count(s);
    return h;
}

static size_t payload_bytes(const state_header *h) {
    size_t per_layer = ((size_t)h->heads * h->dk * h->dv + h->heads) * sizeof(float);
    return sizeof *h + h->n_recent * sizeof(int32_t) + (size_t)h->vocab * sizeof(float) + h->layers * per_layer;
}

/* State files and copies hold one sequence. */
static bool single(const rn_session *s, const char *what) {
    if (s->batch == 1) return true;
    rn_fail(&s->model->ctx->err, RN_ERR_INVALID_ARGUMENT, "%s takes a session of one sequence, not a batch of %lld",
            what, (long long)s->batch);
    return false;
}

static rn_status rn_session_save_locked(const rn_session *s, const char *path) {
    if (!s || !path) return RN_ERR_INVALID_ARGUMENT;
    if (!single(s, "rn_session_save")) return RN_ERR_INVALID_ARGUMENT;
    rn_model *m = s->model;
    rt_runtime *rt = &m->ctx->rt;
    rn_error *err = &m->ctx->err;
    state_header h = header_of(s);
    size_t size = payload_bytes(&h), state_floats = (size_t)h.heads * h.dk * h.dv;
    unsigned char *buf = malloc(size + sizeof(uint64_t));
    if (!buf) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for a %zu-byte state", size);
    unsigned char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    int32_t recent[RN_RECENT_TOKENS];
    rn_session_recent(s, recent, RN_RECENT_TOKENS);
    memcpy(p, recent, h.n_recent * sizeof(int32_t));
    p += h.n_recent * sizeof(int32_t);
    memcpy(p, s->last_logits, (size_t)h.vocab * sizeof(float));
    p += (size_t)h.vocab * sizeof(float);
    rn_status st = RN_OK;
    for (uint32_t l = 0; l < h.layers && st == RN_OK; l++) {
        st = rt_buffer_read(rt, &s->state[l], 0, p, state_floats * sizeof(float));
        p += state_floats * sizeof(float);
        if (st == RN_OK) st = rt_buffer_read(rt, &s->scale[2 * l + scale_slot(s)], 0, p, h.heads * sizeof(float));
        p += h.heads * sizeof(float);
    }
    uint64_t sum = rn_fnv1a(RN_FNV_OFFSET, buf, size);
    memcpy(buf + size, &sum, sizeof sum);

    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (st == RN_OK && !tmp) st = rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory");
    if (st == RN_OK) {
        snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (!f) {
            st = rn_fail(err, RN_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        } else {
            bool ok = fwrite(buf, 1, size + sizeof sum, f) == size + sizeof sum && fflush(f) == 0 &&
                      fsync(fileno(f)) == 0;
            ok = fclose(f) == 0 && ok;
            if (!ok || rename(tmp, path) != 0) {
                st = rn_fail(err, RN_ERR_IO, "writing the state to '%s' failed: %s", path, strerror(errno));
                remove(tmp);
            }
        }
    }
    free(tmp);
    free(buf);
    return st;
}

static rn_status refuse(rn_error *err, const char *path, const char *why) {
    return rn_fail(err, RN_ERR_STATE_FILE, "state file '%s' %s", path, why);
}

static rn_status rn_session_load_locked(rn_session *s, const char *path) {
    if (!s || !path) return RN_ERR_INVALID_ARGUMENT;
    if (!single(s, "rn_session_load")) return RN_ERR_INVALID_ARGUMENT;
    rn_model *m = s->model;
    rn_error *err = &m->ctx->err;
    state_header want = header_of(s), h;
    char *buf = NULL;
    size_t size = 0;
    /* The largest state this model can have: every recent token kept. */
    want.n_recent = RN_RECENT_TOKENS;
    rn_status st = rn_read_file(path, payload_bytes(&want) + sizeof(uint64_t), &buf, &size, err);
    if (st == RN_ERR_LIMIT) st = refuse(err, path, "is larger than any state of this model");
    if (st != RN_OK) return st;
    if (size < sizeof h) {
        st = refuse(err, path, "is truncated: shorter than its header");
        goto done;
    }
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, STATE_MAGIC, 8) != 0) {
        st = refuse(err, path, "is not a retnet-cl state file");
    } else if (h.order != STATE_ORDER || h.version != STATE_VERSION) {
        st = refuse(err, path, "has another byte order or format version");
    } else if (h.fingerprint != want.fingerprint || h.layers != want.layers || h.heads != want.heads ||
               h.dk != want.dk || h.dv != want.dv || h.vocab != want.vocab) {
        st = refuse(err, path, "belongs to another model (its fingerprint or shape differs from this one's)");
    } else if (h.n_recent > RN_RECENT_TOKENS || h.n_recent > h.position) {
        st = refuse(err, path, "is corrupt: bad recent-token count");
    } else if (size != payload_bytes(&h) + sizeof(uint64_t)) {
        st = refuse(err, path, "is truncated or has trailing bytes");
    } else {
        uint64_t sum;
        memcpy(&sum, buf + size - sizeof sum, sizeof sum);
        if (sum != rn_fnv1a(RN_FNV_OFFSET, buf, size - sizeof sum)) st = refuse(err, path, "is corrupt: checksum mismatch");
    }
    if (st != RN_OK) goto done;

    /* Valid: now, and only now, overwrite the session. */
    rt_runtime *rt = &m->ctx->rt;
    const unsigned char *p = (const unsigned char *)buf + sizeof h;
    const size_t state_floats = (size_t)h.heads * h.dk * h.dv;
    int32_t recent[RN_RECENT_TOKENS];
    memcpy(recent, p, h.n_recent * sizeof(int32_t));
    p += h.n_recent * sizeof(int32_t);
    for (uint32_t i = 0; i < h.n_recent; i++)
        if (recent[i] < 0 || (uint32_t)recent[i] >= h.vocab) {
            st = refuse(err, path, "is corrupt: a recent token outside the vocabulary");
            goto done;
        }
    s->position = h.position;
    for (uint32_t i = 0; i < h.n_recent; i++) s->recent[(h.position - h.n_recent + i) % RN_RECENT_TOKENS] = recent[i];
    memcpy(s->last_logits, p, (size_t)h.vocab * sizeof(float));
    p += (size_t)h.vocab * sizeof(float);
    for (uint32_t l = 0; l < h.layers && st == RN_OK; l++) {
        st = rt_buffer_write(rt, &s->state[l], 0, p, state_floats * sizeof(float));
        p += state_floats * sizeof(float);
        if (st == RN_OK) st = rt_buffer_write(rt, &s->scale[2 * l + scale_slot(s)], 0, p, h.heads * sizeof(float));
        p += h.heads * sizeof(float);
    }
    if (st != RN_OK) rn_session_reset_locked(s);  /* a device failure half-way: empty, not mixed */
done:
    free(buf);
    return st;
}

static rn_status rn_session_copy_locked(const rn_session *src, rn_session **out) {
    if (!src || !out) return RN_ERR_INVALID_ARGUMENT;
    if (!single(src, "rn_session_copy")) return RN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    rn_session *s = NULL;
    rn_status st = rn_session_init_locked(src->model, &s);
    if (st != RN_OK) return st;
    rt_runtime *rt = &src->model->ctx->rt;
    for (int64_t l = 0; l < src->model->cfg.layers && st == RN_OK; l++) {
        st = rt_buffer_copy(rt, &src->state[l], &s->state[l], src->state[l].bytes);
        if (st == RN_OK) st = rt_buffer_copy(rt, &src->scale[2 * l], &s->scale[2 * l], src->scale[2 * l].bytes);
        if (st == RN_OK)
            st = rt_buffer_copy(rt, &src->scale[2 * l + 1], &s->scale[2 * l + 1], src->scale[2 * l + 1].bytes);
    }
    if (st == RN_OK) st = rt_finish(rt);
    if (st != RN_OK) {
        rn_session_free_locked(s);
        return st;
    }
    s->position = src->position;
    memcpy(s->recent, src->recent, sizeof s->recent);
    memcpy(s->last_logits, src->last_logits, (size_t)src->model->cfg.vocab_size * sizeof *s->last_logits);
    *out = s;
    return RN_OK;
}

/* ---- the public calls: each holds the context's lock throughout (engine.h) ------------------ */

rn_status rn_session_save(const rn_session *s, const char *path) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_session_save_locked(s, path));
}

rn_status rn_session_load(rn_session *s, const char *path) {
    if (!s) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = s->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_session_load_locked(s, path));
}

rn_status rn_session_copy(const rn_session *src, rn_session **out) {
    if (!src) return RN_ERR_INVALID_ARGUMENT;
    rn_context *ctx = src->model->ctx;
    rn_context_lock(ctx);
    return rn_context_unlock(ctx, rn_session_copy_locked(src, out));
}
