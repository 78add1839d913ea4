# Sourced by the command-line test scripts (cli.sh, quantize.sh).
# expect NAME WANTED_RC PATTERN -- command...: the command's exit code is WANTED_RC and PATTERN
# (grep) is in its standard output and error together; counts a failure in $failures otherwise.
failures=${failures:-0}
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$want" ] && grep -q -- "$pattern" <<<"$out"; then
    echo "  pass  $name"
  else
    echo "  FAIL  $name: exit $rc (wanted $want), pattern '$pattern' in:"
    sed 's/^/        /' <<<"$out" | head -20
    failures=$((failures + 1))
  fi
}
