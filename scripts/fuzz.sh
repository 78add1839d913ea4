#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer into build-fuzz/, and runs each for a bounded time on a copy of
# its seed corpus (tests/fuzz/corpus/<target>; new inputs go to a temporary directory, never
# into the tree). Prints the executions each target reached; exits nonzero on any crash,
# leak, timeout, out-of-memory or sanitizer report, keeping the offending input under
# build-fuzz/artifacts/<target>/ (reproduce with: build-fuzz/tests/fuzz/<target> <file>).
#
#   RN_FUZZ_SECONDS   seconds per target (default 60)
#   RN_FUZZ_TARGETS   the targets to run (default all six)
# fuzz_state needs an OpenCL device (PoCL here); without one it runs but tests nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

source "$root/scripts/packages.sh"
ensure_packages clang libclang-rt-14-dev cmake make pkg-config ocl-icd-opencl-dev opencl-headers libclblast-dev \
          libcjson-dev libmicrohttpd-dev pocl-opencl-icd libpcre2-dev python3

export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$HOME/.cache/pocl}
mkdir -p "$POCL_CACHE_DIR"
seconds=${RN_FUZZ_SECONDS:-60}
targets=(${RN_FUZZ_TARGETS:-fuzz_safetensors fuzz_checkpoint fuzz_config fuzz_tokenizer fuzz_state fuzz_request})
build=$root/build-fuzz

CC=clang cmake -S "$root" -B "$build" -DRN_FUZZ=ON -DRN_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
printf '*\n' > "$build/.gitignore"   # the build tree stays out of git status
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >&2

# Leaks of the OpenCL driver are not ours (tests/fuzz/lsan.supp says which); UBSan stops at
# the first report so that libFuzzer saves the input.
export LSAN_OPTIONS=suppressions=$root/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# fuzz_state's OpenCL implementation is explicit: PoCL's .icd alone. Other ICDs (rusticl and
# Clover, from mesa-opencl-icd) are loaded by clGetPlatformIDs even where they expose no device,
# and rusticl keeps an allocation from its set-up that LeakSanitizer would report as a leak.
mkdir "$work/vendors"
pocl_icd=$(grep -l libpocl /etc/OpenCL/vendors/*.icd | head -n 1) ||
  { echo "fuzz: no PoCL .icd in /etc/OpenCL/vendors" >&2; exit 1; }
cp "$pocl_icd" "$work/vendors/"
export OCL_ICD_VENDORS=$work/vendors
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp -r "$root/tests/fuzz/corpus/$t/." "$work/$t/corpus/"
  echo "fuzz: $t for ${seconds}s" >&2
  set +e
  (cd "$work/$t" && "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
     -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" corpus) > "$work/$t/log" 2>&1
  rc=$?
  set -e
  done_line=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second\(s\)' "$work/$t/log" | tail -n 1 || true)
  runs=$(echo "$done_line" | grep -Eo '[0-9]+' | head -n 1 || true)
  report=$(grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:|invariant broken' \
           "$work/$t/log" | head -n 1 || true)
  if [ "$rc" -ne 0 ] || [ -n "$report" ] || [ -z "$done_line" ] || [ -n "$(ls -A "$work/$t/artifacts")" ]; then
    failed+=("$t")
    summary+=("$(printf '%-18s FAILED (exit %s) %s' "$t" "$rc" "$report")")
    mkdir -p "$build/artifacts/$t"
    cp -r "$work/$t/artifacts/." "$build/artifacts/$t/" 2>/dev/null || true
    cp "$work/$t/log" "$build/artifacts/$t/log"
    echo "fuzz: $t FAILED (exit $rc); the log's end (whole log and inputs in $build/artifacts/$t):" >&2
    tail -n 60 "$work/$t/log" >&2
  else
    grep -q 'no OpenCL device' "$work/$t/log" && done_line="$done_line (no OpenCL device: nothing tested)"
    summary+=("$(printf '%-18s %12s executions  (%s)' "$t" "$runs" "$done_line")")
  fi
done

echo "fuzz: ${seconds}s per target"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
