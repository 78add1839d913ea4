/*
 * test_sampler.c: host/sampler.c on its own (no OpenCL, no model).
 *
 * Deterministic cases (greedy, ties, the repeat penalty, parameter checks, non-finite logits)
 * are compared exactly. Statistical cases draw N tokens at positions 0..N-1 with a fixed seed
 * and compare the counts with the distribution the test computes itself, in double, from the
 * definition in sampler.h:
 *
 *   - any draw of an id the truncation excluded fails at once (exact set check);
 *   - every id of expected probability >= 1e-3 must be drawn at least once (the chance that one
 *     with N p >= 20 is missed is below e^-20);
 *   - Pearson's chi-square over the kept ids, against the critical value at one-sided
 *     p = 1e-6 for k - 1 degrees of freedom (Wilson-Hilferty: df (1 - 2/(9 df) + z sqrt(2/(9 df)))^3
 *     with z = 4.753); ids with N p < 5 are pooled into one bin, as the approximation asks;
 *   - the largest |count - N p| / sqrt(N p (1 - p)) over the chi-square's bins: each is a
 *     binomial z-score, so with k bins a bound of 5.5 has a false-failure chance below k * 4e-8.
 *
 * The generator is deterministic, so each number printed is the same on every run; the
 * tolerances say how far a correct sampler could land by chance, and they are wide enough that
 * no correct implementation with another hash would fail, and tight enough that an off-by-one
 * in a cut (one id too many or too few) or a wrong temperature fails by tens of sigmas.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sampler.h"


static int failures = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                    \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

/* ---- helpers ------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static double uniform(void) {  /* splitmix64 -> [0, 1), for test inputs only */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static float *random_logits(size_t n, double scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)((2.0 * uniform() - 1.0) * scale);
    return v;
}

/* All-off parameters: plain softmax(logits / T). */
static rn_sampling plain(float temperature) {
    rn_sampling s;
    rn_sampling_default(&s);
    s.temperature = temperature;
    s.top_k = 0;
    s.top_p = 1.0f;
    s.min_p = 0.0f;
    s.repeat_penalty = 1.0f;
    s.seed = 1234;
    return s;
}

static rn_sampler *make(const rn_sampling *s, size_t vocab) {
    rn_sampler *sm = NULL;
    rn_error err = {{0}};
    rn_status st = sampler_init(s, vocab, &sm, &err);
    if (st != RN_OK) {
        printf("FATAL: sampler_init: %s\n", err.message);
        exit(1);
    }
    return sm;
}

static int32_t sample(rn_sampler *sm, const float *logits, const int32_t *recent, size_t n_recent,
                      uint64_t pos) {
    int32_t tok = -1;
    rn_error err = {{0}};
    rn_status st = sampler_sample(sm, logits, recent, n_recent, pos, &tok, &err);
    if (st != RN_OK) {
        printf("FATAL: sampler_sample: %s\n", err.message);
        exit(1);
    }
    return tok;
}

