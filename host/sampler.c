/*
 * sampler.c: see sampler.h for the order of operations and the reproducibility contract.
 *
 * All the work happens in one scratch array of (logit, id) pairs, one per vocabulary id, so the
 * caller's logits stay untouched and nothing is allocated per token. Truncation stages shrink
 * the live prefix [0, n) of that array in place. Probabilities are never stored: the weight
 * w = exp((l - l_max) / T) is recomputed where it is needed, which costs a few exp() per
 * surviving id and saves 8 bytes per id (128 MiB at the 2^24 limit).
 */
#include "sampler.h"

#include "engine.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct candidate {
    float logit;
    int32_t id;
} candidate;

/* Top-p buckets: ids are binned by their exponent x = (l - l_max) / T <= 0, BUCKETS_PER_UNIT
 * bins per unit of x, down to x = -BUCKETS / BUCKETS_PER_UNIT (w = e^-64 ~ 1.6e-28); everything
 * below shares the last bin. */
#define BUCKETS 1024
#define BUCKETS_PER_UNIT 16.0

struct rn_sampler {
    rn_sampling params;
    size_t vocab;
    candidate *cand;   /* vocab entries */
    double bucket_mass[BUCKETS];
};

void rn_sampling_default(rn_sampling *s) {
    if (!s) return;
    s->temperature = 0.8f;
    s->top_k = 40;
    s->top_p = 0.95f;
    s->min_p = 0.05f;
    s->repeat_penalty = 1.1f;
    s->repeat_last_n = 64;
    s->seed = 0;
}

int rn_sampling_is_argmax(const rn_sampling *s) {
    return s && s->temperature == 0.0f && (s->repeat_penalty == 1.0f || s->repeat_last_n == 0);
}

rn_status sampling_check(const rn_sampling *s, rn_error *err) {
    if (!s) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "sampling parameters: NULL");
    /* Each test is written so that NaN fails it (comparisons with NaN are false). */
    if (!(isfinite(s->temperature) && s->temperature >= 0.0f))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                       "temperature %g: must be finite and >= 0 (0 is greedy)",
                       (double)s->temperature);
    if (s->top_k < 0)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "top_k %d: must be >= 0 (0 is off)",
                       (int)s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "top_p %g: must be in (0, 1] (1 is off)",
                       (double)s->top_p);
    if (!(s->min_p >= 0.0f && s->min_p < 1.0f))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "min_p %g: must be in [0, 1) (0 is off)",
                       (double)s->min_p);
    if (!(isfinite(s->repeat_penalty) && s->repeat_penalty > 0.0f))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                       "repeat_penalty %g: must be finite and > 0 (1 is off)",
                       (double)s->repeat_penalty);
    if (s->repeat_last_n < 0)
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                       "repeat_last_n %d: must be >= 0 (0 penalises nothing)",
                       (int)s->repeat_last_n);
    return RN_OK;
}

rn_status sampler_init(const rn_sampling *s, size_t vocab, rn_sampler **out, rn_error *err) {
    if (!out) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "sampler: NULL output pointer");
    *out = NULL;
    rn_status st = sampling_check(s, err);
    if (st != RN_OK) return st;
    if (vocab == 0) return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "sampler: vocabulary of 0 ids");
    if (vocab > RN_SAMPLER_MAX_VOCAB)
        return rn_fail(err, RN_ERR_LIMIT, "sampler: vocabulary of %zu ids is above the limit %zu",
                       vocab, RN_SAMPLER_MAX_VOCAB);
    rn_sampler *sm = calloc(1, sizeof *sm);
    if (!sm) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "sampler: out of memory");
    sm->cand = malloc(vocab * sizeof *sm->cand);
    if (!sm->cand) {
        free(sm);
        return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY,
                       "sampler: out of memory for %zu candidates", vocab);
    }
    sm->params = *s;
    sm->vocab = vocab;
    *out = sm;
    return RN_OK;
}

