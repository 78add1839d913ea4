#!/usr/bin/env bash
# pocl_small.sh TEST_OPS [TEST_MODEL]
#
# The op-by-op kernel checks on the smallest devices we can make, so that no kernel assumes
# NVIDIA-sized work-groups or local memory. The host picks the work-group size from the device
# and each kernel (host/ops.c rn_kernels_build); every reducing kernel must work with it.
#
# 1. PoCL with POCL_MAX_WORK_GROUP_SIZE=1 (checked with clinfo). Below its preferred multiple
#    of 8, PoCL 3.1's own local-size chooser aborts (pocl_local_size.c: upper_divisor:
#    Assertion `limit > 0') on 2-D launches that leave the local size to the implementation,
#    so rt_launch picks one-item groups itself on such devices. PoCL 3.1 has no setting for
#    local memory (it reports its cache size). CLBlast's GEMM kernels need larger work-groups
#    (CL_INVALID_WORK_GROUP_SIZE), so on devices below 64 the engine runs prompts through its
#    own project kernel instead (host/session.c); the op run is test_ops --quick (no CLBlast
#    cases), and TEST_MODEL, when given, checks whole models in every form against the
#    reference on the same device, 40-token prompts included.
# 2. Oclgrind (when installed; tests/oclgrind.sh installs it) configured as the smallest device
#    at all: a maximum work-group of 1 work-item and 1 KiB of local memory (the embedded
#    profile's minimum; the full profile's is 32 KiB), with zero simulator diagnostics.
set -u
test_ops=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

wg=${POCL_SMALL_WG:-1}
echo "PoCL, POCL_MAX_WORK_GROUP_SIZE=$wg:"
export POCL_MAX_WORK_GROUP_SIZE=$wg
if command -v clinfo >/dev/null; then
  clinfo 2>/dev/null | grep -A120 -m1 "^  Device Name.*pthread" \
    | grep -E "Device Name|Max work group size|Max work item sizes|Local memory size" | sed 's/^ */    /'
  got=$(clinfo 2>/dev/null | grep -A40 "Device Name.*pthread" | grep -m1 "Max work group size" | awk '{print $NF}')
  if [ "$got" != "$wg" ]; then echo "  FAIL: clinfo reports a maximum work-group of '$got', not $wg"; fail=1; fi
fi
start=$(date +%s)
"$test_ops" --quick > "$work/pocl.txt" 2>&1; rc=$?
grep -E "^device|work-group" "$work/pocl.txt" | sed 's/^/    /'
echo "  test_ops --quick: exit $rc in $(( $(date +%s) - start )) s: $(tail -1 "$work/pocl.txt")"
if [ $rc -ne 0 ]; then grep -E "FAIL|Assert" "$work/pocl.txt" | head -20; fail=1; fi
# Every device's kernels must have been built for a work-group within the limit.
while read -r _ size; do
  [ "$size" -le "$wg" ] || { echo "  FAIL: a work-group of $size above the limit $wg"; fail=1; }
done < <(grep -E "^  work-group [0-9]+$" "$work/pocl.txt")
if [ -n "${2:-}" ]; then
  start=$(date +%s)
  "$2" > "$work/model.txt" 2>&1; rc=$?
  echo "  test_model: exit $rc in $(( $(date +%s) - start )) s: $(tail -1 "$work/model.txt")"
  if [ $rc -ne 0 ]; then grep -E "FAIL" "$work/model.txt" | head -20; fail=1; fi
fi
unset POCL_MAX_WORK_GROUP_SIZE

if command -v oclgrind >/dev/null; then
  echo "Oclgrind, --max-wgsize 1 --local-mem-size 1024:"
  start=$(date +%s)
  oclgrind --max-wgsize 1 --local-mem-size 1024 --log "$work/oclgrind.log" "$test_ops" --quick \
    > "$work/ocl.txt" 2>&1; rc=$?
  grep -E "^device|work-group" "$work/ocl.txt" | sed 's/^/    /'
  echo "  test_ops --quick: exit $rc in $(( $(date +%s) - start )) s: $(tail -1 "$work/ocl.txt")"
  if [ $rc -ne 0 ]; then grep -E "FAIL" "$work/ocl.txt" | head -20; fail=1; fi
  grep -qE "^  work-group 1$" "$work/ocl.txt" || { echo "  FAIL: kernels not built for a work-group of 1"; fail=1; }
  if grep -q . "$work/oclgrind.log"; then echo "  FAIL: Oclgrind diagnostics:"; head -40 "$work/oclgrind.log"; fail=1; fi
else
  echo "Oclgrind not installed: the 1-work-item, 1 KiB local memory run is left out"
fi
[ $fail -eq 0 ] && echo "ok: small devices" || echo "FAIL: small devices"
exit $fail
