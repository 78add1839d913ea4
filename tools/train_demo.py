#!/usr/bin/python3
"""Train the demo RetNet shipped in examples/kjv-retnet/.

A small RetNet language model on the King James Bible (public domain), with a byte-level BPE
tokenizer trained here, exported in torchscale's checkpoint format so that `retnet` runs it.

Everything is done by this one script, with Debian's packages only:

  apt-get install -y bible-kjv python3-torch python3-numpy python3-regex libopenblas0-openmp
  /usr/bin/python3 tools/train_demo.py --out examples/kjv-retnet

Steps:
 1. Text. Debian's bible-kjv-text ships the KJV compressed in the BRS format
    (/usr/lib/bible.data); its reader `bible` (package bible-kjv) prints verses. One
    document per chapter: the chapter's verses, one a line, without verse numbers or book
    headings. Every document starts with <|endoftext|>. Every 50th chapter (index 25 mod 50)
    is held out for the validation loss.
 2. Tokenizer. GPT-2 style byte-level BPE: the text is split with GPT-2's regex (SPLIT_REGEX
    below, the same string that goes into tokenizer.json as a `Split` pre-tokenizer), every
    piece's UTF-8 bytes are mapped to printable characters by GPT-2's byte-to-unicode table,
    and merges are learned from piece counts until the vocabulary holds --vocab entries
    (256 bytes, the merges, and <|endoftext|> as the last id). Encoding applies merges by
    rank (lowest first), which is what HF tokenizers' BPE model does, so an HF tokenizer
    reading the written tokenizer.json gives the same ids.
 3. Model. RetNet exactly as torchscale computes it (tests/ref.c is the same math in C:
    pre-norm RMSNorm, multi-scale retention with theta rotation of q and of
    k * dk^-0.5, gamma_h = 1 - 2^(-5-h), scale-free RMSNorm as group norm, swish gate, GLU
    FFN with swish on fc1, final RMSNorm, tied output projection). It is trained in the
    parallel form with the recurrent form's normalisation: o_n = R_n / sqrt(S_n) (torchscale's
    parallel form further divides by d_n = clamp(sum|P|, 1, 5e4); with the group norm after it
    the two differ only through eps, and training on the recurrent form's scalar makes the
    trained network and the recurrent decoder the same function).
 4. Export. torchscale's state dict names (RetNetDecoder with its retnet_rel_pos buffers),
    safetensors written by hand, F32 when that is at most --max-f32-mb, else F16; config.json
    with RetNetConfig field names; tokenizer.json; tokenizer_config.json.
 5. Reference. The exported (possibly F16-rounded) weights are loaded back into an fp32 model,
    and the greedy continuation of --prompt is computed in the RECURRENT form, one token at a
    time from an empty state, as torchscale's incremental decoding (and `retnet generate
    --mode recurrent`) does; the first generated id comes from the last prompt token's logits.
    Written to expected-greedy.json with the smallest top-1/top-2 logit margin. Samples
    (greedy and temperature 0.8) are written to samples.txt in --work.

Optional: --torchscale DIR loads the exported checkpoint into torchscale's own RetNetDecoder
(fairscale/timm/einops stubbed, as tools/export_torchscale.py does) and compares its recurrent
logits with this script's.
"""

import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
from collections import Counter, defaultdict

# Debian's python3-torch calls the system BLAS (libblas.so.3), which is the slow reference
# BLAS unless an optimised one is selected. When libopenblas0-openmp is installed, run this
# script against it (about 10x faster) without changing the system-wide alternative.
OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
if __name__ == "__main__" and os.path.isdir(OPENBLAS_DIR) and OPENBLAS_DIR not in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
    os.environ["LD_LIBRARY_PATH"] = ":".join(filter(None, [OPENBLAS_DIR, os.environ.get("LD_LIBRARY_PATH")]))
    os.execv(sys.executable, [sys.executable] + sys.argv)
# Other jobs share this machine's two cores: OpenMP threads that spin while waiting for a
# descheduled partner make every step several times slower. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import regex  # python3-regex: \p{L} and \p{N}, as HF tokenizers' Onig regex has them
except ImportError:  # pragma: no cover
    regex = None

EOS = "<|endoftext|>"

# GPT-2's pre-tokenizer pattern, written into tokenizer.json verbatim.
SPLIT_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def log(*args):
    print(*args, flush=True)


