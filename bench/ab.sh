#!/usr/bin/env bash
# A/B of two Tessera binaries on bench/proxy.sh's request (session cookie, one rule, 3
# identity headers, tiny nginx upstream), interleaved so the machine's drift hits both alike:
# A, B, A, B, … ROUNDS times, wrk pinned to CPU 0, both gateways and the upstream on CPU 1
# (one worker each). Prints each run and the medians with the ratio B/A.
#
# Usage: bench/ab.sh OLD_BINARY NEW_BINARY
# Knobs: ROUNDS=5 DURATION=8 CONNECTIONS=32
set -euo pipefail

A_BIN="${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}"
B_BIN="${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-8}"
CONNECTIONS="${CONNECTIONS:-32}"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
for t in nginx wrk curl python3 taskset; do
  command -v "$t" >/dev/null 2>&1 || die "$t is required (apt-get install nginx-light wrk curl)"
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-ab.XXXXXX")"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
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
events { worker_connections 4096; }
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
taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)

# Starts binary $1 as gateway $2 (A or B); sets PORT_$2 and COOKIE_$2.
start() {
  local bin="$1" name="$2" port pass hash tsr jar login_url page flow csrf session
  port="$(free_port)"; pass="bench-$RANDOM$RANDOM"
  hash="$(printf '%s\n' "$pass" | "$bin" hash-password)"
  cat >"$WORK/$name.yaml" <<EOF
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
  env -u RUST_LOG TOKIO_WORKER_THREADS=1 taskset -c 1 "$bin" run --config "$WORK/$name.yaml" \
    >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  tsr="http://127.0.0.1:$port"
  for i in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 "$tsr/status" && break
    [ "$i" -lt 100 ] || die "$name did not start: $(tail -3 "$WORK/$name.log")"
    sleep 0.1
  done
  jar="$WORK/$name.jar"
  login_url="$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "$tsr/")"
  page="$(curl -s -c "$jar" -b "$jar" "$login_url")"
  flow="$(printf '%s' "$page" | sed -n 's/.*name="flow" value="\([^"]*\)".*/\1/p' | head -1)"
  csrf="$(printf '%s' "$page" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)"
  curl -s -c "$jar" -b "$jar" -o /dev/null -D "$WORK/$name.headers" \
    --data-urlencode "flow=$flow" --data-urlencode "csrf=$csrf" --data-urlencode "idp=local" \
    --data-urlencode "username=bench" --data-urlencode "password=$pass" "$tsr/.tessera/login"
  session="$(sed -n 's/^[Ss]et-[Cc]ookie: *\(tessera_session=[^;]*\).*/\1/p' "$WORK/$name.headers" | tr -d '\r' | head -1)"
  [ -n "$session" ] || die "login failed on $name"
  [ "$(curl -s -H "Cookie: $session" "$tsr/")" = "ok" ] || die "$name does not proxy"
  eval "URL_$name=\$tsr/; COOKIE_$name=\$session"
}
start "$A_BIN" A
start "$B_BIN" B

run() { # $1 name -> req/s
  local url cookie
  eval "url=\$URL_$1; cookie=\$COOKIE_$1"
  taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Cookie: $cookie" "$url" \
    | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'
}
run A >/dev/null; run B >/dev/null   # warm-up
a=(); b=()
for r in $(seq 1 "$ROUNDS"); do
  x="$(run A)"; y="$(run B)"
  a+=("$x"); b+=("$y")
  printf 'round %d  A %8.0f req/s  B %8.0f req/s\n' "$r" "$x" "$y"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ma="$(median "${a[@]}")"; mb="$(median "${b[@]}")"
printf 'median  A %.0f req/s  B %.0f req/s  B/A %.3f\n' "$ma" "$mb" "$(echo "$mb / $ma" | bc -l)"
