/*
 * ref.c: the plain-C reference of torchscale's RetNet forward pass.
 *
 * The contract is tests/ref.h; the math is torchscale's (microsoft/torchscale:
 * torchscale/component/multiscale_retention.py, whose functions the comments below name). This file is written to be read, not to be
 * fast: every op is a few nested loops over row-major arrays, every sum, product and
 * normalisation is carried in double, and each op reads float and writes float so that it can
 * stand in for one OpenCL kernel at a time.
 *
 * Names used throughout:
 *   n   tokens          D   embed_dim         Dv  value_embed_dim    F  ffn_dim
 *   H   heads           dk  D / H (q, k)      dv  Dv / H (v, g)      V  vocab_size
 *   gamma_h = exp(decay[h])                   S_n = sum_{j=0..n} gamma^j
 *   R_n = sum_{m<=n} (q_n . k_m) gamma^(n-m) v_m     the un-normalised retention of token n
 */
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------------------------ */

/* The reference only runs inside tests, where running out of memory is a broken test machine
 * rather than bad input, so scratch allocations stop the program with a message instead of
 * threading a status through every op. (ref_model_from_checkpoint does return NULL, as its
 * contract says.) */
static void *xcalloc(int64_t count, size_t size) {
    if (count < 1) count = 1;
    void *p = calloc((size_t)count, size);
    if (!p) {
        fprintf(stderr, "ref.c: out of memory allocating %lld x %zu bytes\n", (long long)count,
                size);
        abort();
    }
    return p;
}

/* gamma^j for j >= 0 (pow(1, j) == 1 exactly, so heads without decay need no special case). */
static double decay_pow(double gamma, int64_t j) {
    return pow(gamma, (double)j);
}

/* sum_{j < count} gamma^j, built by the recursion s <- s * gamma + 1 that torchscale's
 * recurrent form uses, so that every form divides by the very same double. count == 0
 * gives 0, the "no token yet" scale. */
static double decay_sum(double gamma, int64_t count) {
    double s = 0.0;
    for (int64_t j = 0; j < count; j++) s = s * gamma + 1.0;
    return s;
}

static double silu(double x) {
    return x / (1.0 + exp(-x));
}

/* The exact erf form that torch.nn.functional.gelu uses by default by default, not the tanh one. */
static double gelu(double x) {
    const double inv_sqrt2 = 0.70710678118654752440;
    return 0.5 * x * (1.0 + erf(x * inv_sqrt2));
}

/* ---- ops ---------------------------------------------------------------------------------- */

void ref_embedding(const float *E, int64_t D, const int32_t *tokens, int64_t n, double scale,
                   float *x) {
    // E [V, D], tokens [n] -> x [n, D]
    for (int64_t t = 0; t < n; t++) {
        const float *row = E + (int64_t)tokens[t] * D;
        for (int64_t j = 0; j < D; j++) x[t * D + j] = (float)(scale * (double)row[j]);
    }
}

void ref_rms_norm(const float *x, const float *w, int64_t rows, int64_t dim, double eps,
                  float *y) {
    // x, y [rows, dim], w [dim] or NULL. The mean square is taken before any element is
    // written, so y may be x (the post-norm layers normalise in place).
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        double sum_sq = 0.0;
        for (int64_t j = 0; j < dim; j++) sum_sq += (double)xr[j] * (double)xr[j];
        double inv_rms = 1.0 / sqrt(sum_sq / (double)dim + eps);
        for (int64_t j = 0; j < dim; j++) {
            double weight = w ? (double)w[j] : 1.0;
            yr[j] = (float)((double)xr[j] * inv_rms * weight);
        }
    }
}

void ref_linear(const float *x, const float *W, int64_t n, int64_t in, int64_t out, float *y) {
    // x [n, in], W [out, in] -> y [n, out]; y = x W^T, torch's Linear without a bias
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * in;
        for (int64_t o = 0; o < out; o++) {
            const float *wo = W + o * in;
            double acc = 0.0;
            for (int64_t i = 0; i < in; i++) acc += (double)xt[i] * (double)wo[i];
            y[t * out + o] = (float)acc;
        }
    }
}

