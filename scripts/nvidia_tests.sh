#!/usr/bin/env bash
# Runs the device tests from a build tree on a machine whose OpenCL driver is NVIDIA's and
# where nothing else is installed (the OpenCL runtime libraries travel as .deb files in
# .gpu/debs, unpacked by scripts/nvidia_env.sh). Used through the `device` tool:  run with carry [build, .gpu]:
#   bash scripts/nvidia_tests.sh
set -u
. scripts/nvidia_env.sh
failures=0
run() { echo "== $*"; "$@" || { echo "!! failed: $*"; failures=$((failures + 1)); }; }
run ./build/bin/retnet devices
run ./build/tests/test_ref
run ./build/tests/test_ops
run ./build/tests/test_model
while read -r name tokens; do
  for mode in parallel chunkwise recurrent; do
    run tests/torchscale_logits.sh ./build/bin/retnet "tests/data/torchscale/$name" "$mode" "$tokens"
  done
done <<'LIST'
gelu-tied 5,17,3,42,96,0,63,28,71,11,50
swish-scaled 1,2,88,40,40,7,96,33,0,59,14
postnorm-deepnorm 90,4,4,61,23,0,96,12,37,80,9
LIST
run tests/cli.sh ./build/bin/retnet tests/data/torchscale/swish-scaled
run tests/check_greedy.sh ./build/bin/retnet examples/kjv-retnet
run ./build/bin/retnet generate --model examples/kjv-retnet -p "And God said," -n 64 --seed 1
run tests/fla_1_3b.sh ./build/bin/retnet ./build/retnet-mkmodel
echo "$failures failed"
[ "$failures" -eq 0 ]
