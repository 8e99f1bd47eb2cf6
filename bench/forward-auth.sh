#!/usr/bin/env bash
# Forward-auth decisions through real nginx `auth_request` (issue #16), side by side in one run:
#   (floor)   nginx auth_request to a location of its own that always answers 200, then
#             proxy_pass to the upstream: the cost of the pattern itself;
#   (external) nginx auth_request to an auth *server* as cheap as one can be: a second nginx
#             process (one worker, CPU 1) answering 200 over keep-alive connections (the same
#             subrequest hop Tessera needs, with nothing decided): the ceiling of any external
#             auth server;
#   (tessera) nginx auth_request to Tessera's /.tessera/auth for a signed-in session (one
#             rule, three identity headers copied upstream), then proxy_pass;
#   (bearer)  the same with a JWT access token of Tessera's own provider (client_credentials)
#             instead of a session: verified in-process, its claims as the three headers.
# Pinned: wrk on CPU 0; the front nginx, Tessera and the upstream on CPU 1 (one core for the
# whole system under test, the same for both rows). Rounds interleave floor, tessera, floor…;
# medians are reported. Target: tessera ≥ 0.67 × floor req/s.
#
#   DURATION=10 CONNECTIONS=32 ROUNDS=3 bench/forward-auth.sh
# TESSERA_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
ROUNDS="${ROUNDS:-3}"
log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in nginx wrk curl python3 taskset; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install nginx-light wrk curl python3 util-linux)"
done
if [ -z "${TESSERA_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/tessera-bench/target}"
  log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --quiet
  TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
# shellcheck source=bench/common.sh
. bench/common.sh
SUT=(taskset -c 1)
LOAD=(taskset -c 0)

start_upstream "${SUT[@]}"
# The external auth server of row (external): its own nginx process, like Tessera is its own.
AUTH_PORT="$(free_port)"
mkdir -p "$WORK/auth/logs" "$WORK/auth/tmp"
sed -e "s#$WORK/up#$WORK/auth#g" -e "s#127.0.0.1:$UP_PORT#127.0.0.1:$AUTH_PORT#" -e "s#return 200 \"ok\\\\n\";#return 200;#" "$WORK/up/nginx.conf" >"$WORK/auth/nginx.conf"
"${SUT[@]}" nginx -p "$WORK/auth" -c "$WORK/auth/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)
GW_PORT="$(free_port)"
FRONT_PORT="$(free_port)"
FLOOR_PORT="$(free_port)"
BEARER_PORT="$(free_port)"
EXTERNAL_PORT="$(free_port)"
HASH="$(printf 'bench-pass\n' | "$TESSERA_BIN" hash-password)"
"$TESSERA_BIN" keys generate --alg ES256 --out "$WORK/signing.pem" >/dev/null
cat >"$WORK/tessera.yaml" <<CONF
version: 1
http: { address: "127.0.0.1:$GW_PORT", trustedProxies: ["127.0.0.1/32"] }
logger: { level: warn, format: json }
connectors:
  - name: local
    type: local
    users:
      - username: bench
        passwordHash: "$HASH"
        attributes: { email: bench@example.com, groups: [admins, staff] }
apps:
  - name: bench
    type: forwardAuth
    routePatterns: ["127.0.0.1:$FRONT_PORT/"]
    gatewayURL: http://127.0.0.1:$GW_PORT
    headers:
      - { name: X-User, value: "{{ local.username }}" }
      - { name: X-Email, value: "{{ local.email }}" }
      - { name: X-Groups, value: "{{ local.groups }}" }
    policies:
      - location: /
        authentication: { idps: [local] }
        authorization:
          rules: { attribute: local.groups, contains: admins }
  - name: bench-bearer
    type: forwardAuth
    routePatterns: ["127.0.0.1:$BEARER_PORT/"]
    gatewayURL: http://127.0.0.1:$GW_PORT
    headers:
      - { name: X-User, value: "{{ token.sub }}" }
      - { name: X-Email, value: "{{ token.client_id }}" }
      - { name: X-Groups, value: "{{ token.scope }}" }
    policies:
      - location: /
        authentication: { bearer: { issuers: [oidcProvider], audiences: ["https://api.bench"] } }
        authorization:
          rules: { attribute: token.scope, contains: orders.read }
  - name: bench-client
    type: oidc
    clientID: bench-client
    clientSecret: bench-client-secret-0123456789
    redirectURLs: ["https://client.bench/cb"]
    grantTypes: [client_credentials]
    scopes: [orders.read]
    authentication: { idps: [local] }
    accessToken: { allowedAudiences: ["https://api.bench"] }
oidcProvider:
  issuer: http://127.0.0.1:$GW_PORT
  signingKeys: [{ file: $WORK/signing.pem, alg: ES256 }]
CONF
TOKIO_WORKER_THREADS=1 "${SUT[@]}" "$TESSERA_BIN" run --config "$WORK/tessera.yaml" >"$WORK/tessera.log" 2>&1 &
PIDS+=($!)
wait_gateway "http://127.0.0.1:$GW_PORT" 300 || die "tessera did not start: $(tail -5 "$WORK/tessera.log")"

mkdir -p "$WORK/front/logs" "$WORK/front/tmp"
cat >"$WORK/front/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/front/nginx.pid;
error_log $WORK/front/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/front/tmp/body;
  proxy_temp_path $WORK/front/tmp/proxy;
  fastcgi_temp_path $WORK/front/tmp/fastcgi;
  uwsgi_temp_path $WORK/front/tmp/uwsgi;
  scgi_temp_path $WORK/front/tmp/scgi;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
  upstream tessera { server 127.0.0.1:$GW_PORT; keepalive 64; }
  upstream authsrv { server 127.0.0.1:$AUTH_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$FRONT_PORT;
    location = /_auth {
      internal;
      proxy_pass http://tessera/.tessera/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_auth;
      auth_request_set \$u \$upstream_http_x_user;
      auth_request_set \$e \$upstream_http_x_email;
      auth_request_set \$g \$upstream_http_x_groups;
      proxy_set_header X-User \$u;
      proxy_set_header X-Email \$e;
      proxy_set_header X-Groups \$g;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
  server {
    listen 127.0.0.1:$BEARER_PORT;
    location = /_auth {
      internal;
      proxy_pass http://tessera/.tessera/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_auth;
      auth_request_set \$u \$upstream_http_x_user;
      auth_request_set \$e \$upstream_http_x_email;
      auth_request_set \$g \$upstream_http_x_groups;
      proxy_set_header X-User \$u;
      proxy_set_header X-Email \$e;
      proxy_set_header X-Groups \$g;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
  server {
    listen 127.0.0.1:$EXTERNAL_PORT;
    location = /_auth {
      internal;
      proxy_pass http://authsrv/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
  server {
    listen 127.0.0.1:$FLOOR_PORT;
    location = /_auth { internal; return 200; }
    location / {
      auth_request /_auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
}
CONF
"${SUT[@]}" nginx -p "$WORK/front" -c "$WORK/front/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

# Sign in through the gateway's own sign-in for the app's URL (what the ingress's redirect does).
jar="$WORK/jar"
page="$(curl -s -c "$jar" -b "$jar" -L "http://127.0.0.1:$GW_PORT/.tessera/login?rd=http%3A%2F%2F127.0.0.1%3A$FRONT_PORT%2F")"
field() { printf '%s' "$page" | sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" | head -1; }
curl -s -c "$jar" -b "$jar" -o /dev/null -D "$WORK/login.headers" \
  --data-urlencode "flow=$(field flow)" --data-urlencode "csrf=$(field csrf)" --data-urlencode "idp=local" \
  --data-urlencode "username=bench" --data-urlencode "password=bench-pass" \
  "http://127.0.0.1:$GW_PORT/.tessera/login"
COOKIE="$(sed -n 's/^[Ss]et-[Cc]ookie: *\(tessera_session=[^;]*\).*/\1/p' "$WORK/login.headers" | tr -d '\r' | head -1)"
[ -n "$COOKIE" ] || die "sign-in failed"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$FRONT_PORT/")"
[ "$code" = 200 ] || die "a signed-in request through nginx answered $code"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FRONT_PORT/")"
[ "$code" = 401 ] || die "an anonymous request through nginx answered $code (expected 401)"
# A JWT access token of the gateway's own provider, for the bearer row.
TOKEN="$(curl -s -u bench-client:bench-client-secret-0123456789 \
  --data-urlencode grant_type=client_credentials --data-urlencode scope=orders.read \
  --data-urlencode resource=https://api.bench "http://127.0.0.1:$GW_PORT/oauth2/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
[ "$(tr -cd . <<<"$TOKEN")" = ".." ] || die "no JWT access token: $TOKEN"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$BEARER_PORT/")"
[ "$code" = 200 ] || die "a bearer request through nginx answered $code"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$BEARER_PORT/")"
[ "$code" = 401 ] || die "a request without a token through nginx answered $code (expected 401)"

run() { # $1 url, $2 credential header -> "rps p50_ms p99_ms"
  "${LOAD[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$2" "$1" 2>/dev/null |
    awk '/Requests\/sec/ {rps=$2}
         /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         /Non-2xx/ {bad=$NF}
         END {
           if (bad) { print "ERROR non-2xx " bad; exit }
           printf "%s %s %s\n", rps, p50, p99
         }'
}
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.2f", v/1000; else if (v ~ /ms$/) printf "%.2f", v+0; else printf "%.2f", v*1000 }'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

log "warm-up"
run "http://127.0.0.1:$FLOOR_PORT/" "Cookie: $COOKIE" >/dev/null
run "http://127.0.0.1:$EXTERNAL_PORT/" "Cookie: $COOKIE" >/dev/null
run "http://127.0.0.1:$FRONT_PORT/" "Cookie: $COOKIE" >/dev/null
run "http://127.0.0.1:$BEARER_PORT/" "Authorization: Bearer $TOKEN" >/dev/null
declare -A rps p50 p99
for r in $(seq 1 "$ROUNDS"); do
  for t in floor external tessera bearer; do
    port=$FLOOR_PORT; cred="Cookie: $COOKIE"
    [ "$t" = external ] && port=$EXTERNAL_PORT
    [ "$t" = tessera ] && port=$FRONT_PORT
    [ "$t" = bearer ] && port=$BEARER_PORT && cred="Authorization: Bearer $TOKEN"
    read -r a b c < <(run "http://127.0.0.1:$port/" "$cred")
    [ "$a" != ERROR ] || die "$t: $a $b $c"
    rps[$t]+="$a "; p50[$t]+="$(to_ms "$b") "; p99[$t]+="$(to_ms "$c") "
    log "round $r $t: $a req/s, p50 $b, p99 $c"
  done
done
med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | median; }
F="$(med "${rps[floor]}")"; X="$(med "${rps[external]}")"; T="$(med "${rps[tessera]}")"; B="$(med "${rps[bearer]}")"
echo
echo "Run on $(date -u +%F) — $(nproc) CPUs; $(nginx -v 2>&1 | sed 's/.*: //'), $("$TESSERA_BIN" version 2>/dev/null | head -1)."
echo "Command: \`bench/forward-auth.sh\` (DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS; wrk on CPU 0, everything else on CPU 1)."
echo
echo "| row | req/s (median of $ROUNDS) | p50 | p99 | × floor |"
echo "|---|---:|---:|---:|---:|"
printf '| nginx auth_request → 200 (floor) | %.0f | %s ms | %s ms | 1.00 |\n' "$F" "$(med "${p50[floor]}")" "$(med "${p99[floor]}")"
printf '| nginx auth_request → nginx answering 200 (an external auth server deciding nothing) | %.0f | %s ms | %s ms | %.2f |\n' "$X" "$(med "${p50[external]}")" "$(med "${p99[external]}")" "$(awk -v a="$X" -v b="$F" 'BEGIN{print a/b}')"
printf '| nginx auth_request → Tessera (session, 1 rule, 3 headers) | %.0f | %s ms | %s ms | %.2f |\n' "$T" "$(med "${p50[tessera]}")" "$(med "${p99[tessera]}")" "$(awk -v a="$T" -v b="$F" 'BEGIN{print a/b}')"
printf '| nginx auth_request → Tessera (bearer JWT, 1 rule, 3 headers) | %.0f | %s ms | %s ms | %.2f |\n' "$B" "$(med "${p50[bearer]}")" "$(med "${p99[bearer]}")" "$(awk -v a="$B" -v b="$F" 'BEGIN{print a/b}')"
