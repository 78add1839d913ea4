#!/usr/bin/env bash
# The main job: set up, then generate text from the small model shipped in the repo
# (examples/kjv-retnet, a 2M-parameter RetNet trained on the King James Bible) on the default
# OpenCL device: the first GPU, else PoCL on the CPU. Extra arguments go to `retnet generate`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
"$root/build/bin/retnet" generate --model "$root/examples/kjv-retnet" -p "And God said," -n 96 --seed 1 "$@"
