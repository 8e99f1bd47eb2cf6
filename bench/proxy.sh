#!/usr/bin/env bash
# Proxy benchmark, one run on loopback, measured with wrk:
#   (a) the upstream directly,
#   (b) nginx as a plain `proxy_pass` to it (pooled upstream keep-alive connections),
#   (c) Tessera with an authenticated session cookie, a policy with one rule and 3 injected
#       identity headers.
# The upstream is the same tiny nginx (`return 200 "ok\n"`) for all three. Each target is
# measured ROUNDS times, interleaved (a,b,c,a,b,c,...); the table reports the medians.
# The table is printed and written into docs/benchmarks.md (between the bench markers).
#
# Usage: bench/proxy.sh            (from anywhere; needs apt-get for missing nginx/wrk)
# Knobs (environment):
#   DURATION=10        seconds per wrk run        CONNECTIONS=32   wrk connections
#   THREADS=1          wrk threads                ROUNDS=3         runs per target
#   PIN=1              taskset: wrk on the first CPU, all servers on the others (0 = no pinning)
#   WORKERS=           nginx proxy workers = Tessera (tokio) worker threads; default: the
#                      number of CPUs the servers may use
#   WRITE_DOCS=1       update docs/benchmarks.md (0 = print only)
#   BENCH_TARGET_DIR   cargo target dir for the release build
#                      (default ~/.cache/tessera-bench/target, not the shared one)
#   TESSERA_BIN        use this binary instead of building
#   QUIET_MAX=5        before each run, wait (at most QUIET_WAIT=120 s) until the machine's
#                      background CPU load is at most this many percent
#   HOLD=1             set everything up, print the wrk command lines and wait (for
#                      profiling by hand); Ctrl+C stops it all
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
ROUNDS="${ROUNDS:-3}"
PIN="${PIN:-1}"
WRITE_DOCS="${WRITE_DOCS:-1}"
WARMUP="${WARMUP:-2}"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for t in nginx wrk curl python3 taskset; do
  command -v "$t" >/dev/null 2>&1 || die "$t is required"
done

# ---------------------------------------------------------------- build
if [ -z "${TESSERA_BIN:-}" ]; then
  # A separate target dir: the shared one is often locked by another build.
  export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/tessera-bench/target}"
  log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --quiet
  TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
[ -x "$TESSERA_BIN" ] || die "no Tessera binary at $TESSERA_BIN"

# ---------------------------------------------------------------- CPU placement
ncpu="$(nproc)"
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ]; then
  CLIENT_CPUS="0"
  SERVER_CPUS="1-$((ncpu - 1))"
  server_ncpu=$((ncpu - 1))
  CLIENT=(taskset -c "$CLIENT_CPUS")
  SERVER=(taskset -c "$SERVER_CPUS")
  placement="pinned: wrk on CPU $CLIENT_CPUS, upstream + proxy on CPU $SERVER_CPUS"
else
  PIN=0
  server_ncpu="$ncpu"
  CLIENT=()
  SERVER=()
  placement="not pinned: wrk, upstream and proxy share all $ncpu CPUs"
fi
WORKERS="${WORKERS:-$server_ncpu}"

# ---------------------------------------------------------------- scratch dir, cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (bounded) until `curl URL` answers with any HTTP status.
wait_http() {
  local url="$1" name="$2" i
  for i in $(seq 1 100); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.1
  done
  die "$name did not come up at $url (logs in $WORK)"
}

# nginx instance: $1 name, $2 worker_processes, $3 the http{} body.
start_nginx() {
  local name="$1" workers="$2" body="$3" dir="$WORK/$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  chmod -R 777 "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
$body
}
EOF
  "${SERVER[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
    >"$dir/logs/stdout.log" 2>&1 &
  PIDS+=($!)
}

