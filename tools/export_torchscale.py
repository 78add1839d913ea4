#!/usr/bin/env python3
"""Export golden logits from Microsoft torchscale's own RetNetDecoder.

Builds torchscale's RetNetConfig(**config) and RetNetDecoder with random (seeded) weights,
runs it in fp32 eval mode in the three retention modes and writes, into --out:

  config.json                the RetNetConfig arguments (torchscale field names)
  model.safetensors          the RetNetDecoder state dict, fp32, buffers included
  expected-parallel.json     {"mode", "tokens", "logits": [[V floats] per position]}
  expected-chunkwise.json    same, chunkwise_recurrent=True, recurrent_chunk_size=--chunk
  expected-recurrent.json    same, fairseq incremental decoding (whole prefix each step)

torchscale's forward is used unchanged. Only its imports of fairscale, timm and einops (not
used on the RetNet inference path) are replaced by stubs that raise if ever called.

Usage:
  /usr/bin/python3 tools/export_torchscale.py --torchscale /tmp/torchscale --out DIR \
      --config '{"decoder_embed_dim": 64, ...}' --tokens 5,17,3 --chunk 4 --seed 1 \
      [--qk-gain 8] [--v-gain 0.03] [--norm-jitter 0.1]

--config is a JSON object or the path of a file holding one; vocab_size is required.
--qk-gain X multiplies every q_proj and k_proj weight by X (so that the parallel form's
normaliser d_n = clamp(sum|P|, 1, 5e4) rises above 1). --v-gain X multiplies every v_proj
weight by X: small retention outputs make the group norm's eps, and so each mode's own
per-(token, head) scalar, visible in the logits. --norm-jitter J multiplies every RMSNorm
weight (all ones at torchscale's init) by 1 + J*u, u uniform in [-1, 1], so a runtime that
drops a norm weight cannot pass.
"""

import argparse
import copy
import json
import math
import os
import struct
import sys
import types


def stub_unused_imports():
    """fairscale, timm and einops are imported by torchscale modules but not used on the
    RetNetDecoder inference path. Register stand-ins that fail loudly if called."""

    def unavailable(name):
        def fn(*args, **kwargs):
            raise RuntimeError(name + " is a stub in export_torchscale.py")
        return fn

    def module(name, **attrs):
        if name in sys.modules:
            return sys.modules[name]
        m = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(m, key, value)
        sys.modules[name] = m
        return m

    try:
        import fairscale.nn  # noqa: F401
    except ImportError:
        fs = module("fairscale")
        fs.nn = module("fairscale.nn",
                       checkpoint_wrapper=unavailable("fairscale.nn.checkpoint_wrapper"),
                       wrap=unavailable("fairscale.nn.wrap"))
    try:
        import timm.models.layers  # noqa: F401
    except ImportError:
        timm = module("timm")
        timm.models = module("timm.models")
        timm.models.layers = module("timm.models.layers",
                                    drop_path=unavailable("timm.models.layers.drop_path"))
    try:
        import einops  # noqa: F401
    except ImportError:
        module("einops", rearrange=unavailable("einops.rearrange"))


# Fields written explicitly to config.json (read back from the built RetNetConfig so that
# torchscale's defaults become explicit), in addition to every argument that was passed.
CONFIG_FIELDS = [
    "decoder_embed_dim", "decoder_value_embed_dim", "decoder_retention_heads",
    "decoder_ffn_embed_dim", "decoder_layers", "vocab_size", "activation_fn",
    "layernorm_eps", "no_scale_embedding", "layernorm_embedding",
    "share_decoder_input_output_embed", "decoder_normalize_before", "deepnorm",
    "recurrent_chunk_size",
]


def load_config_arg(text):
    if os.path.isfile(text):
        with open(text, "r", encoding="utf-8") as f:
            text = f.read()
    cfg = json.loads(text)
    if not isinstance(cfg, dict):
        raise SystemExit("--config must be a JSON object")
    return cfg


