"""Two `retnet serve` replicas sharing one --state-dir behind HAProxy (run by serve_replicas.sh).

    serve_replicas.py LB_URL REPLICA1_URL REPLICA2_URL REFERENCE_URL

1. A conversation of four turns (one "session", a seed each) through the balancer: consecutive
   turns must land on different replicas (told by each replica's retnet_requests_total), and
   every turn's text, and the session's token count, must equal those of the same turns sent to
   a fresh single server with its own state directory.
2. Two requests on one new session sent at once through the balancer (so to both replicas):
   both succeed, each replica served one, and the session's tokens are the sum of both turns'
   total_tokens (a session's position is every prompt and answer token it has seen).
3. DELETE /v1/sessions/ID on one replica ends the conversation on the other too: a GET there is a
   404 and the next turn there starts afresh (the file is the truth, not a replica's cache).
Prints pass/FAIL per check; exits 1 on any failure.
"""
import json
import sys
import threading
import urllib.error
import urllib.request

lb, replicas, ref = sys.argv[1], sys.argv[2:4], sys.argv[4]
TIMEOUT = 30  # seconds per request; a turn takes well under one on PoCL
failures = 0


def check(name, ok, detail=""):
    global failures
    print(f"  {'pass' if ok else 'FAIL'}  {name}{'' if ok or not detail else ': ' + detail}", flush=True)
    failures += not ok


def request(url, body=None, method=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def served(url):
    """The replica's retnet_requests_total."""
    status, text = request(url + "/metrics")
    assert status == 200, f"{url}/metrics: {status} {text}"
    for line in text.splitlines():
        if line.startswith("retnet_requests_total "):
            return int(line.split()[1])
    raise AssertionError(f"{url}/metrics has no retnet_requests_total:\n{text}")


def complete(base, session, prompt, seed, max_tokens=12):
    status, text = request(base + "/v1/completions",
                           {"prompt": prompt, "max_tokens": max_tokens, "seed": seed, "session": session})
    if status != 200:
        return status, text, None
    body = json.loads(text)
    return status, body["choices"][0]["text"], body["usage"]


def session_tokens(base, session):
    status, text = request(f"{base}/v1/sessions/{session}")
    return json.loads(text).get("tokens") if status == 200 else f"status {status}: {text}"


TURNS = ["In the beginning", " And the earth was", " Then said the LORD unto Moses,", " Behold,"]

# ---- 1. a conversation across replicas against one server -----------------------------------
print("a conversation of %d turns through the balancer" % len(TURNS))
got, where, total = [], [], 0
for i, prompt in enumerate(TURNS):
    before = [served(r) for r in replicas]
    status, text, usage = complete(lb, "conv", prompt, seed=100 + i)
    after = [served(r) for r in replicas]
    check(f"turn {i + 1}: 200", status == 200, f"{status} {text}")
    delta = [a - b for a, b in zip(after, before)]
    check(f"turn {i + 1}: served by exactly one replica", sorted(delta) == [0, 1], f"requests_total deltas {delta}")
    where.append(delta.index(1) if 1 in delta else -1)
    got.append(text)
    total += usage["total_tokens"] if usage else 0
print("  replicas per turn:", [w + 1 for w in where])
check("consecutive turns on different replicas",
      all(a != b for a, b in zip(where, where[1:])) and -1 not in where, f"replicas {where}")

want, want_total, want_first = [], 0, None
for i, prompt in enumerate(TURNS):
    status, text, usage = complete(ref, "conv", prompt, seed=100 + i)
    check(f"reference turn {i + 1}: 200", status == 200, f"{status} {text}")
    want.append(text)
    want_total += usage["total_tokens"] if usage else 0
    if i == 0:
        want_first = usage["total_tokens"] if usage else None
for i, (g, w) in enumerate(zip(got, want)):
    check(f"turn {i + 1}: text equals the single server's", g == w, f"{g!r} vs {w!r}")
check("the whole conversation's text equals the single server's", "".join(got) == "".join(want))
check("same token count as the single server", total == want_total, f"{total} vs {want_total}")
ref_tokens = session_tokens(ref, "conv")
check("single server: session tokens = sum of total_tokens", ref_tokens == want_total,
      f"{ref_tokens} vs {want_total}")
# The replica that served the last turn knows the position; the other may know the session only
# by its file (tokens null) but must never report an older position.
last = replicas[where[-1]] if where[-1] >= 0 else replicas[0]
check("last replica: session tokens = sum of total_tokens", session_tokens(last, "conv") == total,
      f"{session_tokens(last, 'conv')} vs {total}")
for r in replicas:
    t = session_tokens(r, "conv")
    check(f"{r}: session tokens current or unknown (null), never stale", t is None or t == total,
          f"{t} vs {total}")

# ---- 3. a conversation deleted on one replica is gone on the other (before 2: it reuses 1) -
print("DELETE on one replica, then the same session id on the other")
deleter = where[-1] if where[-1] >= 0 else 0
other = replicas[1 - deleter]
status, text = request(f"{replicas[deleter]}/v1/sessions/conv", method="DELETE")
check("DELETE: 200", status == 200, f"{status} {text}")
status, text = request(f"{other}/v1/sessions/conv")
check("the other replica: GET gives 404 after the DELETE", status == 404, f"{status} {text}")
status, text, usage = complete(other, "conv", TURNS[0], seed=100)
check("the other replica: the id starts a new conversation (turn 1's text)", text == want[0], f"{text!r} vs {want[0]!r}")
check("the other replica: the new conversation's tokens are turn 1's", session_tokens(other, "conv") == want_first,
      f"{session_tokens(other, 'conv')} vs {want_first}")

# ---- 2. two requests at once on one session --------------------------------------------------
print("two requests at once on one session through the balancer")
before = [served(r) for r in replicas]
results = [None, None]


def worker(k):
    results[k] = complete(lb, "together", [" And he said,", " Hear ye"][k], seed=200 + k, max_tokens=16)


threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(2 * TIMEOUT + 5)
after = [served(r) for r in replicas]
for k in range(2):
    r = results[k]
    check(f"request {k + 1}: 200", r is not None and r[0] == 200, repr(r))
check("one request on each replica", [a - b for a, b in zip(after, before)] == [1, 1],
      f"requests_total deltas {[a - b for a, b in zip(after, before)]}")
both = sum(r[2]["total_tokens"] for r in results if r and r[2])
views = [session_tokens(r, "together") for r in replicas]
check("session tokens account for both turns (on some replica)", both in views, f"{views} vs {both}")
for r, t in zip(replicas, views):
    check(f"{r}: session tokens current or unknown (null), never stale", t is None or t == both, f"{t} vs {both}")

print("serve_replicas.py: %s" % (f"{failures} failures" if failures else "all passed"))
sys.exit(1 if failures else 0)