void ref_theta_shift(float *x, int64_t n, int64_t H, int64_t dk, const float *angle,
                     int64_t pos0, double scale, bool half_split) {
    // x [n, H*dk], angle [dk]. Each pair (x0, x1) is the complex number x0 + i x1, turned
    // by +phi. torchscale pairs neighbours (2i, 2i+1) with angle[2i] == angle[2i+1] == theta_i;
    // fla pairs the halves (i, i + dk/2) with angle[i] == angle[i + dk/2] == theta_i.
    // Torch forms phi as the fp32 product float(position) * angle; the casts below force that
    // rounding (the C standard makes a cast discard any extra precision), and only then do sin
    // and cos run in double. Using the exact product would move phi by up to 1e-4 rad at
    // position 2048.
    for (int64_t t = 0; t < n; t++) {
        float pos = (float)(pos0 + t);
        for (int64_t h = 0; h < H; h++) {
            float *xh = x + t * H * dk + h * dk;
            for (int64_t i = 0; i < dk / 2; i++) {
                int64_t j0 = half_split ? i : 2 * i, j1 = half_split ? i + dk / 2 : 2 * i + 1;
                float phi = (float)(pos * angle[j0]);
                double c = cos((double)phi), s = sin((double)phi);
                double x0 = (double)xh[j0] * scale;      // k is scaled before it turns
                double x1 = (double)xh[j1] * scale;
                xh[j0] = (float)(x0 * c - x1 * s);
                xh[j1] = (float)(x1 * c + x0 * s);
            }
        }
    }
}

/* ---- retention ---------------------------------------------------------------------------- */

/* Adds sum_{m=m0..t} (q_t . k_m) gamma^(t-m) v_m of head h into r [dv] and returns the matching
 * sum_{m=m0..t} |q_t . k_m| gamma^(t-m). With m0 = 0 these are R_t and the numerator of the
 * parallel d_t; with m0 = the chunk start they are the inner part of chunkwise retention and the
 * numerator of iota. */
static double retain_span(const float *q, const float *k, const float *v, int64_t t,
                          int64_t m0, int64_t h, int64_t H, int64_t dk, int64_t dv,
                          double gamma, double *r) {
    const float *qt = q + t * H * dk + h * dk;            // [dk]
    double abs_sum = 0.0;
    for (int64_t m = m0; m <= t; m++) {
        const float *km = k + m * H * dk + h * dk;        // [dk]
        const float *vm = v + m * H * dv + h * dv;        // [dv]
        double score = 0.0;
        for (int64_t a = 0; a < dk; a++) score += (double)qt[a] * (double)km[a];
        double decayed = score * decay_pow(gamma, t - m);
        abs_sum += fabs(decayed);
        for (int64_t b = 0; b < dv; b++) r[b] += decayed * (double)vm[b];
    }
    return abs_sum;
}

/* Parallel form of one head (parallel_forward):
 *   d_t = clamp(sum_m |q_t.k_m| gamma^(t-m) / sqrt(S_t), 1, 5e4),  o_t = R_t / (sqrt(S_t) d_t) */
static void retention_parallel(const float *q, const float *k, const float *v, int64_t n,
                               int64_t h, int64_t H, int64_t dk, int64_t dv, double gamma,
                               double *r, float *o) {
    for (int64_t t = 0; t < n; t++) {
        memset(r, 0, (size_t)dv * sizeof *r);
        double abs_sum = retain_span(q, k, v, t, 0, h, H, dk, dv, gamma, r);
        double root_s = sqrt(decay_sum(gamma, t + 1));   // sqrt(S_t)
        double d = abs_sum / root_s;
        if (d < 1.0) d = 1.0;
        if (d > 5e4) d = 5e4;
        float *ot = o + t * H * dv + h * dv;
        for (int64_t b = 0; b < dv; b++) ot[b] = (float)(r[b] / (root_s * d));
    }
}

/* Chunkwise form of one head (chunk_recurrent_forward), chunks of C tokens; token
 * t = c0 + c sits at offset c of the chunk that starts at c0.
 *
 * Carried across chunks is z [dk][dv] = sum_{m < c0} gamma^(c0-1-m) k_m v_m^T, torchscale's
 * kv state times Lambda = sum_{j<C} gamma^j. Then
 *   R_t     = inner + cross = sum_{m=c0..t} (q_t.k_m) gamma^(t-m) v_m + gamma^(c+1) q_t z
 *   iota_t  = max(1, sum_{m=c0..t} |q_t.k_m| gamma^(t-m) / sqrt(s_c)),  s_c = sum_{j<=c} gamma^j
 *   sigma_i = max(1, max over columns b of sum over rows a of |z[a][b]| / Lambda), 1 for c0 = 0
 *   o_t     = R_t / (sqrt(s_c) max(iota_t, sigma_i))
 * which is torchscale's inner_output * iota/alpha + cross_output * sigma/alpha written out.
 * A last chunk shorter than C needs nothing special: torchscale pads it with zero rows after
 * the embedding, and zero rows come later than every real token, so they change no real row;
 * Lambda and s_c are C-based / offset-based exactly as here. */
