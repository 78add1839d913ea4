/*
 * sampler.h: picking the next token from a row of logits. Plain C, no
 * OpenCL: the logits are read back to the host once per token and the work here is O(V) for
 * the usual settings (O(V log V) at worst, when top-p has to sort the whole vocabulary).
 *
 * Order of operations, as llama.cpp's common sampler chain applies its stages:
 *
 *   1. repeat penalty   each distinct id among the last `repeat_last_n` of `recent` is
 *                       penalised once: logit > 0 ? logit / p : logit * p (CTRL style)
 *   2. temperature 0    greedy: the argmax, the lowest id on ties; nothing below runs
 *   3. top-k            the k largest logits (ties at the cut: the lower ids)
 *   4. softmax / T      w_i = exp((l_i - l_max) / T) in double, over the top-k survivors
 *   5. min-p            drop ids whose w_i < min_p (w is p_i / p_max)
 *   6. top-p            in order of probability (descending; ties: the lower id first), keep
 *                       the smallest prefix whose mass, renormalised over the min-p survivors,
 *                       is >= top_p; at least one id always survives
 *   7. draw             one uniform u in [0, 1) against the renormalised survivors, walked in
 *                       an order fixed by the inputs (not necessarily sorted)
 *
 * Ties are broken by id everywhere (the cut of top-k and top-p keeps the lower ids), so the
 * surviving set never depends on how the implementation orders its work.
 *
 * Reproducibility. The uniform of step 7 is a pure function of (seed, position): a
 * counter-based generator (splitmix64's finaliser applied to seed and position), not a stream
 * whose state advances. A session saved at position p and resumed later therefore draws exactly
 * what an uninterrupted run draws, without the sampler being part of the saved state. Fixed
 * (parameters, logits, recent, seed, position) always give the same token within one build;
 * across libms, whose exp() may differ in the last bit, only a draw within about 1e-16 of the
 * boundary between two ids, or a cut landing exactly on top_p or min_p, can differ.
 */
#ifndef RN_SAMPLER_H
#define RN_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "rn_common.h"
#include "retnet.h"

/* The largest vocabulary the sampler accepts: ids must fit in an int32_t and the scratch
 * (8 bytes per id) must stay reasonable. Every real tokenizer is far below this. */
#define RN_SAMPLER_MAX_VOCAB ((size_t)1 << 24)

/* rn_sampling and rn_sampling_default are public (retnet.h); the functions here take an
 * rn_error and are what the public wrappers (text_api.c) call. */

/* RN_ERR_INVALID_ARGUMENT, with a message naming the parameter and its value, when: temperature
 * is negative or not finite; top_k < 0; top_p outside (0, 1] (NaN included); min_p outside
 * [0, 1); repeat_penalty <= 0 or not finite; repeat_last_n < 0. `s` NULL is also refused. */
rn_status sampling_check(const rn_sampling *s, rn_error *err);


/* Checks `s` (as sampling_check), copies it and allocates the scratch for a vocabulary of
 * `vocab` ids (8 bytes per id). vocab 0 → RN_ERR_INVALID_ARGUMENT; vocab above
 * RN_SAMPLER_MAX_VOCAB → RN_ERR_LIMIT; no memory → RN_ERR_OUT_OF_HOST_MEMORY. */
rn_status sampler_init(const rn_sampling *s, size_t vocab, rn_sampler **out, rn_error *err);

/* NULL is fine. */
void sampler_free(rn_sampler *s);

/* The parameters the sampler was made with. */
const rn_sampling *sampler_params(const rn_sampler *s);

/* Picks the token that follows `position` tokens, from `logits` (vocab floats, not modified).
 * `recent` holds the last `n_recent` tokens of the sequence, oldest first (NULL when n_recent
 * is 0); only the last repeat_last_n of them are penalised, and it may hold more. Errors:
 * RN_ERR_NUMERIC when a logit is NaN or infinite (the message gives the first such id);
 * RN_ERR_INVALID_ARGUMENT for NULL pointers or, among the last repeat_last_n recent ids, one
 * outside [0, vocab) (older ids are not read). The draw does not depend on n_recent or on the
 * ids beyond the penalty they cause. Not thread-safe
 * on one sampler (the scratch is shared); separate samplers are independent. */
rn_status sampler_sample(rn_sampler *s, const float *logits, const int32_t *recent,
                            size_t n_recent, uint64_t position, int32_t *token, rn_error *err);

#endif /* RN_SAMPLER_H */
