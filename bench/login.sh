#!/usr/bin/env bash
# Login round trip through Tessera and an upstream IdP (panva's oidc-provider), scripted:
# bench/oidc/upstream-login.mjs times every call and attributes it to the gateway or the IdP.
#   bench/login.sh            ROUNDS=200 CONCURRENCY=4; TESSERA_BIN to skip the build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-200}"
CONCURRENCY="${CONCURRENCY:-4}"
if [ -z "${TESSERA_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/tessera-bench/target}"
  cargo build --release --quiet
  TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
[ -d bench/oidc/node_modules ] || (cd bench/oidc && npm ci --no-audit --no-fund --loglevel=error)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

GW_PORT="$(free_port)"; IDP_PORT="$(free_port)"; UP_PORT="$(free_port)"
SECRET="bench-gateway-secret-0123"
node -e "require('http').createServer((q,s)=>{s.end(JSON.stringify(q.headers))}).listen($UP_PORT,'127.0.0.1')" &
PIDS+=($!)
node bench/oidc/upstream-idp.mjs --port "$IDP_PORT" --redirect "http://127.0.0.1:$GW_PORT/idp/callback" --secret "$SECRET" > "$TMP/idp.log" &
PIDS+=($!)
cat > "$TMP/tessera.yaml" <<YAML
version: 1
http: { address: "127.0.0.1:$GW_PORT" }
logger: { level: warn, format: json }
connectors:
  - name: idp
    type: oidc
    oidcWellKnownURL: http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration
    oauthClientID: gateway
    oauthClientSecret: $SECRET
    oauthRedirectURL: http://127.0.0.1:$GW_PORT/idp/callback
    scopes: openid email
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://127.0.0.1:$UP_PORT
    headers: [{ name: X-Idp-Email, value: "{{ idp.email }}" }]
    policies: [{ location: /, authentication: { idps: [idp] }, authorization: { allowAll: true } }]
YAML
for _ in $(seq 100); do grep -q listening "$TMP/idp.log" && break; sleep 0.1; done
"$TESSERA_BIN" run --config "$TMP/tessera.yaml" 2> "$TMP/tessera.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$GW_PORT/status" >/dev/null && break; sleep 0.1; done

result="$(node bench/oidc/upstream-login.mjs --gateway "http://127.0.0.1:$GW_PORT" --idp "http://127.0.0.1:$IDP_PORT" --rounds "$ROUNDS" --concurrency "$CONCURRENCY")"
echo "$result"
python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| login round trips/s | p50 | p99 | in Tessera per login | in the IdP per login |")
print(f"|---:|---:|---:|---:|---:|")
print(f"| {r['per_second']} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['gateway_ms_per_login']} ms | {r['idp_ms_per_login']} ms |")
PY
