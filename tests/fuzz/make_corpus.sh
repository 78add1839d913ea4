#!/usr/bin/env bash
# Regenerates the seed corpus in tests/fuzz/corpus/<target>/: a few small valid inputs and a
# few invalid ones per target. The safetensors, config and tokenizer seeds are written here
# (python3); the checkpoint index and the state files come from the tiny model the targets
# themselves write, so the fuzz targets must be built first (scripts/fuzz.sh does it):
#   tests/fuzz/make_corpus.sh [build-fuzz]
# The state seeds need an OpenCL device; without one they are left as they are.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build-fuzz}
corpus=$here/corpus
mkdir -p "$corpus"/{fuzz_safetensors,fuzz_checkpoint,fuzz_config,fuzz_tokenizer,fuzz_state}
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$HOME/.cache/pocl}
export LSAN_OPTIONS=suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}
artifacts=$(mktemp -d)   # anything libFuzzer writes (it should write nothing) stays out of the tree
trap 'rm -rf "$artifacts"' EXIT

python3 - "$corpus" <<'PY'
import json, struct, sys, os
corpus = sys.argv[1]

def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)

# ---- safetensors ---------------------------------------------------------------------------
def st(entries, meta={"format": "pt"}, pad=True, extra=b""):
    """entries: (name, dtype, shape, raw bytes); laid out in order."""
    header, data, off = {}, b"", 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data + extra

f32 = lambda *v: struct.pack("<%df" % len(v), *v)
put("fuzz_safetensors", "valid-f32.safetensors",
    st([("a.weight", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)), ("b", "F32", [2], f32(-1, 0.5))]))
put("fuzz_safetensors", "valid-f16-bf16.safetensors",
    st([("h", "F16", [2, 2], struct.pack("<4H", 0x3c00, 0x4000, 0x7c00, 0x8001)),
        ("bf", "BF16", [3], struct.pack("<3H", 0x3f80, 0x7fc0, 0xff80))]))
put("fuzz_safetensors", "valid-scalar-empty.safetensors",
    st([("s", "F32", [], f32(3.5)), ("e", "F32", [0, 4], b""), ("r4", "BF16", [1, 1, 1, 2], b"\0\0\0\0")],
       meta=None))