# ---------------------------------------------------------------- (a) upstream
UP_PORT="$(free_port)"
start_nginx upstream 1 "  server {
    listen 127.0.0.1:$UP_PORT reuseport;
    location / { default_type text/plain; return 200 \"ok\\n\"; }
  }"
wait_http "http://127.0.0.1:$UP_PORT/" "upstream nginx"

# ---------------------------------------------------------------- (b) nginx proxy_pass
NGX_PORT="$(free_port)"
start_nginx proxy "$WORKERS" "  upstream app {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGX_PORT reuseport;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
wait_http "http://127.0.0.1:$NGX_PORT/" "nginx proxy"

# ---------------------------------------------------------------- (c) Tessera
TSR_PORT="$(free_port)"
USER_NAME=bench
USER_PASS="bench-$RANDOM$RANDOM"
HASH="$(printf '%s\n' "$USER_PASS" | "$TESSERA_BIN" hash-password)"
cat >"$WORK/tessera.yaml" <<EOF
version: 1
http:
  address: "127.0.0.1:$TSR_PORT"
logger:
  level: warn        # no per-request access log (it is an info-level event)
  format: json
connectors:
  - name: local
    type: local
    users:
      - username: $USER_NAME
        passwordHash: "$HASH"
        attributes:
          email: bench@example.com
          groups: [admins, staff]
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
mkdir -p "$WORK/tessera"
# RUST_LOG would override the configured level; the worker count is set explicitly so it
# equals nginx's worker_processes.
env -u RUST_LOG TOKIO_WORKER_THREADS="$WORKERS" \
  "${SERVER[@]}" "$TESSERA_BIN" run --config "$WORK/tessera.yaml" \
  >"$WORK/tessera/stdout.log" 2>"$WORK/tessera/stderr.log" &
TSR_PID=$!
PIDS+=("$TSR_PID")
TSR="http://127.0.0.1:$TSR_PORT"
wait_http "$TSR/status" "Tessera"

