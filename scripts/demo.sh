#!/usr/bin/env bash
# The main job: set up, then generate from a small model shipped in the repo on the default
# OpenCL device (the first GPU, else PoCL on the CPU). Until the tokenizer lands, the prompt and
# the continuation are token ids.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
model="$root/tests/data/torchscale/swish-scaled"
"$root/build/retnet" info --model "$model"
"$root/build/retnet" generate --model "$model" --tokens 1,2,88,40,40,7 -n 24 "$@"
