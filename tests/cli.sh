#!/usr/bin/env bash
# usage: cli.sh RETNET FIXTURE_DIR
# The retnet command as a user meets it: help, exit codes and messages on bad input, and the
# compiled-program cache (created, reused, and a corrupted entry ignored and rebuilt).
set -u
retnet=$1 model=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect NAME WANTED_RC PATTERN -- command...: the exit code and a pattern in stdout+stderr.
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$want" ] && grep -q -- "$pattern" <<<"$out"; then
    echo "  pass  $name"
  else
    echo "  FAIL  $name: exit $rc (wanted $want), pattern '$pattern' in:"
    sed 's/^/        /' <<<"$out" | head -20
    failures=$((failures + 1))
  fi
}

tokens=1,2,88,40,40,7
expect "help" 0 "logits --model DIR --tokens IDS" -- "$retnet" --help
expect "no command" 2 "usage" -- "$retnet"
expect "unknown command" 2 "unknown command 'frobnicate'" -- "$retnet" frobnicate
expect "unknown option" 2 "unknown option '--bogus'" -- "$retnet" logits --bogus 1
expect "bad mode" 2 "--mode must be" -- "$retnet" logits --model "$model" --tokens 1 --mode sideways
expect "bad tokens" 2 "--tokens must be" -- "$retnet" logits --model "$model" --tokens 1,,2 --mode parallel
expect "bad chunk size" 2 "--chunk-size must be" -- "$retnet" logits --model "$model" --tokens 1 --mode chunkwise --chunk-size 0
expect "token outside vocabulary" 1 "RN_ERR_INVALID_ARGUMENT.*outside the vocabulary" -- \
  "$retnet" logits --model "$model" --tokens 1,97 --mode parallel
expect "missing model" 1 "RN_ERR_IO" -- "$retnet" info --model "$tmp/nowhere"
expect "unknown device" 1 "matches no OpenCL device; the devices are" -- \
  "$retnet" info --model "$model" --device no-such-device-anywhere
expect "devices" 0 "OpenCL C" -- "$retnet" devices
expect "info" 0 "parameters" -- "$retnet" info --model "$model"
expect "generate 5" 0 "^[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*$" -- "$retnet" generate --model "$model" --tokens $tokens -n 5
expect "bad temperature" 2 "--temp must be" -- "$retnet" generate --model "$model" --tokens 1 --temp -1
expect "bad top-p" 2 "--top-p must be" -- "$retnet" generate --model "$model" --tokens 1 --top-p 1.5
expect "two prompts" 2 "give one prompt" -- "$retnet" generate --model "$model" --tokens 1 -p hi
expect "text without a tokenizer" 1 "RN_ERR_IO.*tokenizer.json" -- "$retnet" generate --model "$model" -p hello

# A sampled conversation saved after 12 tokens and resumed for 8 more gives the 20 tokens of
# one uninterrupted run (the draw depends on seed and position, the state carries the rest).
straight=$("$retnet" generate --model "$model" --tokens $tokens -n 20 --seed 5 2>/dev/null)
first=$("$retnet" generate --model "$model" --tokens $tokens -n 12 --seed 5 --state-save "$tmp/s.state" 2>/dev/null)
rest=$("$retnet" generate --model "$model" --state-load "$tmp/s.state" -n 8 --seed 5 2>/dev/null </dev/null)
if [ -n "$straight" ] && [ "$first,$rest" = "$straight" ]; then echo "  pass  saved and resumed = uninterrupted"; else
  echo "  FAIL  resumed run differs: '$first,$rest' vs '$straight'"; failures=$((failures + 1)); fi
other=$(dirname "$model")/gelu-tied
expect "state of another model" 1 "RN_ERR_STATE_FILE.*another model" -- \
  "$retnet" generate --model "$other" --state-load "$tmp/s.state" --tokens 1 -n 1
printf 'RNSTATE1 but not really' > "$tmp/bad.state"
expect "corrupt state file" 1 "RN_ERR_STATE_FILE" -- "$retnet" generate --model "$model" --state-load "$tmp/bad.state" --tokens 1 -n 1
expect "unwritable output" 1 "cannot write" -- \
  "$retnet" logits --model "$model" --tokens $tokens --mode parallel --output "$tmp/no/such/dir/out.json"
