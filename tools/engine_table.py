#!/usr/bin/env python3
"""The matrix-engine table of docs/BENCHMARKS.md from one `scripts/bench.sh --engines` run.

    python3 tools/engine_table.py RESULTS.jsonl PEERS.jsonl

RESULTS: `retnet bench --json` lines (precision auto and f32); PEERS: the JSON lines of
shared/bench/peer_graph.py with and without --compile, from the same call. Prints a Markdown
table: retnet-cl's tokens/s, the peers', the ratio to the strongest peer, and issue 12's target
for each case with whether it is met.
"""
import json
import sys


def lines(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                yield json.loads(line)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ours, peers, device = {}, {}, "?"
    for r in lines(sys.argv[1]):
        if r.get("test") in ("pp", "tg"):
            device = r.get("device", device)
            ours[(r["test"], r["model"], r["batch"], r["precision"])] = r
    for r in lines(sys.argv[2]):
        if "peer" in r:
            peers[(r["peer"], r["shape"], r["what"], r["batch"])] = r["tokens_per_s"]

    def peer(name, shape, what, batch):
        return peers.get((name, shape, what, batch))

    # (label, test, model, batch, target ratio against the strongest peer or batch 1, what it is against)
    cases = [
        ("decode, batch 1", "tg", "torchscale-1.3b", 1, 1.2, "compile"),
        ("decode, batch 1", "tg", "torchscale-6.7b", 1, 1.1, "compile"),
        ("decode, batch 8", "tg", "torchscale-1.3b", 8, 5.0, "batch 1"),
        ("decode, batch 32", "tg", "torchscale-1.3b", 32, 1.25, "compile"),
        ("decode, batch 32", "tg", "torchscale-6.7b", 32, 1.25, "compile"),
        ("prefill 2048", "pp", "torchscale-1.3b", 1, 1.0, "fp16"),
        ("prefill 2048", "pp", "torchscale-6.7b", 1, 1.0, "fp16"),
    ]
    print(f"Device: {device}. tokens/s; `auto` precision (tensor cores), `f32` for the fp32 path.\n")
    print("| case | model | retnet-cl auto | retnet-cl f32 | torch.compile + CUDA graph | CUDA graph | "
          "PyTorch fp16, parallel | ratio | target | met |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    fmt = lambda v: "-" if v is None else f"{v:,.0f}"
    for label, test, model, batch, target, against in cases:
        mine = ours.get((test, model, batch, "auto"), {}).get("tokens_per_s")
        f32 = ours.get((test, model, batch, "f32"), {}).get("tokens_per_s")
        what = "decode" if test == "tg" else "prefill2048-parallel"
        compiled = peer("pytorch-compile", model, what, batch) if test == "tg" else None
        graph = peer("pytorch-cudagraph", model, what, batch) if test == "tg" else None
        fp16 = peer("pytorch-fp16", model, what, batch) if test == "pp" else None
        base = {"compile": compiled, "fp16": fp16,
                "batch 1": ours.get((test, model, 1, "auto"), {}).get("tokens_per_s")}[against]
        ratio = mine / base if mine and base else None
        met = "-" if ratio is None else ("yes" if ratio >= target else "no")
        print(f"| {label} | {model} | {fmt(mine)} | {fmt(f32)} | {fmt(compiled)} | {fmt(graph)} | {fmt(fp16)} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x {against}'} | {target}x | {met} |")
    print()
    for (test, model, batch, precision), r in sorted(ours.items()):
        if test == "tg" and batch in (1, 32) and precision == "auto" and r.get("roofline") is not None:
            # Issue 12's batch-1 targets (1.2x / 1.1x torch.compile) it puts at about 65 % / 83 %.
            batch1 = {"torchscale-1.3b": "about 65 % (1.2x torch.compile)", "torchscale-6.7b": "about 83 % (1.1x)"}
            target = "70 %" if batch == 32 else batch1.get(model, "-")
            state = " counting the state read and written" if batch == 32 else ""
            print(f"{model} batch {batch}: {r['roofline'] * 100:.0f} % of the copy-bandwidth roofline{state} "
                  f"({r['bytes_per_step'] / 1e9:.2f} GB a step); target {target}.")


if __name__ == "__main__":
    main()
