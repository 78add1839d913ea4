#!/usr/bin/env bash
# usage: install.sh BUILD_DIR SOURCE_DIR
# `cmake --install` into a temporary prefix, then use it as someone else would: the C example
# (examples/c) built with pkg-config alone against the shared and then the static library and
# run on the shipped model, the installed `retnet` finding its presets without the source tree,
# and the programs in tools/ and examples/ including no header but the public one.
set -u
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
check() {  # check NAME COMMAND...: passes when the command succeeds
  local name=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then echo "  pass  $name"; else
    echo "  FAIL  $name:"; sed 's/^/        /' "$tmp/out" | tail -20; failures=$((failures + 1)); fi
}

prefix=$tmp/prefix
check "cmake --install" cmake --install "$build" --prefix "$prefix"
libdir=$(dirname "$(find "$prefix" -name retnet-cl.pc | head -1)")/..
for f in include/retnet.h include/rn_status.h bin/retnet share/retnet-cl/presets/tiny.json; do
  check "installed $f" test -e "$prefix/$f"
done
check "libretnet.so with SONAME libretnet.so.0" sh -c "objdump -p '$libdir/libretnet.so' | grep -q 'SONAME *libretnet.so.0'"
check "libretnet.a" test -e "$libdir/libretnet.a"
# Only the API is exported: every defined dynamic symbol is rn_*.
check "exports only rn_* symbols" sh -c "! nm -D --defined-only '$libdir/libretnet.so' | awk '{print \$3}' | grep -v '^rn_' | grep -v '^_'"

export PKG_CONFIG_PATH=$libdir/pkgconfig
cc=${CC:-cc}
check "example, shared, with pkg-config" sh -c "$cc -std=c11 -Wall -Werror '$src/examples/c/generate.c' \
  \$(pkg-config --cflags --libs retnet-cl) -Wl,-rpath,'$libdir' -o '$tmp/generate'"
check "example runs on the shipped model" sh -c "'$tmp/generate' '$src/examples/kjv-retnet' 'And God said,' 16 \
  | grep -q '^And God said,..*[a-z]'"
check "example, static, with pkg-config --static" sh -c "$cc -std=c11 '$src/examples/c/generate.c' \
  \$(pkg-config --cflags retnet-cl) '$libdir/libretnet.a' \
  \$(pkg-config --static --libs retnet-cl | sed 's/-lretnet\b//') -o '$tmp/generate-static'"
check "static example runs" sh -c "'$tmp/generate-static' '$src/examples/kjv-retnet' 'And God said,' 8 | grep -q '^And God said,'"
check "static example needs no libretnet.so" sh -c "! ldd '$tmp/generate-static' | grep -q libretnet"

# The installed command, from another directory, with nothing of the source tree in reach.
check "installed retnet --version" sh -c "cd / && '$prefix/bin/retnet' --version"
check "installed retnet finds its presets" sh -c "cd / && env -u RETNET_PRESET_DIR '$prefix/bin/retnet' bench \
  --preset tiny -p 8 -n 4 -r 1 --no-ceilings --json | grep -q '\"test\":\"tg\"'"

# Programs are clients of retnet.h alone: their quoted includes are retnet.h or their own
# folder's headers, which follow the same rule.
bad=$(grep -rn '#include "' "$src/tools" "$src/examples" --include='*.c' --include='*.h' |
      grep -v '#include "retnet.h"' | while IFS= read -r line; do
        file=${line%%:*}
        header=$(sed 's/.*#include "\([^"]*\)".*/\1/' <<<"$line")
        [ -e "$(dirname "$file")/$header" ] || echo "$line"
      done)
check "tools/ and examples/ include only retnet.h" test -z "$bad"
[ -n "$bad" ] && echo "$bad"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
