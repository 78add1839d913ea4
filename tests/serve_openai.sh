#!/usr/bin/env bash
# `retnet serve` through OpenAI's own Node client (the `openai` npm package, pinned below):
# completions plain and streamed, chat plain and streamed (--chat-template plain), models.list,
# and the errors the SDK raises as APIError (400 for max_tokens -1, 401 for a wrong key).
# The completion's text must also equal `retnet generate`'s with the same prompt, length and seed.
#
#   tests/serve_openai.sh RETNET MODEL_DIR
#
# The package goes to $RETNET_NPM_DIR/openai-VERSION, else $RETNET_CACHE_DIR/npm/openai-VERSION,
# else ~/.cache/retnet-cl/npm/openai-VERSION (outside the source tree); a second run finds it
# there and needs no network. Without npm, or offline, it says why and exits 77 (ctest's skip).
# About 10 s on PoCL, 2 cores, once installed.
set -euo pipefail
retnet=$1
model=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/serve_helpers.sh"

version=4.104.0
cache=${RETNET_NPM_DIR:-${RETNET_CACHE_DIR:-${HOME:-/tmp}/.cache/retnet-cl}/npm}/openai-$version

skip() {
  echo "serve_openai: skipped: $*" >&2
  exit 77
}

installed() { grep -q "\"version\": \"$version\"" "$cache/node_modules/openai/package.json" 2>/dev/null; }

command -v node >/dev/null 2>&1 || skip "node is not installed (Debian: apt-get install nodejs)"
if ! installed; then
  command -v npm >/dev/null 2>&1 || skip "npm is not installed (Debian: apt-get install npm)"
  mkdir -p "$cache/npm-cache" || skip "cannot create $cache"
  log="$cache/install.log"
  # A short timeout: an offline machine skips quickly instead of hanging the run. Only an
  # unreachable registry skips; a registry that answers but fails the install is a failure.
  if ! timeout 120 npm install --prefix "$cache" --cache "$cache/npm-cache" --no-audit --no-fund \
        --no-package-lock --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 \
        --fetch-timeout=30000 "openai@$version" >"$log" 2>&1; then
    if grep -Eq 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network|socket hang up' "$log"; then
      skip "the npm registry is unreachable; see $log"
    fi
    echo "serve_openai: npm install openai@$version failed:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  installed || { echo "serve_openai: npm install did not produce openai@$version; see $log" >&2; exit 1; }
fi

serve_init
key=sk-retnet-test-key
# plain: no chat template, no key; chat: --chat-template plain and --api-key. Loads overlap.
serve_start -n plain "$retnet" --model "$model" --parallel 4
serve_start -n chat "$retnet" --model "$model" --parallel 4 --chat-template plain --api-key "$key"
serve_wait plain
serve_wait chat

# The command's text for the completion the script sends (prompt, max_tokens 24, seed 7): its
# standard output byte for byte, less the newline the command ends it with (the 'x' keeps the
# text's own trailing newlines from $(...)).
expected=$("$retnet" generate --model "$model" -p "In the beginning" -n 24 --seed 7 2>/dev/null; printf x)
expected=${expected%x}
expected=${expected%$'\n'}

rc=0
NODE_PATH="$cache/node_modules" RN_PLAIN_URL="http://127.0.0.1:$port_plain/v1" \
  RN_CHAT_URL="http://127.0.0.1:$port_chat/v1" RN_API_KEY="$key" RN_EXPECTED_TEXT="$expected" \
  RN_OPENAI_MODULE="$cache/node_modules/openai/index.mjs" \
  timeout 60 node "$here/serve_openai.mjs" || rc=$?

for name in plain chat; do
  if ! serve_stop "$name"; then
    echo "serve_openai: server $name did not exit 0 on SIGTERM; its log:" >&2
    sed 's/^/    /' "$work/$name.log" >&2
    rc=1
  fi
done
[ "$rc" -eq 0 ] && echo "serve_openai: passed" || echo "serve_openai: FAILED (exit $rc)" >&2
exit "$rc"