static void retention_chunkwise(const float *q, const float *k, const float *v, int64_t n,
                                int64_t C, int64_t h, int64_t H, int64_t dk, int64_t dv,
                                double gamma, double *r, double *z, float *o) {
    double lambda = decay_sum(gamma, C);
    memset(z, 0, (size_t)(dk * dv) * sizeof *z);
    for (int64_t c0 = 0; c0 < n; c0 += C) {
        int64_t len = n - c0 < C ? n - c0 : C;

        // sigma_i from the state of the earlier chunks; the first chunk has none (sigma_0 = 1)
        double sigma = 1.0;
        if (c0 > 0) {
            for (int64_t b = 0; b < dv; b++) {
                double column = 0.0;
                for (int64_t a = 0; a < dk; a++) column += fabs(z[a * dv + b]) / lambda;
                if (column > sigma) sigma = column;
            }
        }

        for (int64_t c = 0; c < len; c++) {
            int64_t t = c0 + c;
            memset(r, 0, (size_t)dv * sizeof *r);
            double abs_sum = retain_span(q, k, v, t, c0, h, H, dk, dv, gamma, r);
            if (c0 > 0) {
                const float *qt = q + t * H * dk + h * dk;
                double g = decay_pow(gamma, c + 1);
                for (int64_t b = 0; b < dv; b++) {
                    double cross = 0.0;
                    for (int64_t a = 0; a < dk; a++) cross += (double)qt[a] * z[a * dv + b];
                    r[b] += g * cross;
                }
            }
            double root_s = sqrt(decay_sum(gamma, c + 1));   // sqrt(s_c)
            double iota = abs_sum / root_s;
            if (iota < 1.0) iota = 1.0;
            double denom = root_s * (iota > sigma ? iota : sigma);
            float *ot = o + t * H * dv + h * dv;
            for (int64_t b = 0; b < dv; b++) ot[b] = (float)(r[b] / denom);
        }

        // z for the next chunk: z <- gamma^C z + sum_{m in this chunk} gamma^(c0+C-1-m) k_m v_m^T.
        // Only a full chunk can be followed by another one.
        if (c0 + C < n) {
            double carry = decay_pow(gamma, C);
            for (int64_t e = 0; e < dk * dv; e++) z[e] *= carry;
            for (int64_t m = c0; m < c0 + C; m++) {
                const float *km = k + m * H * dk + h * dk;
                const float *vm = v + m * H * dv + h * dv;
                double w = decay_pow(gamma, c0 + C - 1 - m);
                for (int64_t a = 0; a < dk; a++)
                    for (int64_t b = 0; b < dv; b++)
                        z[a * dv + b] += w * (double)km[a] * (double)vm[b];
            }
        }
    }
}

/* fla's retention of one head: o_t = R_t, no scalar, the same in every form. */
static void retention_plain(const float *q, const float *k, const float *v, int64_t n,
                            int64_t h, int64_t H, int64_t dk, int64_t dv, double gamma,
                            double *r, float *o) {
    for (int64_t t = 0; t < n; t++) {
        memset(r, 0, (size_t)dv * sizeof *r);
        retain_span(q, k, v, t, 0, h, H, dk, dv, gamma, r);
        float *ot = o + t * H * dv + h * dv;
        for (int64_t b = 0; b < dv; b++) ot[b] = (float)r[b];
    }
}

/* One step of torchscale's recurrent_forward on one head, in double:
 *   s_t  = s_(t-1) gamma + 1
 *   KV_t = KV_(t-1) sqrt(s_(t-1)) gamma / sqrt(s_t) + k_t v_t^T / sqrt(s_t)
 * kv [dk][dv] is key-major (torchscale keeps [dv][dk]; only the layout differs). At the first
 * token s_(t-1) = 0, so whatever kv held is multiplied away, like torchscale's "no state yet"
 * branch. By induction s_t = S_t and KV_t = sum_m gamma^(t-m) k_m v_m^T / sqrt(S_t). */
