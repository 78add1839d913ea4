/*
 * test_ops.c: every kernel against the plain-C reference, op by op, on every OpenCL device.
 *
 * The checks themselves (guarded buffers, fixed-seed inputs, awkward shapes, tolerances) are
 * host/selftest.c's (rn_selftest), shared with `retnet selftest`; this runs them on each device
 * in turn, with the work-group of $RETNET_WORK_GROUP when it is set.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"  /* the build-failure check reaches the runtime; the rest is public */

static int failures = 0;

/* --quick (or RN_TEST_OPS_QUICK=1): the small shapes only, without the CLBlast-backed linear
 * cases (n > 1), for slow devices such as Oclgrind's simulator. */
static bool quick = false;

/* A kernel that does not compile gives RN_ERR_BUILD with the compiler's log in the message.
 * (Kept out of rn_selftest: the driver's compiler may print its own diagnostics to standard
 * error, which a passing `retnet selftest` should not show.) */
static int build_failure_reported(rn_context *ctx) {
    const char *source = "__kernel void broken(__global float *x) { x[0] = undeclared_name; }\n";
    size_t length = strlen(source);
    cl_program program = NULL;
    rn_status st = rt_program_build(&ctx->rt, "", &source, &length, 1, "", &program);
    int ok = st == RN_ERR_BUILD && strstr(ctx->err.message, "undeclared_name") != NULL && program == NULL;
    printf("  %-18s %-34s %s  %s\n", "build failure", "log names the bad identifier", rn_status_str(st),
           ok ? "pass" : "FAIL");
    if (!ok) printf("    message: %.300s\n", ctx->err.message);
    if (program) clReleaseProgram(program);
    return ok;
}

static void print_line(void *user, const char *line) {
    (void)user;
    puts(line);
}

static void test_device(const rn_device_info *info) {
    char spec[32];
    snprintf(spec, sizeof spec, "%u:%u", info->platform_index, info->device_index);
    printf("device %s: %s (%s)\n", spec, info->name, info->platform);
    rn_context_options opts;
    rn_context_options_default(&opts);
    opts.device = spec;
    const char *wg = getenv("RETNET_WORK_GROUP");
    if (wg) opts.work_group = (size_t)atoi(wg);
    rn_context *ctx;
    char message[4096];
    if (rn_context_init(&ctx, &opts, message, sizeof message) != RN_OK) {
        printf("  cannot open: %s\n", message);
        failures++;
        return;
    }
    int found = 0;
    rn_status st = rn_selftest(ctx, quick, print_line, NULL, NULL, &found);
    if (st != RN_OK) {
        printf("  selftest: %s: %s\n", rn_status_str(st), rn_context_last_error(ctx));
        found++;
    }
    failures += found;
    if (!build_failure_reported(ctx)) failures++;
    rn_context_free(ctx);
}

int main(int argc, char **argv) {
    const char *env = getenv("RN_TEST_OPS_QUICK");
    quick = env && *env && strcmp(env, "0") != 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 2;
        }
    }
    if (quick) printf("quick: small shapes, no CLBlast-backed linear cases\n");
    rn_device_info infos[64];
    size_t n = 0;
    rn_status st = rn_devices_list(infos, 64, &n);
    if (st != RN_OK || n == 0) {
        printf("no OpenCL device: %s\n", rn_status_str(st));
        return 1;
    }
    for (size_t i = 0; i < n && i < 64; i++) test_device(&infos[i]);
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