# ----------------------------------------------------------------------------------------
# 1. text


def read_kjv(bible_cmd):
    """Chapters of the KJV as lists of verse strings, read with the `bible` program."""
    out = subprocess.run([bible_cmd, "-l0", "Gen1:1-Rev22:21"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode("ascii")
    chapters, cur = [], None
    heading = re.compile(r"^(?:[1-3] )?[A-Z][A-Za-z ]+ \d+$")  # "Genesis 1", "1 Kings 3", "Song of Solomon 2"
    verse = re.compile(r"^\s+(\d+) (.*\S)\s*$")
    for line in out.splitlines():
        if not line.strip():
            continue
        m = verse.match(line)
        if m:
            if cur is None:
                raise SystemExit("bible output: a verse before any chapter heading: %r" % line)
            cur.append(m.group(2))
        elif heading.match(line.strip()):
            cur = []
            chapters.append(cur)
        else:
            raise SystemExit("bible output: unexpected line %r" % line)
    return chapters


# ----------------------------------------------------------------------------------------
# 2. tokenizer


def bytes_to_unicode():
    """GPT-2's table: every byte to a printable character (printable Latin-1 bytes to
    themselves, the others to 256, 257, ... in byte order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_ENC = bytes_to_unicode()
BYTE_DEC = {c: b for b, c in BYTE_ENC.items()}


def pretokenize(text):
    if regex is not None:
        return regex.findall(SPLIT_REGEX, text)
    # Without python3-regex: the same pattern with ASCII classes, exact for ASCII text only.
    if not text.isascii():
        raise SystemExit("non-ASCII text needs python3-regex")
    pat = r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"
    return re.findall(pat, text)


def to_byte_chars(piece):
    return "".join(BYTE_ENC[b] for b in piece.encode("utf-8"))


def train_bpe(piece_counts, n_merges):
    """Learns n_merges merges from {byte-char string: count}. Ties on count go to the
    lexicographically smallest pair, so the result is deterministic."""
    words = [list(w) for w in piece_counts]
    counts = list(piece_counts.values())
    pairs = Counter()
    where = defaultdict(set)
    for i, (w, c) in enumerate(zip(words, counts)):
        for p in zip(w, w[1:]):
            pairs[p] += c
            where[p].add(i)
    merges = []
    for _ in range(n_merges):
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        a, b = best
        for i in list(where[best]):
            w, c = words[i], counts[i]
            if len(w) < 2:
                continue
            new, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    new.append(a + b)
                    j += 2
                else:
                    new.append(w[j])
                    j += 1
            if len(new) == len(w):
                continue
            for p in zip(w, w[1:]):
                pairs[p] -= c
                if pairs[p] <= 0:
                    del pairs[p]
            for p in zip(new, new[1:]):
                pairs[p] += c
                where[p].add(i)
            words[i] = new
        where.pop(best, None)
        pairs.pop(best, None)
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.merges = merges
        self.ranks = {p: r for r, p in enumerate(merges)}
        # ids: the 256 byte characters in byte order, then one per merge, then <|endoftext|>
        self.vocab = {BYTE_ENC[b]: b for b in range(256)}
        for a, b in merges:
            self.vocab[a + b] = len(self.vocab)
        self.eos_id = len(self.vocab)
        self.vocab[EOS] = self.eos_id
        self.inv = {i: t for t, i in self.vocab.items()}
        self.cache = {}

    def bpe(self, chars):
        if chars in self.cache:
            return self.cache[chars]
        w = list(chars)
        while len(w) > 1:
            best, rank = None, None
            for p in zip(w, w[1:]):
                r = self.ranks.get(p)
                if r is not None and (rank is None or r < rank):
                    best, rank = p, r
            if best is None:
                break
            new, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == best[0] and w[j + 1] == best[1]:
                    new.append(w[j] + w[j + 1])
                    j += 2
                else:
                    new.append(w[j])
                    j += 1
            w = new
        ids = [self.vocab[t] for t in w]
        self.cache[chars] = ids
        return ids

    def encode(self, text):
        """Special tokens are matched first, then each stretch between them is split and BPE'd."""
        ids = []
        for k, part in enumerate(text.split(EOS)):
            if k:
                ids.append(self.eos_id)
            for piece in pretokenize(part):
                ids.extend(self.bpe(to_byte_chars(piece)))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.inv[i]
            if t == EOS:
                out += EOS.encode()
            else:
                out += bytes(BYTE_DEC[c] for c in t)
        return out.decode("utf-8", errors="replace")

    def to_json(self):
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{
                "id": self.eos_id, "content": EOS, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True,
            }],
            "normalizer": None,
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated",
                     "invert": False},
                    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                     "use_regex": False},
                ],
            },
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": self.vocab,
                "merges": [a + " " + b for a, b in self.merges],
            },
        }