# Log in like a browser: GET / -> login page (flow + csrf) -> POST -> session cookie.
JAR="$WORK/cookies.txt"
login_url="$(curl -s -c "$JAR" -b "$JAR" -o /dev/null -w '%{redirect_url}' "$TSR/")"
[ -n "$login_url" ] || die "GET / on Tessera did not redirect to the login page"
page="$(curl -s -c "$JAR" -b "$JAR" "$login_url")"
field() { printf '%s' "$page" | sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" | head -1; }
flow="$(field flow)"; csrf="$(field csrf)"
[ -n "$flow" ] && [ -n "$csrf" ] || die "no flow/csrf fields on the login page ($login_url)"
curl -s -c "$JAR" -b "$JAR" -o /dev/null -D "$WORK/login.headers" \
  --data-urlencode "flow=$flow" --data-urlencode "csrf=$csrf" --data-urlencode "idp=local" \
  --data-urlencode "username=$USER_NAME" --data-urlencode "password=$USER_PASS" \
  "$TSR/.tessera/login"
SESSION="$(sed -n 's/^[Ss]et-[Cc]ookie: *\(tessera_session=[^;]*\).*/\1/p' "$WORK/login.headers" | tr -d '\r' | head -1)"
[ -n "$SESSION" ] || die "login did not set tessera_session (see $WORK/login.headers)"
COOKIE="Cookie: $SESSION"

check() { # $1 name, $2 url: must be 200 with the upstream's body
  local out
  out="$(curl -s -H "$COOKIE" -w ' %{http_code}' "$2")"
  [ "$out" = "ok
 200" ] || die "$1 ($2) answered '$out', not 200 ok from the upstream"
}
check upstream "http://127.0.0.1:$UP_PORT/"
check nginx "http://127.0.0.1:$NGX_PORT/"
check tessera "$TSR/"
log "all three targets answer 200 ok (Tessera with the session cookie)"

if [ "${HOLD:-0}" = 1 ]; then
  {
    echo "Holding (Ctrl+C stops everything). Tessera pid $TSR_PID"
    for u in "http://127.0.0.1:$UP_PORT/" "http://127.0.0.1:$NGX_PORT/" "$TSR/"; do
      echo "  ${CLIENT[*]} wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency -H '$COOKIE' $u"
    done
  } >&2
  sleep infinity &
  PIDS+=($!)
  wait $! || true
  exit 0
fi

# ---------------------------------------------------------------- measurements
# wrk's done() prints exact numbers: req/s, p50 and p99 in microseconds, errors.
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
EOF

declare -A URL=(
  [upstream]="http://127.0.0.1:$UP_PORT/"
  [nginx]="http://127.0.0.1:$NGX_PORT/"
  [tessera]="$TSR/"
)
TARGETS=(upstream nginx tessera)
RESULTS="$WORK/results.txt"
: >"$RESULTS"

run_wrk() { # $1 target, $2 seconds -> "RESULT rps p50 p99 sockerr non2xx"
  timeout $(($2 + 30)) "${CLIENT[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2s" --latency \
    -H "$COOKIE" -s "$WORK/report.lua" "${URL[$1]}" | grep '^RESULT'
}

# Busy share (percent of all CPUs) of the machine over $1 seconds, from /proc/stat.
cpu_busy() {
  local a b idle tot k
  read -r -a a < <(head -1 /proc/stat); sleep "$1"; read -r -a b < <(head -1 /proc/stat)
  idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )); tot=0
  for k in 1 2 3 4 5 6 7 8; do tot=$(( tot + b[k] - a[k] )); done
  echo $(( tot > 0 ? 100 * (tot - idle) / tot : 0 ))
}
# Our servers are idle between runs, so what is busy then is someone else: wait for quiet.
QUIET_MAX="${QUIET_MAX:-5}"
QUIET_WAIT="${QUIET_WAIT:-120}"
NOISY_RUNS=0
wait_quiet() {
  local start=$SECONDS busy
  while :; do
    busy="$(cpu_busy 1)"
    [ "$busy" -le "$QUIET_MAX" ] && return 0
    if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then
      log "machine still ${busy}% busy after ${QUIET_WAIT}s: measuring anyway"
      NOISY_RUNS=$((NOISY_RUNS + 1))
      return 0
    fi
  done
}

log "warm-up: ${WARMUP}s per target"
for t in "${TARGETS[@]}"; do run_wrk "$t" "$WARMUP" >/dev/null; done

WRK_CMD="wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency -H 'Cookie: tessera_session=…'"
log "$ROUNDS rounds x ${#TARGETS[@]} targets x ${DURATION}s ($placement, $WORKERS proxy workers)"
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    wait_quiet
    line="$(run_wrk "$t" "$DURATION")"
    read -r _ rps p50 p99 serr non2xx <<<"$line"
    [ "$serr" = 0 ] && [ "$non2xx" = 0 ] || die "$t: $serr socket errors, $non2xx non-2xx responses"
    printf '%s %s %s %s %s\n' "$t" "$r" "$rps" "$p50" "$p99" >>"$RESULTS"
    printf '   round %s  %-9s %10.0f req/s   p50 %6d us   p99 %6d us\n' "$r" "$t" "$rps" "$p50" "$p99" >&2
  done
done

# Tessera must not have logged anything (no errors, no warnings) while measured.
if grep -q '"level":"ERROR"' "$WORK/tessera/stderr.log"; then
  die "Tessera logged errors: $(grep '"level":"ERROR"' "$WORK/tessera/stderr.log" | head -3)"
fi

# ---------------------------------------------------------------- table
TABLE="$(python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, _, rps, p50, p99 = line.split()
    rows.setdefault(t, []).append((float(rps), int(p50), int(p99)))
