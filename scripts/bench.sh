#!/usr/bin/env bash
# The benchmarks behind docs/BENCHMARKS.md: `retnet bench` over the shape presets, as JSON
# Lines in $OUT/bench/results.jsonl (default OUT /tmp/retnet-bench), the runs' profiles and
# progress in log.txt beside it, then the decode-time-against-context plot when matplotlib is
# there (else: python3 tools/plot_bench.py results.jsonl -o decode_vs_context.png).
#   on the H200 (through `device`, carry [build, .gpu]):  bash scripts/bench.sh --nvidia
#   on this machine's default device, small shapes:       bash scripts/bench.sh --small
#   quantized weights against F16 on the GPU:              bash scripts/bench.sh --quant
#   the matrix engines against PyTorch in the same call:    PEER_DIR=DIR bash scripts/bench.sh --engines
#     (DIR holds shared/bench's peer_graph.py; it runs with and without --compile after retnet
#     bench, and tools/engine_table.py turns both into $OUT/bench/engines.md)
set -u
out=${OUT:-/tmp/retnet-bench}/bench
mkdir -p "$out"
rm -f "$out/results.jsonl" "$out/log.txt" "$out/peers.jsonl"
retnet=${RETNET:-./build/bin/retnet}  # another build: RETNET=DIR/bin/retnet
case "${1:-}" in
  --nvidia) . scripts/nvidia_env.sh; small=0 ;;
  --quant) . scripts/nvidia_env.sh; small=2 ;;
  --engines) . scripts/nvidia_env.sh; small=3 ;;
  --small) small=1 ;;
  *) echo "usage: bash scripts/bench.sh --nvidia | --small | --quant | --engines" >&2; exit 2 ;;
esac
failures=0
bench() {  # bench NAME ARGS...: one `retnet bench --json` run
  local name=$1; shift
  echo "== $name: retnet bench $*"
  local t0=$SECONDS
  echo "== $name: retnet bench $*" >> "$out/log.txt"
  timeout "${STEP_LIMIT:-400}" "$retnet" bench --json "$@" >> "$out/results.jsonl" 2>> "$out/log.txt"
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || { failures=$((failures + 1)); tail -5 "$out/log.txt"; }
}
{ date -u; "$retnet" devices; } > "$out/log.txt" 2>&1
if [ "$small" = 3 ]; then
  peers=${PEER_DIR:-../shared/bench}
  [ -f "$peers/peer_graph.py" ] || { echo "no $peers/peer_graph.py: set PEER_DIR" >&2; exit 2; }
  bench ts-1.3b-auto --preset torchscale-1.3b --precision auto -p 2048 -n 128 --batch 1,8,32 -r 3
  bench ts-6.7b-auto --preset torchscale-6.7b --precision auto -p 2048 -n 64 --batch 1,32 -r 2
  bench ts-1.3b-f32 --preset torchscale-1.3b --precision f32 -p 2048 -n 128 --batch 1,32 -r 2 --no-ceilings
  for flag in "" --compile; do
    echo "== peer_graph.py $flag"
    timeout "${PEER_LIMIT:-420}" python3 "$peers/peer_graph.py" $flag torchscale-1.3b torchscale-6.7b \
      >> "$out/peers.jsonl" 2>> "$out/log.txt" || { failures=$((failures + 1)); tail -3 "$out/log.txt"; }
  done
  python3 tools/engine_table.py "$out/results.jsonl" "$out/peers.jsonl" | tee "$out/engines.md"
elif [ "$small" = 2 ]; then
  for preset in torchscale-1.3b torchscale-2.7b torchscale-6.7b; do
    for w in f16 q8 q4; do
      bench "$preset-$w" --preset "$preset" --weights "$w" -p 512 -n 128 --batch 1,8 -r 3
    done
  done
elif [ "$small" = 1 ]; then
  bench tiny --preset tiny -p 128 -n 64 --batch 1,8 -r 3 --profile --startup
  bench tiny-context --preset tiny -p 0 -n 32 --context 128,1024,4096 -r 3 --no-ceilings
else
  bench ts-1.3b --preset torchscale-1.3b -p 2048 -n 128 --batch 1,8,32 -r 5 --profile
  bench ts-6.7b --preset torchscale-6.7b -p 2048 -n 128 -r 3 --profile
  bench ts-1.3b-context --preset torchscale-1.3b -p 0 -n 64 --context 128,1024,4096,16384,32768 -r 3
  bench ts-2.7b --preset torchscale-2.7b -p 2048 -n 128 -r 3
  bench fla-1.3b --preset fla-1.3b -p 2048 -n 128 -r 3
  bench ts-1.3b-bf16 --preset torchscale-1.3b --weights bf16 -p 0 -n 128 -r 3 --no-ceilings
  bench tiny-startup --preset tiny -p 0 -n 0 --startup --no-ceilings
fi
if [ "$small" -lt 3 ] && python3 -c 'import matplotlib' 2>/dev/null; then  # --engines has no context runs to plot
  python3 tools/plot_bench.py "$out/results.jsonl" -o "$out/decode_vs_context.png" || failures=$((failures + 1))
fi
echo "$failures failed"
[ "$failures" -eq 0 ]