def write_safetensors(path, tensors):
    """tensors: list of (name, torch.Tensor). Writes fp32 little-endian safetensors."""
    import numpy as np

    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, t in tensors:
        a = t.detach().to("cpu").contiguous().float().numpy().astype("<f4", copy=False)
        data = a.tobytes(order="C")
        header[name] = {
            "dtype": "F32",
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((-len(hdr)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for data in blobs:
            f.write(data)


def write_expected(path, mode, tokens, logits):
    rows = logits.tolist()
    for row in rows:
        for v in row:
            if not math.isfinite(v):
                raise SystemExit("non-finite logit in %s mode" % mode)
    # One row per line; repr of the fp32 value widened to double (exact, round-trips).
    lines = ['{"mode": %s,' % json.dumps(mode),
             ' "tokens": %s,' % json.dumps(tokens),
             ' "logits": [']
    for i, row in enumerate(rows):
        text = "[" + ", ".join(repr(float(v)) for v in row) + "]"
        lines.append("  " + text + ("," if i + 1 < len(rows) else ""))
    lines.append(']}')
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def parallel_clamp_stats(torch, model, tokens_t, theta_shift):
    """Counts (layer, head, position) where the parallel normaliser d_n exceeds 1. Diagnostic
    only: recomputes torchscale's qk_mat from each retention module's input."""
    captured = []
    hooks = [layer.retention.register_forward_hook(
        lambda mod, inp, out: captured.append((mod, inp[0].detach())))
        for layer in model.layers]
    with torch.no_grad():
        model(tokens_t)
    for h in hooks:
        h.remove()
    T = tokens_t.size(1)
    (sin, cos), mask = model.retnet_rel_pos(T)
    active = total = 0
    dmax = 0.0
    with torch.no_grad():
        for mod, x in captured:
            B = x.size(0)
            q = mod.q_proj(x)
            k = mod.k_proj(x) * mod.scaling
            q = q.view(B, T, mod.num_heads, mod.key_dim).transpose(1, 2)
            k = k.view(B, T, mod.num_heads, mod.key_dim).transpose(1, 2)
            qr, kr = theta_shift(q, sin, cos), theta_shift(k, sin, cos)
            d = ((qr @ kr.transpose(-1, -2)) * mask).abs().sum(-1)
            active += int((d > 1).sum())
            total += d.numel()
            dmax = max(dmax, float(d.max()))
    return active, total, dmax


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torchscale", required=True, help="torchscale work tree")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--config", required=True, help="RetNetConfig kwargs: JSON or a file")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--chunk", type=int, required=True, help="chunkwise recurrent_chunk_size")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--qk-gain", type=float, default=1.0)
    ap.add_argument("--norm-jitter", type=float, default=0.0)
    ap.add_argument("--v-gain", type=float, default=1.0)
    args = ap.parse_args()

    sys.path.insert(0, os.path.abspath(args.torchscale))
    stub_unused_imports()
    import torch
    import torch.nn as nn
    from torchscale.architecture.config import RetNetConfig
    from torchscale.architecture.retnet import RetNetDecoder
    from torchscale.component.multiscale_retention import theta_shift

    cfg_args = load_config_arg(args.config)
    if "chunkwise_recurrent" in cfg_args:
        raise SystemExit("leave chunkwise_recurrent out of --config; the script sets it")
    cfg_args["recurrent_chunk_size"] = args.chunk
    V = cfg_args.get("vocab_size", -1)
    if not isinstance(V, int) or V <= 0:
        raise SystemExit("--config needs vocab_size > 0")
    tokens = [int(t) for t in args.tokens.split(",") if t.strip() != ""]
    if not tokens or any(t < 0 or t >= V for t in tokens):
        raise SystemExit("--tokens must be non-empty ids in [0, vocab_size)")
    if args.chunk <= 0:
        raise SystemExit("--chunk must be positive")
    if len(tokens) % args.chunk == 0:
        print("warning: token count is a multiple of --chunk; chunk padding is not exercised",
              file=sys.stderr)

    torch.manual_seed(args.seed)
    torch.set_grad_enabled(False)

    config = RetNetConfig(**copy.deepcopy(cfg_args), chunkwise_recurrent=False)
    D = config.decoder_embed_dim
    embed = nn.Embedding(V, D)
    model = RetNetDecoder(config, embed_tokens=embed).float().eval()

    gen = torch.Generator().manual_seed(args.seed + 1)
    if args.qk_gain != 1.0:
        for layer in model.layers:
            layer.retention.q_proj.weight.mul_(args.qk_gain)
            layer.retention.k_proj.weight.mul_(args.qk_gain)
    if args.v_gain != 1.0:
        for layer in model.layers:
            layer.retention.v_proj.weight.mul_(args.v_gain)
    if args.norm_jitter != 0.0:
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight") or name == "layernorm_embedding.weight":
                u = torch.rand(p.shape, generator=gen) * 2 - 1
                p.mul_(1 + args.norm_jitter * u)

    state = model.state_dict()
    tied = model.output_projection.weight.data_ptr() == model.embed_tokens.weight.data_ptr()

    tokens_t = torch.tensor([tokens], dtype=torch.long)
    T = len(tokens)

    # parallel
    logits_par = model(tokens_t)[0][0]

    # chunkwise: a model built from a config copy with chunkwise_recurrent=True
    config_c = RetNetConfig(**copy.deepcopy(cfg_args), chunkwise_recurrent=True)
    model_c = RetNetDecoder(config_c, embed_tokens=nn.Embedding(V, D)).float().eval()
    model_c.load_state_dict(state, strict=True)
    logits_chunk = model_c(tokens_t)[0][0]

    # recurrent: fairseq convention, whole prefix each call with one shared dict
    incremental_state = {}
    rows = []
    for n in range(T):
        out = model(tokens_t[:, :n + 1], incremental_state=incremental_state)[0]
        if out.size(1) != 1:
            raise SystemExit("recurrent step returned %d rows" % out.size(1))
        rows.append(out[0, -1])
    logits_rec = torch.stack(rows)

    for name, lg in (("parallel", logits_par), ("chunkwise", logits_chunk),
                     ("recurrent", logits_rec)):
        if tuple(lg.shape) != (T, V):
            raise SystemExit("%s logits have shape %s" % (name, tuple(lg.shape)))

    os.makedirs(args.out, exist_ok=True)
    out_cfg = dict(cfg_args)
    for key in CONFIG_FIELDS:
        out_cfg[key] = getattr(config, key)
    with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(out_cfg, f, indent=2, sort_keys=True)
        f.write("\n")

    tensors = [(k, v) for k, v in state.items()
               if not (tied and k == "output_projection.weight")]
    write_safetensors(os.path.join(args.out, "model.safetensors"), tensors)

    write_expected(os.path.join(args.out, "expected-parallel.json"), "parallel", tokens,
                   logits_par)
    write_expected(os.path.join(args.out, "expected-chunkwise.json"), "chunkwise", tokens,
                   logits_chunk)
    write_expected(os.path.join(args.out, "expected-recurrent.json"), "recurrent", tokens,
                   logits_rec)

    active, total, dmax = parallel_clamp_stats(torch, model, tokens_t, theta_shift)

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max())

    print("wrote %s: %d tensors%s, T=%d, V=%d, chunk=%d" % (
        args.out, len(tensors), " (tied: output_projection.weight omitted)" if tied else "",
        T, V, args.chunk))
    print("parallel d_n > 1 at %d of %d (layer, head, position); max d_n = %.4g" % (
        active, total, dmax))
    print("relative max|diff| vs parallel: chunkwise %.3g, recurrent %.3g" % (
        rel(logits_chunk, logits_par), rel(logits_rec, logits_par)))


if __name__ == "__main__":
    main()
