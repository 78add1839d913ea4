#!/usr/bin/env python3
"""`retnet serve` on the shipped model: the protocol, equality with `retnet generate`, the
bad-input and security matrix, conversations, kill -9 and restart, disconnects, slow readers
and the SIGTERM drain. Every server is started here on a free port and stopped here.

    tests/serve_test.py RETNET MODEL_DIR [unittest options]
"""
import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

RETNET = MODEL = None
PROMPT = "And God said,"


class Server:
    """A `retnet serve` process; its port comes from the line it prints once listening."""

    def __init__(self, *args, env=None):
        self.args = [RETNET, "serve", "--model", MODEL, "--port", "0", *args]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.PIPE, env=env)
        self.port = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode()
            if not line:
                raise RuntimeError(f"server exited ({self.proc.wait()}) before listening: {self.args}")
            m = re.search(r"on http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            raise RuntimeError("server did not listen within 120 s")
        # Keep draining its standard error so that it never blocks on a full pipe.
        self.stderr_lines = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode())

    def request(self, method, path, body=None, headers=None, raw=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        return resp.status, payload, resp

    def json(self, method, path, body=None, **kw):
        status, payload, _ = self.request(method, path, body, **kw)
        return status, json.loads(payload) if payload.startswith(b"{") else payload

    def complete(self, **body):
        status, out = self.json("POST", "/v1/completions", {"prompt": PROMPT, **body})
        if status != 200:
            raise AssertionError(f"completion failed: {status} {out}")
        return out["choices"][0]["text"]

    def stream(self, body, path="/v1/completions"):
        """The events of a streamed completion, and whether [DONE] closed it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("POST", path, json.dumps({**body, "stream": True}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        events, done = [], False
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                events.append(json.loads(line[6:]))
        conn.close()
        return resp.status, events, done

    def metric(self, name):
        _, text, _ = self.request("GET", "/metrics")
        m = re.search(rf"^{re.escape(name)} ([0-9.]+)$", text.decode(), re.M)
        return float(m.group(1)) if m else None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def generate(*args):
    out = subprocess.run([RETNET, "generate", "--model", MODEL, *args], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode().rstrip("\n")


class Protocol(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.server = Server("--state-dir", cls.dir.name, "--max-prompt-tokens", "256", "--max-tokens", "512",
                            "--max-body", "65536")

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        cls.dir.cleanup()
        assert rc == 0, f"the server exited {rc} on SIGTERM"

    def test_small_endpoints(self):
        s = self.server
        self.assertEqual(s.json("GET", "/health"), (200, {"status": "ok"}))
        status, models = s.json("GET", "/v1/models")
        self.assertEqual((status, models["data"][0]["id"]), (200, "kjv-retnet"))
        status, tok = s.json("POST", "/tokenize", {"content": PROMPT})
        self.assertEqual(status, 200)
        expected = json.loads(subprocess.run([RETNET, "tokenize", "--model", MODEL, "--text", PROMPT],
                                             capture_output=True).stdout)
        self.assertEqual(tok["tokens"], expected)
        self.assertEqual(s.json("POST", "/detokenize", {"tokens": tok["tokens"]}), (200, {"content": PROMPT}))
        self.assertIn(b"retnet_requests_total", s.request("GET", "/metrics")[1])

    def test_same_text_as_generate(self):
        # The same prompt, seed and sampling defaults as `retnet generate`: the same text, token
        # for token, also greedy, and as a stream.
        for seed in (1, 7):
            self.assertEqual(self.server.complete(max_tokens=32, seed=seed), generate("-p", PROMPT, "-n", "32",
                                                                                     "--seed", str(seed)))
        self.assertEqual(self.server.complete(max_tokens=24, temperature=0),
                         generate("-p", PROMPT, "-n", "24", "--temp", "0"))
        status, events, done = self.server.stream({"prompt": PROMPT, "max_tokens": 32, "seed": 1})
        self.assertEqual((status, done), (200, True))
        self.assertEqual("".join(e["choices"][0]["text"] for e in events), self.server.complete(max_tokens=32, seed=1))
        self.assertEqual(events[-1]["choices"][0]["finish_reason"], "length")

    def test_same_text_while_15_others_run(self):
        # 15 streams decode in the same batch as the checked request, which must still give
        # exactly `retnet generate`'s text: every row is its own sequence.
        results = {}

        def other(i):
            results[i] = self.server.stream({"prompt": "In the beginning", "max_tokens": 48, "seed": 100 + i})

        threads = [threading.Thread(target=other, args=(i,)) for i in range(15)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        text = self.server.complete(max_tokens=40, seed=3)
        for t in threads:
            t.join()
        self.assertEqual(text, generate("-p", PROMPT, "-n", "40", "--seed", "3"))
        self.assertTrue(all(r[0] == 200 and r[2] for r in results.values()), "every other stream completes")

    def test_greedy_rows_chosen_on_the_device(self):
        # Greedy rows without a repeat penalty are stepped with the argmax on the device while
        # every row is such (serve_scheduler.c); a sampled stream joining later turns the steps
        # back into logits read for sampling, which must also read the greedy rows' logits left
        # on the device. Each text must still be exactly `retnet generate`'s.
        greedy = {"prompt": PROMPT, "max_tokens": 40, "temperature": 0, "repeat_penalty": 1}
        want = generate("-p", PROMPT, "-n", "40", "--temp", "0", "--repeat-penalty", "1")
        results = {}
        # Sampled requests alone never take the device's choice; greedy ones alone do.
        before = self.server.metric("retnet_greedy_steps_total")
        self.server.complete(max_tokens=8, seed=1)
        self.assertEqual(self.server.metric("retnet_greedy_steps_total"), before)
        self.server.complete(max_tokens=8, temperature=0, repeat_penalty=1)
        self.assertGreaterEqual(self.server.metric("retnet_greedy_steps_total"), before + 7)

        def run(key, body):
            results[key] = self.server.stream(body)

        threads = [threading.Thread(target=run, args=(i, greedy)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        late = threading.Thread(target=run, args=("sampled", {"prompt": PROMPT, "max_tokens": 24, "seed": 9}))
        late.start()
        for t in threads + [late]:
            t.join()
        for key, (status, events, done) in results.items():
            self.assertEqual((status, done), (200, True), key)
        # generate() drops the trailing newlines that `retnet generate` prints after the text.
        texts = {k: "".join(e["choices"][0]["text"] for e in v[1]).rstrip("\n") for k, v in results.items()}
        for i in range(4):
            self.assertEqual(texts[i], want, "greedy stream %d" % i)
        self.assertEqual(texts["sampled"], generate("-p", PROMPT, "-n", "24", "--seed", "9"))

    def test_options(self):
        s = self.server
        text = s.complete(max_tokens=40, seed=1)
        # A stop string: the text ends before it, with finish_reason "stop".
        stop = text[10:14]
        status, out = s.json("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 40, "seed": 1, "stop": [stop]})
        self.assertEqual(status, 200)
        self.assertEqual(out["choices"][0]["text"], text[:text.index(stop)])
        self.assertEqual(out["choices"][0]["finish_reason"], "stop")
        # echo puts the prompt first; max_tokens 0 generates nothing.
        self.assertEqual(s.complete(max_tokens=8, seed=1, echo=True), PROMPT + s.complete(max_tokens=8, seed=1))
        status, out = s.json("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 0})
        self.assertEqual((status, out["choices"][0]["text"], out["usage"]["completion_tokens"]), (200, "", 0))
        # A prompt of token ids is the same prompt.
        ids = s.json("POST", "/tokenize", {"content": PROMPT})[1]["tokens"]
        status, out = s.json("POST", "/v1/completions", {"prompt": ids, "max_tokens": 16, "seed": 2})
        self.assertEqual(out["choices"][0]["text"], s.complete(max_tokens=16, seed=2))
        self.assertEqual(out["usage"]["prompt_tokens"], len(ids))
        # Unknown fields are ignored, as OpenAI's API does.
        self.assertEqual(s.complete(max_tokens=8, seed=1, user="x", logit_bias={}, n=1), s.complete(max_tokens=8, seed=1))

    def test_bad_input(self):
        s = self.server
        cases = [
            ("malformed JSON", "/v1/completions", '{"prompt": "x",', 400),
            ("not an object", "/v1/completions", '[1, 2]', 400),
            ("no prompt", "/v1/completions", '{"max_tokens": 3}', 400),
            ("max_tokens a string", "/v1/completions", '{"prompt": "x", "max_tokens": "5"}', 400),
            ("max_tokens negative", "/v1/completions", '{"prompt": "x", "max_tokens": -1}', 400),
            ("max_tokens over the limit", "/v1/completions", '{"prompt": "x", "max_tokens": 513}', 400),
            ("temperature negative", "/v1/completions", '{"prompt": "x", "temperature": -1}', 400),
            ("top_p 0", "/v1/completions", '{"prompt": "x", "top_p": 0}', 400),
            ("several prompts", "/v1/completions", '{"prompt": ["a", "b"]}', 400),
            ("token id out of vocabulary", "/v1/completions", '{"prompt": [5, 99999]}', 400),
            ("token id negative", "/v1/completions", '{"prompt": [5, -1]}', 400),
            ("prompt over the token limit", "/v1/completions", json.dumps({"prompt": [5] * 300}), 400),
            ("text prompt over the token limit", "/v1/completions", json.dumps({"prompt": "And " * 400}), 400),
            ("empty prompt, empty session", "/v1/completions", '{"prompt": ""}', 400),
            ("too deep", "/v1/completions", '{"prompt": ' + "[" * 100 + "]" * 100 + "}", 400),
            ("five stop strings", "/v1/completions", '{"prompt": "x", "stop": ["a","b","c","d","e"]}', 400),
            ("stream not a bool", "/v1/completions", '{"prompt": "x", "stream": "yes"}', 400),
            ("chat without a template", "/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi"}]}', 400),
            ("unknown endpoint", "/v1/embeddings", '{}', 404),
            ("detokenize a bad id", "/detokenize", '{"tokens": [1e9]}', 400),
        ]
        for name, path, body, want in cases:
            with self.subTest(name):
                status, payload, _ = s.request("POST", path, raw=body)
                self.assertEqual(status, want, payload)
                err = json.loads(payload)["error"]
                self.assertTrue(err["message"] and err["type"], err)
        status, payload, _ = s.request("GET", "/v1/completions")
        self.assertEqual(status, 405)
        # A body over --max-body: 413, from the declared length and from a chunked body alike.
        status, payload, _ = s.request("POST", "/v1/completions", raw=json.dumps({"prompt": "x" * 70000}))
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(payload)["error"]["code"], "body_too_large")
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("POST", "/v1/completions", (b"x" * 8192 for _ in range(10)), encode_chunked=True,
                      headers={"Transfer-Encoding": "chunked"})
        self.assertEqual(conn.getresponse().status, 413)
        conn.close()
        # The server is unharmed.
        self.assertEqual(s.json("GET", "/health")[0], 200)

    def test_session_ids_are_names(self):
        s = self.server
        for bad in ["../x", "/etc/passwd", "a/b", "..", "a" * 65, "a\u0000b", "", "a b", "é", 5]:
            with self.subTest(repr(bad)):
                status, out = s.json("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1, "session": bad})
                self.assertEqual(status, 400, out)
                self.assertRegex(out["error"]["message"], "session|u0000")
        for bad in ["..%2Fx", "%2Fetc%2Fpasswd", "a" * 65]:
            self.assertEqual(s.request("GET", "/v1/sessions/" + bad)[0], 400)
        self.assertEqual(s.request("GET", "/v1/sessions/never-seen")[0], 404)
        self.assertEqual(s.request("DELETE", "/v1/sessions/never-seen")[0], 404)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.dir.name), "x.state")))
        self.assertEqual(sorted(f for f in os.listdir(self.dir.name) if f.startswith(".")), [])

    def test_conversation_equals_generate_resumed(self):
        # Two turns on one session equal `retnet generate` saving after the first and resuming
        # the saved state for the second: the history is never re-read.
        s = self.server
        fed = 0
        texts = []
        for prompt, seed in ((PROMPT, 5), (" And Moses", 6)):
            status, out = s.json("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 12, "seed": seed,
                                                             "session": "conv"})
            self.assertEqual((status, out["session"]), (200, "conv"))
            texts.append(out["choices"][0]["text"])
            fed += out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
        with tempfile.TemporaryDirectory() as d:
            saved = os.path.join(d, "one.state")
            self.assertEqual(generate("-p", PROMPT, "-n", "12", "--seed", "5", "--state-save", saved), texts[0])
            self.assertEqual(generate("--state-load", saved, "-p", " And Moses", "-n", "12", "--seed", "6"), texts[1])
        path = os.path.join(self.dir.name, "conv.state")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, "state files are owner-only")
        status, info = s.json("GET", "/v1/sessions/conv")
        # Every token of both turns is in the state (an end-of-sequence token would not be).
        self.assertEqual((status, info["tokens"]), (200, fed))
        self.assertEqual(s.json("DELETE", "/v1/sessions/conv")[0], 200)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(s.request("GET", "/v1/sessions/conv")[0], 404)

    def test_disconnects_and_slow_readers(self):
        s = self.server
        # Ten clients leave after their first event; their sequences are dropped at the next
        # step instead of running to 400 tokens.
        socks = []
        for i in range(10):
            sock = socket.create_connection(("127.0.0.1", s.port))
            body = json.dumps({"prompt": PROMPT, "max_tokens": 400, "seed": i, "stream": True}).encode()
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            socks.append(sock)
        for sock in socks:
            seen = b""
            while b"data: " not in seen:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, "the stream ended before its first event")
                seen += chunk
            sock.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and s.metric("retnet_active_sequences") != 0:
            time.sleep(0.2)
        self.assertEqual(s.metric("retnet_active_sequences"), 0, "abandoned sequences are dropped")
        # A reader that does not read: the server buffers its text, others are not held up.
        slow = socket.create_connection(("127.0.0.1", s.port))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = json.dumps({"prompt": PROMPT, "max_tokens": 500, "seed": 1, "stream": True}).encode()
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        start = time.monotonic()
        self.assertEqual(s.complete(max_tokens=24, seed=2), generate("-p", PROMPT, "-n", "24", "--seed", "2"))
        self.assertLess(time.monotonic() - start, 60)
        slow.close()


class Security(unittest.TestCase):
    def test_api_key_and_queue_limit(self):
        server = Server("--api-key", "s3cret", "--parallel", "1", "--queue", "1")
        try:
            body = {"prompt": PROMPT, "max_tokens": 2}
            self.assertEqual(server.json("GET", "/health")[0], 200, "/health needs no key")
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                            {"Authorization": "Bearer s3cre"}, {"Authorization": "Bearer s3cret2"}):
                for method, path in (("POST", "/v1/completions"), ("GET", "/v1/models"), ("GET", "/metrics"),
                                     ("POST", "/tokenize"), ("GET", "/v1/sessions/x")):
                    status, out = server.json(method, path, body, headers=headers)
                    self.assertEqual(status, 401, (headers, path))
            ok = {"Authorization": "Bearer s3cret"}
            self.assertEqual(server.json("POST", "/v1/completions", body, headers=ok)[0], 200)
            # One row and a queue of one: of six long requests at once, some get 503 + Retry-After.
            statuses = []

            def one():
                status, _, resp = server.request("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 64},
                                                 headers=ok)
                statuses.append((status, resp.getheader("Retry-After")))

            threads = [threading.Thread(target=one) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertIn((503, "1"), statuses)
            self.assertIn((200, None), statuses)
            self.assertEqual(sorted(set(s for s, _ in statuses)), [200, 503])
        finally:
            self.assertEqual(server.stop(), 0)


class Quantized(unittest.TestCase):
    def test_q8_and_q4_weights(self):
        # The server takes --weights like every command: the same text as `generate` with them.
        for weights in ("q8", "q4"):
            server = Server("--weights", weights)
            try:
                self.assertEqual(server.complete(max_tokens=24, seed=4),
                                 generate("--weights", weights, "-p", PROMPT, "-n", "24", "--seed", "4"))
            finally:
                self.assertEqual(server.stop(), 0)


class Restarts(unittest.TestCase):
    def test_kill_9_under_load_then_resume(self):
        # Reference: four conversations of three turns on a server that is never interrupted.
        turns = [(PROMPT, 10), (" And the LORD", 10), (" Then", 12)]

        def run_turns(server, prefix, which):
            out = {}
            for k in range(4):
                prompt, n = turns[which]
                out[k] = server.complete(prompt=prompt, max_tokens=n, seed=10 * k + which, session=f"{prefix}{k}")
            return out

        with tempfile.TemporaryDirectory() as ref_dir, tempfile.TemporaryDirectory() as dir:
            ref = Server("--state-dir", ref_dir)
            expected = [run_turns(ref, "c", t) for t in range(3)]
            self.assertEqual(ref.stop(), 0)

            server = Server("--state-dir", dir)
            self.assertEqual(run_turns(server, "c", 0), expected[0])
            self.assertEqual(run_turns(server, "c", 1), expected[1])
            # Under load, with another turn of c0 running: kill -9. That turn is a prompt of 3000
            # tokens, whose prefill (several seconds on PoCL) is still running when the kill comes.
            results = {}
            load = [threading.Thread(target=lambda i=i: server.stream({"prompt": PROMPT, "max_tokens": 300, "seed": i}))
                    for i in range(8)]
            interrupted = threading.Thread(target=lambda: results.setdefault("c0", server.stream(
                {"prompt": [5] * 3000, "max_tokens": 300, "seed": 0, "session": "c0"})))
            for t in load + [interrupted]:
                t.start()
            time.sleep(1.0)
            server.proc.kill()
            server.proc.wait()
            for t in load + [interrupted]:
                t.join()
            self.assertFalse(results.get("c0", (0, [], False))[2], "the interrupted turn must not have finished")
            # The restarted server resumes every saved conversation exactly, and the turn that
            # was cut off left no trace.
            again = Server("--state-dir", dir)
            self.assertEqual(run_turns(again, "c", 2), expected[2])
            self.assertEqual(again.stop(), 0)

    def test_sigterm_drains(self):
        server = Server()
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", server.stream(
            {"prompt": PROMPT, "max_tokens": 120, "seed": 1})))
        t.start()
        time.sleep(1.0)
        server.proc.send_signal(signal.SIGTERM)
        t.join()
        status, events, done = result["r"]
        self.assertEqual((status, done), (200, True), "the running request finishes")
        self.assertEqual(events[-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(server.proc.wait(timeout=60), 0)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


if __name__ == "__main__":
    RETNET, MODEL = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], *sys.argv[3:]], warnings="ignore")