put("fuzz_safetensors", "invalid-header-past-end.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
put("fuzz_safetensors", "invalid-truncated.safetensors",
    st([("a", "F32", [4], f32(1, 2, 3, 4))])[:-5])
bad = st([("a", "F32", [2], f32(1, 2)), ("b", "F32", [2], f32(3, 4))]).replace(b"[8,16]", b"[4,12]")
put("fuzz_safetensors", "invalid-overlap.safetensors", bad)
put("fuzz_safetensors", "invalid-dtype.safetensors", st([("a", "F64", [1], b"\0" * 8)]))
put("fuzz_safetensors", "invalid-duplicate-key.safetensors",
    struct.pack("<Q", 88) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'[:88] + f32(1))

# ---- config.json ---------------------------------------------------------------------------
torchscale = {"decoder_embed_dim": 16, "decoder_value_embed_dim": 32, "decoder_retention_heads": 2,
              "decoder_ffn_embed_dim": 32, "decoder_layers": 2, "vocab_size": 64,
              "recurrent_chunk_size": 4, "activation_fn": "gelu", "layernorm_eps": 1e-6,
              "no_scale_embedding": True, "layernorm_embedding": False,
              "share_decoder_input_output_embed": False, "decoder_normalize_before": True,
              "deepnorm": False, "model_type": "retnet"}
put("fuzz_config", "valid-torchscale.json", json.dumps(torchscale, indent=2))
syncdoth = dict(torchscale, activation_fn="swish", tie_word_embeddings=True,
                share_decoder_input_output_embed=True, use_lm_decay=True, use_glu=True, subln=True,
                forward_impl="chunkwise", architectures=["RetNetForCausalLM"])
put("fuzz_config", "valid-syncdoth.json", json.dumps(syncdoth, indent=2))
fla = {"model_type": "retnet", "hidden_size": 64, "num_hidden_layers": 2, "num_heads": 4,
       "num_kv_heads": 2, "expand_k": 1, "expand_v": 2, "hidden_ratio": 2, "intermediate_size": None,
       "hidden_act": "swish", "vocab_size": 100, "norm_eps": 1e-6, "tie_word_embeddings": False,
       "use_output_gate": True, "elementwise_affine": True, "feature_map": None, "attn": None,
       "fuse_norm": True, "torch_dtype": "bfloat16"}
put("fuzz_config", "valid-fla.json", json.dumps(fla, indent=2))
put("fuzz_config", "valid-defaults.json", '{"vocab_size": 100, "multiway": false}')
put("fuzz_config", "invalid-heads.json", json.dumps(dict(torchscale, decoder_retention_heads=3)))
put("fuzz_config", "invalid-no-vocab.json", json.dumps({k: v for k, v in torchscale.items() if k != "vocab_size"}))
put("fuzz_config", "invalid-mixed-families.json", json.dumps(dict(torchscale, hidden_size=64)))
put("fuzz_config", "invalid-number.json", '{"vocab_size": 1e400, "decoder_layers": 2.5}')
put("fuzz_config", "invalid-syntax.json", '{"vocab_size": 10,, "a": "\\u0000"')

# ---- tokenizer.json ------------------------------------------------------------------------
U = "\u2581"
sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for i in range(256):
    sp_vocab["<0x%02X>" % i] = 3 + i
for p in [U, "a", "b", "c", "d", U + "a", "ab", U + "ab", "cd", "abcd", U + "abcd", U + U, "\u00e9"]:
    sp_vocab[p] = len(sp_vocab)
sp = {"version": "1.0",
      "added_tokens": [{"id": 0, "content": "<unk>", "special": True},
                       {"id": 1, "content": "<s>", "special": True},
                       {"id": 2, "content": "</s>", "special": True}],
      "normalizer": {"type": "Sequence", "normalizers": [
          {"type": "Prepend", "prepend": U},
          {"type": "Replace", "pattern": {"String": " "}, "content": U}]},
      "pre_tokenizer": None,
      "post_processor": {"type": "TemplateProcessing",
                         "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}}],
                         "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
      "decoder": {"type": "Sequence", "decoders": [
          {"type": "Replace", "pattern": {"String": U}, "content": " "},
          {"type": "ByteFallback"}, {"type": "Fuse"},
          {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
      "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": True,
                "byte_fallback": True, "vocab": sp_vocab,
                "merges": [U + " a", "a b", "c d", U + "a b", "ab cd", U + "ab cd", U + " " + U]}}
put("fuzz_tokenizer", "valid-sentencepiece.json", json.dumps(sp, ensure_ascii=False))
sp_meta = json.loads(json.dumps(sp))
sp_meta["normalizer"] = None
sp_meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": U, "prepend_scheme": "first", "split": False}
sp_meta["decoder"] = {"type": "Metaspace", "replacement": U, "prepend_scheme": "first", "split": False}
sp_meta["model"]["merges"] = [[a, b] for a, b in (m.split(" ") for m in sp["model"]["merges"])]
put("fuzz_tokenizer", "valid-metaspace.json", json.dumps(sp_meta, ensure_ascii=False))

def byte_cp(b):
    keep = lambda k: 0x21 <= k <= 0x7e or 0xa1 <= k <= 0xac or k >= 0xae
    return b if keep(b) else 256 + sum(1 for k in range(b) if not keep(k))
bl_vocab = {chr(byte_cp(i)): i for i in range(256)}
for w in ["he", "ll", "hell", "hello", "\u0120w", "\u0120wo", "\u0120\u0120"]:
    bl_vocab[w] = len(bl_vocab)
llama3_split = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex":
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
bl = {"added_tokens": [{"id": 300, "content": "<|endoftext|>", "special": True},
                       {"id": 301, "content": "<|end|>", "special": True, "lstrip": True, "rstrip": True}],
      "normalizer": None, "pre_tokenizer": llama3_split,
      "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False},
      "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True},
      "model": {"type": "BPE", "ignore_merges": True, "vocab": bl_vocab,
                "merges": ["h e", "l l", "he ll", "hell o", "\u0120 w", "\u0120w o", "\u0120 \u0120"]}}
put("fuzz_tokenizer", "valid-bytelevel-llama3.json", json.dumps(bl, ensure_ascii=False))
bl2 = json.loads(json.dumps(bl))
bl2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
put("fuzz_tokenizer", "valid-bytelevel-gpt2.json", json.dumps(bl2, ensure_ascii=False))
bad = json.loads(json.dumps(sp)); bad["model"]["merges"] = []
put("fuzz_tokenizer", "invalid-no-merges.json", json.dumps(bad, ensure_ascii=False))
bad = json.loads(json.dumps(sp)); bad["model"]["type"] = "WordPiece"
put("fuzz_tokenizer", "invalid-model-type.json", json.dumps(bad, ensure_ascii=False))
bad = json.loads(json.dumps(bl)); bad["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"
put("fuzz_tokenizer", "invalid-regex.json", json.dumps(bad, ensure_ascii=False))
put("fuzz_tokenizer", "invalid-utf8.json", b'{"model":{"type":"BPE","vocab":{"\xff":0},"merges":["a b"]}}')
PY

# ---- checkpoint index and state files: from the targets' own tiny model ----------------------
if [ -x "$build/tests/fuzz/fuzz_checkpoint" ]; then
  RN_FUZZ_CHECKPOINT_SEEDS="$corpus/fuzz_checkpoint" "$build/tests/fuzz/fuzz_checkpoint" -runs=0 -artifact_prefix="$artifacts/" >/dev/null 2>&1 ||
    { echo "make_corpus: fuzz_checkpoint failed" >&2; exit 1; }
  python3 - "$corpus/fuzz_checkpoint" <<'PY'
import json, sys, os
d = sys.argv[1]
index = json.load(open(os.path.join(d, "valid-index.json")))
wm = index["weight_map"]
names = sorted(wm)
def put(name, obj):
    with open(os.path.join(d, name), "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
put("invalid-missing-tensor.json", dict(index, weight_map={k: wm[k] for k in names[1:]}))
put("invalid-wrong-shard.json", dict(index, weight_map=dict(wm, **{names[0]: next(v for v in wm.values() if v != wm[names[0]])})))
put("invalid-path-shard.json", dict(index, weight_map=dict(wm, **{names[0]: "../" + wm[names[0]]})))
put("invalid-missing-shard.json", dict(index, weight_map=dict(wm, **{names[0]: "model-00003-of-00002.safetensors"})))
put("invalid-not-object.json", {"weight_map": ["a", "b"]})
put("invalid-syntax.json", '{"weight_map": {"a": "b",}}')
PY
else
  echo "make_corpus: $build/tests/fuzz/fuzz_checkpoint not built; checkpoint seeds left as they are" >&2
fi
if [ -x "$build/tests/fuzz/fuzz_state" ]; then
  RN_FUZZ_STATE_SEEDS="$corpus/fuzz_state" "$build/tests/fuzz/fuzz_state" -runs=0 -artifact_prefix="$artifacts/" >/dev/null 2>&1 ||
    echo "make_corpus: fuzz_state could not write states (no OpenCL device?)" >&2
  printf 'RNSTATE1' > "$corpus/fuzz_state/invalid-header-only.state"
  printf 'not a state file at all' > "$corpus/fuzz_state/invalid-magic.state"
else
  echo "make_corpus: $build/tests/fuzz/fuzz_state not built; state seeds left as they are" >&2
fi
du -sh "$corpus"