static void recurrent_update(double *kv, double *s, double gamma, const float *k,
                             const float *v, int64_t dk, int64_t dv, bool plain) {
    double s_prev = *s;
    double s_new = s_prev * gamma + 1.0;
    // fla keeps the plain sum: KV_t = gamma KV_(t-1) + k_t v_t^T
    double keep = plain ? gamma : sqrt(s_prev) * gamma / sqrt(s_new);
    double add = plain ? 1.0 : 1.0 / sqrt(s_new);
    for (int64_t a = 0; a < dk; a++)
        for (int64_t b = 0; b < dv; b++)
            kv[a * dv + b] = kv[a * dv + b] * keep + (double)k[a] * (double)v[b] * add;
    *s = s_new;
}

/* o[b] = sum_a q[a] kv[a][b]: the recurrent output R_t / sqrt(S_t), no clamp of any kind. */
static void recurrent_read(const double *kv, const float *q, int64_t dk, int64_t dv, float *o) {
    for (int64_t b = 0; b < dv; b++) {
        double acc = 0.0;
        for (int64_t a = 0; a < dk; a++) acc += (double)q[a] * kv[a * dv + b];
        o[b] = (float)acc;
    }
}

/* Recurrent form of one head over n tokens from an empty state, with the state in double. */
static void retention_recurrent(const float *q, const float *k, const float *v, int64_t n,
                                int64_t h, int64_t H, int64_t dk, int64_t dv, double gamma,
                                double *kv, float *o) {
    double s = 0.0;
    memset(kv, 0, (size_t)(dk * dv) * sizeof *kv);
    for (int64_t t = 0; t < n; t++) {
        recurrent_update(kv, &s, gamma, k + t * H * dk + h * dk, v + t * H * dv + h * dv, dk,
                         dv, false);
        recurrent_read(kv, q + t * H * dk + h * dk, dk, dv, o + t * H * dv + h * dv);
    }
}

/* The recurrent state after n tokens, straight from its closed form, whatever form produced the
 * outputs: state[h][a][b] = sum_m gamma^(n-1-m) k_m[a] v_m[b] / sqrt(S_(n-1)), scale[h] =
 * S_(n-1) (zero state and scale 0 when n == 0, the state ref_retention_step starts from). */
static void retention_final_state(const float *k, const float *v, int64_t n, int64_t H,
                                  int64_t dk, int64_t dv, const float *decay, bool plain,
                                  float *state, float *scale) {
    for (int64_t h = 0; h < H; h++) {
        double gamma = exp((double)decay[h]);
        double S = decay_sum(gamma, n);
        double inv_root = plain ? 1.0 : n > 0 ? 1.0 / sqrt(S) : 0.0;
        float *sh = state + h * dk * dv;                  // [dk][dv]
        for (int64_t a = 0; a < dk; a++) {
            for (int64_t b = 0; b < dv; b++) {
                double acc = 0.0;
                for (int64_t m = 0; m < n; m++)
                    acc += decay_pow(gamma, n - 1 - m) * (double)k[m * H * dk + h * dk + a] *
                           (double)v[m * H * dv + h * dv + b];
                sh[a * dv + b] = (float)(acc * inv_root);
            }
        }
        scale[h] = (float)S;
    }
}

/* Grouped heads: query head h reads key/value head h / (H / kv_heads). Copying each group's
 * key and value columns out to every query head of the group lets the per-head code above
 * stay as it is. Returns the expanded [n, H*width] copy of x [n, kv_heads*width]. */
static float *expand_heads(const float *x, int64_t n, int64_t H, int64_t kv_heads, int64_t width) {
    float *out = xcalloc(n * H * width, sizeof *out);
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < H; h++)
            memcpy(out + (t * H + h) * width, x + (t * kv_heads + h / (H / kv_heads)) * width,
                   (size_t)width * sizeof *out);
    return out;
}

