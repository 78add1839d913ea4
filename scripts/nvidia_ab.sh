#!/usr/bin/env bash
# One call on the NVIDIA machine that checks a build there and times it against others in the
# same call: the selftest and test_greedy of build A on the GPU (and test_greedy of each build of
# B, whose kernels may differ), then, in turn and in ROUNDS
# rounds (default 2, so that drift within the call shows), each build of A and B and each of
# SETTINGS on build A: decoding batch 1, 8 and 32 of torchscale-1.3b, batch 1 and 32 of 6.7B, and
# a 2048-token prefill of 1.3B; then a table of tokens/s by run and one of each build's mean over
# its rounds against A's (A~N: A under a setting). Before the timings, the launch
# probe's prefetch modes on A's bin/launch_chain. Results in $OUT/ab (default OUT
# /tmp/retnet-ab): results.jsonl (each line starting with its run), log.txt, selftest.txt,
# test_greedy.txt, launch_chain_pf0.txt and launch_chain_pf16.txt.
#   through `device`, carry [build-gpu/A, build-gpu/B..., .gpu] (trees from
#   scripts/build_variants.sh: tile variants, or an older commit's tree from a worktree):
#     A=build-gpu/main B="build-gpu/base build-gpu/other" bash scripts/nvidia_ab.sh
#   SETTINGS: environment assignments for build A, separated by ';', each a run of its own
#   (labelled A~1, A~2, ... in the table), e.g.
#     SETTINGS="RETNET_WORK_GROUP=32;RETNET_WORK_GROUP=128"
#   LOCAL=1 runs it on this machine's default device with the tiny preset (a dry run).
set -u
a=${A:?A: the build tree to check and time}; b=${B:-}
out=${OUT:-/tmp/retnet-ab}/ab
mkdir -p "$out"
rm -f "$out/results.jsonl" "$out/log.txt"
if [ -z "${LOCAL:-}" ]; then . scripts/nvidia_env.sh; fi
export RETNET_PRESET_DIR=${RETNET_PRESET_DIR:-$PWD/models/presets}
small=${LOCAL:+tiny}
t0=$SECONDS
failures=0
step() { echo "== [$((SECONDS - t0)) s] $*" | tee -a "$out/log.txt"; }
in_build() { local dir=$1; shift; LD_LIBRARY_PATH=$PWD/$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"; }
check_in() {  # check_in DIR NAME COMMAND...: a test of the build in DIR, its output in NAME.txt
  local dir=$1 name=$2; shift 2; step "$name"
  in_build "$dir" timeout 300 "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  tail -1 "$out/$name.txt" | tee -a "$out/log.txt"
  [ $rc -eq 0 ] || { echo "!! $name exit $rc" | tee -a "$out/log.txt"; failures=$((failures + 1)); }
}
check() { check_in "$a" "$@"; }  # check NAME COMMAND...: a test of build A
bench() {  # bench DIR SETTING TAG ARGS...: one `retnet bench --json` run, each line tagged
  local dir=$1 setting=$2 tag=$3; shift 3; step "$tag${setting:+ ($setting)}: retnet bench $*"
  in_build "$dir" env ${setting:+"$setting"} timeout "${STEP_LIMIT:-120}" "$dir/bin/retnet" bench --json \
    --precision auto --no-ceilings "$@" 2>> "$out/log.txt" | sed "s|^{|{\"run\":\"$tag\",|" >> "$out/results.jsonl"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failures=$((failures + 1))
}
{ date -u; in_build "$a" "$a/bin/retnet" devices; } >> "$out/log.txt" 2>&1
check selftest "$a/bin/retnet" selftest
check test_greedy "$a/tests/test_greedy"
# Each build of B decodes correctly on the GPU too (a few seconds each): its kernels may differ.
for dir in $b; do
  [ -x "$dir/tests/test_greedy" ] && check_in "$dir" "test_greedy_$(basename "$dir")" "$dir/tests/test_greedy"
done
# The launch probe of build A (tools/probes/launch_chain.c): a launch per product, and the same
# asking each next product's weights into L2 before its loads or after its sums (all of them,
# then at most 16 MiB); launch_chain_pf*.txt.
if [ -x "$a/bin/launch_chain" ]; then
  for cap in 0 16; do
    check "launch_chain_pf$cap" "$a/bin/launch_chain" ${LOCAL:+--layers 1} --reps 5 \
      --modes launches,prefetch,pf-end --prefetch-mb "$cap"
  done
fi
runs=()  # "dir|setting|label"
for dir in "$a" $b; do runs+=("$dir||$(basename "$dir")"); done
IFS=';' read -r -a settings <<< "${SETTINGS:-}"
for i in "${!settings[@]}"; do
  runs+=("$a|${settings[$i]}|$(basename "$a")~$((i + 1))")
  echo "$(basename "$a")~$((i + 1)): ${settings[$i]}" | tee -a "$out/log.txt"
done
for round in $(seq "${ROUNDS:-2}"); do
  for run in "${runs[@]}"; do
    IFS='|' read -r dir setting label <<< "$run"
    bench "$dir" "$setting" "$label $round" --preset "${small:-torchscale-1.3b}" -p 0 -n 128 --batch 1,8,32 -r 2
    bench "$dir" "$setting" "$label $round" --preset "${small:-torchscale-6.7b}" -p 0 -n 64 --batch 1,32 -r 2
    bench "$dir" "$setting" "$label $round" --preset "${small:-torchscale-1.3b}" -p 2048 -n 0 -r 2
  done
done
python3 - "$out/results.jsonl" "$(basename "$a")" <<'PY' | tee -a "$out/log.txt"
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("test", "")[:2] in ("tg", "pp"):
        rows.setdefault((r["model"], r["test"][:2], r["batch"]), {})[r["run"]] = r["tokens_per_s"]
runs = sorted({run for v in rows.values() for run in v})
print("| model | test | batch | " + " | ".join(runs) + " |")
print("| --- | --- | --- |" + " --- |" * len(runs))
for (model, test, batch), v in sorted(rows.items()):
    print(f"| {model} | {test} | {batch} | " + " | ".join(f"{v[r]:,.1f}" if r in v else "-" for r in runs) + " |")
# Each build's mean over its rounds against A's (the first build): what decides a default.
first = sys.argv[2]
builds = sorted({run.rsplit(" ", 1)[0] for run in runs}, key=lambda b: (b != first, b))
def mean(v, build):
    got = [t for run, t in v.items() if run.rsplit(" ", 1)[0] == build]
    return sum(got) / len(got) if got else None
print()
print("| model | test | batch | " + " | ".join(f"{b} / {first}" for b in builds[1:]) + " |")
print("| --- | --- | --- |" + " --- |" * (len(builds) - 1))
for (model, test, batch), v in sorted(rows.items()):
    base = mean(v, first)
    cells = [f"{mean(v, b) / base:.3f}x" if base and mean(v, b) else "-" for b in builds[1:]]
    print(f"| {model} | {test} | {batch} | " + " | ".join(cells) + " |")
PY
echo "$failures failed"
[ "$failures" -eq 0 ]
