/* cli_selftest.c: `retnet selftest [--device D]`: the op-by-op kernel checks against the C
 * reference (rn_selftest) on one device, as a table; exit status 1 on any failure. */
#include <stdio.h>

#include "cli.h"

static void print_line(void *user, const char *line) {
    (void)user;
    puts(line);
}

int cmd_selftest(const options *o) {
    rn_context *ctx;
    int rc = cli_open_context(o->device, o->no_cache, &ctx);
    if (rc) return rc;
    const rn_device_info *d = rn_context_device(ctx);
    printf("device %u:%u: %s (%s, %s, %s)\n", d->platform_index, d->device_index, d->name, d->platform, d->driver,
           d->version);
    double start = cli_seconds();
    int checks = 0, failures = 0;
    rn_status st = rn_selftest(ctx, 0, print_line, NULL, &checks, &failures);
    if (st != RN_OK) rc = cli_report(ctx, st, "the selftest");
    rn_context_free(ctx);
    if (rc) return rc;
    printf("selftest: %d check%s, %d failure%s, %.1f s: %s\n", checks, checks == 1 ? "" : "s", failures,
           failures == 1 ? "" : "s", cli_seconds() - start, failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
