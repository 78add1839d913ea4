#!/usr/bin/env bash
# What one NVIDIA call needs from this machine, made in one go (shared/GPU.md's recipe): .gpu/debs
# with the runtime libraries the builds link against, .gpu/peers with the PyTorch peers
# (shared/bench, for bench.sh --engines), the build trees (scripts/build_variants.sh NAME FLAGS
# ...; BASE=COMMIT adds build-gpu/base, built from a worktree of that commit), and then the
# device call's carry list with its size against the device tool's limits (8 paths, 64 MiB).
#   BASE=c5863d7 bash scripts/nvidia_prepare.sh main "" ahead2 "-DRN_PREFETCH_AHEAD=2"
set -eu
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
grep -qxF /.gpu/ .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
mkdir -p .gpu/debs
(cd .gpu/debs && apt-get download -qq ocl-icd-libopencl1 libclblast1 libcjson1 clinfo clpeak libpcre2-8-0 \
  libmicrohttpd12)
peers=${PEERS:-$root/../shared/bench}
if [ -d "$peers" ]; then rm -rf .gpu/peers && cp -r "$peers" .gpu/peers; else echo "no peers at $peers" >&2; fi
names=()
[ $# -gt 0 ] && bash scripts/build_variants.sh "$@"
while [ $# -ge 2 ]; do names+=("build-gpu/$1"); shift 2; done
if [ -n "${BASE:-}" ]; then
  base_tree=${TMPDIR:-/tmp}/retnet-base
  git worktree remove --force "$base_tree" 2>/dev/null || rm -rf "$base_tree"
  git worktree add --detach "$base_tree" "$BASE" > /dev/null
  SOURCE=$base_tree bash scripts/build_variants.sh base ""
  names+=(build-gpu/base)
fi
carry=(.gpu "${names[@]}")
megabytes=$(du -scm "${carry[@]}" | tail -1 | cut -f1)
printf 'carry (%d paths, %d MiB):' "${#carry[@]}" "$megabytes"
printf ' "%s"' "${carry[@]}"
echo
[ "${#carry[@]}" -le 8 ] && [ "$megabytes" -le 64 ] ||
  { echo "over the device tool's limits (8 paths, 64 MiB): split the trees over two calls" >&2; exit 1; }