void sampler_free(rn_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s);
}

const rn_sampling *sampler_params(const rn_sampler *s) { return s ? &s->params : NULL; }

/* ---- the counter-based generator ----------------------------------------------------------- */

/* splitmix64's finaliser: a bijection on 64 bits with full avalanche. */
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The draw for (seed, position), uniform in [0, 1) with 53 bits. For a fixed seed the map from
 * position to the 64-bit word is a bijection (mix64 of a constant xor a bijection), so no two
 * positions of one sequence share a word. */
static double uniform_at(uint64_t seed, uint64_t position) {
    uint64_t z = mix64(mix64(seed) ^ mix64(position ^ 0x5851f42d4c957f2dull));
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- ordering ------------------------------------------------------------------------------ */

/* The one total order every stage uses: larger logit first, then lower id. It makes top-k and
 * top-p cuts through ties deterministic and equal to what a stable sort by logit would keep. */
static inline bool better(candidate a, candidate b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

/* Binary heaps over `better`. In a "worst-root" heap the root is the worst element (top-k
 * keeps its k best that way); in a "best-root" heap the root is the best (top-p pops from it). */
static void sift_worst_root(candidate *h, size_t n, size_t i) {
    candidate x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(h[c], h[c + 1])) c++;   /* the worse child */
        if (!better(x, h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void sift_best_root(candidate *h, size_t n, size_t i) {
    candidate x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(h[c + 1], h[c])) c++;   /* the better child */
        if (!better(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Moves the k best of c[0, n) into c[0, k), sorted best first. A bounded heap rather than
 * quickselect: O(n log k) in the worst case, whatever the logits look like. */
static void select_top_k(candidate *c, size_t n, size_t k) {
    for (size_t i = k / 2; i-- > 0;) sift_worst_root(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (better(c[i], c[0])) {
            c[0] = c[i];
            sift_worst_root(c, k, 0);
        }
    }
    /* Heapsort of the worst-root heap: the worst goes to the end each time, leaving best
     * first. */
    for (size_t end = k; end > 1; end--) {
        candidate t = c[0];
        c[0] = c[end - 1];
        c[end - 1] = t;
        sift_worst_root(c, end - 1, 0);
    }
}

/* Sorts c[0, n) worst first: an introsort (quicksort with a median of three, insertion sort
 * below 16, heapsort when the recursion runs 2 log2 n deep), so O(n log n) in the worst case.
 * Written here rather than qsort() for two reasons: `better` inlines, and glibc's qsort
 * allocates a temporary copy on every call, which at large n means an mmap and page faults per
 * token. `better` is a total order, so the result is the one sorted sequence. */
static void heapsort_asc(candidate *c, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift_best_root(c, n, i);
    for (size_t end = n; end > 1; end--) {
        candidate t = c[0];
        c[0] = c[end - 1];
        c[end - 1] = t;
        sift_best_root(c, end - 1, 0);
    }
}

static void swap_cand(candidate *a, candidate *b) {
    candidate t = *a;
    *a = *b;
    *b = t;
}

static void sort_asc(candidate *c, size_t n) {
    size_t depth = 0;
    for (size_t m = n; m > 1; m >>= 1) depth += 2;
    while (n > 16) {
        if (depth == 0) {
            heapsort_asc(c, n);
            return;
        }
        depth--;
        /* Median of three into c[0], so that Hoare's partition with the pivot at the low end
         * always splits into two non-empty parts. */
        size_t mid = n / 2;
        if (better(c[0], c[mid])) swap_cand(&c[0], &c[mid]);
        if (better(c[mid], c[n - 1])) swap_cand(&c[mid], &c[n - 1]);
        if (better(c[0], c[mid])) swap_cand(&c[0], &c[mid]);
        swap_cand(&c[0], &c[mid]);
        const candidate pivot = c[0];
        size_t i = 0, j = n - 1;
        for (;;) {
            while (better(pivot, c[i])) i++;   /* c[i] worse than the pivot: stays left */
            while (better(c[j], pivot)) j--;   /* c[j] better: stays right */
            if (i >= j) break;
            swap_cand(&c[i], &c[j]);
            i++;
            j--;
        }
        /* c[0, j] <= pivot <= c[j + 1, n): recurse into the smaller part, loop on the larger,
         * so the stack stays O(log n). */
        size_t left = j + 1;
        if (left < n - left) {
            sort_asc(c, left);
            c += left;
            n -= left;
        } else {
            sort_asc(c + left, n - left);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        candidate x = c[i];
        size_t k = i;
        while (k > 0 && better(c[k - 1], x)) {
            c[k] = c[k - 1];
            k--;
        }
        c[k] = x;
    }
}

/* ---- sampling ------------------------------------------------------------------------------ */

/* The CTRL / llama.cpp penalty. The result is clamped to the float range: a tiny penalty can
 * push a large logit past FLT_MAX, and an infinity would poison the softmax below. */
static float penalise(float logit, float p) {
    float v = logit > 0.0f ? logit / p : logit * p;
    if (v > FLT_MAX) return FLT_MAX;
    if (v < -FLT_MAX) return -FLT_MAX;
    return v;
}

/* Prefilters: a cheap test on the raw logit, l >= cut, that lets through every id whose weight
 * w = exp((l - l_max) / T) may reach w_min, and a few more; the exact test in double then runs on
 * those only, so the prefilter saves an exp() and a division per id without changing any
 * result. The cut is l_max + T log(w_min), lowered by a margin of 1e-9 of the magnitudes
 * involved: the exact path (two roundings in the exponent, exp() and log() within a few ulps)
 * errs by about 1e-16 of them, so nothing that passes the exact test is ever cut here. */
static double logit_cut(double lmax, double T, double log_w_min) {
    double shift = T * log_w_min;
    return lmax + shift - 1e-9 * (fabs(lmax) + fabs(shift)) - 1e-300;
}

/* Four running maxima rather than one: a single one is a chain of dependent max instructions,
 * and this scan is a good part of the time per token on a large vocabulary. */
static float max_logit(const candidate *c, size_t n) {
    float m0 = c[0].logit, m1 = m0, m2 = m0, m3 = m0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        m0 = c[i].logit > m0 ? c[i].logit : m0;
        m1 = c[i + 1].logit > m1 ? c[i + 1].logit : m1;
        m2 = c[i + 2].logit > m2 ? c[i + 2].logit : m2;
        m3 = c[i + 3].logit > m3 ? c[i + 3].logit : m3;
    }
    for (; i < n; i++) m0 = c[i].logit > m0 ? c[i].logit : m0;
    m0 = m1 > m0 ? m1 : m0;
    m2 = m3 > m2 ? m3 : m2;
    return m2 > m0 ? m2 : m0;
}

static size_t bucket_of(double x) {
    double b = -x * BUCKETS_PER_UNIT;   /* >= 0, and non-decreasing as the logit falls */
    return b < (double)(BUCKETS - 1) ? (size_t)b : BUCKETS - 1;
}

/* Top-p over c[0, n) in no particular order, without sorting it all. Bucketing by exponent is
 * monotone in the logit, so every id of a bucket above the one where the cumulative mass
 * crosses top_p (the crossing bucket) is in the nucleus, every id below is out, and only the
 * crossing bucket has to be sorted to find where the cut falls inside it. Cost: O(n) plus
 * sorting one bucket (1/16 of a unit of log-probability wide, so a few ids for any real
 * distribution; all n only when every logit is within T/16 of the maximum, where the sort is
 * the O(n log n) worst case). Leaves the nucleus in c[0, m): the ids of the buckets above in
 * their order, then the crossing bucket's kept ids best first; *total is their mass summed in
 * that order, as the draw will walk it. */
static size_t top_p_unsorted(rn_sampler *s, size_t n, double lmax, double T, double *total) {
    candidate *c = s->cand;
    double *bm = s->bucket_mass;
#define EXPONENT_OF(cand) (((double)(cand).logit - lmax) / T)
    for (size_t b = 0; b < BUCKETS; b++) bm[b] = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x = EXPONENT_OF(c[i]);
        bm[bucket_of(x)] += exp(x);
    }
    double all = 0.0;
    for (size_t b = 0; b < BUCKETS; b++) all += bm[b];
    const double goal = (double)s->params.top_p * all;
    /* The crossing bucket: the first whose inclusion reaches the goal. If rounding keeps the
     * sum of all buckets short of it, the last bucket with mass is taken whole. */
    size_t cross = BUCKETS - 1;
    double cum = 0.0;
    for (size_t b = 0; b < BUCKETS; b++) {
        if (cum + bm[b] >= goal) {
            cross = b;
            break;
        }
        cum += bm[b];
    }
    /* Ids of buckets up to the crossing one to the front, in order; then the crossing
     * bucket's to the end of that prefix (a two-pointer partition: deterministic, if not
     * stable). */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (bucket_of(EXPONENT_OF(c[i])) <= cross) c[k++] = c[i];
    size_t lo = 0, hi = k;   /* [0, lo): above the crossing bucket; [hi, k): in it */
    while (lo < hi) {
        if (bucket_of(EXPONENT_OF(c[lo])) < cross) {
            lo++;
        } else {
            hi--;
            candidate t = c[lo];
            c[lo] = c[hi];
            c[hi] = t;
        }
    }
    /* The crossing bucket, best first. */
    sort_asc(c + lo, k - lo);
    for (size_t i = lo, j = k - 1; i < j; i++, j--) {
        candidate t = c[i];
        c[i] = c[j];
        c[j] = t;
    }
    double sum = 0.0;
    for (size_t i = 0; i < lo; i++) sum += exp(EXPONENT_OF(c[i]));
    size_t m = lo;
    while (m < k) {
        sum += exp(EXPONENT_OF(c[m]));
        m++;
        if (sum >= goal) break;
    }
#undef EXPONENT_OF
    *total = sum;
    return m;
}

rn_status sampler_sample(rn_sampler *s, const float *logits, const int32_t *recent,
                            size_t n_recent, uint64_t position, int32_t *token, rn_error *err) {
    if (!s || !logits || !token || (n_recent > 0 && !recent))
        return rn_fail(err, RN_ERR_INVALID_ARGUMENT, "sampler: NULL argument");
    const rn_sampling *p = &s->params;
    const size_t V = s->vocab;
    candidate *c = s->cand;

    for (size_t i = 0; i < V; i++) {
        if (!isfinite(logits[i]))
            return rn_fail(err, RN_ERR_NUMERIC, "sampler: logit of token %zu is %g", i,
                           (double)logits[i]);
        c[i].logit = logits[i];
        c[i].id = (int32_t)i;
    }

    /* 1. Repeat penalty. Each penalised value is computed from the caller's logit, not from
     * c[], so a token that occurs several times in the window is penalised exactly once. */
    size_t window = (size_t)p->repeat_last_n < n_recent ? (size_t)p->repeat_last_n : n_recent;
    const int32_t *w0 = recent ? recent + (n_recent - window) : NULL;
    for (size_t j = 0; j < window; j++) {
        int32_t t = w0[j];
        if (t < 0 || (size_t)t >= V)
            return rn_fail(err, RN_ERR_INVALID_ARGUMENT,
                           "sampler: recent token %d is outside the vocabulary of %zu ids",
                           (int)t, V);
        if (p->repeat_penalty != 1.0f) c[t].logit = penalise(logits[t], p->repeat_penalty);
    }

    /* 2. Greedy. */
    if (p->temperature == 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < V; i++)
            if (c[i].logit > c[best].logit) best = i;   /* strict: the lowest id wins ties */
        *token = (int32_t)best;
        return RN_OK;
    }

    /* 3. Top-k. */
    size_t n = V;
    bool sorted = false;
    if (p->top_k > 0 && (size_t)p->top_k < V) {
        n = (size_t)p->top_k;
        select_top_k(c, V, n);
        sorted = true;
    }

    /* 4. Softmax with temperature, unnormalised: w = exp(x), x = (l - l_max) / T, in double,
     * so that w is exactly 1 at the maximum and p_i / p_max = w_i for min-p. */
    const double lmax = (double)(sorted ? c[0].logit : max_logit(c, n));
    const double T = (double)p->temperature;
#define WEIGHT(cand) exp(((double)(cand).logit - lmax) / T)

    /* 5. Min-p: a stable compaction keeps the order (sorted or by id) of the survivors. The
     * maximum has w = 1 >= min_p, so at least one id survives. The survivors' mass is summed
     * on the way, in the order they keep. */
    double mass = 0.0;
    bool have_mass = false;
    if (p->min_p > 0.0f) {
        const double mp = (double)p->min_p, cut = logit_cut(lmax, T, log(mp));
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if ((double)c[i].logit < cut) continue;
            double w = WEIGHT(c[i]);
            if (w >= mp) {
                c[m++] = c[i];
                mass += w;
            }
        }
        n = m;
        have_mass = true;
    }

    /* 6. Top-p over the renormalised survivors: the smallest most-likely-first prefix whose
     * mass reaches top_p of their total (cum >= top_p * mass, without a division). `total`
     * ends as the kept mass, summed in the order the draw walks. */
    double total;
    if (p->top_p < 1.0f && sorted) {
        if (!have_mass)
            for (size_t i = 0; i < n; i++) mass += WEIGHT(c[i]);
        const double goal = (double)p->top_p * mass;
        size_t m = 0;
        total = 0.0;
        while (m < n) {
            total += WEIGHT(c[m]);
            m++;
            if (total >= goal) break;
        }
        n = m;   /* >= 1: the loop runs at least once */
    } else if (p->top_p < 1.0f) {
        n = top_p_unsorted(s, n, lmax, T, &total);
    } else {
        if (!have_mass)
            for (size_t i = 0; i < n; i++) mass += WEIGHT(c[i]);
        total = mass;
    }

    /* 7. The draw. The walk repeats the additions that made `total`, so the last step reaches
     * it exactly; an id of weight 0 (underflow) can never be where the cumulative first passes
     * the target, and the fallback (u * total rounded up to total) takes the last id that has
     * weight. */
    const double target = uniform_at(p->seed, position) * total;
    double cum = 0.0;
    size_t last_live = 0;
    for (size_t i = 0; i < n; i++) {
        double w = WEIGHT(c[i]);
        if (w > 0.0) last_live = i;
        cum += w;
        if (target < cum) {
            *token = c[i].id;
            return RN_OK;
        }
    }
#undef WEIGHT
    *token = c[last_live].id;
    return RN_OK;
}

/* ---- the public calls: a failure's message goes to the thread's rn_last_error -------------- */

rn_status rn_sampler_init(const rn_sampling *s, size_t vocab, rn_sampler **out) {
    rn_error err = {{0}};
    return rn_thread_fail(sampler_init(s, vocab, out, &err), &err);
}

void rn_sampler_free(rn_sampler *s) {
    sampler_free(s);
}

rn_status rn_sampler_sample(rn_sampler *s, const float *logits, const int32_t *recent, size_t n_recent,
                            uint64_t position, int32_t *token) {
    rn_error err = {{0}};
    return rn_thread_fail(sampler_sample(s, logits, recent, n_recent, position, token, &err), &err);
}
