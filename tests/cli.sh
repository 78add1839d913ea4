#!/usr/bin/env bash
# usage: cli.sh RETNET FIXTURE_DIR
# The retnet command as a user meets it: help, exit codes and messages on bad input, and the
# compiled-program cache (created, reused, and a corrupted entry ignored and rebuilt).
set -u
retnet=$1 model=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

source "$(dirname "$0")/expect.sh"  # expect NAME WANTED_RC PATTERN -- command...

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
# RETNET_BUILD_OPTIONS: the options reach the compiler (a bad one is its named error), the log
# comes on stderr, and such a build neither reads nor writes the cache.
entries=$(ls "$tmp/cache"/*.clbin 2>/dev/null | wc -l)
expect "build options: the log" 0 'build log (options ".* -w")' -- env RETNET_BUILD_OPTIONS=-w "$retnet" info --model "$model"
expect "build options: a bad one" 1 "RN_ERR_BUILD.*-no-such-option" -- \
  env RETNET_BUILD_OPTIONS=-no-such-option "$retnet" info --model "$model"
if [ "$(ls "$tmp/cache"/*.clbin 2>/dev/null | wc -l)" -eq "$entries" ]; then echo "  pass  build options bypass the cache"; else
  echo "  FAIL  a build with options wrote the cache"; failures=$((failures + 1)); fi

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

# Every command that opens a model, on each broken model: a named error and exit 1, never a
# crash (an abort or a signal is an exit status above 128).
mkdir -p "$tmp/bad/noconfig" "$tmp/bad/truncated" "$tmp/bad/relu"
cp "$model/model.safetensors" "$tmp/bad/noconfig/"
cp "$model"/* "$tmp/bad/truncated/"
truncate -s $(( $(stat -c %s "$model/model.safetensors") / 2 )) "$tmp/bad/truncated/model.safetensors"
cp "$model"/* "$tmp/bad/relu/"
sed -i 's/"activation_fn": "swish"/"activation_fn": "relu"/' "$tmp/bad/relu/config.json"
# (with a tokenizer, so that text commands get as far as the model)
kjv=$(cd "$(dirname "$0")/../examples/kjv-retnet" && pwd)
for d in noconfig truncated relu; do cp "$kjv/tokenizer.json" "$kjv/tokenizer_config.json" "$tmp/bad/$d/"; done
for bad in "nowhere:RN_ERR_IO" "noconfig:RN_ERR_IO.*config.json" "truncated:RN_ERR_TRUNCATED" \
           "relu:RN_ERR_UNSUPPORTED_CONFIG.*relu"; do
  dir=$tmp/bad/${bad%%:*} pattern=${bad#*:}
  expect "info, ${bad%%:*}" 1 "$pattern" -- "$retnet" info --model "$dir"
  expect "logits, ${bad%%:*}" 1 "$pattern" -- "$retnet" logits --model "$dir" --tokens 1,2 --mode parallel
  expect "generate ids, ${bad%%:*}" 1 "$pattern" -- "$retnet" generate --model "$dir" --tokens 1,2 -n 2
  expect "generate text, ${bad%%:*}" 1 "$pattern" -- "$retnet" generate --model "$dir" -p hi -n 2
  expect "bench, ${bad%%:*}" 1 "$pattern" -- "$retnet" bench --model "$dir" -p 4 -n 2 -r 1 --no-ceilings
  printf 'some text\n' > "$tmp/ppl.txt"
  expect "perplexity, ${bad%%:*}" 1 "$pattern" -- "$retnet" perplexity --model "$dir" -f "$tmp/ppl.txt"
done
expect "tokenize without tokenizer.json" 1 "RN_ERR_IO.*tokenizer.json" -- "$retnet" tokenize --model "$model" --text hi

# The command line itself.
expect "unknown option last" 2 "unknown option '--bogus'" -- "$retnet" info --model "$model" --bogus
expect "option of another command" 2 "info does not take --temp" -- "$retnet" info --model "$model" --temp 1
expect "known option without value" 2 "option --model needs a value" -- "$retnet" info --model
expect "--version" 0 "^retnet [0-9]*\.[0-9]*\.[0-9]* (library [0-9]*\.[0-9]*\.[0-9]*)$" -- "$retnet" --version
expect "help command" 0 "commands:" -- "$retnet" help
expect "help bench" 0 "usage: retnet bench" -- "$retnet" help bench
expect "bench refuses chained steps that read logits" 2 "give one of them" -- \
  "$retnet" bench --model "$model" -n 2 --read-logits --chain-steps
expect "unknown preset lists the presets" 2 "the presets in .*tiny" -- "$retnet" bench --preset no-such-shape
expect "bench --no-ceilings JSON" 0 '"roofline":null' -- \
  "$retnet" bench --model "$model" -p 4 -n 2 -r 1 --no-ceilings --json
expect "--state-save into a missing folder" 1 "cannot write into '$tmp/no/such'" -- \
  "$retnet" generate --model "$model" --tokens $tokens -n 100000 --state-save "$tmp/no/such/s.state"
expect "warm-up reported apart" 0 "kernel warm-up [0-9.]* s; prefill" -- \
  "$retnet" generate --model "$model" --tokens $tokens -n 2
selftest_err=$("$retnet" selftest 2>&1 >/dev/null)
if [ -z "$selftest_err" ]; then echo "  pass  selftest quiet on standard error"; else
  echo "  FAIL  selftest wrote to standard error: $selftest_err"; failures=$((failures + 1)); fi

# A prompt typed on a terminal ends at the first Ctrl-D (a pseudo-terminal stands in for one).
if /usr/bin/python3 - "$retnet" "$kjv" <<'PY'
import os, pty, select, signal, sys, time
retnet, kjv = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(retnet, [retnet, "generate", "--model", kjv, "-n", "4", "--temp", "0"])
out = b""
def pump(seconds):
    global out
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            out += chunk
pump(1.0)
os.write(fd, b"And God said,\n")
pump(0.5)
os.write(fd, b"\x04")  # one Ctrl-D, at the start of a line
deadline = time.time() + 60
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    pump(0.2)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    sys.exit("still waiting for input after one Ctrl-D: " + out.decode(errors="replace"))
if b"reading the prompt from standard input" not in out or os.WEXITSTATUS(status) != 0:
    sys.exit("exit %d, output: %s" % (os.WEXITSTATUS(status), out.decode(errors="replace")))
PY
then echo "  pass  one Ctrl-D ends a prompt typed on a terminal"; else
  echo "  FAIL  Ctrl-D on a terminal"; failures=$((failures + 1)); fi

# Ctrl-C in a long prompt stops it (exit 130), here fed token by token (about a minute of work
# on PoCL; stopped after 3 s).
for i in $(seq 2000); do printf 'And God said, Let there be light: and there was light. '; done > "$tmp/long.txt"
"$retnet" generate --model "$kjv" -f "$tmp/long.txt" --mode recurrent -n 4 >/dev/null 2>"$tmp/int2.txt" &
pid=$!
sleep 3
kill -INT $pid
start=$(date +%s)
wait $pid
rc=$?
if [ $rc -eq 130 ] && grep -q "stopped by Ctrl-C in the prompt" "$tmp/int2.txt" && [ $(( $(date +%s) - start )) -le 10 ]; then
  echo "  pass  Ctrl-C stops a long prompt"; else
  echo "  FAIL  Ctrl-C in a prompt: exit $rc"; cat "$tmp/int2.txt"; failures=$((failures + 1)); fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
