#!/usr/bin/env bash
# Installs what the build needs (Debian packages, only those missing) and builds into build/.
# Sourced by scripts/demo.sh and scripts/test.sh, which are the README's two commands.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

source "$root/scripts/packages.sh"
# (clang: tests/nvidia_compile.sh compiles the NVIDIA-only kernel code with its NVPTX target.)
ensure_packages cmake gcc make pkg-config ocl-icd-opencl-dev opencl-headers libclblast-dev libcjson-dev \
          libmicrohttpd-dev haproxy curl pocl-opencl-icd mesa-opencl-icd clinfo python3 python3-numpy valgrind libpcre2-dev nodejs clang $(command -v npm >/dev/null || echo npm)

# Compiled kernels are cached in stable places: PoCL's cold compile costs tens of seconds.
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$HOME/.cache/pocl}
export RETNET_CACHE_DIR=${RETNET_CACHE_DIR:-$HOME/.cache/retnet-cl}
mkdir -p "$POCL_CACHE_DIR" "$RETNET_CACHE_DIR"

cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j "$(nproc)" >&2