static double now(void) {   /* C11's timespec_get: no POSIX feature macro needed */
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t argmax(const float *v, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* ---- the test's own reference distribution ------------------------------------------------ */

typedef struct ref_item {
    double logit;
    int32_t id;
} ref_item;

static int ref_desc(const void *pa, const void *pb) {
    const ref_item *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

/* prob[i] for every id after top-k, softmax / T, min-p, top-p, renormalised; straight from the
 * definitions in sampler.h, written independently of sampler.c (a full sort up front). No
 * repeat penalty here: tests of the distribution pass none. */
static void reference(const float *logits, size_t V, const rn_sampling *s, double *prob) {
    ref_item *it = malloc(V * sizeof *it);
    for (size_t i = 0; i < V; i++) it[i] = (ref_item){logits[i], (int32_t)i};
    qsort(it, V, sizeof *it, ref_desc);
    size_t n = (s->top_k > 0 && (size_t)s->top_k < V) ? (size_t)s->top_k : V;
    double *w = malloc(V * sizeof *w);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (w[i] = exp((it[i].logit - it[0].logit) / s->temperature));
    for (size_t i = 0; i < n; i++) w[i] /= sum;   /* softmax over the top-k */
    size_t m = 0;
    for (size_t i = 0; i < n; i++)   /* min-p, relative to the most likely */
        if (w[i] >= s->min_p * w[0]) { w[m] = w[i]; it[m] = it[i]; m++; }
    n = m;
    if (s->top_p < 1.0f) {
        double all = 0.0, cum = 0.0;
        for (size_t i = 0; i < n; i++) all += w[i];
        for (m = 0; m < n;) {
            cum += w[m++] / all;
            if (cum >= s->top_p) break;
        }
        n = m;
    }
    sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += w[i];
    memset(prob, 0, V * sizeof *prob);
    for (size_t i = 0; i < n; i++) prob[it[i].id] = w[i] / sum;
    free(it);
    free(w);
}

static double chi2_critical(double df) {   /* one-sided p = 1e-6, Wilson-Hilferty */
    const double z = 4.753;
    double a = 2.0 / (9.0 * df);
    double t = 1.0 - a + z * sqrt(a);
    return df * t * t * t;
}

/* Draws N tokens at positions 0..N-1 and checks them against `prob` as described at the top.
 * Returns the number of failures it recorded. */
static int check_distribution(const char *name, const rn_sampling *s, const float *logits,
                              size_t V, const double *prob, size_t N) {
    int before = failures;
    rn_sampler *sm = make(s, V);
    uint64_t *count = calloc(V, sizeof *count);
    size_t excluded = 0;
    int32_t first_bad = -1;
    double t0 = now();
    for (size_t pos = 0; pos < N; pos++) {
        int32_t t = sample(sm, logits, NULL, 0, pos);
        if (t < 0 || (size_t)t >= V || prob[t] == 0.0) {
            if (!excluded) first_bad = t;
            excluded++;
            continue;
        }
        count[t]++;
    }
    double us = (now() - t0) * 1e6 / (double)N;
    CHECK(excluded == 0, "%s: %zu draws of excluded ids (first %d)", name, excluded, first_bad);

    double chi2 = 0.0, zmax = 0.0, pooled_o = 0.0, pooled_e = 0.0;
    size_t bins = 0, kept = 0;
    for (size_t i = 0; i < V; i++) {
        if (prob[i] == 0.0) continue;
        kept++;
        double e = (double)N * prob[i], o = (double)count[i];
        /* z-scores only where the normal approximation holds (N p >= 5, the bins the
         * chi-square keeps); for N p ~ 0.01 a single draw would read as z = 10. */
        double sd = sqrt(e * (1.0 - prob[i]));
        if (e >= 5.0 && sd > 0.0 && fabs(o - e) / sd > zmax) zmax = fabs(o - e) / sd;
        if (prob[i] >= 1e-3)
            CHECK(count[i] > 0, "%s: id %zu (p = %.4g) never drawn in %zu", name, i, prob[i], N);
        if (e < 5.0) {
            pooled_o += o;
            pooled_e += e;
        } else {
            chi2 += (o - e) * (o - e) / e;
            bins++;
        }
    }
    if (pooled_e > 0.0) {
        chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
        bins++;
        double sd = sqrt(pooled_e * (1.0 - pooled_e / (double)N));
        if (pooled_e >= 5.0 && fabs(pooled_o - pooled_e) / sd > zmax)
            zmax = fabs(pooled_o - pooled_e) / sd;
    }
    if (bins >= 2) {
        double crit = chi2_critical((double)(bins - 1));
        CHECK(chi2 < crit, "%s: chi-square %.2f over %zu bins >= critical %.2f", name, chi2, bins,
              crit);
        printf("  %-38s N=%-6zu kept=%-5zu chi2=%8.2f (df %4zu, crit %7.2f) max|z|=%.2f  "
               "%.1f us/draw\n", name, N, kept, chi2, bins - 1, crit, zmax, us);
    } else {
        printf("  %-38s N=%-6zu kept=%-5zu (a single id)  %.1f us/draw\n", name, N, kept, us);
    }
    CHECK(zmax < 5.5, "%s: max binomial z-score %.2f >= 5.5", name, zmax);
    free(count);
    sampler_free(sm);
    return failures - before;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_defaults_and_check(void) {
    printf("defaults and parameter checks\n");
    rn_sampling s;
    rn_sampling_default(&s);
    /* The argmax rule (what greedy steps on the device stand in for): temperature 0 and no
     * repeat penalty, by either of its two off switches. */
    rn_sampling t = s;
    CHECK(!rn_sampling_is_argmax(&t) && !rn_sampling_is_argmax(NULL), "the defaults or NULL taken for argmax");
    t.temperature = 0.0f;
    CHECK(!rn_sampling_is_argmax(&t), "temperature 0 with a repeat penalty taken for argmax");
    t.repeat_last_n = 0;
    CHECK(rn_sampling_is_argmax(&t), "repeat_last_n 0 not taken for argmax");
    t.repeat_last_n = 64;
    t.repeat_penalty = 1.0f;
    CHECK(rn_sampling_is_argmax(&t), "repeat_penalty 1 not taken for argmax");
    CHECK(s.temperature == 0.8f && s.top_k == 40 && s.top_p == 0.95f && s.min_p == 0.05f &&
              s.repeat_penalty == 1.1f && s.repeat_last_n == 64 && s.seed == 0,
          "defaults differ from llama.cpp's");
    rn_error err = {{0}};
    CHECK(sampling_check(&s, &err) == RN_OK, "defaults rejected: %s", err.message);

    struct bad {
        const char *name;   /* must appear in the message */
        rn_sampling s;
    } bad[32];
    size_t nb = 0;
#define BAD(field, value, label)                                                        \
    do {                                                                                \
        bad[nb].name = label;                                                           \
        bad[nb].s = s;                                                                  \
        bad[nb].s.field = value;                                                        \
        nb++;                                                                           \
    } while (0)
    BAD(temperature, -0.1f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(temperature, INFINITY, "temperature");
    BAD(top_k, -1, "top_k");
    BAD(top_p, 0.0f, "top_p");
    BAD(top_p, -0.5f, "top_p");
    BAD(top_p, 1.0001f, "top_p");
    BAD(top_p, NAN, "top_p");
    BAD(min_p, -0.01f, "min_p");
    BAD(min_p, 1.0f, "min_p");
    BAD(min_p, NAN, "min_p");
    BAD(repeat_penalty, 0.0f, "repeat_penalty");
    BAD(repeat_penalty, -1.0f, "repeat_penalty");
    BAD(repeat_penalty, INFINITY, "repeat_penalty");
    BAD(repeat_penalty, NAN, "repeat_penalty");
    BAD(repeat_last_n, -1, "repeat_last_n");
#undef BAD
    for (size_t i = 0; i < nb; i++) {
        memset(&err, 0, sizeof err);
        rn_status st = sampling_check(&bad[i].s, &err);
        CHECK(st == RN_ERR_INVALID_ARGUMENT, "bad %s #%zu: status %d", bad[i].name, i, (int)st);
        CHECK(strstr(err.message, bad[i].name) != NULL, "bad %s: message '%s' does not name it",
              bad[i].name, err.message);
        rn_sampler *sm = (rn_sampler *)&err;   /* must be overwritten with NULL */
        st = sampler_init(&bad[i].s, 100, &sm, &err);
        CHECK(st == RN_ERR_INVALID_ARGUMENT && sm == NULL, "init with bad %s: status %d",
              bad[i].name, (int)st);
    }
    if (nb) printf("  %zu bad parameter sets refused; e.g. \"%s\"\n", nb, err.message);

    /* Edges that are valid. */
    rn_sampling ok = s;
    ok.temperature = 0.0f; ok.top_p = 1.0f; ok.min_p = 0.0f; ok.top_k = 0;
    ok.repeat_penalty = 1e-3f; ok.repeat_last_n = 0;
    CHECK(sampling_check(&ok, &err) == RN_OK, "valid edges rejected: %s", err.message);
    CHECK(sampling_check(NULL, &err) == RN_ERR_INVALID_ARGUMENT, "NULL parameters accepted");

    rn_sampler *sm = NULL;
    CHECK(sampler_init(&s, 0, &sm, &err) == RN_ERR_INVALID_ARGUMENT && !sm, "vocab 0 accepted");
    CHECK(sampler_init(&s, RN_SAMPLER_MAX_VOCAB + 1, &sm, &err) == RN_ERR_LIMIT && !sm,
          "vocab above the limit accepted");
    CHECK(sampler_init(&s, 10, NULL, &err) == RN_ERR_INVALID_ARGUMENT, "NULL out accepted");

    /* Bad arguments to sample(). */
    sm = make(&s, 8);
    float l[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    int32_t tok = 0;
    int32_t out_of_range[2] = {3, 8}, negative[1] = {-1};
    CHECK(sampler_sample(sm, l, out_of_range, 2, 0, &tok, &err) == RN_ERR_INVALID_ARGUMENT,
          "recent id 8 of vocab 8 accepted");
    CHECK(sampler_sample(sm, l, negative, 1, 0, &tok, &err) == RN_ERR_INVALID_ARGUMENT,
          "recent id -1 accepted");
    CHECK(sampler_sample(sm, l, NULL, 3, 0, &tok, &err) == RN_ERR_INVALID_ARGUMENT,
          "NULL recent with n_recent 3 accepted");
    CHECK(sampler_sample(sm, NULL, NULL, 0, 0, &tok, &err) == RN_ERR_INVALID_ARGUMENT,
          "NULL logits accepted");
    CHECK(sampler_sample(sm, l, NULL, 0, 0, NULL, &err) == RN_ERR_INVALID_ARGUMENT,
          "NULL token accepted");
    /* An out-of-range id older than the window is not read, so not an error. */
    int32_t old_bad[3] = {99, 1, 2};
    s.repeat_last_n = 2;
    rn_sampler *sm2 = make(&s, 8);
    CHECK(sampler_sample(sm2, l, old_bad, 3, 0, &tok, &err) == RN_OK,
          "id outside the window refused: %s", err.message);
    CHECK(sampler_params(sm2)->repeat_last_n == 2, "params not kept");
    sampler_free(sm2);
    sampler_free(sm);
    sampler_free(NULL);
}

static void test_non_finite(void) {
    printf("non-finite logits\n");
    const float bad_values[3] = {NAN, INFINITY, -INFINITY};
    rn_sampling modes[2] = {plain(0.0f), plain(1.0f)};
    rn_sampling_default(&modes[1]);   /* the full pipeline */
    for (int m = 0; m < 2; m++) {
        rn_sampler *sm = make(&modes[m], 16);
        for (int b = 0; b < 3; b++) {
            float l[16];
            for (int i = 0; i < 16; i++) l[i] = (float)i * 0.1f;
            l[5] = bad_values[b];
            int32_t tok = -7;
            rn_error err = {{0}};
            rn_status st = sampler_sample(sm, l, NULL, 0, 0, &tok, &err);
            CHECK(st == RN_ERR_NUMERIC, "mode %d value %g: status %d", m, (double)bad_values[b],
                  (int)st);
            CHECK(strstr(err.message, "5") != NULL, "message does not name the id: %s",
                  err.message);
            CHECK(tok == -7, "token written on error");
            if (m == 1 && b == 0) printf("  e.g. \"%s\"\n", err.message);
        }
        sampler_free(sm);
    }
}

static void test_greedy(void) {
    printf("greedy\n");
    /* Ties at the maximum: the lowest id, whatever the position or seed. */
    float tie[10] = {0.5f, -1.0f, 2.0f, 1.0f, 2.0f, 2.0f, -3.0f, 1.9f, 2.0f, 0.0f};
    rn_sampling s = plain(0.0f);
    s.top_k = 3; s.top_p = 0.5f; s.min_p = 0.2f;   /* ignored at temperature 0 */
    rn_sampler *sm = make(&s, 10);
    for (uint64_t pos = 0; pos < 100; pos++)
        CHECK(sample(sm, tie, NULL, 0, pos * 7919) == 2, "tie at position %llu",
              (unsigned long long)pos);
    sampler_free(sm);
    float all_equal[5] = {-4, -4, -4, -4, -4};
    sm = make(&s, 5);
    CHECK(sample(sm, all_equal, NULL, 0, 3) == 0, "all equal: not id 0");
    sampler_free(sm);

    /* Random rows: always the argmax. A vocabulary of 1 always gives 0. */
    const size_t V = 5000;
    s = plain(0.0f);
    sm = make(&s, V);
    int bad = 0;
    for (int r = 0; r < 50; r++) {
        float *l = random_logits(V, 8.0);
        if (sample(sm, l, NULL, 0, (uint64_t)r) != (int32_t)argmax(l, V)) bad++;
        free(l);
    }
    CHECK(bad == 0, "greedy differs from argmax on %d of 50 random rows", bad);
    sampler_free(sm);
    float one = 3.0f;
    rn_sampling d;
    rn_sampling_default(&d);
    sm = make(&d, 1);
    CHECK(sample(sm, &one, NULL, 0, 0) == 0, "vocab 1");
    sampler_free(sm);

    /* Temperature towards 0 (1e-6, and the smallest normal float) and top_k 1 at T = 1: the
     * argmax at every position. Random float rows have a unique maximum; checked. */
    float temps[2] = {1e-6f, FLT_MIN};
    const int rows = 40, positions = 50;
    int mism[3] = {0, 0, 0};
    for (int r = 0; r < rows; r++) {
        float *l = random_logits(V, 4.0);
        size_t am = argmax(l, V);
        int ties = 0;
        for (size_t i = 0; i < V; i++) ties += l[i] == l[am];
        CHECK(ties == 1, "random row has a tied maximum");
        for (int m = 0; m < 3; m++) {
            rn_sampling t = plain(m < 2 ? temps[m] : 1.0f);
            if (m == 2) t.top_k = 1;
            t.seed = (uint64_t)r;
            rn_sampler *x = make(&t, V);
            for (int pos = 0; pos < positions; pos++)
                if (sample(x, l, NULL, 0, (uint64_t)pos) != (int32_t)am) mism[m]++;
            sampler_free(x);
        }
        free(l);
    }
    CHECK(mism[0] == 0, "T=1e-6 differs from greedy %d times", mism[0]);
    CHECK(mism[1] == 0, "T=FLT_MIN differs from greedy %d times", mism[1]);
    CHECK(mism[2] == 0, "top_k=1 differs from greedy %d times", mism[2]);
    printf("  T=1e-6, T=FLT_MIN, top_k=1: %d draws each, mismatches %d %d %d\n",
           rows * positions, mism[0], mism[1], mism[2]);
    /* top_k 1 through a tie keeps the lowest id, like greedy. */
    rn_sampling t = plain(1.0f);
    t.top_k = 1;
    sm = make(&t, 10);
    for (uint64_t pos = 0; pos < 100; pos++)
        CHECK(sample(sm, tie, NULL, 0, pos) == 2, "top_k 1 tie at position %llu",
              (unsigned long long)pos);
    sampler_free(sm);
}

static void test_softmax_distribution(void) {
    printf("distribution = softmax(logits / T)\n");
    const size_t V = 16, N = 200000;
    float l[16];
    for (size_t i = 0; i < V; i++) l[i] = (float)((2.0 * uniform() - 1.0) * 2.5);
    double prob[16];
    float temps[3] = {0.7f, 1.0f, 1.8f};
    for (int k = 0; k < 3; k++) {
        rn_sampling s = plain(temps[k]);
        reference(l, V, &s, prob);
        char name[64];
        snprintf(name, sizeof name, "V=16 T=%.1f", (double)temps[k]);
        check_distribution(name, &s, l, V, prob, N);
    }
    /* A wrong temperature must be caught: the T = 0.7 draws against the T = 1 distribution
     * (done directly, not through check_distribution, which would count a failure). */
    rn_sampling s07 = plain(0.7f), s10 = plain(1.0f);
    reference(l, V, &s10, prob);
    rn_sampler *sm = make(&s07, V);
    uint64_t count[16] = {0};
    for (size_t pos = 0; pos < N; pos++) count[sample(sm, l, NULL, 0, pos)]++;
    double chi2 = 0.0;
    for (size_t i = 0; i < V; i++) {
        double e = N * prob[i];
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    CHECK(chi2 > chi2_critical(15.0), "T=0.7 draws pass as T=1 (chi2 %.1f)", chi2);
    printf("  (negative control: T=0.7 draws vs T=1 law: chi2=%.0f, crit %.2f)\n", chi2,
           chi2_critical(15.0));
    sampler_free(sm);

    /* Larger vocabularies with the cuts active, against the reference's own cut. A flat row
     * (uniform logits: a nucleus of thousands, the prefilters keep nearly everything) and a
     * peaked one like a language model's (Gumbel logits of scale 0.7: a long tail that the
     * prefilters drop before any sorting). */
    const size_t VF = 5000, VL = 20000;
    float *flat = random_logits(VF, 6.0);
    double *pb = malloc(VL * sizeof *pb);
    rn_sampling s = plain(0.8f);
    s.top_p = 0.9f; s.min_p = 0.02f;
    reference(flat, VF, &s, pb);
    check_distribution("V=5000 flat T=.8 top_p=.9 min_p=.02", &s, flat, VF, pb, 30000);
    free(flat);
    float *big = malloc(VL * sizeof *big);
    for (size_t i = 0; i < VL; i++) big[i] = (float)(-0.7 * log(-log(uniform() + 1e-300)));
    s = plain(0.65f);
    s.top_p = 0.95f;
    reference(big, VL, &s, pb);
    check_distribution("V=20000 peaked T=.65 top_p=.95", &s, big, VL, pb, 10000);
    s = plain(1.0f);
    s.min_p = 0.01f;
    reference(big, VL, &s, pb);
    check_distribution("V=20000 peaked T=1 min_p=.01", &s, big, VL, pb, 20000);
    s = plain(1.0f);
    s.top_k = 40; s.top_p = 0.95f; s.min_p = 0.05f;
    reference(big, VL, &s, pb);
    check_distribution("V=20000 peaked T=1 k=40 p=.95 mp=.05", &s, big, VL, pb, 20000);
    s = plain(1.3f);
    s.top_k = 300;
    reference(big, VL, &s, pb);
    check_distribution("V=20000 peaked T=1.3 top_k=300", &s, big, VL, pb, 20000);
    free(pb);
    free(big);
}

/* Hand-computed cuts on a row whose softmax at T = 1 is known exactly: the probabilities
 * below, scattered over ids, as logits log(p). */
static void test_truncation_sets(void) {
    printf("truncation sets\n");
    const size_t V = 10;
    /* id:          0     1     2     3     4     5     6     7     8     9 */
    const double p[10] = {0.02, 0.25, 0.0, 0.05, 0.4, 0.1, 0.03, 0.15, 0.0, 0.0};
    float l[10];
    for (size_t i = 0; i < V; i++) l[i] = p[i] > 0.0 ? (float)log(p[i]) : -30.0f;
    struct cut {
        const char *name;
        float T;
        int32_t top_k;
        float top_p, min_p;
        int keep[11];   /* ids expected to survive, -1 terminated */
    } cuts[] = {
        /* top_k 3: .4 .25 .15 */
        {"top_k=3", 1.0f, 3, 1.0f, 0.0f, {4, 1, 7, -1}},
        /* top_p .75: .4 + .25 = .65 < .75, + .15 = .80 >= .75 */
        {"top_p=.75", 1.0f, 0, 0.75f, 0.0f, {4, 1, 7, -1}},
        /* top_p .6: .4 < .6, + .25 = .65 */
        {"top_p=.6", 1.0f, 0, 0.6f, 0.0f, {4, 1, -1}},
        /* top_p .3: .4 alone */
        {"top_p=.3", 1.0f, 0, 0.3f, 0.0f, {4, -1}},
        /* min_p .2: p >= .08 -> .4 .25 .15 .1 */
        {"min_p=.2", 1.0f, 0, 1.0f, 0.2f, {4, 1, 7, 5, -1}},
        /* min_p .1: p >= .04 -> adds .05 */
        {"min_p=.1", 1.0f, 0, 1.0f, 0.1f, {4, 1, 7, 5, 3, -1}},
        /* temperature before min-p: at T = .5, p_i / p_max = (p_i / .4)^2 >= .2 needs
         * p_i >= .179 -> .4 .25 (at T = 1 it would keep four) */
        {"T=.5 min_p=.2", 0.5f, 0, 1.0f, 0.2f, {4, 1, -1}},
        /* all three: top-k 5 -> .4 .25 .15 .1 .05; min-p .15 -> >= .06 drops .05; top-p .7
         * over the renormalised four (/.9): .444, + .278 = .722 >= .7 -> two */
        {"k=5 min_p=.15 top_p=.7", 1.0f, 5, 0.7f, 0.15f, {4, 1, -1}},
        /* top-p after min-p is over the renormalised survivors: min-p .5 keeps p >= .2, i.e.
         * .4 .25 (sum .65); top-p .65 needs more than .4/.65 = .615, so both stay */
        {"min_p=.5 top_p=.65", 1.0f, 0, 0.65f, 0.5f, {4, 1, -1}},
        /* min-p .5 then top-p .6: .615 >= .6 -> one (against the unrenormalised mass, .4 < .6
         * would have kept two) */
        {"min_p=.5 top_p=.6", 1.0f, 0, 0.6f, 0.5f, {4, -1}},
        /* top_k larger than the vocabulary is no cut; the -30 ids have p ~ 1e-13 */
        {"top_k=100", 1.0f, 100, 1.0f, 0.0f, {4, 1, 7, 5, 3, 6, 0, 2, 8, 9, -1}},
    };
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        rn_sampling s = plain(cuts[c].T);
        s.top_k = cuts[c].top_k;
        s.top_p = cuts[c].top_p;
        s.min_p = cuts[c].min_p;
        double prob[10];
        reference(l, V, &s, prob);
        /* The reference and the hand-computed set must agree before the sampler is judged. */
        int expect[10] = {0};
        for (int j = 0; cuts[c].keep[j] >= 0; j++) expect[cuts[c].keep[j]] = 1;
        for (size_t i = 0; i < V; i++)
            CHECK((prob[i] > 0.0) == (expect[i] == 1), "%s: reference disagrees on id %zu",
                  cuts[c].name, i);
        check_distribution(cuts[c].name, &s, l, V, prob, 20000);
    }

    /* Top-p whose cut falls inside a crowd: 1000 ids within 0.1 of each other (two of the
     * sampler's top-p buckets), the best at the highest id, p ~ 1e-3 each, and 4000 filler ids
     * 20 below. top_p .5 keeps the best ~500 of the crowd: every kept id is expected ~40
     * times in 20000 draws, so one wrongly cut is seen as never drawn, and one wrongly kept
     * as a draw of an excluded id. Then 1000 exactly equal logits, where the cut must follow
     * the id order: top_p .4505 keeps ids 0..450 (451 ids; 450 would be half a weight short). */
    {
        const size_t VC = 5000;
        float *crowd = malloc(VC * sizeof *crowd);
        double *pc = malloc(VC * sizeof *pc);
        for (size_t i = 0; i < VC; i++) crowd[i] = i < 1000 ? -(float)(999 - i) * 1e-4f : -20.0f;
        rn_sampling sc = plain(1.0f);
        sc.top_p = 0.5f;
        reference(crowd, VC, &sc, pc);
        size_t nk = 0;
        for (size_t i = 0; i < VC; i++) nk += pc[i] > 0.0;
        CHECK(nk > 450 && nk < 550 && pc[999] > 0.0 && pc[0] == 0.0,
              "crowd: reference keeps %zu ids", nk);
        check_distribution("crowded cut: top_p=.5 of 1000", &sc, crowd, VC, pc, 20000);
        for (size_t i = 0; i < VC; i++) crowd[i] = i < 1000 ? 0.5f : -20.0f;
        sc.top_p = 0.4505f;
        for (size_t i = 0; i < VC; i++) pc[i] = i <= 450 ? 1.0 / 451.0 : 0.0;
        check_distribution("equal crowd: top_p=.4505 -> 0..450", &sc, crowd, VC, pc, 20000);
        free(crowd);
        free(pc);
    }

    /* Ties at a cut go to the lower ids: ten equal logits. */
    float flat[10];
    for (size_t i = 0; i < V; i++) flat[i] = 1.5f;
    rn_sampling s = plain(1.0f);
    s.top_k = 3;
    double prob[10] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    check_distribution("ties: top_k=3 -> ids 0,1,2", &s, flat, V, prob, 20000);
    s = plain(1.0f);
    s.top_p = 0.25f;   /* .1 + .1 < .25 <= .3 */
    check_distribution("ties: top_p=.25 -> ids 0,1,2", &s, flat, V, prob, 20000);
}

static void test_repeat_penalty(void) {
    printf("repeat penalty\n");
    rn_sampling s = plain(0.0f);
    s.repeat_penalty = 1.1f;
    s.repeat_last_n = 64;
    rn_sampler *sm = make(&s, 4);

    /* Positive logits are divided: 2.0 / 1.1 = 1.818 < 1.9. */
    float pos[4] = {2.0f, 1.9f, -1.0f, -2.0f};
    int32_t r0[1] = {0};
    CHECK(sample(sm, pos, NULL, 0, 0) == 0, "no penalty: not id 0");
    CHECK(sample(sm, pos, r0, 1, 0) == 1, "positive logit not divided");
    /* Divided: 1.818 < 1.85 -> id 1; had it been multiplied (2.2), id 0 would have stayed. */
    float pos2[4] = {2.0f, 1.85f, 0.0f, 0.0f};
    CHECK(sample(sm, pos2, r0, 1, 0) == 1, "2.0/1.1 = 1.818 should lose to 1.85");

    /* Negative logits are multiplied: -1.0 * 1.1 = -1.1 < -1.05 (divided, -0.909, would stay). */
    float neg[4] = {-1.0f, -1.05f, -5.0f, -6.0f};
    CHECK(sample(sm, neg, NULL, 0, 0) == 0, "no penalty: not id 0");
    CHECK(sample(sm, neg, r0, 1, 0) == 1, "negative logit not multiplied");
    /* The other way round: -1.0 divided (-0.909) would beat -0.95; multiplied (-1.1) not. */
    float up[4] = {-1.0f, -0.95f, -5.0f, -6.0f};
    CHECK(sample(sm, up, r0, 1, 0) == 1, "negative logit moved up");

    /* Each distinct token once: 2.0 against 1.7; once -> 1.818 wins, twice -> 1.653 would lose. */
    float once[4] = {2.0f, 1.7f, 0.0f, 0.0f};
    int32_t r000[3] = {0, 0, 0};
    CHECK(sample(sm, once, r000, 3, 0) == 0, "a repeated token penalised more than once");

    /* Only the last repeat_last_n count: with n = 2, id 0 at the front of [0, 3, 3] is old. */
    sampler_free(sm);
    s.repeat_last_n = 2;
    sm = make(&s, 4);
    int32_t r_old[3] = {0, 3, 3};
    CHECK(sample(sm, pos, r_old, 3, 0) == 0, "token outside the window penalised");
    int32_t r_in[3] = {3, 0, 3};
    CHECK(sample(sm, pos, r_in, 3, 0) == 1, "token inside the window not penalised");
    sampler_free(sm);
    s.repeat_last_n = 0;
    sm = make(&s, 4);
    CHECK(sample(sm, pos, r0, 1, 0) == 0, "repeat_last_n 0 penalised");
    sampler_free(sm);

    /* penalty < 1 encourages: 1.0 / 0.9 = 1.111 > 1.05. */
    s.repeat_last_n = 64;
    s.repeat_penalty = 0.9f;
    sm = make(&s, 4);
    float enc[4] = {1.0f, 1.05f, 0.0f, 0.0f};
    CHECK(sample(sm, enc, r0, 1, 0) == 0, "penalty 0.9 did not encourage");
    sampler_free(sm);

    /* A tiny penalty drives a large logit past FLT_MAX: clamped, not infinite (no error). */
    s.repeat_penalty = 1e-30f;
    sm = make(&s, 4);
    float huge[4] = {1e30f, 3e38f, 0.0f, 0.0f};
    int32_t tok = -1;
    rn_error err = {{0}};
    CHECK(sampler_sample(sm, huge, r0, 1, 0, &tok, &err) == RN_OK && tok == 0,
          "overflowing penalty: status/token %d (%s)", tok, err.message);
    sampler_free(sm);

    /* With sampling on (top_k 1 at T = 1) the penalty acts before the cut, and the logits
     * handed in are untouched by every path. */
    rn_sampling t;
    rn_sampling_default(&t);
    t.top_k = 1;
    sm = make(&t, 4);
    float copy[4];
    memcpy(copy, pos, sizeof copy);
    CHECK(sample(sm, pos, r0, 1, 5) == 1, "penalty not applied before top-k");
    CHECK(memcmp(copy, pos, sizeof copy) == 0, "logits modified");
    sampler_free(sm);
    const size_t V = 3000;
    float *l = random_logits(V, 5.0);
    float *lc = malloc(V * sizeof *lc);
    memcpy(lc, l, V * sizeof *lc);
    int32_t rec[100];
    for (int i = 0; i < 100; i++) rec[i] = (int32_t)(uniform() * V);
    rn_sampling_default(&t);
    t.top_k = 0;   /* the path through the full sort */
    sm = make(&t, V);
    for (uint64_t p2 = 0; p2 < 20; p2++) sample(sm, l, rec, 100, p2);
    CHECK(memcmp(lc, l, V * sizeof *lc) == 0, "logits modified by the full pipeline");
    sampler_free(sm);
    free(lc);
    free(l);
}

static void test_determinism(void) {
    printf("determinism\n");
    const size_t V = 1024, N = 4096;
    float *flat = calloc(V, sizeof *flat);   /* uniform over 1024 ids */
    rn_sampling s = plain(1.0f);
    s.seed = 42;
    rn_sampler *a = make(&s, V), *b = make(&s, V);
    int32_t *ta = malloc(N * sizeof *ta);
    for (size_t p = 0; p < N; p++) ta[p] = sample(a, flat, NULL, 0, p);

    /* Same (seed, position): the same token, from another sampler, in another order (a
     * session resumed at position 2048 continues with exactly the uninterrupted tokens). */
    size_t diff = 0;
    for (size_t p = N; p-- > N / 2;) diff += sample(b, flat, NULL, 0, p) != ta[p];
    for (size_t p = 0; p < N / 2; p++) diff += sample(b, flat, NULL, 0, p) != ta[p];
    CHECK(diff == 0, "same (seed, position) gave %zu different tokens", diff);
    /* The draw does not depend on the other arguments' history: the same sampler after
     * unrelated calls gives the same token. */
    float *other = random_logits(V, 3.0);
    for (size_t p = 0; p < 50; p++) sample(a, other, NULL, 0, p + 100000);
    CHECK(sample(a, flat, NULL, 0, 17) == ta[17], "draw depends on earlier calls");
    free(other);

    /* Different positions: different draws. Over 4096 positions, 1024 equally likely ids:
     * expected distinct 1024 (1 - e^-4) = 1005.2 (sd ~ 4); expected equal neighbours 4. */
    char *seen = calloc(V, 1);
    size_t distinct = 0, repeats = 0;
    for (size_t p = 0; p < N; p++) {
        if (!seen[ta[p]]) { seen[ta[p]] = 1; distinct++; }
        if (p && ta[p] == ta[p - 1]) repeats++;
    }
    CHECK(distinct > 980 && distinct < 1024, "distinct ids %zu, expected ~1005", distinct);
    CHECK(repeats < 16, "equal neighbours %zu, expected ~4", repeats);

    /* Another seed: another sequence (agreement ~ 1/1024 per position, so ~4 of 4096). */
    s.seed = 43;
    rn_sampler *c = make(&s, V);
    size_t agree = 0;
    for (size_t p = 0; p < N; p++) agree += sample(c, flat, NULL, 0, p) == ta[p];
    CHECK(agree < 20, "seeds 42 and 43 agree at %zu of %zu positions", agree, N);
    printf("  resumed run identical; distinct %zu of %zu (expect ~1005), equal neighbours %zu "
           "(expect ~4), agreement with another seed %zu (expect ~4)\n",
           distinct, N, repeats, agree);
    sampler_free(c);
    free(seen);

    /* Consecutive positions are independent: pairs (t_p, t_p+1) over 4 equal ids are uniform
     * over 16 cells (200000 pairs, chi-square with 15 df). */
    const size_t NP = 200000;
    float four[4] = {0, 0, 0, 0};
    s.seed = 7;
    rn_sampler *d = make(&s, 4);
    uint64_t cell[16] = {0};
    int32_t prev = sample(d, four, NULL, 0, 0);
    for (size_t p = 1; p <= NP; p++) {
        int32_t t = sample(d, four, NULL, 0, p);
        cell[prev * 4 + t]++;
        prev = t;
    }
    double chi2 = 0.0, e = NP / 16.0;
    for (int i = 0; i < 16; i++) chi2 += (cell[i] - e) * (cell[i] - e) / e;
    CHECK(chi2 < chi2_critical(15.0), "neighbour pairs: chi2 %.2f", chi2);
    printf("  neighbour pairs over 4 ids: chi2=%.2f (df 15, crit %.2f)\n", chi2,
           chi2_critical(15.0));
    /* Seeds 0 and 1 at the same positions are independent too. */
    rn_sampling s0 = plain(1.0f), s1 = plain(1.0f);
    s0.seed = 0; s1.seed = 1;
    rn_sampler *x0 = make(&s0, 4), *x1 = make(&s1, 4);
    memset(cell, 0, sizeof cell);
    for (size_t p = 0; p < NP; p++)
        cell[sample(x0, four, NULL, 0, p) * 4 + sample(x1, four, NULL, 0, p)]++;
    chi2 = 0.0;
    for (int i = 0; i < 16; i++) chi2 += (cell[i] - e) * (cell[i] - e) / e;
    CHECK(chi2 < chi2_critical(15.0), "seed 0 vs seed 1 pairs: chi2 %.2f", chi2);
    printf("  seed 0 vs seed 1 pairs over 4 ids: chi2=%.2f (df 15, crit %.2f)\n", chi2,
           chi2_critical(15.0));
    sampler_free(x0);
    sampler_free(x1);
    sampler_free(d);
    sampler_free(a);
    sampler_free(b);
    free(ta);
    free(flat);
}

/* Speed on real vocabulary sizes, and the 2^24 limit working at all. Printed, not judged
 * (timing is too machine-dependent to fail on), except that the results must be valid ids. */
static void test_large(void) {
    printf("large vocabularies (timings informational)\n");
    struct run {
        size_t V;
        int top_k;
        float top_p;
        int reps;
    } runs[] = {
        {32000, 40, 0.95f, 200},
        {128256, 40, 0.95f, 100},
        {128256, 0, 0.95f, 20},     /* top-p over the whole vocabulary: the full sort */
        {(size_t)1 << 24, 40, 0.95f, 2},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        float *l = random_logits(runs[r].V, 10.0);
        rn_sampling s;
        rn_sampling_default(&s);
        s.top_k = runs[r].top_k;
        s.top_p = runs[r].top_p;
        s.min_p = 0.0f;   /* so that top-p really sorts a large set */
        rn_sampler *sm = make(&s, runs[r].V);
        int32_t rec[64];
        for (int i = 0; i < 64; i++) rec[i] = (int32_t)(uniform() * runs[r].V);
        double t0 = now();
        for (int i = 0; i < runs[r].reps; i++) {
            int32_t t = sample(sm, l, rec, 64, (uint64_t)i);
            CHECK(t >= 0 && (size_t)t < runs[r].V, "token %d out of range", t);
        }
        double ms = (now() - t0) * 1e3 / runs[r].reps;
        printf("  V=%-9zu top_k=%-3d top_p=%.2f min_p=0 penalty 1.1/64: %8.3f ms per token\n",
               runs[r].V, runs[r].top_k, (double)runs[r].top_p, ms);
        sampler_free(sm);
        free(l);
    }
}

int main(void) {
    test_defaults_and_check();
    test_non_finite();
    test_greedy();
    test_softmax_distribution();
    test_truncation_sets();
    test_repeat_penalty();
    test_determinism();
    test_large();
    if (failures) {
        printf("%d FAILURE(S)\n", failures);
        return 1;
    }
    printf("all sampler tests passed\n");
    return 0;
}
