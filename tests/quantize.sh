#!/usr/bin/env bash
# usage: quantize.sh RETNET KJV_MODEL [MKMODEL]
# `retnet quantize`: the shipped model written as q8 and q4 checkpoints, which load without
# quantizing again and give bit for bit the logits and tokens of the original loaded with
# --weights q8|q4 (the same quantization), in every retention form; info names the scheme;
# other --weights on a quantized checkpoint, a quantized input and the model's own directory as
# the output are refused with their status; a failed write leaves nothing behind. With
# retnet-mkmodel: the same equality for an untied torchscale model, a sharded f16 syncdoth one
# an fla one with a fused gate_proj and grouped keys (the stacked buffers' row offsets), and one
# whose rows are not whole blocks of 32.
set -u
retnet=$1 model=$2 mkmodel=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

source "$(dirname "$0")/expect.sh"  # expect NAME WANTED_RC PATTERN -- command...

# same NAME FILE_A FILE_B: byte-identical, non-empty outputs.
same() {
  if [ -s "$2" ] && cmp -s "$2" "$3"; then echo "  pass  $1"; else
    echo "  FAIL  $1: $2 and $3 differ"; failures=$((failures + 1)); fi
}

expect "help" 0 "retnet_cl.quantization" -- "$retnet" quantize --help
expect "help listed" 0 "quantize --model DIR --out DIR --weights q8|q4" -- "$retnet" --help
expect "no --out" 2 "--out DIR is required" -- "$retnet" quantize --model "$model" --weights q8
expect "bad weights" 2 "--weights must be q8 or q4, not 'f16'" -- \
  "$retnet" quantize --model "$model" --out "$tmp/x" --weights f16
expect "missing model" 1 "RN_ERR_IO" -- "$retnet" quantize --model "$tmp/nowhere" --out "$tmp/x" --weights q8
expect "into its own directory" 1 "RN_ERR_INVALID_ARGUMENT.*the model's own" -- \
  "$retnet" quantize --model "$model" --out "$model/." --weights q8

tokens=5,17,3,42,96,0,63,28,71,11,50,400,2,900
for w in q8 q4; do
  expect "quantize $w" 0 "wrote" -- "$retnet" quantize --model "$model" --out "$tmp/$w/nested" --weights $w
  q="$tmp/$w/nested"
  for f in config.json tokenizer.json tokenizer_config.json; do same "$w: $f copied" "$model/$f" "$q/$f"; done
  if ls -a "$q" | grep -q '\.tmp-'; then echo "  FAIL  $w: a temporary file left"; failures=$((failures + 1)); fi
  scheme=$([ $w = q8 ] && echo Q8_0 || echo Q4_0)
  expect "$w: info names $scheme" 0 "file tensors .*, $scheme" -- "$retnet" info --model "$q"
  expect "$w: info device storage" 0 "matrices as $scheme" -- "$retnet" info --model "$q"
  for mode in parallel chunkwise recurrent; do
    "$retnet" logits --model "$model" --weights $w --tokens $tokens --mode $mode --chunk-size 4 \
      --output "$tmp/a.json" 2>/dev/null
    "$retnet" logits --model "$q" --tokens $tokens --mode $mode --chunk-size 4 --output "$tmp/b.json" 2>/dev/null
    same "$w: $mode logits = --weights $w on the original" "$tmp/a.json" "$tmp/b.json"
  done
  "$retnet" logits --model "$q" --weights $w --tokens $tokens --mode parallel --output "$tmp/c.json" 2>/dev/null
  "$retnet" logits --model "$q" --tokens $tokens --mode parallel --output "$tmp/b.json" 2>/dev/null
  same "$w: --weights $w on its own checkpoint" "$tmp/b.json" "$tmp/c.json"
  "$retnet" generate --model "$model" --weights $w --temp 0 -n 32 --tokens $tokens >"$tmp/a.txt" 2>/dev/null
  "$retnet" generate --model "$q" --temp 0 -n 32 --tokens $tokens >"$tmp/b.txt" 2>/dev/null
  same "$w: 32 greedy tokens = --weights $w on the original" "$tmp/a.txt" "$tmp/b.txt"
  "$retnet" generate --model "$model" --weights $w --temp 0 -n 24 -p "And God said," >"$tmp/a.txt" 2>/dev/null
  "$retnet" generate --model "$q" --temp 0 -n 24 -p "And God said," >"$tmp/b.txt" 2>/dev/null
  same "$w: greedy text from a prompt" "$tmp/a.txt" "$tmp/b.txt"
  other=$([ $w = q8 ] && echo q4 || echo q8)
  for ow in f16 $other; do
    expect "$w: --weights $ow refused" 1 "RN_ERR_UNSUPPORTED_CONFIG.*quantized" -- \
      "$retnet" info --model "$q" --weights $ow
  done
  expect "$w: quantizing it again refused" 1 "RN_ERR_UNSUPPORTED_CONFIG.*already quantized" -- \
    "$retnet" quantize --model "$q" --out "$tmp/again" --weights q4