void ref_retention(rn_mode mode, int64_t chunk, const float *q, const float *k, const float *v,
                   int64_t n, int64_t H, int64_t kv_heads, int64_t dk, int64_t dv,
                   const float *decay, bool plain, float *o, float *state, float *scale) {
    // q [n, H*dk], k [n, kv_heads*dk], v [n, kv_heads*dv], o [n, H*dv]; heads are independent,
    // so each form runs head by head.
    if (mode == RN_MODE_CHUNKWISE && chunk < 1) {
        fprintf(stderr, "ref_retention: chunk size %lld < 1\n", (long long)chunk);
        abort();
    }
    float *ke = expand_heads(k, n, H, kv_heads, dk), *ve = expand_heads(v, n, H, kv_heads, dv);
    double *r = xcalloc(dv, sizeof *r);                   // [dv]      one output row
    double *kv = xcalloc(dk * dv, sizeof *kv);            // [dk][dv]  recurrent / chunk state
    for (int64_t h = 0; h < H; h++) {
        double gamma = exp((double)decay[h]);
        if (plain) {
            retention_plain(q, ke, ve, n, h, H, dk, dv, gamma, r, o);
            continue;
        }
        switch (mode) {
        case RN_MODE_PARALLEL:
            retention_parallel(q, ke, ve, n, h, H, dk, dv, gamma, r, o);
            break;
        case RN_MODE_CHUNKWISE:
            retention_chunkwise(q, ke, ve, n, chunk, h, H, dk, dv, gamma, r, kv, o);
            break;
        case RN_MODE_RECURRENT:
            retention_recurrent(q, ke, ve, n, h, H, dk, dv, gamma, kv, o);
            break;
        }
    }
    free(kv);
    free(r);
    if (state && scale) retention_final_state(ke, ve, n, H, dk, dv, decay, plain, state, scale);
    free(ke);
    free(ve);
}

void ref_retention_step(const float *q, const float *k, const float *v, int64_t H,
                        int64_t kv_heads, int64_t dk, int64_t dv, const float *decay, bool plain,
                        float *state, float *scale, float *o) {
    // q [H*dk], k [kv_heads*dk], v [kv_heads*dv], o [H*dv], state [H][dk][dv], scale [H]. The
    // state lives in float between steps (as it does on the device); within a step it is
    // widened to double.
    double *kv = xcalloc(dk * dv, sizeof *kv);
    for (int64_t h = 0; h < H; h++) {
        int64_t g = h / (H / kv_heads);
        float *sh = state + h * dk * dv;
        for (int64_t e = 0; e < dk * dv; e++) kv[e] = (double)sh[e];
        double s = (double)scale[h];
        recurrent_update(kv, &s, exp((double)decay[h]), k + g * dk, v + g * dv, dk, dv, plain);
        recurrent_read(kv, q + h * dk, dk, dv, o + h * dv);
        for (int64_t e = 0; e < dk * dv; e++) sh[e] = (float)kv[e];
        scale[h] = (float)s;
    }
    free(kv);
}

void ref_group_norm_gate(const float *o, const float *g, const float *w, int64_t n, int64_t H,
                         int64_t dv, double eps, float *y) {
    // o, g, y [n, H*dv], w [dv]. An RMSNorm over each (token, head) dv-vector
    // (weightless in torchscale; fla's weight w is shared by the heads), then the swish gate
    // (absent without an output gate: g NULL). The per-form scalar in front of o only survives
    // through eps here.
    for (int64_t t = 0; t < n; t++) {
        for (int64_t h = 0; h < H; h++) {
            const float *oh = o + t * H * dv + h * dv;
            float *yh = y + t * H * dv + h * dv;
            double sum_sq = 0.0;
            for (int64_t b = 0; b < dv; b++) sum_sq += (double)oh[b] * (double)oh[b];
            double inv_rms = 1.0 / sqrt(sum_sq / (double)dv + eps);
            for (int64_t b = 0; b < dv; b++) {
                double value = (double)oh[b] * inv_rms;
                if (w) value *= (double)w[b];
                if (g) value *= silu((double)g[t * H * dv + h * dv + b]);
                yh[b] = (float)value;
            }
        }
    }
}

void ref_glu(const float *a, const float *b, int64_t count, rn_activation act, float *c) {
    // The activation goes on fc1 (a); the `gate` Linear (b) is the linear branch.
    for (int64_t i = 0; i < count; i++) {
        double x = (double)a[i];
        double activated = act == RN_ACT_GELU ? gelu(x) : silu(x);
        c[i] = (float)(activated * (double)b[i]);
    }
}

/* ---- model -------------------------------------------------------------------------------- */

/* A float copy of a checkpoint tensor; NULL for an absent tensor or when out of memory (the
 * caller tells the two apart). */
