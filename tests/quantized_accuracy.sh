#!/usr/bin/env bash
# usage: quantized_accuracy.sh RETNET MODEL_DIR
# What Q8_0 and Q4_0 weights cost the demo model, against its own F32 weights, on the held-out
# chapters (MODEL_DIR/heldout.txt) with the issue's bounds:
#   perplexity (retnet perplexity): q8 within 0.5 % of f32, q4 within 5 %;
#   top-1 agreement with f32 over the first 400 tokens (every position's argmax): q8 >= 0.98,
#   q4 >= 0.85 (measured 0.995 and 0.92: the bounds leave room for a different libm, not for a
#   broken kernel, which agrees on a few percent of tokens at best);
#   the logits' relative RMS difference from f32: q8 <= 0.01, q4 <= 0.1 (measured 0.003 and
#   0.049; an 8-bit code's rounding is 1/254 of a block's range, a 4-bit one's 1/16).
set -u
retnet=$1 model=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for w in f32 q8 q4; do
  "$retnet" perplexity --model "$model" -f "$model/heldout.txt" --weights "$w" --json > "$tmp/ppl-$w.json" 2>/dev/null ||
    { echo "FAIL: perplexity --weights $w"; exit 1; }
done
head -c 3000 "$model/heldout.txt" > "$tmp/text.txt"
ids=$("$retnet" tokenize --model "$model" -f "$tmp/text.txt" | tr -d '[] ' | cut -d, -f1-400)
for w in f32 q8 q4; do
  "$retnet" logits --model "$model" --weights "$w" --tokens "$ids" --mode chunkwise --output "$tmp/logits-$w.json" ||
    { echo "FAIL: logits --weights $w"; exit 1; }
done
python3 - "$tmp" <<'PY'
import json, math, sys
tmp = sys.argv[1]
ppl = {w: json.load(open(f"{tmp}/ppl-{w}.json"))["ppl"] for w in ("f32", "q8", "q4")}
rows = {w: json.load(open(f"{tmp}/logits-{w}.json"))["logits"] for w in ("f32", "q8", "q4")}
argmax = lambda r: max(range(len(r)), key=r.__getitem__)
bounds = {"q8": (0.005, 0.98, 0.01), "q4": (0.05, 0.85, 0.1)}
failed = 0
base = rows["f32"]
scale = math.sqrt(sum(x * x for r in base for x in r) / sum(len(r) for r in base))
for w, (ppl_rel, top1_min, rms_max) in bounds.items():
    rise = ppl[w] / ppl["f32"] - 1
    agree = sum(argmax(a) == argmax(b) for a, b in zip(rows[w], base)) / len(base)
    rms = math.sqrt(sum((x - y) ** 2 for a, b in zip(rows[w], base) for x, y in zip(a, b)) / sum(len(r) for r in base)) / scale
    ok = rise <= ppl_rel and agree >= top1_min and rms <= rms_max
    failed += not ok
    print(f"{'pass' if ok else 'FAIL'}  {w}: perplexity {ppl[w]:.4f} vs f32 {ppl['f32']:.4f} ({100 * rise:+.3f} %, bound "
          f"{100 * ppl_rel:.1f} %), top-1 agreement {agree:.4f} (>= {top1_min}), logits RMS difference {rms:.4f} (<= {rms_max})")
sys.exit(1 if failed else 0)
PY
