#!/usr/bin/env bash
# CPU time per request of nginx `proxy_pass` and of each given Tessera binary on bench/proxy.sh's
# request (c), with the upstream's beside it: wrk pinned to CPU 0, each proxy and the upstream
# on CPU 1 (one worker each), the same fixed load for each, ROUNDS times interleaved.
# Throughput on a shared machine moves with everyone else's load; the CPU time a process
# spends per request moves much less (it still grows when other work thrashes the caches,
# so compare within a round).
#
# Usage: bench/cpu.sh BINARY...
# Knobs: ROUNDS=3 DURATION=8 CONNECTIONS=16 HOOK=c|c-cached (see bench/common.sh)
set -euo pipefail
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[ $# -gt 0 ] || { echo "usage: bench/cpu.sh BINARY..." >&2; exit 2; }
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8}"
CONNECTIONS="${CONNECTIONS:-16}"

# shellcheck source=bench/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_scratch cpu
start_upstream taskset -c 1
sleep 0.5
# nginx runs a master and one worker: the worker does the work.
UP_WORKER="$(pgrep -P "${PIDS[-1]}" | head -1)"

NGX_PORT="$(free_port)"
mkdir -p "$WORK/proxy/logs" "$WORK/proxy/tmp"
cat >"$WORK/proxy/nginx.conf" <<CONF
daemon off;
master_process off;
pid $WORK/proxy/nginx.pid;
error_log $WORK/proxy/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/proxy/tmp/body;
  proxy_temp_path $WORK/proxy/tmp/proxy;
  fastcgi_temp_path $WORK/proxy/tmp/fastcgi;
  uwsgi_temp_path $WORK/proxy/tmp/uwsgi;
  scgi_temp_path $WORK/proxy/tmp/scgi;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
taskset -c 1 nginx -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)
wait_gateway "http://127.0.0.1:$NGX_PORT" 50 || true

NAMES=(nginx); URLS=("http://127.0.0.1:$NGX_PORT/"); COOKIES=(""); PROCS=("${PIDS[-1]}")
nbin=0
for bin in "$@"; do
  nbin=$((nbin + 1))
  start_gateway "$bin" "t$nbin"
  NAMES+=("$nbin:$(basename "$bin")"); URLS+=("$GW_URL"); COOKIES+=("$GW_COOKIE"); PROCS+=("$GW_PID")
done

ticks() { local f; read -r -a f <"/proc/$1/stat"; echo $((f[13] + f[14])); }
HZ="$(getconf CLK_TCK)"
for r in $(seq 1 "$ROUNDS"); do
  for k in "${!NAMES[@]}"; do
    header=(); [ -z "${COOKIES[$k]}" ] || header=(-H "Cookie: ${COOKIES[$k]}")
    p0="$(ticks "${PROCS[$k]}")"; u0="$(ticks "$UP_WORKER")"
    n="$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${header[@]}" "${URLS[$k]}" \
      | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')"
    p1="$(ticks "${PROCS[$k]}")"; u1="$(ticks "$UP_WORKER")"
    python3 -c "import sys; n, hz, d = $n, $HZ, $DURATION
print(f'round $r  {sys.argv[1]:24s} {n / d:9.0f} req/s   proxy {($p1 - $p0) / hz / n * 1e6:6.2f} us/request   upstream {($u1 - $u0) / hz / n * 1e6:6.2f} us/request')" "${NAMES[$k]}"
  done
done