med = {t: tuple(statistics.median(v[i] for v in runs) for i in range(3)) for t, runs in rows.items()}
ms = lambda us: f"{us / 1000:.2f} ms"
label = {
    "upstream": "(a) upstream direct",
    "nginx": "(b) nginx `proxy_pass`",
    "tessera": "(c) Tessera (session + 1 rule + 3 headers)",
}
n_rps, _, n_p99 = med["nginx"]
print("| target | requests/s (median) | requests/s (min–max) | p50 | p99 | req/s vs nginx | p99 − nginx p99 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for t in ("upstream", "nginx", "tessera"):
    rps, p50, p99 = med[t]
    lo = min(r[0] for r in rows[t]); hi = max(r[0] for r in rows[t])
    delta = (p99 - n_p99) / 1000
    print(f"| {label[t]} | {rps:,.0f} | {lo:,.0f}–{hi:,.0f} | {ms(p50)} | {ms(p99)} | "
          f"{rps / n_rps:.2f} | {delta:+.2f} ms |")
t_rps, _, t_p99 = med["tessera"]
ok_rps = t_rps >= 0.9 * n_rps
ok_p99 = t_p99 - n_p99 <= 1000
print()
print(f"Target (c) ≥ 0.9 × (b) req/s: {'met' if ok_rps else 'NOT met'} ({t_rps / n_rps:.2f}); "
      f"(c) p99 within 1 ms of (b): {'met' if ok_p99 else 'NOT met'} ({(t_p99 - n_p99) / 1000:+.2f} ms).")
EOF
)"
printf '\n%s\n\n' "$TABLE"

# ---------------------------------------------------------------- docs/benchmarks.md
if [ "$WRITE_DOCS" = 1 ]; then
  DOC="$ROOT/docs/benchmarks.md"
  mkdir -p "$ROOT/docs"
  cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  [ -n "$cpu_model" ] || cpu_model="$(uname -m)"
  nginx_v="$(nginx -v 2>&1 | sed 's/^nginx version: //')"
  wrk_v="$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  tessera_v="$("$TESSERA_BIN" version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo '+local changes'))"
  BLOCK="$WORK/block.md"
  {
    echo "<!-- bench/proxy.sh:begin (generated by bench/proxy.sh; edit outside these markers) -->"
    echo "Run on $(date -u +%Y-%m-%d) — $ncpu CPUs ($cpu_model), $(uname -sr); $nginx_v, wrk $wrk_v, $tessera_v."
    echo
    echo "Command: \`bench/proxy.sh\` (defaults: DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS PIN=$PIN)."
    echo "Each target: \`$WRK_CMD\`, $ROUNDS runs interleaved a,b,c,a,b,c,…; medians shown (each column's median on its own)."
    echo "CPU placement: $placement; nginx \`worker_processes $WORKERS\`, Tessera $WORKERS tokio worker threads; upstream: nginx, 1 worker, \`return 200 \"ok\\n\"\`."
    echo
    if [ "$NOISY_RUNS" -gt 0 ]; then
      echo "Warning: $NOISY_RUNS of $((ROUNDS * ${#TARGETS[@]})) runs started while other processes kept the machine more than ${QUIET_MAX}% busy."
      echo
    fi
    echo "$TABLE"
    echo "<!-- bench/proxy.sh:end -->"
  } >"$BLOCK"
  if [ -f "$DOC" ] && grep -q '<!-- bench/proxy.sh:begin' "$DOC"; then
    python3 - "$DOC" "$BLOCK" <<'EOF'
import re, sys
doc, block = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(doc).read()
text = re.sub(r"<!-- bench/proxy.sh:begin.*?<!-- bench/proxy.sh:end -->", lambda _: block, text, flags=re.S)
open(doc, "w").write(text)
EOF
  else
    {
      echo "# Benchmarks"
      echo
      echo "## Proxy overhead (\`bench/proxy.sh\`)"
      echo
      cat "$BLOCK"
    } >"$DOC"
  fi
  log "updated ${DOC#"$ROOT"/}"
fi
