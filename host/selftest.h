/*
 * selftest.h: the op-by-op comparison of every kernel against the plain-C reference
 * (tests/ref.c) on one device: what tests/test_ops.c runs on every device and `retnet
 * selftest` on the chosen one. Not part of the library: built into those two programs, which
 * also compile the reference.
 */
#ifndef RN_SELFTEST_H
#define RN_SELFTEST_H

#include <stdbool.h>
#include <stdio.h>

#include "ops.h"

/* Builds the kernels for several head shapes and weight types on `rt`, runs every op on
 * fixed-seed inputs of awkward shapes, compares each output with the reference and prints
 * one table row per comparison to `out`: kernel, shapes, max error (max |got - ref| /
 * max |ref|), tolerance, pass or FAIL; also the build-failure check (a broken kernel gives
 * RN_ERR_BUILD with the compiler's log). `quick`: small shapes only, no CLBlast-backed linear
 * cases (for simulators). Returns the number of failures, 0 when all pass, and sets
 * *checks_run (when not NULL) to the number of rows checked. Not thread-safe: one run at a
 * time per process. */
int rn_selftest_run(rt_runtime *rt, FILE *out, bool quick, int *checks_run);

#endif /* RN_SELFTEST_H */