[ -e "$tmp/no/such/dir/out.json" ] && { echo "  FAIL  a failed write left a file"; failures=$((failures + 1)); }

# Program cache, forced on (PoCL is left to its own cache by default).
export RETNET_PROGRAM_CACHE=1 RETNET_CACHE_DIR="$tmp/cache"
"$retnet" logits --model "$model" --tokens $tokens --mode chunkwise --chunk-size 4 --output "$tmp/a.json" 2>/dev/null
entries=$(ls "$tmp/cache"/*.clbin 2>/dev/null | wc -l)
if [ "$entries" -eq 1 ]; then echo "  pass  program cache entry written"; else
  echo "  FAIL  expected one cache entry, found $entries"; failures=$((failures + 1)); fi
entry=$(ls "$tmp/cache"/*.clbin 2>/dev/null | head -1)
if [ -n "$entry" ]; then
  size=$(stat -c %s "$entry")
  truncate -s $((size / 2)) "$entry"
  expect "truncated cache entry ignored" 0 "" -- \
    "$retnet" logits --model "$model" --tokens $tokens --mode chunkwise --chunk-size 4 --output "$tmp/b.json"
  if cmp -s "$tmp/a.json" "$tmp/b.json"; then echo "  pass  same logits after rebuilding"; else
    echo "  FAIL  logits differ after rebuilding"; failures=$((failures + 1)); fi
  if [ "$(stat -c %s "$entry")" -eq "$size" ]; then echo "  pass  cache entry rewritten"; else
    echo "  FAIL  cache entry not rewritten"; failures=$((failures + 1)); fi
  printf 'garbage' > "$entry"
  expect "garbage cache entry ignored" 0 "" -- \
    "$retnet" logits --model "$model" --tokens $tokens --mode chunkwise --chunk-size 4 --output "$tmp/c.json"
fi
expect "--no-cache" 0 "" -- "$retnet" logits --model "$model" --tokens $tokens --mode parallel --no-cache --output "$tmp/d.json"

# Text: the shipped demo model has a tokenizer.json.
kjv=$(cd "$(dirname "$0")/../examples/kjv-retnet" && pwd)
ids=$("$retnet" tokenize --model "$kjv" --text "And God said, Let there be light." 2>&1)
expect "tokenize" 0 "^\[[0-9, ]*\]$" -- "$retnet" tokenize --model "$kjv" --text "And God said, Let there be light."
expect "decode round trip" 0 "^And God said, Let there be light.$" -- \
  "$retnet" tokenize --model "$kjv" --decode "$(tr -d '[] ' <<<"$ids")"
expect "decode outside vocabulary" 1 "RN_ERR_INVALID_ARGUMENT" -- "$retnet" tokenize --model "$kjv" --decode 5000
expect "generate text" 0 "[a-z][a-z]* [a-z][a-z]*" -- "$retnet" generate --model "$kjv" -p "In the beginning" -n 24 --seed 2
out=$("$retnet" generate --model "$kjv" -p "And God said," -n 200 --temp 0 --stop "LORD" 2>/dev/null)
if grep -q "LORD" <<<"$out" && [ "$(grep -o LORD <<<"$out" | wc -l)" -eq 1 ]; then echo "  pass  --stop ends at the first match"; else
  echo "  FAIL  --stop: '$out'"; failures=$((failures + 1)); fi
turns=$(printf 'And God said,\nAnd Moses said,\n' | "$retnet" generate --model "$kjv" -i -n 8 --temp 0 2>/dev/null | grep -c .)
if [ "$turns" -eq 2 ]; then echo "  pass  -i answers each turn"; else echo "  FAIL  -i gave $turns answers"; failures=$((failures + 1)); fi
# Ctrl-C stops the generation; the program still ends cleanly and reports.
"$retnet" generate --model "$kjv" -p "And God said," -n 1000000 --temp 0 --repeat-penalty 1 >/dev/null 2>"$tmp/int.txt" &
pid=$!
sleep 3
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 0 ] && grep -q "stopped by Ctrl-C" "$tmp/int.txt"; then echo "  pass  Ctrl-C stops generation"; else
  echo "  FAIL  Ctrl-C: exit $rc"; cat "$tmp/int.txt"; failures=$((failures + 1)); fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
