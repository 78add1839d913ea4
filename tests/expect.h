/*
 * expect.h: the checks that the device tests print, one line each ending in "pass" or "FAIL",
 * counting failures in `failures` (one test program per file, so one count each).
 */
#ifndef RN_TEST_EXPECT_H
#define RN_TEST_EXPECT_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "retnet.h"

static int failures = 0;

static inline void expect_true(const char *what, bool ok) {
    printf("    %-56s %s\n", what, ok ? "pass" : "FAIL");
    if (!ok) failures++;
}

/* A failure must also leave a message in the context. */
static inline void expect_status(const char *what, rn_status got, rn_status want, rn_context *ctx) {
    bool ok = got == want;
    printf("    %-56s %s%s%s\n", what, rn_status_str(got), ok ? "  pass" : "  FAIL, expected ",
           ok ? "" : rn_status_str(want));
    if (!ok) failures++;
    if (got != RN_OK && !*rn_context_last_error(ctx)) {
        printf("    (no error message)  FAIL\n");
        failures++;
    }
}

/* A device test's end: its scratch directory removed, the count printed; the exit status. */
static inline int expect_finish(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}

/* max |got - ref| / max |ref| (the difference alone where ref is all zeros); infinite where
 * got holds a NaN or an infinity. */
static inline double rel_error(const float *ref, const float *got, size_t n) {
    double max_ref = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > max_diff) max_diff = d;
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
    }
    return max_ref > 0 ? max_diff / max_ref : max_diff;
}

#endif /* RN_TEST_EXPECT_H */
