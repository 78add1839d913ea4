#!/usr/bin/env python3
"""Plot decode time per token against context length from `retnet bench --json` output.

Reads JSON Lines, one measurement per line, such as

  {"test": "tg", "model": "torchscale-1.3b", "weights": "f16", "device": "NVIDIA H200",
   "batch": 1, "context": 4096, "n": 64, "ms_per_token": 0.81, "ms_per_token_sd": 0.002, ...}

and writes a PNG with one line per (model, device, weights): milliseconds per decoded token
against the context the decoding started from, on a log2 axis, with error bars of one standard
deviation. RetNet decodes from a fixed-size state, so these lines should be flat; a rising one
means something reads more than the state. Only decode lines ("test": "tg") at batch 1 are
plotted; others (prefill, larger batches) are skipped. A line without ms_per_token but with
tokens_per_s is converted (1000 / tokens_per_s, its sd by first-order propagation).

Usage:
  python3 tools/plot_bench.py results.jsonl [more.jsonl ...] -o docs/decode_vs_context.png \
      [--title "retnet-cl decode"]

Needs matplotlib: Debian's python3-matplotlib (apt-get install python3-matplotlib). If another
python3 comes first in PATH (pyenv, a venv), run it as /usr/bin/python3 tools/plot_bench.py.
Runs headless (the Agg backend); no display is needed.
"""

import argparse
import json
import math
import os
import sys

NEEDS = "python3-matplotlib (apt-get install python3-matplotlib); if another python3 comes " \
        "first in PATH, run this with /usr/bin/python3"


def fail(message):
    print(f"plot_bench: {message}", file=sys.stderr)
    sys.exit(1)


def number(record, key, where):
    """record[key] as a finite float, or None when absent or null."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(f"{where}: {key} is {value!r}, not a finite number")
    return float(value)


def decode_point(record, where):
    """(group, context, ms, sd) for a batch-1 decode line, None for a line of another kind."""
    if record.get("test") != "tg":
        return None
    batch = number(record, "batch", where)
    if batch is not None and batch != 1:
        return None
    context = number(record, "context", where)
    if context is None or context < 1:
        return None  # decoding from an empty state has no place on a log axis of context
    ms = number(record, "ms_per_token", where)
    sd = number(record, "ms_per_token_sd", where)
    if ms is None:
        # Derive from the rate: ms = 1000 / r, d(ms)/dr = -1000 / r^2.
        rate = number(record, "tokens_per_s", where)
        rate_sd = number(record, "tokens_per_s_sd", where)
        if rate is None or rate <= 0:
            fail(f"{where}: a decode line needs ms_per_token or a positive tokens_per_s")
        ms = 1000.0 / rate
        sd = None if rate_sd is None else 1000.0 * rate_sd / (rate * rate)
    if ms <= 0:
        fail(f"{where}: ms_per_token {ms} is not positive")
    group = tuple(str(record.get(k, "?")) for k in ("model", "device", "weights"))
    return group, int(context), ms, sd or 0.0


def read_groups(paths):
    """{(model, device, weights): {context: (ms, sd)}}; a later line for the same point wins."""
    groups, skipped = {}, 0
    for path in paths:
        stream = sys.stdin if path == "-" else None
        try:
            stream = stream or open(path, encoding="utf-8")
        except OSError as e:
            fail(f"cannot read {path}: {e.strerror}")
        with stream:
            for line_no, line in enumerate(stream, 1):
                where = f"{path}:{line_no}"
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{where}: not JSON ({e.msg})")
                if not isinstance(record, dict):
                    fail(f"{where}: not a JSON object")
                point = decode_point(record, where)
                if point is None:
                    skipped += 1
                    continue
                group, context, ms, sd = point
                points = groups.setdefault(group, {})
                if context in points:
                    print(f"plot_bench: {where}: context {context} of {' / '.join(group)} "
                          "again; keeping this later one", file=sys.stderr)
                points[context] = (ms, sd)
    return groups, skipped


def tick_label(context):
    if context >= 1024 and context % 1024 == 0:
        return f"{context // 1024}k"
    return str(context)


def plot(groups, output, title):
    try:
        import matplotlib
        matplotlib.use("Agg")   # headless: no display, no GUI toolkit
        import matplotlib.pyplot as plt
    except ImportError:
        fail("needs " + NEEDS)

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    markers = "osD^v<>ph*"
    contexts = set()
    for i, group in enumerate(sorted(groups)):
        points = sorted(groups[group].items())
        xs = [c for c, _ in points]
        ys = [ms for _, (ms, _) in points]
        errs = [sd for _, (_, sd) in points]
        contexts.update(xs)
        model, device, weights = group
        ax.errorbar(xs, ys, yerr=errs, marker=markers[i % len(markers)], markersize=4,
                    capsize=3, linewidth=1.5, label=f"{model}, {weights}, {device}")

    ax.set_xscale("log", base=2)
    # Ticks at every power of two the data spans, up to 32768 as the bench goes.
    low = 2 ** math.floor(math.log2(min(contexts)))
    high = 2 ** math.ceil(math.log2(max(contexts)))
    ticks = []
    t = low
    while t <= high:
        ticks.append(t)
        t *= 2
    ax.set_xticks(ticks)
    ax.set_xticklabels([tick_label(t) for t in ticks])
    ax.set_xlim(low / 1.3, high * 1.3)
    ax.set_ylim(bottom=0)   # from zero: a flat line should look flat, a gap its true size
    ax.set_xlabel("context length (tokens already in the state)")
    ax.set_ylabel("decode time per token (ms)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    directory = os.path.dirname(output)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description="Plot decode ms/token against context length (log2 axis, one line per "
                    "model, device and weights, error bars of one sd) from `retnet bench "
                    "--json` JSON Lines. Only \"test\": \"tg\" lines at batch 1 are used. Needs "
                    + NEEDS + ". Runs headless (Agg).")
    parser.add_argument("inputs", nargs="+", metavar="results.jsonl",
                        help="JSON Lines files from retnet bench --json ('-' for stdin)")
    parser.add_argument("-o", "--output", required=True, metavar="PNG", help="the PNG to write")
    parser.add_argument("--title", default="RetNet decode time per token against context",
                        help="the plot's title")
    args = parser.parse_args()

    groups, skipped = read_groups(args.inputs)
    if not groups:
        fail(f"no decode (\"test\": \"tg\") lines at batch 1 in {', '.join(args.inputs)}"
             f" ({skipped} other lines skipped)")
    plot(groups, args.output, args.title)
    n = sum(len(points) for points in groups.values())
    print(f"plot_bench: wrote {args.output}: {n} points in {len(groups)} line"
          f"{'s' if len(groups) != 1 else ''} ({skipped} other lines skipped)", file=sys.stderr)


if __name__ == "__main__":
    main()