static float *widen(const st_tensor *t) {
    if (!t) return NULL;
    float *p = malloc((size_t)(t->elements ? t->elements : 1) * sizeof *p);
    if (p) st_to_f32(t->dtype, t->data, t->elements, p);
    return p;
}

ref_model *ref_model_from_checkpoint(const rn_checkpoint *ckpt) {
    const rn_config *cfg = &ckpt->config;
    bool ok = true;
    ref_model *model = calloc(1, sizeof *model);
    if (!model) return NULL;
    model->cfg = *cfg;
    model->layers = calloc((size_t)(cfg->layers > 0 ? cfg->layers : 1), sizeof *model->layers);
    model->angle = malloc((size_t)cfg->key_head_dim * sizeof *model->angle);
    model->decay = malloc((size_t)cfg->heads * sizeof *model->decay);
    if (!model->layers || !model->angle || !model->decay) goto fail;

    // The checkpoint's rel-pos buffers when it has them; fp32 linspace is not reproducible
    // bit for bit by a formula.
    rn_checkpoint_rel_pos(ckpt, model->angle, model->decay);

#define WIDEN(dst, src)                       \
    do {                                      \
        (dst) = widen(src);                   \
        if ((src) && !(dst)) ok = false;      \
    } while (0)

    WIDEN(model->embed, ckpt->embed);
    WIDEN(model->embed_norm, ckpt->embed_norm);
    WIDEN(model->final_norm, ckpt->final_norm);
    // Tied: the checkpoint's output already is the embedding; share the copy, don't make two.
    if (cfg->share_embed)
        model->output = model->embed;
    else
        WIDEN(model->output, ckpt->output);
    for (int64_t i = 0; i < cfg->layers; i++) {
        const rn_layer_tensors *src = &ckpt->layers[i];
        ref_layer *dst = &model->layers[i];
        WIDEN(dst->q_proj, src->q_proj);
        WIDEN(dst->k_proj, src->k_proj);
        WIDEN(dst->v_proj, src->v_proj);
        WIDEN(dst->g_proj, src->g_proj);
        WIDEN(dst->out_proj, src->out_proj);
        WIDEN(dst->head_norm, src->head_norm);
        WIDEN(dst->retention_norm, src->retention_norm);
        WIDEN(dst->fc1, src->fc1);
        WIDEN(dst->gate, src->gate);
        WIDEN(dst->fc2, src->fc2);
        WIDEN(dst->ffn_norm, src->ffn_norm);
    }
#undef WIDEN
    if (!ok) goto fail;
    return model;

fail:
    ref_model_free(model);
    return NULL;
}

void ref_model_free(ref_model *model) {
    if (!model) return;
    if (model->layers) {
        for (int64_t i = 0; i < model->cfg.layers; i++) {
            ref_layer *l = &model->layers[i];
            free(l->q_proj);
            free(l->k_proj);
            free(l->v_proj);
            free(l->g_proj);
            free(l->out_proj);
            free(l->head_norm);
            free(l->retention_norm);
            free(l->fc1);
            free(l->gate);
            free(l->fc2);
            free(l->ffn_norm);
        }
        free(model->layers);
    }
    if (model->output != model->embed) free(model->output);
    free(model->embed);
    free(model->embed_norm);
    free(model->final_norm);
    free(model->angle);
    free(model->decay);
    free(model);
}

/* Activations of one block of rows (all n tokens, or one token in recurrent mode). */
typedef struct ref_scratch {
    float *x;        /* [rows, D]   the residual stream */
    float *h;        /* [rows, D]   normalised input of a sub-layer */
    float *q, *k;    /* [rows, D]   = [rows, H*dk] */
    float *v, *g;    /* [rows, Dv]  = [rows, H*dv] */
    float *o, *y;    /* [rows, Dv]  retention output, then group-normed and gated */
    float *a, *b;    /* [rows, F]   fc1 and gate outputs; a becomes act(a) * b */
    float *f;        /* [rows, D]   a sub-layer's output before the residual add */
} ref_scratch;

