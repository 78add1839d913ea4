#!/usr/bin/env bash
# faults.sh RETNET_CLI RETNET_MKMODEL TEST_FAULTS
#
# (a) Device out of memory, made reproducible with PoCL's POCL_MEMORY_LIMIT (whole GB; 1 gives a
#     1024 MiB device with 256 MiB per allocation): a 1.1 GB model (every tensor under 256 MiB,
#     so it is the total that does not fit) makes `retnet info` fail with RN_ERR_DEVICE_MEMORY and
#     a message with the MiB needed and available, and test_faults shows the same context then
#     loads and runs a small model and ends with 0 bytes of device memory.
# (b) No OpenCL platform: OCL_ICD_VENDORS pointing at an empty directory makes `retnet devices`
#     and `retnet info` exit 1 with RN_ERR_NO_PLATFORM and a message saying what to install,
#     without a crash.
set -u
cli=$1 mkmodel=$2 test_faults=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
ok() { printf '  %-70s pass\n' "$1"; }
bad() { printf '  %-70s FAIL\n' "$1"; fail=1; }

# ---- (a) device out of memory --------------------------------------------------------------
# D 2048, 4 layers, V 32000, F32: 1.13 GB; the largest tensor (the embedding) is 250 MiB.
cat > "$work/big.json" <<'JSON'
{"model_type": "retnet", "vocab_size": 32000, "decoder_embed_dim": 2048, "decoder_value_embed_dim": 2048,
 "decoder_retention_heads": 8, "decoder_ffn_embed_dim": 4096, "decoder_layers": 4, "recurrent_chunk_size": 16,
 "activation_fn": "swish", "layernorm_eps": 1e-06, "no_scale_embedding": true, "layernorm_embedding": false,
 "share_decoder_input_output_embed": false, "decoder_normalize_before": true, "deepnorm": false}
JSON
"$mkmodel" --out "$work/big" --config "$work/big.json" > "$work/mk.txt" 2>&1 || { cat "$work/mk.txt"; exit 1; }
tail -1 "$work/mk.txt"
"$mkmodel" --out "$work/small" > /dev/null 2>&1 || { echo "cannot write the small model"; exit 1; }

echo "device out of memory (POCL_MEMORY_LIMIT=1):"
export POCL_MEMORY_LIMIT=1
export RETNET_DEVICE=${RETNET_DEVICE:-pthread}  # PoCL's CPU device: the one the limit applies to
out=$("$cli" info --model "$work/big" 2>&1); rc=$?
echo "    $out"
[ $rc -eq 1 ] && ok "retnet info exits 1" || bad "retnet info exits 1 (got $rc)"
grep -q "RN_ERR_DEVICE_MEMORY" <<<"$out" && ok "names RN_ERR_DEVICE_MEMORY" || bad "names RN_ERR_DEVICE_MEMORY"
grep -Eq "need[s]? [0-9.]+ MiB" <<<"$out" && grep -Eq "has [0-9.]+ MiB" <<<"$out" \
  && ok "says MiB needed and MiB available" || bad "says MiB needed and MiB available"
out=$("$cli" info --model "$work/small" 2>&1); rc=$?
[ $rc -eq 0 ] && ok "the small model fits the same limited device" || { echo "$out"; bad "the small model fits"; }
"$test_faults" "$work/big" "$work/small" || fail=1
# A 3 GiB device: the torchscale-2.7b shape (random weights made on the device) decodes in Q4_0
# (1.6 GiB) and is refused in F16 (5.3 GiB) before anything is allocated. Its allocations held
# to 64 MiB, below the 88 MiB of its Q4_0 embedding (64000 x 2560): that matrix is held in pieces.
export POCL_MEMORY_LIMIT=3
out=$(RETNET_MAX_ALLOC_MIB=64 "$cli" bench --preset torchscale-2.7b --weights q4 -p 0 -n 2 -r 1 --no-ceilings --json 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q '"test":"tg".*"weights":"Q4_0"' <<<"$out" &&
  ok "2.7B in Q4_0 decodes on a 3 GiB device allowing 64 MiB per allocation" ||
  { echo "$out" | tail -3; bad "2.7B in Q4_0 decodes on a 3 GiB device allowing 64 MiB per allocation (exit $rc)"; }
out=$("$cli" bench --preset torchscale-2.7b --weights f16 -p 0 -n 2 -r 1 --no-ceilings 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "RN_ERR_DEVICE_MEMORY" <<<"$out" && ok "2.7B in F16 refused there: RN_ERR_DEVICE_MEMORY" ||
  { echo "$out" | tail -3; bad "2.7B in F16 refused (exit $rc)"; }
unset POCL_MEMORY_LIMIT

# ---- (b) no OpenCL platform ------------------------------------------------------------------
echo "no OpenCL platform (OCL_ICD_VENDORS=<empty directory>):"
mkdir "$work/no-vendors"
for cmd in "devices" "info --model $work/small"; do
  out=$(OCL_ICD_VENDORS="$work/no-vendors" OCL_ICD_FILENAMES= $cli $cmd 2>&1); rc=$?
  echo "    retnet $cmd: $out" | head -3
  [ $rc -eq 1 ] && ok "retnet ${cmd%% *}: exits 1 (no crash)" || bad "retnet ${cmd%% *}: exits 1 (got $rc)"
  grep -q "RN_ERR_NO_PLATFORM" <<<"$out" && grep -qi "no OpenCL platform" <<<"$out" \
    && ok "retnet ${cmd%% *}: RN_ERR_NO_PLATFORM, 'no OpenCL platform'" \
    || bad "retnet ${cmd%% *}: RN_ERR_NO_PLATFORM, 'no OpenCL platform'"
done

[ $fail -eq 0 ] && echo "ok: faults" || echo "FAIL: faults"
exit $fail
