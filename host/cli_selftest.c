/* cli_selftest.c: `retnet selftest [--device D]`: the op-by-op kernel checks against the C
 * reference (host/selftest.c) on one device, as a table; exit status 1 on any failure. */
#include <stdio.h>

#include "cli.h"
#include "rt.h"
#include "selftest.h"

int cmd_selftest(const options *o) {
    rn_error err = {{0}};
    rt_runtime rt;
    rn_status st = rt_init(&rt, o->device, o->no_cache ? RT_CACHE_OFF : RT_CACHE_AUTO, NULL, &err);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: %s: %s\n", rn_status_str(st), err.message);
        return 1;
    }
    const rn_device_info *d = &rt.dev.info;
    printf("device %u:%u: %s (%s, %s, %s)\n", d->platform_index, d->device_index, d->name, d->platform,
           d->driver, d->version);
    double start = cli_seconds();
    int checks = 0;
    int failures = rn_selftest_run(&rt, stdout, false, &checks);
    rt_release(&rt);
    printf("selftest: %d check%s, %d failure%s, %.1f s: %s\n", checks, checks == 1 ? "" : "s", failures,
           failures == 1 ? "" : "s", cli_seconds() - start, failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