static void scratch_init(ref_scratch *s, const rn_config *cfg, int64_t rows) {
    int64_t D = cfg->embed_dim, Dv = cfg->value_embed_dim, F = cfg->ffn_dim;
    int64_t Dq = cfg->key_embed_dim;   // key and value widths are at most the query ones
    s->x = xcalloc(rows * D, sizeof(float));
    s->h = xcalloc(rows * D, sizeof(float));
    s->q = xcalloc(rows * Dq, sizeof(float));
    s->k = xcalloc(rows * Dq, sizeof(float));
    s->v = xcalloc(rows * Dv, sizeof(float));
    s->g = xcalloc(rows * Dv, sizeof(float));
    s->o = xcalloc(rows * Dv, sizeof(float));
    s->y = xcalloc(rows * Dv, sizeof(float));
    s->a = xcalloc(rows * F, sizeof(float));
    s->b = xcalloc(rows * F, sizeof(float));
    s->f = xcalloc(rows * D, sizeof(float));
}

static void scratch_free(ref_scratch *s) {
    free(s->x); free(s->h); free(s->q); free(s->k); free(s->v); free(s->g);
    free(s->o); free(s->y); free(s->a); free(s->b); free(s->f);
}

/* Multi-scale retention of s->h [n, D], tokens at positions pos0.., into s->f [n, D].
 * The parallel and chunkwise forms see the whole sequence (pos0 == 0); the recurrent form
 * steps row by row through this layer's state [H][dk][dv] and scale [H]. */
static void retention_block(const ref_model *model, const ref_layer *l, ref_scratch *s,
                            int64_t n, int64_t pos0, rn_mode mode, int64_t chunk, float *state,
                            float *scale) {
    const rn_config *cfg = &model->cfg;
    int64_t D = cfg->embed_dim, Dv = cfg->value_embed_dim, H = cfg->heads, Hkv = cfg->kv_heads;
    int64_t dk = cfg->key_head_dim, dv = cfg->value_head_dim, Dq = cfg->key_embed_dim;

    ref_linear(s->h, l->q_proj, n, D, Dq, s->q);          // q [n, H*dk]
    ref_linear(s->h, l->k_proj, n, D, Hkv * dk, s->k);    // k [n, Hkv*dk]
    ref_linear(s->h, l->v_proj, n, D, Hkv * dv, s->v);    // v [n, Hkv*dv]
    if (cfg->output_gate) ref_linear(s->h, l->g_proj, n, D, Dv, s->g);   // g [n, Dv]
    // k, not q, carries dk^-0.5, applied before the rotation; fla scales q,
    // which gives the same products
    ref_theta_shift(s->q, n, H, dk, model->angle, pos0, 1.0, cfg->rope_half);
    ref_theta_shift(s->k, n, Hkv, dk, model->angle, pos0, 1.0 / sqrt((double)dk), cfg->rope_half);

    if (mode == RN_MODE_RECURRENT) {
        for (int64_t t = 0; t < n; t++)
            ref_retention_step(s->q + t * Dq, s->k + t * Hkv * dk, s->v + t * Hkv * dv, H, Hkv, dk,
                               dv, model->decay, cfg->plain_retention, state, scale, s->o + t * Dv);
    } else {
        ref_retention(mode, chunk, s->q, s->k, s->v, n, H, Hkv, dk, dv, model->decay,
                      cfg->plain_retention, s->o, state, scale);
    }
    ref_group_norm_gate(s->o, cfg->output_gate ? s->g : NULL, l->head_norm, n, H, dv,
                        cfg->layernorm_eps, s->y);                          // y [n, Dv]
    ref_linear(s->y, l->out_proj, n, Dv, D, s->f);                          // f [n, D]
}

/* The gated FFN of s->h [n, D] into s->f [n, D]: fc2(act(fc1 h) * gate h). */
static void ffn_block(const ref_model *model, const ref_layer *l, ref_scratch *s, int64_t n) {
    const rn_config *cfg = &model->cfg;
    int64_t D = cfg->embed_dim, F = cfg->ffn_dim;
    ref_linear(s->h, l->fc1, n, D, F, s->a);              // a [n, F]
    ref_linear(s->h, l->gate, n, D, F, s->b);             // b [n, F]
    ref_glu(s->a, s->b, n * F, cfg->activation, s->a);
    ref_linear(s->a, l->fc2, n, F, D, s->f);              // f [n, D]
}

/* x = alpha x + f: the residual add, alpha = (2L)^(1/4) under deepnorm, else 1. */
static void residual_add(float *x, const float *f, int64_t count, double alpha) {
    for (int64_t i = 0; i < count; i++) x[i] = (float)(alpha * (double)x[i] + (double)f[i]);
}

