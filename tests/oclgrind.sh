#!/usr/bin/env bash
# oclgrind.sh TEST_OPS
#
# The op-by-op kernel checks (test_ops --quick: small shapes, no CLBlast GEMMs) on Oclgrind's
# strict simulator, with its checks on: out-of-bounds global/local/private accesses and
# work-group divergence at barriers (always on), data races (--data-races) and OpenCL API misuse
# (--check-api). Any diagnostic fails the test, except the single CL_BUILD_PROGRAM_FAILURE that
# the deliberate build-failure check provokes. test_ops must also pass on the simulator.
#
# Uninitialized reads (--uninitialized) are not checked by default: Oclgrind 21.10's
# Uninitialized plugin ignores the offset of host writes (clEnqueueWriteBuffer/CopyBuffer at a
# non-zero offset, and sub-buffer origins, both of which the runtime and test_ops use), so it
# reports every kernel read of such data as uninitialized and even perturbs results. Set
# OCLGRIND_UNINITIALIZED=1 to add it anyway (with a fixed Oclgrind).
#
# Installs Debian's oclgrind when missing (as scripts/setup.sh installs packages); exits 77
# (skipped) only when it cannot be installed.
set -u
test_ops=$1
if ! command -v oclgrind >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  if ! { [ -z "$sudo" ] || command -v sudo >/dev/null; } ||
     ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
           --no-install-recommends oclgrind; } >/dev/null 2>&1 ||
     ! command -v oclgrind >/dev/null; then
    echo "oclgrind is not installed and cannot be installed: skipped"
    exit 77
  fi
fi
oclgrind --version | head -2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checks=(--data-races --check-api)
[ "${OCLGRIND_UNINITIALIZED:-0}" != 0 ] && checks+=(--uninitialized)
echo "oclgrind ${checks[*]} (+ out-of-bounds, barrier divergence) $test_ops --quick"
start=$(date +%s)
oclgrind "${checks[@]}" --max-errors 100 --log "$work/oclgrind.log" "$test_ops" --quick > "$work/out.txt" 2>&1
rc=$?
echo "  test_ops exit status $rc in $(( $(date +%s) - start )) s: $(tail -1 "$work/out.txt")"
grep -E "^(device|  work-group)" "$work/out.txt"
checked=$(grep -cE " pass$" "$work/out.txt")

# Kernel diagnostics go to the --log file, API errors (--check-api) to stderr: one diagnostic per
# blank-line-separated record that carries Oclgrind's markers.
awk -v RS= -v out="$work/unexpected.txt" '
  !/(^|\n)Oclgrind( -|:)|\tKernel: |\tEntity: |\tFunction: / { next }
  /Function: clBuildProgram/ && /CL_BUILD_PROGRAM_FAILURE/ && expected < 1 { expected++; next }
  { n++; print $0 "\n" > out }
  END { print n + 0 }' "$work/oclgrind.log" "$work/out.txt" > "$work/count"
count=$(cat "$work/count")
fail=0
if [ "$rc" -ne 0 ]; then
  echo "FAIL: test_ops failed on the simulator"; grep -E "FAIL" "$work/out.txt" | head -20; fail=1
fi
if [ "$count" -ne 0 ]; then
  echo "FAIL: $count Oclgrind diagnostic(s):"; head -60 "$work/unexpected.txt"; fail=1
fi
[ $fail -eq 0 ] && echo "ok: $checked checks passed under Oclgrind, 0 diagnostics"
exit $fail
