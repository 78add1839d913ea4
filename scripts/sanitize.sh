#!/usr/bin/env bash
# The host code built with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/), the
# whole test suite run on it, then the CLI's load, generate and free cycle under LeakSanitizer.
# The two 2.7 GB tests, the valgrind runs and the Oclgrind legs are left to scripts/test.sh:
# ASan's shadow memory makes the first slow, and valgrind and Oclgrind (which preloads its
# OpenCL library ahead of ASan's runtime) cannot run sanitized binaries; neither can Python load
# the sanitized library (the binding's test), nor the install test link the example against it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/setup.sh"
# The OpenCL implementation is explicit: PoCL's .icd alone. The other ICDs installed (rusticl
# and Clover, from mesa-opencl-icd) are loaded by clGetPlatformIDs even where they expose no
# device, and rusticl keeps an allocation from its set-up (72 bytes) that LeakSanitizer would
# report as ours. The rusticl tests name their own implementation (tests/rusticl.sh).
pocl_icd=$(grep -l libpocl /etc/OpenCL/vendors/*.icd | head -n 1) ||
  { echo "sanitize: no PoCL .icd in /etc/OpenCL/vendors" >&2; exit 1; }
export OCL_ICD_VENDORS=$(mktemp -d)
trap 'rm -rf "$OCL_ICD_VENDORS"' EXIT
cp "$pocl_icd" "$OCL_ICD_VENDORS/"
cmake -S "$root" -B "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DRN_SANITIZE=ON >/dev/null
cmake --build "$root/build-asan" -j "$(nproc)" >&2
# Leaks are checked below on the CLI; inside ctest the OpenCL runtime's own allocations at exit
# would drown ours.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$root/build-asan" && ctest --output-on-failure -j "$(nproc)" -E "fla_1_3b|valgrind|oclgrind|pocl_small|python_binding|install" "$@")

# LeakSanitizer on the CLI, nothing suppressed (PoCL, CLBlast and the ICD loader leak nothing
# here either).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
"$root/build-asan/bin/retnet" generate --model "$root/examples/kjv-retnet" -p "And God said," -n 16 --seed 1 \
  --state-save "$root/build-asan/leak.state" >/dev/null
"$root/build-asan/bin/retnet" generate --model "$root/examples/kjv-retnet" --state-load "$root/build-asan/leak.state" \
  -n 8 --seed 1 >/dev/null
# The server's request paths under LeakSanitizer: a completion, a stream, a conversation, bad
# input and an abandoned stream, then SIGTERM: exit status 0 and no leak report.
serve_log=$root/build-asan/serve-leak.log serve_state=$root/build-asan/serve-state
rm -rf "$serve_state" && mkdir "$serve_state"
"$root/build-asan/bin/retnet" serve --model "$root/examples/kjv-retnet" --port 0 --chat-template plain \
  --state-dir "$serve_state" 2> "$serve_log" &
serve_pid=$!
for _ in $(seq 1 600); do grep -q "serving" "$serve_log" && break; sleep 0.1; done
url=http://127.0.0.1:$(sed -n 's|.* on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$serve_log")
curl -sf "$url/v1/completions" -d '{"prompt": "And God said,", "max_tokens": 8}' >/dev/null
curl -sfN "$url/v1/completions" -d '{"prompt": "And", "max_tokens": 8, "stream": true}' >/dev/null
curl -sf "$url/v1/chat/completions" -d '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}' >/dev/null
curl -sf "$url/v1/completions" -d '{"prompt": "And", "max_tokens": 4, "session": "leak"}' >/dev/null
curl -sf "$url/v1/completions" -d '{"prompt": " then", "max_tokens": 4, "session": "leak"}' >/dev/null
curl -s "$url/v1/completions" -d '{"prompt": [1, 2' >/dev/null
curl -s --max-time 0.5 -N "$url/v1/completions" -d '{"prompt": "And", "max_tokens": 400, "stream": true}' >/dev/null || true
curl -sf "$url/metrics" >/dev/null
kill -TERM $serve_pid
if ! wait $serve_pid || grep -q "LeakSanitizer\|ERROR: AddressSanitizer" "$serve_log"; then
  cat "$serve_log" >&2
  echo "sanitize: the server's request paths are not clean" >&2
  exit 1
fi
echo "sanitize: the suite, the CLI's load, generate and free cycle and the server's requests are clean"
