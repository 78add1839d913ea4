#!/usr/bin/env python3
"""Resuming a parked conversation against re-reading its history, through `retnet serve`.

    serve_resume.py --url URL --session ID --history N --create     # a conversation of N tokens
    serve_resume.py --url URL --session ID --turns 4                # 4 one-token turns on it
    serve_resume.py --url URL --history N --reread                  # the N tokens as a new prompt

Each line printed is one request as JSON: what it did, its wall time and the server's own
timings (resume_ms: the state made current from wherever it was parked; prefill_ms; save_ms).
Prompts are token ids drawn from a fixed seed, so the same N gives the same history.
"""
import argparse
import http.client
import json
import random
import time
import urllib.parse


def post(url, body):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=3600)
    start = time.monotonic()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = json.loads(resp.read())
    wall = time.monotonic() - start
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"HTTP {resp.status}: {out}")
    return wall, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--session")
    ap.add_argument("--history", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--create", action="store_true")
    ap.add_argument("--turns", type=int, default=0)
    ap.add_argument("--reread", action="store_true")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    url = urllib.parse.urlparse(args.url)
    history = [random.Random(args.history).randrange(args.vocab) for _ in range(args.history)]

    def report(what, wall, out):
        t = out.get("timings", {})
        print(json.dumps({"what": what, "label": args.label, "history": args.history, "wall_ms": round(wall * 1e3, 2),
                          **{k: round(v, 3) for k, v in t.items()}}), flush=True)

    if args.create:
        wall, out = post(url, {"prompt": history, "max_tokens": 1, "session": args.session})
        report("create", wall, out)
    for i in range(args.turns):
        wall, out = post(url, {"prompt": [history[i % len(history)] if history else 1], "max_tokens": 1,
                               "session": args.session})
        report("turn", wall, out)
    if args.reread:
        wall, out = post(url, {"prompt": history, "max_tokens": 1})
        report("reread", wall, out)


if __name__ == "__main__":
    main()
