#!/usr/bin/env python3
"""Compare a logits file against a golden one.

Usage: python3 tests/check_logits.py EXPECTED.json ACTUAL.json [--tol 1e-4]

Both files hold {"mode": str, "tokens": [int, ...], "logits": [[float] * V] * len(tokens)}.
Passes when mode and tokens are equal, the shapes agree, every value is finite and
max|actual - expected| / max|expected| <= tol. Pure standard library.

Exit status: 0 pass, 1 over tolerance, 2 malformed input or usage error.
"""

import argparse
import json
import math
import sys


class Malformed(Exception):
    pass


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise Malformed("%s: cannot read JSON: %s" % (path, e))
    if not isinstance(doc, dict):
        raise Malformed("%s: top level is not an object" % path)
    for key in ("mode", "tokens", "logits"):
        if key not in doc:
            raise Malformed("%s: missing \"%s\"" % (path, key))
    mode, tokens, logits = doc["mode"], doc["tokens"], doc["logits"]
    if not isinstance(mode, str):
        raise Malformed("%s: \"mode\" is not a string" % path)
    if not isinstance(tokens, list) or not tokens or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise Malformed("%s: \"tokens\" is not a non-empty list of integers" % path)
    if not isinstance(logits, list) or len(logits) != len(tokens):
        raise Malformed("%s: \"logits\" must be a list of %d rows (one per token)"
                        % (path, len(tokens)))
    width = None
    for i, row in enumerate(logits):
        if not isinstance(row, list) or not row:
            raise Malformed("%s: logits row %d is not a non-empty list" % (path, i))
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise Malformed("%s: logits row %d has %d values, row 0 has %d"
                            % (path, i, len(row), width))
        for j, v in enumerate(row):
            if not is_number(v):
                raise Malformed("%s: logits[%d][%d] is not a number" % (path, i, j))
            if not math.isfinite(v):
                raise Malformed("%s: logits[%d][%d] is not finite (%r)" % (path, i, j, v))
    return mode, tokens, logits


def main(argv):
    ap = argparse.ArgumentParser(description="Compare logits against a golden file.")
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="max relative error: max|diff| / max|expected| (default 1e-4)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if not (math.isfinite(args.tol) and args.tol >= 0):
        print("check_logits: --tol must be a finite number >= 0", file=sys.stderr)
        return 2

    try:
        emode, etok, elog = load(args.expected)
        amode, atok, alog = load(args.actual)
        if emode != amode:
            raise Malformed("mode differs: expected %r, actual %r" % (emode, amode))
        if etok != atok:
            raise Malformed("tokens differ: expected %s, actual %s" % (etok, atok))
        if len(elog[0]) != len(alog[0]):
            raise Malformed("vocabulary differs: expected %d logits per row, actual %d"
                            % (len(elog[0]), len(alog[0])))
    except Malformed as e:
        print("check_logits: FAIL (malformed): %s" % e, file=sys.stderr)
        return 2

    max_diff, where = 0.0, (0, 0)
    max_ref = 0.0
    for i, (erow, arow) in enumerate(zip(elog, alog)):
        for j, (e, a) in enumerate(zip(erow, arow)):
            d = abs(a - e)
            if d > max_diff:
                max_diff, where = d, (i, j)
            if abs(e) > max_ref:
                max_ref = abs(e)
    if max_ref > 0:
        rel = max_diff / max_ref
    else:
        rel = 0.0 if max_diff == 0 else math.inf
    ok = rel <= args.tol
    print("check_logits: %s mode %s, %d tokens x %d: max|diff| %.6g at [%d][%d], "
          "max|expected| %.6g, relative error %.6g (tol %g)"
          % ("PASS" if ok else "FAIL", emode, len(elog), len(elog[0]), max_diff,
             where[0], where[1], max_ref, rel, args.tol))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
