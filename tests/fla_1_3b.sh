#!/usr/bin/env bash
# usage: fla_1_3b.sh RETNET MKMODEL
# A checkpoint with fla-hub/retnet-1.3B-100B's exact config.json, tensor names, shapes and
# dtype (bf16; random weights written now, 2.7 GB, deleted afterwards) loads, reports its
# 1.35B parameters, and runs forward passes on the default device: two tokens recurrently
# (matrix-vector kernels reading bf16) and three in the chunkwise form (bf16 widened for
# CLBlast). retnet itself refuses non-finite logits (RN_ERR_NUMERIC).
set -euo pipefail
retnet=$1 mkmodel=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/retnet-fla13b-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$mkmodel" --preset fla-1.3b --out "$tmp/m" >/dev/null
info=$("$retnet" info --model "$tmp/m")
echo "$info" | grep -E "family|parameters|device weights"
grep -qE "^family +fla$" <<<"$info" || { echo "FAIL: family is not fla"; exit 1; }
grep -qE "^parameters +1351727104 " <<<"$info" || { echo "FAIL: not 1,351,727,104 parameters"; exit 1; }
for run in "recurrent 1,2" "chunkwise 1,2,3"; do
  set -- $run
  "$retnet" logits --model "$tmp/m" --tokens "$2" --mode "$1" --output "$tmp/out.json"
  python3 - "$tmp/out.json" "$1" <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1]))
rows = d["logits"]
assert all(len(r) == 32000 for r in rows), "rows of 32000 logits"
assert all(math.isfinite(x) for r in rows for x in r), "finite logits"
print(f"{sys.argv[2]}: {len(rows)} rows of 32000 finite logits")
PY
done
