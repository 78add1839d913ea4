#!/usr/bin/env bash
# nvidia_compile.sh NVIDIA_SOURCES...
#
# The kernels as rn_kernels_build would compile them on an NVIDIA GPU with the matrix engine,
# compiled by clang's NVPTX target: each NVIDIA_SOURCES (tests/nvidia_sources.c, one build per
# variant of host/ops.c) writes its programs and says which PTX instructions each must hold; a
# compile error or a missing instruction fails the test. No other test here compiles the
# NVIDIA-only code (inline PTX, the matrix engine's fragments, the look-ahead): PoCL builds the
# portable paths. What it cannot see: the text inside asm statements is not checked (that is
# ptxas's work, on the GPU), and NVIDIA's own OpenCL compiler may accept or refuse what clang
# does not. clang 14's OpenCL header declares vload_half and vstore_half only with cl_khr_fp16
# enabled, which NVIDIA's OpenCL does not report; the kernels use no half arithmetic, so the
# extension is enabled here for those declarations only.
set -u
clang=${CLANG:-clang}
command -v "$clang" > /dev/null || { echo "nvidia_compile: no $clang (Debian's clang): skipped"; exit 77; }
"$clang" -print-targets 2> /dev/null | grep -q nvptx64 ||
  { echo "nvidia_compile: $clang has no NVPTX target: skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 programs=0
for writer in "$@"; do
  dir=$work/$(basename "$writer")
  mkdir -p "$dir"
  "$writer" "$dir" > "$dir/expect.txt" || { echo "FAIL: $writer"; failures=$((failures + 1)); continue; }
  while read -r name instructions; do
    programs=$((programs + 1))
    if ! "$clang" -x cl -cl-std=CL1.2 -fgnu-keywords -Xclang -finclude-default-header -Xclang -cl-ext=+cl_khr_fp16 \
        -target nvptx64-nvidia-cuda -O2 -S -o "$dir/$name.ptx" "$dir/$name.cl" 2> "$dir/$name.log"; then
      echo "FAIL: $(basename "$writer") $name does not compile:"; head -20 "$dir/$name.log"
      failures=$((failures + 1)); continue
    fi
    for instruction in $instructions; do
      grep -q -- "$instruction" "$dir/$name.ptx" ||
        { echo "FAIL: $(basename "$writer") $name: no $instruction in its PTX"; failures=$((failures + 1)); }
    done
    echo "ok: $(basename "$writer") $name ($(grep -c '^\.visible \.entry' "$dir/$name.ptx") kernels: $instructions)"
  done < "$dir/expect.txt"
done
echo "nvidia_compile: $programs programs, $failures failures"
[ "$programs" -gt 0 ] && [ "$failures" -eq 0 ]
