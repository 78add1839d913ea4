#!/usr/bin/env bash
# Release build trees for one NVIDIA call (scripts/nvidia_ab.sh): build-gpu/NAME for each NAME and
# its C flags, e.g. a tile of gemm_mma_small (host/ops.h, RN_MS_*) or an older commit's tree:
#   bash scripts/build_variants.sh main "" wide "-DRN_MS_NF=8 -DRN_MS_MF=2 -DRN_MS_KC=64 -DRN_MS_XK=0"
#   SOURCE=/path/to/worktree bash scripts/build_variants.sh base ""
# Each tree holds bin/retnet, bin/launch_chain and tests/test_greedy (what nvidia_ab.sh runs).
set -eu
[ $(($# % 2)) -eq 0 ] && [ $# -gt 0 ] || { echo "usage: bash scripts/build_variants.sh NAME FLAGS [NAME FLAGS]..." >&2; exit 2; }
source_dir=${SOURCE:-$PWD}
while [ $# -gt 0 ]; do
  name=$1 flags=$2; shift 2
  echo "== build-gpu/$name: CFLAGS \"$flags\" from $source_dir"
  cmake -S "$source_dir" -B "build-gpu/$name" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="$flags" > /dev/null
  targets="retnet_cli"
  grep -q "launch_chain" "$source_dir/CMakeLists.txt" && targets="$targets launch_chain"
  grep -q "test_greedy" "$source_dir/tests/CMakeLists.txt" && targets="$targets test_greedy"
  cmake --build "build-gpu/$name" -j2 --target $targets > "build-gpu/$name.log" 2>&1 ||
    { tail -20 "build-gpu/$name.log" >&2; exit 1; }
done
