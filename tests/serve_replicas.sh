#!/usr/bin/env bash
# Two `retnet serve` replicas sharing one --state-dir behind Debian's HAProxy (roundrobin, no
# stickiness, a new server-side connection per request), against one fresh server with its own
# state directory: the checks are in serve_replicas.py.
#
#   tests/serve_replicas.sh RETNET MODEL_DIR
#
# Needs haproxy (Debian: apt-get install haproxy); without it, exits 77 (ctest's skip).
# About 10 s on PoCL, 2 cores.
set -euo pipefail
retnet=$1
model=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/serve_helpers.sh"

haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$haproxy" ] || { echo "serve_replicas: skipped: haproxy is not installed (apt-get install haproxy)" >&2; exit 77; }

serve_init
mkdir "$work/shared" "$work/own"
# --parallel 2: room for both requests of the concurrent case on one replica if need be.
serve_start -n r1 "$retnet" --model "$model" --parallel 2 --state-dir "$work/shared"
serve_start -n r2 "$retnet" --model "$model" --parallel 2 --state-dir "$work/shared"
serve_start -n ref "$retnet" --model "$model" --parallel 2 --state-dir "$work/own"
serve_wait r1
serve_wait r2
serve_wait ref

# A free port for the balancer (the kernel's pick, released just before haproxy binds it).
lb_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # one request per server-side connection: every request is balanced on its own
    option http-server-close
frontend retnet
    bind 127.0.0.1:$lb_port
    default_backend replicas
backend replicas
    balance roundrobin
    server r1 127.0.0.1:$port_r1
    server r2 127.0.0.1:$port_r2
EOF
"$haproxy" -c -q -f "$work/haproxy.cfg"
"$haproxy" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
track_pid $!
haproxy_pid=$!
# Ready when it answers (a /health through it: both replicas are up, whichever it picks).
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$lb_port/health" && break
  kill -0 "$haproxy_pid" 2>/dev/null || { echo "haproxy exited:" >&2; cat "$work/haproxy.log" >&2; exit 1; }
  sleep 0.1
done

rc=0
timeout 120 /usr/bin/python3 "$here/serve_replicas.py" "http://127.0.0.1:$lb_port" "http://127.0.0.1:$port_r1" \
  "http://127.0.0.1:$port_r2" "http://127.0.0.1:$port_ref" || rc=$?

for name in r1 r2 ref; do
  if ! serve_stop "$name"; then
    echo "serve_replicas: server $name did not exit 0 on SIGTERM" >&2
    rc=1
  fi
done
if [ "$rc" -ne 0 ]; then
  for name in r1 r2 ref; do echo "--- $name's log" >&2; sed 's/^/    /' "$work/$name.log" >&2; done
  echo "serve_replicas: FAILED" >&2
else
  echo "serve_replicas: passed"
fi
exit "$rc"