# ----------------------------------------------------------------------------------------
# 3. model (torchscale's math; parameter names are torchscale's state-dict names)


def rms_norm(x, eps, weight=None):
    # torchscale: x.float() * rsqrt(mean(x^2) + eps), cast back, then * weight
    y = x.float()
    y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)
    return y * weight if weight is not None else y


def rotate_every_two(x):
    # (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def theta_shift(x, sin, cos):
    return x * cos + rotate_every_two(x) * sin


class RMSNormW(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.eps, self.weight)


class Retention(nn.Module):
    def __init__(self, D, Dv, H, eps):
        super().__init__()
        self.H, self.dk, self.dv, self.eps = H, D // H, Dv // H, eps
        self.scaling = self.dk ** -0.5
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, Dv, bias=False)
        self.g_proj = nn.Linear(D, Dv, bias=False)
        self.out_proj = nn.Linear(Dv, D, bias=False)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.g_proj):
            nn.init.xavier_uniform_(lin.weight, gain=2 ** -2.5)
        nn.init.xavier_uniform_(self.out_proj.weight, gain=2 ** -1)

    def qkvg(self, x, sin, cos):
        B, T, _ = x.shape
        q = self.q_proj(x)
        k = self.k_proj(x) * self.scaling
        v = self.v_proj(x)
        g = self.g_proj(x)
        q = q.view(B, T, self.H, self.dk).transpose(1, 2)
        k = k.view(B, T, self.H, self.dk).transpose(1, 2)
        return theta_shift(q, sin, cos), theta_shift(k, sin, cos), v, g

    def finish(self, o, g):
        # o: [B, T, H, dv] -> group norm (RMSNorm without weight) -> * silu(g) -> out_proj
        B, T = o.shape[:2]
        o = rms_norm(o, self.eps).reshape(B, T, self.H * self.dv)
        return self.out_proj(F.silu(g) * o)

    def parallel(self, x, sin, cos, mask):
        """mask[h, n, m] = gamma_h^(n-m) / sqrt(S_n): o_n = R_n / sqrt(S_n), the recurrent
        form's normalisation (torchscale's parallel form would also divide by d_n)."""
        B, T, _ = x.shape
        qr, kr, v, g = self.qkvg(x, sin, cos)
        vr = v.view(B, T, self.H, self.dv).transpose(1, 2)
        o = torch.matmul((qr @ kr.transpose(-1, -2)) * mask, vr).transpose(1, 2)
        return self.finish(o, g)

    def recurrent(self, x, sin, cos, gamma, state):
        """One token (x: [B, 1, D]); state = (kv [B, H, dv, dk], scale [H]) or None, updated as
        torchscale's recurrent_forward does."""
        B = x.shape[0]
        qr, kr, v, g = self.qkvg(x, sin, cos)          # qr, kr: [B, H, 1, dk]
        kv = kr * v.view(B, self.H, self.dv, 1)         # [B, H, dv, dk]
        if state is None:
            scale = torch.ones_like(gamma)
        else:
            prev_kv, prev_scale = state
            scale = prev_scale * gamma + 1
            kv = prev_kv * (prev_scale.sqrt() * gamma / scale.sqrt()).view(self.H, 1, 1) + \
                kv / scale.sqrt().view(self.H, 1, 1)
        o = torch.sum(qr * kv, dim=3)                   # [B, H, dv]
        return self.finish(o.view(B, 1, self.H, self.dv), g), (kv, scale)


