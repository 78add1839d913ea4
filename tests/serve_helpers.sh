# Sourced by the tests that run `retnet serve` (serve_openai.sh, serve_replicas.sh).
#
#   serve_init                      a temporary directory in $work and an EXIT trap that stops
#                                   every process started here (SIGTERM, then SIGKILL after 10 s)
#                                   and removes $work
#   serve_start NAME RETNET ARGS... starts `RETNET serve --port 0 ARGS...` in the background, its
#                                   standard error in $work/NAME.log, and waits (60 s at most)
#                                   for its "serving ... on http://HOST:PORT/" line; sets
#                                   port_NAME and pid_NAME
#   serve_wait NAME                 waits for server NAME's "serving" line (after serve_start -n)
#   serve_stop NAME                 SIGTERM (drain) and its exit status, which must be 0
#   track_pid PID                   one more process for the EXIT trap
#
# Servers may be started together (serve_start -n ... for each, then serve_wait for each) so that
# their model loads overlap.
serve_pids=()

serve_cleanup() {
  local pid
  for pid in "${serve_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${serve_pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -n "${work:-}" ] && rm -rf "$work"
}

serve_init() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/retnet-serve-test.XXXXXX")
  trap serve_cleanup EXIT
  trap 'exit 130' INT TERM
}

track_pid() { serve_pids+=("$1"); }

serve_start() {
  local nowait=0
  if [ "$1" = -n ]; then nowait=1; shift; fi
  local name=$1 retnet=$2
  shift 2
  "$retnet" serve --port 0 "$@" 2>"$work/$name.log" &
  local pid=$!
  serve_pids+=("$pid")
  printf -v "pid_$name" '%s' "$pid"
  [ "$nowait" -eq 1 ] || serve_wait "$name"
}

serve_wait() {
  local name=$1 pid_var="pid_$1" port=""
  local pid=${!pid_var}
  for _ in $(seq 1 600); do
    port=$(sed -n 's|^retnet: serving .* on http://.*:\([0-9][0-9]*\)/ (.*|\1|p' "$work/$name.log" | head -n 1)
    [ -n "$port" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server $name exited before listening:" >&2
      sed 's/^/    /' "$work/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "server $name did not listen within 60 s:" >&2
    sed 's/^/    /' "$work/$name.log" >&2
    exit 1
  fi
  printf -v "port_$name" '%s' "$port"
}

serve_stop() {
  local name=$1 pid_var="pid_$1" rc=0
  local pid=${!pid_var}
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "server $name did not stop within 10 s of SIGTERM" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" || rc=$?
  local kept=() p
  for p in "${serve_pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  serve_pids=("${kept[@]}")
  return "$rc"
}
