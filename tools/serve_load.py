#!/usr/bin/env python3
"""Load generator for `retnet serve`: N concurrent streaming clients, standard library only.

Each client sends streaming completions one after another until the requests run out and
checks every response: HTTP 200, server-sent events that end with `data: [DONE]`, a final
chunk with a finish_reason, usage counts that match the text chunks received. Prints requests/s,
aggregate generated tokens/s, time to first token and the time between tokens (p50/p90/p99)
as it was seen by the clients.

    tools/serve_load.py --url http://127.0.0.1:8080 --clients 64 --requests 256 --max-tokens 16
    tools/serve_load.py ... --check      # exit status 1 on any error or incomplete response
    tools/serve_load.py ... --prompt-ids 32 --inject-prompt 4096
        # prompts of random token ids (models without a tokenizer); one 4096-token prompt sent
        # after a second, and the longest gap any running stream saw while it was prefilled
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = []
        self.tokens = 0
        self.first = []
        self.gaps = []
        self.timed_gaps = []
        self.inject = None


def prompt_of(args, index):
    if args.prompt_ids:
        return [random.Random(index).randrange(args.vocab) for _ in range(args.prompt_ids)]
    return args.prompt


def post(url, args, body):
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=args.timeout)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def inject(url, args, totals):
    """One long prompt while the streams run: when its prefill starts and ends, as the clients
    see it (the request's wall time less its decoding)."""
    time.sleep(args.inject_after)
    body = {"prompt": [random.Random(-1).randrange(args.vocab) for _ in range(args.inject_prompt)],
            "max_tokens": 1}
    start = time.monotonic()
    status, out = post(url, args, body)
    end = time.monotonic()
    if status != 200:
        with totals.lock:
            totals.errors.append(f"injected prompt: HTTP {status}: {out}")
        return
    totals.inject = (start, end, out.get("timings", {}))


def one_request(url, args, index, totals):
    body = {"prompt": prompt_of(args, index), "max_tokens": args.max_tokens, "seed": index, "stream": True,
            "stream_options": {"include_usage": True}}
    if args.greedy:  # the server then picks the tokens on the device while every row is greedy
        body.update(temperature=0, repeat_penalty=1)
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=args.timeout)
    start = time.monotonic()
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
        arrivals, finish, usage, done = [], None, None, False
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\n")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"error event: {event['error']}")
            usage = event.get("usage") or usage
            if not event["choices"]:
                continue
            choice = event["choices"][0]
            if choice.get("text"):
                arrivals.append(time.monotonic())
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        if not done or finish is None or usage is None:
            raise RuntimeError(f"incomplete stream (done={done}, finish={finish}, usage={usage})")
        if usage["completion_tokens"] < len(arrivals) or usage["completion_tokens"] > args.max_tokens:
            raise RuntimeError(f"usage says {usage['completion_tokens']} tokens, {len(arrivals)} text chunks came")
        with totals.lock:
            totals.ok += 1
            totals.tokens += usage["completion_tokens"]
            if arrivals:
                totals.first.append(arrivals[0] - start)
                totals.gaps.extend(b - a for a, b in zip(arrivals, arrivals[1:]))
                totals.timed_gaps.extend(zip(arrivals, arrivals[1:]))
    except Exception as e:  # every failure is counted and shown, none stops the run
        with totals.lock:
            totals.errors.append(f"request {index}: {e}")
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--prompt", default="And God said,")
    ap.add_argument("--prompt-ids", type=int, default=0, help="prompts of N random token ids instead")
    ap.add_argument("--vocab", type=int, default=1000, help="ids are drawn below this")
    ap.add_argument("--inject-prompt", type=int, default=0, help="send one prompt of N ids meanwhile")
    ap.add_argument("--inject-after", type=float, default=1.0)
    ap.add_argument("--greedy", action="store_true", help="temperature 0 without a repeat penalty")
    ap.add_argument("--api-key")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--check", action="store_true", help="exit 1 on any error")
    args = ap.parse_args()
    url = urllib.parse.urlparse(args.url)
    totals = Totals()
    counter = iter(range(args.requests))
    take = threading.Lock()

    def client():
        while True:
            with take:
                index = next(counter, None)
            if index is None:
                return
            one_request(url, args, index, totals)

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    if args.inject_prompt:
        threads.append(threading.Thread(target=inject, args=(url, args, totals)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    result = {
        "clients": args.clients, "requests": args.requests, "ok": totals.ok, "errors": len(totals.errors),
        "seconds": round(wall, 3), "requests_per_s": round(totals.ok / wall, 3),
        "tokens": totals.tokens, "tokens_per_s": round(totals.tokens / wall, 2),
        "first_token_p50_ms": round(1e3 * percentile(totals.first, 50), 2),
        "first_token_p99_ms": round(1e3 * percentile(totals.first, 99), 2),
        "between_tokens_p50_ms": round(1e3 * percentile(totals.gaps, 50), 2),
        "between_tokens_p90_ms": round(1e3 * percentile(totals.gaps, 90), 2),
        "between_tokens_p99_ms": round(1e3 * percentile(totals.gaps, 99), 2),
    }
    if totals.inject:
        start, end, timings = totals.inject
        during = [b - a for a, b in totals.timed_gaps if b > start and a < end]
        result["inject_prompt_tokens"] = args.inject_prompt
        result["inject_prefill_ms"] = round(timings.get("prefill_ms", float("nan")), 2)
        result["inject_wall_ms"] = round(1e3 * (end - start), 2)
        result["stall_max_ms"] = round(1e3 * max(during), 2) if during else None
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    for e in totals.errors[:10]:
        print("error:", e, file=sys.stderr)
    if args.check and (totals.errors or totals.ok != args.requests):
        sys.exit(1)


if __name__ == "__main__":
    main()
