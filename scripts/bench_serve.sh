#!/usr/bin/env bash
# The server's figures in docs/BENCHMARKS.md: `retnet serve` driven by tools/serve_load.py and
# tools/serve_resume.py, as JSON Lines on standard output (progress on standard error).
#   1. aggregate tokens/s and time between tokens for 1, 8, 32 and 64 concurrent streams;
#   2. the longest stall a running stream sees while a 4096-token prompt is prefilled;
#   3. resuming a 4k- and a 32k-token conversation parked on the device, in host memory and on
#      disk, against re-reading its history as a prompt;
#   4. `retnet bench --batch 32` in the same run, for the batch's own rate.
# Prompts are random token ids (works with --preset shapes, which have no tokenizer).
#   bash scripts/bench_serve.sh --model examples/kjv-retnet            # PoCL here
#   bash scripts/bench_serve.sh --nvidia --preset torchscale-1.3b      # through `device`
#   SERVE_ARGS="--precision f16" bash scripts/bench_serve.sh ...       # options for the server
#                                                   # and for the `retnet bench` beside it
set -euo pipefail
cd "$(dirname "$0")/.."
retnet=${RETNET:-./build/bin/retnet}
if [ "${1:-}" = --nvidia ]; then . scripts/nvidia_env.sh; shift; fi
[ $# -eq 2 ] || { echo "usage: bash scripts/bench_serve.sh [--nvidia] (--model DIR | --preset NAME)" >&2; exit 2; }
model=("$1" "$2")
tokens=${TOKENS:-128}       # generated per request in the stream figures
histories=${HISTORIES:-"4096 32768"}
read -r -a extra <<<"${SERVE_ARGS:-}"
py=/usr/bin/python3; [ -x $py ] || py=python3
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT

start() {  # start ARGS...: a server on a free port, in $url
  "$retnet" serve "${model[@]}" --port 0 --parallel 64 --queue 4096 --max-prompt-tokens 40000 \
    --state-dir "$work/state" "${extra[@]}" "$@" 2> "$work/serve.log" &
  pid=$!
  for _ in $(seq 1 1200); do
    port=$(sed -n 's|^retnet: serving .* on http://.*:\([0-9][0-9]*\)/ (.*|\1|p' "$work/serve.log")
    [ -n "$port" ] && break
    kill -0 $pid 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  url=http://127.0.0.1:$port
  echo "== server: $* (port $port)" >&2
}
stop() { kill -TERM $pid; wait $pid; pid=""; }
tag() { sed "s/^{/{\"case\": \"$1\", \"served\": \"${model[1]##*/}\", \"args\": \"${SERVE_ARGS:-}\", /"; }

mkdir -p "$work/state"
# Where the server's steps went so far (sampling on the host, the batch's decoding call, the
# steps whose tokens the device chose).
step_metrics() {
  $py - "$url" >&2 <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics").read().decode()
print("   ", " ".join(l for l in text.splitlines() if l.startswith(("retnet_step", "retnet_greedy"))))
PY
}
start
for c in 1 8 32 64; do
  echo "== $c concurrent streams" >&2
  $py tools/serve_load.py --url "$url" --clients $c --requests $((c < 4 ? 4 : 2 * c)) --max-tokens $tokens \
    --prompt-ids 16 --json --check | tag streams
  step_metrics
done
echo "== 32 greedy streams (temperature 0, repeat penalty 1: the tokens chosen on the device)" >&2
$py tools/serve_load.py --url "$url" --clients 32 --requests 64 --max-tokens $tokens --prompt-ids 16 --greedy \
  --json --check | tag greedy-streams
step_metrics
echo "== a 4096-token prompt arriving while 8 streams run" >&2
$py tools/serve_load.py --url "$url" --clients 8 --requests 8 --max-tokens $((8 * tokens)) --prompt-ids 16 \
  --inject-prompt 4096 --json --check | tag stall
for h in $histories; do
  echo "== a conversation of $h tokens: made, resumed from the device, re-read" >&2
  $py tools/serve_resume.py --url "$url" --session "h$h" --history $h --create --turns 3 --reread --label device |
    tag resume
done
stop
start --session-memory 0
for h in $histories; do
  echo "== resumed from host memory (the first turn reads the file)" >&2
  $py tools/serve_resume.py --url "$url" --session "h$h" --history $h --turns 4 --label host | tag resume
done
stop
start --session-memory 0 --host-memory 0
for h in $histories; do
  echo "== resumed from disk" >&2
  $py tools/serve_resume.py --url "$url" --session "h$h" --history $h --turns 3 --label disk | tag resume
done
stop
ls -l "$work/state" >&2
echo "== retnet bench --batch 32" >&2
bench_args=("${model[@]}" "${extra[@]}")
"$retnet" bench "${bench_args[@]}" -p 16 -n $tokens --batch 1,32 --json 2>/dev/null | tag bench
