#!/usr/bin/env bash
# usage: torchscale_logits.sh RETNET FIXTURE_DIR MODE TOKENS
# Runs `retnet logits` on a checkpoint exported from torchscale and compares with the logits
# torchscale itself produced (tests/data/torchscale/README.md). Tolerance 1e-4 of the largest
# logit: the issue's bar; fp32 OpenCL against fp32 torch measures about 3e-7.
set -euo pipefail
retnet=$1 fixture=$2 mode=$3 tokens=$4
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$retnet" logits --model "$fixture" --tokens "$tokens" --mode "$mode" --chunk-size 4 --output "$out"
python3 "$(dirname "$0")/check_logits.py" "$fixture/expected-$mode.json" "$out" --tol 1e-4
