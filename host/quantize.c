/* quantize.c: rn_quantize_checkpoint, over models/quantize. No device: a failure's message goes
 * to the calling thread's rn_last_error. */
#include "engine.h"
#include "quantize.h"

rn_status rn_quantize_checkpoint(const char *model_dir, const char *out_dir, rn_weights weights,
                                 rn_progress_fn progress, void *user) {
    rn_error err = {{0}};
    if (!model_dir || !out_dir)
        return rn_thread_fail(rn_fail(&err, RN_ERR_INVALID_ARGUMENT, "rn_quantize_checkpoint: NULL directory"), &err);
    if (weights != RN_WEIGHTS_Q8 && weights != RN_WEIGHTS_Q4)
        return rn_thread_fail(rn_fail(&err, RN_ERR_INVALID_ARGUMENT,
                                      "rn_quantize_checkpoint: weights must be RN_WEIGHTS_Q8 or RN_WEIGHTS_Q4, not %d",
                                      (int)weights),
                              &err);
    rn_status st = rn_checkpoint_quantize(model_dir, out_dir, weights == RN_WEIGHTS_Q8 ? ST_Q8_0 : ST_Q4_0, progress,
                                          user, &err);
    if (st != RN_OK) rn_error_prefix(&err, "quantizing '%s' into '%s'", model_dir, out_dir);
    return rn_thread_fail(st, &err);
}