done
q8_bytes=$(stat -c %s "$tmp/q8/nested/model.safetensors") q4_bytes=$(stat -c %s "$tmp/q4/nested/model.safetensors")
if [ "$q4_bytes" -lt "$q8_bytes" ] && [ "$q8_bytes" -lt "$(stat -c %s "$model/model.safetensors")" ]; then
  echo "  pass  sizes: q4 $q4_bytes < q8 $q8_bytes < original"; else
  echo "  FAIL  sizes: q4 $q4_bytes, q8 $q8_bytes"; failures=$((failures + 1)); fi

# Overwriting a quantized checkpoint in place with the other scheme; the result is the new one.
expect "overwrite with q4" 0 "wrote" -- "$retnet" quantize --model "$model" --out "$tmp/q8/nested" --weights q4
expect "overwritten: Q4_0" 0 "file tensors .*, Q4_0" -- "$retnet" info --model "$tmp/q8/nested"

# An index beside the output would be read instead of the new model.safetensors: refused.
mkdir -p "$tmp/indexed" && echo '{}' >"$tmp/indexed/model.safetensors.index.json"
expect "output with an index" 1 "RN_ERR_INVALID_ARGUMENT.*model.safetensors.index.json" -- \
  "$retnet" quantize --model "$model" --out "$tmp/indexed" --weights q8
[ ! -e "$tmp/indexed/model.safetensors" ] && [ ! -e "$tmp/indexed/config.json" ] &&
  echo "  pass  nothing written on refusal" || { echo "  FAIL  files written on refusal"; failures=$((failures + 1)); }

if [ -n "$mkmodel" ]; then
  # Rows that are not whole blocks (Dv and F of 104, as torchscale-2.7b's 4280): out_proj and
  # fc2 are stored flat, their blocks running across rows.
  cat >"$tmp/across.json" <<'JSON'
{"decoder_embed_dim": 64, "decoder_value_embed_dim": 104, "decoder_retention_heads": 2,
 "decoder_ffn_embed_dim": 104, "decoder_layers": 2, "vocab_size": 256, "activation_fn": "swish",
 "no_scale_embedding": true, "share_decoder_input_output_embed": false, "recurrent_chunk_size": 4}
JSON
  while read -r name args; do
    # shellcheck disable=SC2086
    "$mkmodel" --out "$tmp/$name" ${args//TMP/$tmp} >/dev/null || { echo "  FAIL  mkmodel $name"; failures=$((failures + 1)); continue; }
    for w in q8 q4; do
      expect "$name: quantize $w" 0 "wrote" -- "$retnet" quantize --model "$tmp/$name" --out "$tmp/$name-$w" --weights $w
      for mode in parallel recurrent; do
        "$retnet" logits --model "$tmp/$name" --weights $w --tokens 1,200,3,77,4,9 --mode $mode --output "$tmp/a.json" 2>/dev/null
        "$retnet" logits --model "$tmp/$name-$w" --tokens 1,200,3,77,4,9 --mode $mode --output "$tmp/b.json" 2>/dev/null
        same "$name $w: $mode logits = --weights $w on the original" "$tmp/a.json" "$tmp/b.json"
      done
    done
  done <<'MODELS'
torchscale-untied --family torchscale --seed 3
syncdoth-f16-sharded --family syncdoth --dtype f16 --shards 2 --seed 4
fla-fused-gqa --family fla --dtype bf16 --fused-mlp --kv-heads 1 --seed 5
blocks-across-rows --config TMP/across.json --dtype f16 --seed 6
MODELS
fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
