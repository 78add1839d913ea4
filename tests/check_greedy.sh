#!/bin/sh
# check_greedy.sh RETNET MODEL_DIR
#
# Greedy decoding in `retnet` must give the token ids that the training script's own model
# gave. MODEL_DIR/expected-greedy.json holds {"prompt", "prompt_ids", "generated_ids"}, written
# by tools/train_demo.py from the exported weights in the recurrent form (one token at a time
# from an empty state). This runs
#   RETNET generate --model MODEL_DIR --tokens PROMPT_IDS -n len(generated_ids) --mode recurrent
# (plus --temp 0 --repeat-penalty 1 when this retnet has those options) and compares the
# comma-separated ids it prints on stdout. The expected ids must not contain the end-of-text
# id before the last one, since retnet stops there. Exit 0 on a match, 1 otherwise
# (both sequences are printed), 2 on a usage error.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 RETNET MODEL_DIR" >&2
    exit 2
fi
retnet=$1
model=$2
expected_json=$model/expected-greedy.json
if [ ! -f "$expected_json" ]; then
    echo "check_greedy: $expected_json not found" >&2
    exit 2
fi

# prompt ids (comma-joined), the number of ids to generate, and the expected ids
fields=$(python3 - "$expected_json" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    e = json.load(f)
p, g = e["prompt_ids"], e["generated_ids"]
assert p and g and all(isinstance(i, int) and i >= 0 for i in p + g), "bad ids in " + sys.argv[1]
print(",".join(map(str, p)), len(g), ",".join(map(str, g)))
EOF
) || { echo "check_greedy: cannot read $expected_json" >&2; exit 2; }
set -- $fields
prompt_ids=$1
count=$2
expected=$3

# Greedy and nothing else: a `retnet` with sampling options defaults to temperature 0.8 and a
# repetition penalty, so turn both off (an older `retnet` without them is greedy already).
sampling=
help=$("$retnet" --help 2>&1)
case $help in *--temp*) sampling="$sampling --temp 0" ;; esac
case $help in *--repeat-penalty*) sampling="$sampling --repeat-penalty 1" ;; esac

got=$("$retnet" generate --model "$model" --tokens "$prompt_ids" -n "$count" --mode recurrent $sampling)
rc=$?
got=$(printf '%s\n' "$got" | tail -n 1 | tr -d ' \r')

echo "prompt ids: $prompt_ids"
echo "expected:   $expected"
echo "retnet:     $got"
if [ $rc -ne 0 ]; then
    echo "check_greedy: FAIL: retnet exited with status $rc"
    exit 1
fi
if [ "$got" = "$expected" ]; then
    echo "check_greedy: OK, $count ids match"
    exit 0
fi
# the first position where they differ
python3 - "$expected" "$got" <<'EOF'
import sys
e, g = sys.argv[1].split(","), sys.argv[2].split(",")
i = next((i for i in range(min(len(e), len(g))) if e[i] != g[i]), min(len(e), len(g)))
print("check_greedy: FAIL: first difference at generated id %d (of %d expected, %d produced)" % (i, len(e), len(g)))
EOF
exit 1
