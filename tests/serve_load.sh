#!/usr/bin/env bash
# The server under load: 64 concurrent streaming clients send 256 completions of 16 tokens to a
# server decoding 32 sequences at once; every response must be complete (tools/serve_load.py
# --check: HTTP 200, [DONE], a finish reason, usage matching the text), and nothing may be
# left queued or running afterwards. Prints requests/s, tokens/s and latency percentiles.
#   serve_load.sh RETNET MODEL_DIR SERVE_LOAD_PY
set -euo pipefail
retnet=$1 model=$2 load=$3
source "$(dirname "$0")/serve_helpers.sh"
serve_init
serve_start load "$retnet" --model "$model" --parallel 32
result=$(/usr/bin/python3 "$load" --url "http://127.0.0.1:$port_load" --clients 64 --requests 256 --max-tokens 16 \
         --check --json)
echo "$result"
tokens=$(/usr/bin/python3 -c 'import json, sys; print(json.loads(sys.argv[1])["tokens"])' "$result")
metrics=$(curl -sf "http://127.0.0.1:$port_load/metrics")
grep -E '^retnet_(requests_total|errors_total|completion_tokens_total|queue_length|active_sequences) ' <<<"$metrics"
grep -q '^retnet_errors_total 0$' <<<"$metrics" || { echo "FAIL: the server counted errors" >&2; exit 1; }
grep -q '^retnet_queue_length 0$' <<<"$metrics" || { echo "FAIL: requests left queued" >&2; exit 1; }
# The server's count and the clients' (usage blocks) agree: no token went unreported.
grep -q "^retnet_completion_tokens_total $tokens\$" <<<"$metrics" ||
  { echo "FAIL: the clients received $tokens tokens, the server counted otherwise" >&2; exit 1; }
serve_stop load
echo "serve_load: 256 requests from 64 clients, all complete"
