#!/usr/bin/env bash
# rusticl.sh ops TEST_OPS | model TEST_MODEL | logits RETNET FIXTURE_DIR MODE TOKENS
#
# The device tests on Mesa's rusticl (Debian's mesa-opencl-icd) with its llvmpipe device, a
# fourth OpenCL implementation beside PoCL, Oclgrind and the GPU vendors' drivers:
#   ops     the op-by-op kernel checks (test_ops, every case, CLBlast's included);
#   model   whole models in every form against the reference (test_model);
#   logits  a torchscale fixture's logits in one form (as torchscale_logits.sh, with
#           --device llvmpipe).
#
# The implementation is explicit: OCL_ICD_VENDORS names a temporary directory that holds only
# rusticl's .icd file, so the ICD loader sees no other platform, and RUSTICL_ENABLE=llvmpipe
# (rusticl exposes no device without it; that is also why the other tests, which do not set
# it, keep running on PoCL once mesa-opencl-icd is installed). The output must name llvmpipe.
#
# Installs mesa-opencl-icd when missing (as scripts/setup.sh installs packages); exits 77
# (skipped) only when it cannot be installed. Rusticl 22.3 rebuilds a kernel's compute state at
# every launch, from Mesa's shader cache (~/.cache/mesa_shader_cache): about 0.5-2 ms a launch
# (docs/BENCHMARKS.md, "rusticl"); the eleven tests take about 40 s on 2 cores.
set -u
what=${1:-}
case "$what" in
  ops | model) [ $# -eq 2 ] || { echo "usage: $0 ops TEST_OPS | model TEST_MODEL"; exit 2; } ;;
  logits) [ $# -eq 5 ] || { echo "usage: $0 logits RETNET FIXTURE_DIR MODE TOKENS"; exit 2; } ;;
  *) echo "usage: $0 ops TEST_OPS | model TEST_MODEL | logits RETNET FIXTURE_DIR MODE TOKENS"; exit 2 ;;
esac

vendors=/etc/OpenCL/vendors
find_icd() {
  local f
  for f in "$vendors"/*.icd; do
    [ -f "$f" ] && grep -q "libRusticlOpenCL" "$f" && { echo "$f"; return 0; }
  done
  return 1
}
icd=$(find_icd)
if [ -z "$icd" ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  # ctest runs several of these at once: one installs, the others wait for it.
  if ! { [ -z "$sudo" ] || command -v sudo >/dev/null; } ||
     ! command -v apt-get >/dev/null ||
     ! flock "${TMPDIR:-/tmp}/retnet-rusticl-install.lock" sh -c \
         "dpkg-query -W -f='\${Status}' mesa-opencl-icd 2>/dev/null | grep -q 'install ok installed' ||
          { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
              --no-install-recommends mesa-opencl-icd; }" >/dev/null 2>&1 ||
     ! icd=$(find_icd); then
    echo "rusticl (mesa-opencl-icd, $vendors/rusticl.icd) is not installed and cannot be installed: skipped"
    exit 77
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/vendors"
cp "$icd" "$work/vendors/"
export OCL_ICD_VENDORS=$work/vendors RUSTICL_ENABLE=llvmpipe
unset OCL_ICD_FILENAMES RETNET_DEVICE RETNET_WORK_GROUP
echo "$(basename "$icd"): $(cat "$icd"); OCL_ICD_VENDORS=$OCL_ICD_VENDORS RUSTICL_ENABLE=$RUSTICL_ENABLE"

start=$(date +%s)
case "$what" in
  ops)
    "$2" > "$work/out.txt" 2>&1; rc=$?
    grep -E "^device|^  work-group" "$work/out.txt"
    if ! grep -qE "^device [0-9]+:[0-9]+: llvmpipe" "$work/out.txt" ||
       grep -E "^device " "$work/out.txt" | grep -vq llvmpipe; then
      echo "FAIL: test_ops did not run on llvmpipe alone"; rc=1
    fi
    ;;
  model)
    "$2" > "$work/out.txt" 2>&1; rc=$?
    grep -m1 "^device" "$work/out.txt"
    grep -qE "^device: llvmpipe" "$work/out.txt" || { echo "FAIL: test_model did not run on llvmpipe"; rc=1; }
    ;;
  logits)
    retnet=$2 fixture=$3 mode=$4 tokens=$5
    "$retnet" logits --device llvmpipe --model "$fixture" --tokens "$tokens" --mode "$mode" --chunk-size 4 \
      --output "$work/logits.json" > "$work/out.txt" 2>&1 &&
      python3 "$(dirname "$0")/check_logits.py" "$fixture/expected-$mode.json" "$work/logits.json" --tol 1e-4 \
        >> "$work/out.txt" 2>&1
    rc=$?
    ;;
esac
checks=""
[ "$what" = logits ] || checks=", $(grep -cE " pass$" "$work/out.txt") checks passed"
echo "exit $rc in $(( $(date +%s) - start )) s$checks"
if [ $rc -ne 0 ]; then grep -E "FAIL|rror|Assert|panick" "$work/out.txt" | head -40; tail -5 "$work/out.txt"; else tail -3 "$work/out.txt"; fi
exit $rc
