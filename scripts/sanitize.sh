#!/usr/bin/env bash
# The host code built with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/), the
# whole test suite run on it, then the CLI's load, generate and free cycle under LeakSanitizer.
# The two 2.7 GB tests, the valgrind runs and the Oclgrind legs are left to scripts/test.sh:
# ASan's shadow memory makes the first slow, and valgrind and Oclgrind (which preloads its
# OpenCL library ahead of ASan's runtime) cannot run sanitized binaries; neither can Python load
# the sanitized library (the binding's test), nor the install test link the example against it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
# The OpenCL implementation is explicit: PoCL's .icd alone. The other ICDs installed (rusticl
# and Clover, from mesa-opencl-icd) are loaded by clGetPlatformIDs even where they expose no
# device, and rusticl keeps an allocation from its set-up (72 bytes) that LeakSanitizer would
# report as ours. The rusticl tests name their own implementation (tests/rusticl.sh).
pocl_icd=$(grep -l libpocl /etc/OpenCL/vendors/*.icd | head -n 1) ||
  { echo "sanitize: no PoCL .icd in /etc/OpenCL/vendors" >&2; exit 1; }
export OCL_ICD_VENDORS=$(mktemp -d)
trap 'rm -rf "$OCL_ICD_VENDORS"' EXIT
cp "$pocl_icd" "$OCL_ICD_VENDORS/"
cmake -S "$root" -B "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DRN_SANITIZE=ON >/dev/null
cmake --build "$root/build-asan" -j "$(nproc)" >&2
# Leaks are checked below on the CLI; inside ctest the OpenCL runtime's own allocations at exit
# would drown ours.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$root/build-asan" && ctest --output-on-failure -j "$(nproc)" -E "fla_1_3b|valgrind|oclgrind|pocl_small|python_binding|install" "$@")

# LeakSanitizer on the CLI, nothing suppressed (PoCL, CLBlast and the ICD loader leak nothing
# here either).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
"$root/build-asan/bin/retnet" generate --model "$root/examples/kjv-retnet" -p "And God said," -n 16 --seed 1 \
  --state-save "$root/build-asan/leak.state" >/dev/null
"$root/build-asan/bin/retnet" generate --model "$root/examples/kjv-retnet" --state-load "$root/build-asan/leak.state" \
  -n 8 --seed 1 >/dev/null
echo "sanitize: the suite and the CLI's load, generate and free cycle are clean"
