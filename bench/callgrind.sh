#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure that does not
# move with the machine's noise, to state what a change on the hot path costs.
#
# The request is bench/proxy.sh's target (c): an authenticated GET through Tessera (session
# cookie, one rule, 3 identity headers) to a tiny nginx upstream. Tessera runs under
# callgrind with instrumentation off; after a warm-up, it is switched on for REQUESTS
# requests sent by wrk over CONNECTIONS keep-alive connections, then off again. The result is
# the instructions (Ir, callgrind's `totals`) of the whole process divided by the requests that completed.
#
# Usage: bench/callgrind.sh [BINARY...]   (default: a release build of this tree)
#   Several binaries are measured one after the other with the same load, e.g. before/after:
#   bench/callgrind.sh /path/to/old/tessera target/release/tessera
# Knobs: REQUESTS=20000 CONNECTIONS=8
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS="${REQUESTS:-20000}"
CONNECTIONS="${CONNECTIONS:-8}"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need=()
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/tessera-bench/target}"
  log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release --quiet)
  BINS=("$CARGO_TARGET_DIR/release/tessera")
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-callgrind.XXXXXX")"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

UP_PORT="$(free_port)"
mkdir -p "$WORK/up/logs" "$WORK/up/tmp"
cat >"$WORK/up/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/up/tmp/body;
  proxy_temp_path $WORK/up/tmp/proxy;
  fastcgi_temp_path $WORK/up/tmp/fastcgi;
  uwsgi_temp_path $WORK/up/tmp/uwsgi;
  scgi_temp_path $WORK/up/tmp/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)

cat >"$WORK/count.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("COMPLETED %d %d\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status))
end
EOF

measure() { # $1 binary -> "instructions/request"
  local bin="$1" port pass hash tsr jar login_url page flow csrf session out ir done_n errs
  port="$(free_port)"
  pass="bench-$RANDOM$RANDOM"
  hash="$(printf '%s\n' "$pass" | "$bin" hash-password)"
  cat >"$WORK/tessera.yaml" <<EOF
version: 1
http: { address: "127.0.0.1:$port" }
logger: { level: warn, format: json }
connectors:
  - name: local
    type: local
    users:
      - username: bench
        passwordHash: "$hash"
        attributes: { email: bench@example.com, groups: [admins, staff] }
apps:
  - name: bench
    type: proxy
    routePatterns: ["/"]
    upstream: http://127.0.0.1:$UP_PORT
    headers:
      - { name: X-User, value: "{{ local.username }}" }
      - { name: X-Email, value: "{{ local.email }}" }
      - { name: X-Groups, value: "{{ local.groups }}" }
    policies:
      - location: /
        authentication: { idps: [local] }
        authorization:
          rules: { attribute: local.groups, contains: admins }
EOF
  out="$WORK/callgrind.out"
  rm -f "$out"*
  env -u RUST_LOG TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out" "$bin" run --config "$WORK/tessera.yaml" \
    >"$WORK/tessera.log" 2>&1 &
  local vg=$!
  tsr="http://127.0.0.1:$port"
  for i in $(seq 1 600); do
    curl -s -o /dev/null --max-time 2 "$tsr/status" && break
    [ "$i" -lt 600 ] || die "Tessera under valgrind did not come up: $(tail -5 "$WORK/tessera.log")"
    sleep 0.2
  done
  jar="$WORK/jar.txt"; rm -f "$jar"
  login_url="$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "$tsr/")"
  page="$(curl -s -c "$jar" -b "$jar" "$login_url")"
  flow="$(printf '%s' "$page" | sed -n 's/.*name="flow" value="\([^"]*\)".*/\1/p' | head -1)"
  csrf="$(printf '%s' "$page" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)"
  curl -s -c "$jar" -b "$jar" -o /dev/null -D "$WORK/login.headers" \
    --data-urlencode "flow=$flow" --data-urlencode "csrf=$csrf" --data-urlencode "idp=local" \
    --data-urlencode "username=bench" --data-urlencode "password=$pass" "$tsr/.tessera/login"
  session="$(sed -n 's/^[Ss]et-[Cc]ookie: *\(tessera_session=[^;]*\).*/\1/p' "$WORK/login.headers" | tr -d '\r' | head -1)"
  [ -n "$session" ] || die "login failed against $bin"
  [ "$(curl -s -H "Cookie: $session" "$tsr/")" = "ok" ] || die "$bin does not proxy"
  # warm-up (pools, allocator), then count exactly the measured requests
  wrk -t1 -c"$CONNECTIONS" -d2s -H "Cookie: $session" "$tsr/" >/dev/null
  callgrind_control -i on "$vg" >/dev/null
  done_n=0
  # wrk is time-bound: run it in slices until REQUESTS completed
  while [ "$done_n" -lt "$REQUESTS" ]; do
    read -r _ n errs < <(wrk -t1 -c"$CONNECTIONS" -d2s -H "Cookie: $session" -s "$WORK/count.lua" "$tsr/" | grep '^COMPLETED')
    [ "$errs" = 0 ] || die "$errs failed requests against $bin"
    done_n=$((done_n + n))
  done
  callgrind_control -i off "$vg" >/dev/null
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  kill "$vg"; wait "$vg" 2>/dev/null || true
  ir="$(cat "$out"* | sed -n 's/^totals: *\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s}')"
  [ -n "$ir" ] && [ "$ir" -gt 0 ] || die "no callgrind summary for $bin"
  echo "$((ir / done_n)) $done_n"
}

printf '| binary | instructions / request | requests counted |\n|---|---|---|\n'
for bin in "${BINS[@]}"; do
  read -r per n < <(measure "$bin")
  printf '| `%s` | %s | %s |\n' "$bin" "$per" "$n"
done