/* One decoder layer on s->x [n, D], in place.
 *   pre-norm:  x = a x + MSR(norm_ret(x));   x = a x + FFN(norm_ffn(x))
 *   post-norm: x = norm_ret(a x + MSR(x));   x = norm_ffn(a x + FFN(x)) */
static void layer_forward(const ref_model *model, const ref_layer *l, ref_scratch *s,
                          int64_t n, int64_t pos0, rn_mode mode, int64_t chunk, float *state,
                          float *scale) {
    const rn_config *cfg = &model->cfg;
    int64_t D = cfg->embed_dim;
    double eps = cfg->layernorm_eps;
    double alpha = cfg->deepnorm ? pow(2.0 * (double)cfg->layers, 0.25) : 1.0;

    if (cfg->normalize_before)
        ref_rms_norm(s->x, l->retention_norm, n, D, eps, s->h);
    else
        memcpy(s->h, s->x, (size_t)(n * D) * sizeof *s->h);
    retention_block(model, l, s, n, pos0, mode, chunk, state, scale);
    residual_add(s->x, s->f, n * D, alpha);
    if (!cfg->normalize_before) ref_rms_norm(s->x, l->retention_norm, n, D, eps, s->x);

    if (cfg->normalize_before)
        ref_rms_norm(s->x, l->ffn_norm, n, D, eps, s->h);
    else
        memcpy(s->h, s->x, (size_t)(n * D) * sizeof *s->h);
    ffn_block(model, l, s, n);
    residual_add(s->x, s->f, n * D, alpha);
    if (!cfg->normalize_before) ref_rms_norm(s->x, l->ffn_norm, n, D, eps, s->x);
}

void ref_forward_prefill(const ref_model *model, const int32_t *tokens, int64_t n,
                         int64_t n_prefill, rn_mode mode, int64_t chunk, float *logits) {
    const rn_config *cfg = &model->cfg;
    int64_t D = cfg->embed_dim, V = cfg->vocab_size, L = cfg->layers, H = cfg->heads;
    int64_t dk = cfg->key_head_dim, dv = cfg->value_head_dim;
    double eps = cfg->layernorm_eps;
    double embed_scale = cfg->no_scale_embedding ? 1.0 : sqrt((double)D);
    const float *output = cfg->share_embed ? model->embed : model->output;   // [V, D]
    if (n <= 0) return;
    if (mode == RN_MODE_RECURRENT || n_prefill < 0) n_prefill = 0;
    if (n_prefill > n) n_prefill = n;

    // The prefill sees its n_prefill tokens at once and leaves the recurrent state; the rest
    // runs the whole network one token at a time, as fairseq drives torchscale.
    ref_scratch s;
    scratch_init(&s, cfg, n_prefill > 1 ? n_prefill : 1);
    float *states = xcalloc(L * H * dk * dv, sizeof *states);   // [L][H][dk][dv], zero = empty
    float *scales = xcalloc(L * H, sizeof *scales);              // [L][H], 0 = no token yet

    for (int64_t t0 = 0; t0 < n;) {
        int64_t rows = t0 == 0 && n_prefill > 0 ? n_prefill : 1;
        rn_mode block_mode = t0 == 0 && n_prefill > 0 ? mode : RN_MODE_RECURRENT;
        ref_embedding(model->embed, D, tokens + t0, rows, embed_scale, s.x);   // x [rows, D]
        if (cfg->layernorm_embedding) ref_rms_norm(s.x, model->embed_norm, rows, D, eps, s.x);
        for (int64_t i = 0; i < L; i++)
            layer_forward(model, &model->layers[i], &s, rows, t0, block_mode, chunk,
                          states + i * H * dk * dv, scales + i * H);
        // Post-norm models end on a norm already and have no final layer_norm.
        if (cfg->normalize_before) ref_rms_norm(s.x, model->final_norm, rows, D, eps, s.x);
        ref_linear(s.x, output, rows, D, V, logits + t0 * V);   // logits [rows, V]
        t0 += rows;
    }

    free(states);
    free(scales);
    scratch_free(&s);
}

void ref_forward(const ref_model *model, const int32_t *tokens, int64_t n, rn_mode mode,
                 int64_t chunk, float *logits) {
    ref_forward_prefill(model, tokens, n, n, mode, chunk, logits);
}