class GLU(nn.Module):
    def __init__(self, D, Fdim, act):
        super().__init__()
        self.fc1 = nn.Linear(D, Fdim, bias=False)
        self.fc2 = nn.Linear(Fdim, D, bias=False)
        self.gate = nn.Linear(D, Fdim, bias=False)
        self.act = F.silu if act == "swish" else F.gelu

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(self.act(h.float()).type_as(h) * self.gate(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, eps = c["decoder_embed_dim"], c["layernorm_eps"]
        self.retention = Retention(D, c["decoder_value_embed_dim"], c["decoder_retention_heads"], eps)
        self.retention_layer_norm = RMSNormW(D, eps)
        self.ffn = GLU(D, c["decoder_ffn_embed_dim"], c["activation_fn"])
        self.final_layer_norm = RMSNormW(D, eps)


class RelPos(nn.Module):
    """torchscale's RetNetRelPos buffers, computed the same way (fp32)."""

    def __init__(self, dk, H):
        super().__init__()
        angle = 1.0 / (10000 ** torch.linspace(0, 1, dk // 2))
        angle = angle.unsqueeze(-1).repeat(1, 2).flatten()
        decay = torch.log(1 - 2 ** (-5 - torch.arange(H, dtype=torch.float)))
        self.register_buffer("angle", angle)
        self.register_buffer("decay", decay)

    def parallel(self, T):
        index = torch.arange(T).to(self.decay)
        sin = torch.sin(index[:, None] * self.angle[None, :])
        cos = torch.cos(index[:, None] * self.angle[None, :])
        mask = torch.tril(torch.ones(T, T).to(self.decay))
        mask = torch.masked_fill(index[:, None] - index[None, :], ~mask.bool(), float("inf"))
        mask = torch.nan_to_num(torch.exp(mask * self.decay[:, None, None]))
        mask = mask / mask.sum(dim=-1, keepdim=True).sqrt()
        return sin, cos, mask

    def recurrent(self, n):
        return torch.sin(self.angle * n), torch.cos(self.angle * n), self.decay.exp()


class RetNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        assert c["share_decoder_input_output_embed"] and c["no_scale_embedding"]
        assert c["decoder_normalize_before"] and not c["deepnorm"] and not c["layernorm_embedding"]
        D, H = c["decoder_embed_dim"], c["decoder_retention_heads"]
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], D)
        nn.init.normal_(self.embed_tokens.weight, std=D ** -0.5)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["decoder_layers"]))
        self.layer_norm = RMSNormW(D, c["layernorm_eps"])
        self.retnet_rel_pos = RelPos(D // H, H)

    def logits(self, x):
        return F.linear(self.layer_norm(x), self.embed_tokens.weight)  # tied output projection

    def forward(self, tokens):
        """Parallel form, tokens [B, T] -> logits [B, T, V]."""
        sin, cos, mask = self.retnet_rel_pos.parallel(tokens.shape[1])
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = x + layer.retention.parallel(layer.retention_layer_norm(x), sin, cos, mask)
            x = x + layer.ffn(layer.final_layer_norm(x))
        return self.logits(x)

    def step(self, tokens, n, states):
        """Recurrent form: tokens [B] at position n; states: list per layer (None at first)."""
        sin, cos, gamma = self.retnet_rel_pos.recurrent(n)
        x = self.embed_tokens(tokens[:, None])
        new = []
        for layer, st in zip(self.layers, states):
            r, st = layer.retention.recurrent(layer.retention_layer_norm(x), sin, cos, gamma, st)
            x = x + r
            x = x + layer.ffn(layer.final_layer_norm(x))
            new.append(st)
        return self.logits(x)[:, 0], new


# ----------------------------------------------------------------------------------------
# 4. export


def write_safetensors(path, tensors):
    """tensors: list of (name, numpy array). 8-byte LE header length, JSON header padded with
    spaces to a multiple of 8, then the raw little-endian data."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16"}
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, a in tensors:
        a = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
        b = a.tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "F16": np.float16}[t["dtype"]]
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=np.dtype(dt).newbyteorder("<")).reshape(t["shape"])
    return out


def export_tensors(model, dtype):
    out = []
    for name, p in model.state_dict().items():
        a = p.detach().cpu().numpy()
        # the rel-pos buffers stay F32: torchscale computes them in fp32 and runtimes load them
        out.append((name, a.astype(np.float32 if name.startswith("retnet_rel_pos.") else dtype)))
    return out


def load_exported(c, path):
    m = RetNet(c)
    sd = {k: torch.from_numpy(v.astype(np.float32)) for k, v in read_safetensors(path).items()}
    m.load_state_dict(sd, strict=True)
    return m.eval()


# ----------------------------------------------------------------------------------------
# 5. decoding


@torch.no_grad()
def recurrent_generate(model, prompt_ids, n, temperature=0.0, gen=None, stop_eos=False):
    """Feeds the prompt one token at a time from an empty state, then generates n ids.
    Returns (ids, margins): margins[i] = top-1 minus top-2 logit at decision i."""
    states = [None] * len(model.layers)
    pos, logits = 0, None
    for t in prompt_ids:
        logits, states = model.step(torch.tensor([t]), pos, states)
        pos += 1
    out, margins = [], []
    for _ in range(n):
        top2 = torch.topk(logits[0], 2).values
        margins.append(float(top2[0] - top2[1]))
        if temperature > 0:
            probs = torch.softmax(logits[0].double() / temperature, -1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        else:
            nxt = int(torch.argmax(logits[0]))
        out.append(nxt)
        if stop_eos and nxt == model.c["vocab_size"] - 1:
            break
        logits, states = model.step(torch.tensor([nxt]), pos, states)
        pos += 1
    return out, margins


def check_torchscale(ts_dir, c, model_path, ids):
    """Loads the exported checkpoint into torchscale's RetNetDecoder and compares its recurrent
    logits (fairseq-style incremental decoding) with this script's model."""
    import types
    for name, attrs in {"fairscale": {}, "fairscale.nn": {"checkpoint_wrapper": None, "wrap": None},
                        "timm": {}, "timm.models": {}, "timm.models.layers": {"drop_path": None},
                        "einops": {"rearrange": None}}.items():
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                m = types.ModuleType(name)
                for k, v in attrs.items():
                    setattr(m, k, v)
                sys.modules[name] = m
    sys.path.insert(0, ts_dir)
    from torchscale.architecture.config import RetNetConfig
    from torchscale.architecture.retnet import RetNetDecoder
    cfg = RetNetConfig(**{k: v for k, v in c.items() if k != "model_type"})
    emb = nn.Embedding(c["vocab_size"], c["decoder_embed_dim"])
    dec = RetNetDecoder(cfg, embed_tokens=emb).eval()
    sd = {k: torch.from_numpy(v.astype(np.float32)) for k, v in read_safetensors(model_path).items()}
    sd["output_projection.weight"] = sd["embed_tokens.weight"]
    dec.load_state_dict(sd, strict=True)
    mine = load_exported(c, model_path)
    toks = torch.tensor([ids])
    worst = 0.0
    with torch.no_grad():
        inc, states = {}, [None] * len(mine.layers)
        for n in range(len(ids)):
            ref = dec(toks[:, :n + 1], incremental_state=inc)[0][0, -1]
            got, states = mine.step(toks[0, n:n + 1], n, states)
            worst = max(worst, float((ref - got[0]).abs().max() / ref.abs().max()))
    return worst


# ----------------------------------------------------------------------------------------


def reference(args, c, tok, lines):
    """Step 5: expected-greedy.json and samples, from the exported weights in --out."""
    model_path = os.path.join(args.out, "model.safetensors")
    ref = load_exported(c, model_path)
    prompt_ids = tok.encode(args.prompt)
    with torch.no_grad():  # the two forms agree on the exported model
        par = ref(torch.tensor([prompt_ids]))[0]
        st, rec = [None] * len(ref.layers), []
        for n, t in enumerate(prompt_ids):
            lg, st = ref.step(torch.tensor([t]), n, st)
            rec.append(lg[0])
        log("parallel vs recurrent logits, max abs diff: %.2e" % float((par - torch.stack(rec)).abs().max()))
    gen_ids, margins = recurrent_generate(ref, prompt_ids, args.gen)
    with open(os.path.join(args.out, "expected-greedy.json"), "w") as f:
        json.dump({"prompt": args.prompt, "prompt_ids": prompt_ids, "generated_ids": gen_ids,
                   "mode": "recurrent", "min_top2_margin": round(min(margins), 6)}, f)
        f.write("\n")
    log("greedy: %s" % ",".join(map(str, gen_ids)))
    log("greedy text: %r" % tok.decode(gen_ids))
    log("min top-1/top-2 logit margin over %d steps: %.4f (step %d)" %
        (len(margins), min(margins), int(np.argmin(margins))))
    if args.torchscale:
        log("torchscale RetNetDecoder recurrent vs this model: max rel diff %.2e" %
            check_torchscale(args.torchscale, c, model_path, prompt_ids + gen_ids))

    gen = torch.Generator().manual_seed(args.seed)
    for prompt in ["In the beginning", "And the LORD said unto Moses,", "Blessed are"]:
        pid = tok.encode(prompt)
        g, _ = recurrent_generate(ref, pid, 80)
        lines += ["## greedy, prompt %r" % prompt, prompt + tok.decode(g), ""]
        for k in range(2):
            s, _ = recurrent_generate(ref, pid, 80, temperature=0.8, gen=gen, stop_eos=True)
            lines += ["## temperature 0.8 (sample %d), prompt %r" % (k + 1, prompt),
                      prompt + tok.decode(s), ""]
    with open(os.path.join(args.work, "samples.txt"), "w") as f:
        f.write("\n".join(lines))
    log("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="examples/kjv-retnet")
    ap.add_argument("--work", default="/tmp/kjv-retnet-work", help="scratch: token cache, checkpoints, samples")
    ap.add_argument("--bible", default="bible", help="the BRS reader from Debian's bible-kjv")
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--value-dim", type=int, default=288)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--ffn", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--act", default="swish", choices=["swish", "gelu"])
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=0,
                    help="train this many steps (reproducible); 0: train for --minutes of wall time")
    ap.add_argument("--minutes", type=float, default=20.0,
                    help="wall-time budget when --steps is 0; the learning-rate schedule follows "
                         "the elapsed fraction of it")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-f32-mb", type=float, default=4.0)
    ap.add_argument("--prompt", default="And God said,",
                    help="prompt of the greedy reference (chosen for its wide top-2 margins)")
    ap.add_argument("--gen", type=int, default=32, help="length of the greedy reference")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and stop")
    ap.add_argument("--torchscale", default=None, help="a torchscale checkout to cross-check against")
    ap.add_argument("--reference-only", action="store_true",
                    help="skip training: redo step 5 from the model already in --out")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    if args.reference_only:
        with open(os.path.join(args.out, "config.json")) as f:
            c = json.load(f)
        with open(os.path.join(args.out, "tokenizer.json")) as f:
            tj = json.load(f)
        tok = Tokenizer([tuple(m.split(" ")) for m in tj["model"]["merges"]])
        assert tok.vocab == tj["model"]["vocab"]
        reference(args, c, tok, [])
        return

    # 1. text
    chapters = read_kjv(args.bible)
    n_verses = sum(len(ch) for ch in chapters)
    log("text: %d chapters, %d verses" % (len(chapters), n_verses))
    if len(chapters) != 1189 or n_verses != 31102:
        raise SystemExit("expected 1189 chapters and 31102 verses from `bible`")
    docs = [EOS + "\n".join(ch) + "\n" for ch in chapters]
    val_idx = {i for i in range(len(docs)) if i % 50 == 25}

    # 2. tokenizer
    t0 = time.time()
    counts = Counter()
    for d in docs:
        for part in d.split(EOS):
            counts.update(to_byte_chars(p) for p in pretokenize(part))
    merges = train_bpe(counts, args.vocab - 256 - 1)
    tok = Tokenizer(merges)
    assert len(tok.vocab) == args.vocab, len(tok.vocab)
    train_ids, val_ids = [], []
    for i, d in enumerate(docs):
        (val_ids if i in val_idx else train_ids).extend(tok.encode(d))
    train_ids = np.array(train_ids, dtype=np.int64)
    val_ids = np.array(val_ids, dtype=np.int64)
    n_bytes = sum(len(d) for d in docs)
    log("tokenizer: %d merges in %.0f s; %d train + %d val tokens (%.2f bytes/token)" %
        (len(merges), time.time() - t0, len(train_ids), len(val_ids),
         n_bytes / (len(train_ids) + len(val_ids))))
    assert tok.decode(tok.encode(docs[0])) == docs[0]

    # 3. model
    c = {
        "model_type": "retnet",
        "decoder_embed_dim": args.dim,
        "decoder_value_embed_dim": args.value_dim,
        "decoder_retention_heads": args.heads,
        "decoder_ffn_embed_dim": args.ffn,
        "decoder_layers": args.layers,
        "vocab_size": args.vocab,
        "activation_fn": args.act,
        "layernorm_eps": 1e-6,
        "no_scale_embedding": True,
        "layernorm_embedding": False,
        "share_decoder_input_output_embed": True,
        "decoder_normalize_before": True,
        "deepnorm": False,
        "subln": True,
        "recurrent_chunk_size": 64,
        "chunkwise_recurrent": False,
    }
    model = RetNet(c)
    n_params = sum(p.numel() for p in model.parameters())
    log("model: %d parameters (tied embedding %d)" % (n_params, model.embed_tokens.weight.numel()))

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    rng = np.random.default_rng(args.seed)
    T, B = args.seq, args.batch

    def progress(step, elapsed):
        if args.steps:
            return step / args.steps
        return elapsed / (args.minutes * 60)

    def lr_at(step, p):
        """linear warm-up over --warmup steps, then cosine from --lr to --lr/10 over the run"""
        warm = min(1.0, (step + 1) / args.warmup)
        return warm * args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    @torch.no_grad()
    def val_loss():
        model.eval()
        n = (len(val_ids) - 1) // T
        xs = torch.from_numpy(val_ids[:n * T].reshape(n, T))
        ys = torch.from_numpy(val_ids[1:n * T + 1].reshape(n, T))
        tot = 0.0
        for i in range(0, n, 32):
            lg = model(xs[i:i + 32])
            tot += float(F.cross_entropy(lg.reshape(-1, args.vocab), ys[i:i + 32].reshape(-1),
                                         reduction="sum"))
        model.train()
        return tot / (n * T)

    t0 = time.time()
    model.train()
    curve = []
    run_loss = None
    step = 0
    while (step < args.bench) if args.bench else progress(step, time.time() - t0) < 1.0:
        lr = lr_at(step, progress(step, time.time() - t0))
        starts = rng.integers(0, len(train_ids) - T - 1, size=B)
        x = torch.from_numpy(np.stack([train_ids[s:s + T] for s in starts]))
        y = torch.from_numpy(np.stack([train_ids[s + 1:s + T + 1] for s in starts]))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.cross_entropy(model(x).reshape(-1, args.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss = float(loss) if run_loss is None else 0.98 * run_loss + 0.02 * float(loss)
        step += 1
        if args.bench:
            if step == 2:
                tb = time.time()
            continue
        if step % 50 == 0 or step == 1:
            el = time.time() - t0
            msg = "step %5d  loss %.3f  lr %.2e  %.0f s  (%.0f tok/s)" % (
                step, run_loss, lr, el, step * B * T / el)
            if step % 250 == 0:
                vl = val_loss()
                curve.append((step, round(run_loss, 3), round(vl, 3), round(el)))
                msg += "  val %.3f" % vl
            log(msg)
    if args.bench:
        dt = (time.time() - tb) / (step - 2)
        log("bench: %.3f s/step, %.0f tokens/s" % (dt, B * T / dt))
        return
    steps = step
    train_s = time.time() - t0
    final_val = val_loss()
    curve.append((steps, round(run_loss, 3), round(final_val, 3), round(train_s)))
    log("trained %d steps in %.1f min; final train loss (EMA) %.3f, val loss %.3f" %
        (steps, train_s / 60, run_loss, final_val))

    # 4. export
    n_f32 = sum(p.numel() for p in model.parameters()) * 4 / 2 ** 20
    dtype = np.float32 if n_f32 <= args.max_f32_mb else np.float16
    model_path = os.path.join(args.out, "model.safetensors")
    write_safetensors(model_path, export_tensors(model, dtype))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer.json"), "w") as f:
        json.dump(tok.to_json(), f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOS, "eos_token": EOS,
                   "unk_token": None, "pad_token": None, "add_bos_token": False,
                   "add_eos_token": False, "add_prefix_space": False,
                   "clean_up_tokenization_spaces": False, "model_max_length": 1048576}, f, indent=2)
        f.write("\n")
    log("exported %s (%s, %.2f MB)" % (model_path, np.dtype(dtype).name,
                                        os.path.getsize(model_path) / 2 ** 20))

    # 5. reference from the exported weights, recurrent form
    lines = ["training: %d steps, batch %d x %d tokens, %.1f min; final loss %.3f train (EMA), %.3f val" %
             (steps, B, T, train_s / 60, run_loss, final_val),
             "curve (step, train EMA, val, seconds): %s" % curve, ""]
    reference(args, c, tok, lines)
    log("total %.1f min" % ((time.time() - t_start) / 60))


if __name__ == "__main__":
    main()
