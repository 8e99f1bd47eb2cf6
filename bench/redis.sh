#!/usr/bin/env bash
# Redis-backed state vs in-memory, in one run on loopback:
#   proxy hot path (authenticated session, one rule, three injected headers) with
#   `session.store` in memory vs in Redis, measured with wrk;
#   token endpoint refresh_token grant (rotation) with `oidcProvider.cache` in memory vs in
#   Redis, measured with bench/oidc/refresh-load.mjs.
# Each pair is interleaved ROUNDS times; medians are reported with the Redis/memory ratio.
#   bench/redis.sh        DURATION=8 ROUNDS=3 CONNECTIONS=32; TESSERA_BIN to skip the build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-8}"; ROUNDS="${ROUNDS:-3}"; CONNECTIONS="${CONNECTIONS:-32}"
for t in wrk redis-server nginx node curl python3; do command -v "$t" >/dev/null || { echo "error: $t is required (apt-get install wrk redis-server nodejs)"; exit 1; }; done
if [ -z "${TESSERA_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/tessera-bench/target}"
  cargo build --release --quiet
  TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
[ -d bench/oidc/node_modules ] || (cd bench/oidc && npm ci --no-audit --no-fund --loglevel=error)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP="$(mktemp -d)"; PIDS=(); MAIN=$$
cleanup() { [ "$BASHPID" = "$MAIN" ] || return 0; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

REDIS_PORT="$(free_port)"; UP_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" > "$TMP/redis.log" &
PIDS+=($!)
# the upstream: a tiny nginx answering "ok", never the bottleneck
mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $TMP/nginx/nginx.pid; error_log /dev/null;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok\n"; } } }
NGINX
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
PIDS+=($!)
HASH="$(echo pw | "$TESSERA_BIN" hash-password)"
"$TESSERA_BIN" keys generate --alg ES256 --out "$TMP/es256.pem" > /dev/null

start_gateway() { # name store -> sets PORT (no subshell: the process list must stay here)
  local port; port="$(free_port)"
  cat > "$TMP/$1.yaml" <<YAML
version: 1
http: { address: "127.0.0.1:$port" }
logger: { level: warn, format: json }
caches: [{ name: shared, type: redis, redis: { addresses: ["127.0.0.1:$REDIS_PORT"], keyPrefix: "$1:" } }]
# Room for a full-speed refresh load: every rotated refresh token is kept (reuse detection)
# until it expires, and counts against oidcProvider.tokenStateMiB.
session: { store: $2, memoryStore: { maxMiB: 4096 } }
connectors:
  - { name: local, type: local, users: [{ username: bench, passwordHash: "$HASH", attributes: { email: b@example.com, groups: [admins] } }] }
oidcProvider:
  issuer: http://127.0.0.1:$port
  cache: $2
  tokenStateMiB: 3072
  signingKeys: [{ file: $TMP/es256.pem, alg: ES256 }]
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://127.0.0.1:$UP_PORT
    headers:
      - { name: X-User, value: "{{ local.username }}" }
      - { name: X-Email, value: "{{ local.email }}" }
      - { name: X-Groups, value: "{{ local.groups }}" }
    policies: [{ location: /, authentication: { idps: [local] }, authorization: { rules: { attribute: local.groups, contains: admins } } }]
  - name: rp
    type: oidc
    clientID: bench
    clientSecret: bench-secret-0123456789
    redirectURLs: ["http://localhost/cb"]
    grantTypes: [authorization_code, refresh_token]
    authentication: { idps: [local] }
    refreshToken: { allowOfflineAccess: true }
YAML
  "$TESSERA_BIN" run --config "$TMP/$1.yaml" 2> "$TMP/$1.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/status" >/dev/null && break; sleep 0.1; done
  PORT="$port"
}

login() { # port -> cookie
  local base="http://127.0.0.1:$1" jar="$TMP/jar.$1" page flow csrf
  curl -s -c "$jar" -b "$jar" -o /dev/null "$base/"
  page="$(curl -s -c "$jar" -b "$jar" -L "$base/")"
  flow="$(sed -n 's/.*name="flow" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)"
  csrf="$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "flow=$flow" --data-urlencode "csrf=$csrf" -d idp=local -d username=bench -d password=pw "$base/.tessera/login"
  awk '$6=="tessera_session"{print "tessera_session=" $7}' "$jar"
}

start_gateway mem default; MEM="$PORT"
start_gateway red shared; RED="$PORT"
MEM_COOKIE="$(login "$MEM")"; RED_COOKIE="$(login "$RED")"
for p in "$MEM:$MEM_COOKIE" "$RED:$RED_COOKIE"; do
  code="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: ${p#*:}" "http://127.0.0.1:${p%%:*}/x")"
  [ "$code" = 200 ] || { echo "error: authenticated request answered $code"; exit 1; }
done

wrk_rps() { wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Cookie: $2" "http://127.0.0.1:$1/x" | awk '/Requests\/sec/{r=$2} / 99%/{p=$2} END{print r, p}'; }
refresh_rps() { node bench/oidc/refresh-load.mjs --issuer "http://127.0.0.1:$1" --client bench --secret bench-secret-0123456789 --redirect http://localhost/cb --username bench --password pw --chains 16 --seconds "$DURATION" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r.get("rate", r.get("per_second", 0)), r.get("p99_ms", ""))'; }

declare -a PM PR RM RR
for i in $(seq "$ROUNDS"); do
  PM+=("$(wrk_rps "$MEM" "$MEM_COOKIE")"); PR+=("$(wrk_rps "$RED" "$RED_COOKIE")")
  RM+=("$(refresh_rps "$MEM")"); RR+=("$(refresh_rps "$RED")")
done
python3 - "${PM[*]}" "${PR[*]}" "${RM[*]}" "${RR[*]}" "$ROUNDS" <<'PY'
import sys, statistics
def parse(s, n):
    v = s.split()
    pairs = [v[i:i+2] for i in range(0, len(v), 2)]
    return statistics.median(float(p[0]) for p in pairs), pairs
pm, _ = parse(sys.argv[1], 0); pr, prp = parse(sys.argv[2], 0)
rm, _ = parse(sys.argv[3], 0); rr, _ = parse(sys.argv[4], 0)
print("| measurement | in memory | on Redis | Redis / memory |")
print("|---|---:|---:|---:|")
print(f"| proxy, authenticated request (req/s) | {pm:,.0f} | {pr:,.0f} | {pr/pm:.2f}× |")
print(f"| token endpoint, refresh_token grant (req/s) | {rm:,.0f} | {rr:,.0f} | {rr/rm:.2f}× |")
PY
