# Shared by bench/ab.sh, bench/callgrind.sh and bench/cpu.sh (sourced): a scratch dir whose
# processes stop on exit, the tiny nginx upstream, the gateway configuration of
# bench/proxy.sh's request (c), and a browser-like login.

# Makes the scratch dir WORK (named after $1) and the list PIDS of processes to stop; on exit
# they are stopped and WORK removed (kept when KEEP is set).
bench_scratch() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-$1.XXXXXX")"
  chmod 755 "$WORK"
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts nginx answering `200 ok` on a free port (sets UP_PORT); "$@" prefixes the command
# (e.g. taskset -c 1).
start_upstream() {
  UP_PORT="$(free_port)"
  mkdir -p "$WORK/up/logs" "$WORK/up/tmp"
  cat >"$WORK/up/nginx.conf" <<CONF
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
CONF
  "$@" nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" >/dev/null 2>&1 &
  PIDS+=($!)
}

# Writes the configuration of request (c) to $1 for listen port $2 and password hash $3:
# user bench, one rule, three identity headers, the upstream of start_upstream.
# HOOK=c | c-cached adds the C test guest's IsAuthenticated to the policy
# (extensions/test-guests/out/c-isauth.wasm, from scripts/build-extensions.sh), uncached or
# with `cacheSeconds: 60`: what a hook costs (issue 17).
bench_config() {
  local hook=""
  if [ -n "${HOOK:-}" ]; then
    local wasm cache=""
    wasm="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/extensions/test-guests/out/c-isauth.wasm"
    [ -f "$wasm" ] || { echo "error: missing $wasm (scripts/build-extensions.sh test-guests)" >&2; return 1; }
    case "$HOOK" in
      c) ;;
      c-cached) cache=", cacheSeconds: 60" ;;
      *) echo "error: HOOK is c or c-cached" >&2; return 1 ;;
    esac
    hook=", isAuthenticatedSE: { funcName: IsAuthenticated, file: \"$wasm\"$cache }"
  fi
  cat >"$1" <<CONF
version: 1
http: { address: "127.0.0.1:$2" }
logger: { level: warn, format: json }
connectors:
  - name: local
    type: local
    users:
      - username: bench
        passwordHash: "$3"
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
        authentication: { idps: [local]$hook }
        authorization:
          rules: { attribute: local.groups, contains: admins }
CONF
}

# Waits (up to $2 tenths of a second) until the gateway at $1 answers /status.
wait_gateway() {
  for i in $(seq 1 "$2"); do
    curl -s -o /dev/null --max-time 2 "$1/status" && return 0
    sleep 0.1
  done
  return 1
}

# Signs in as bench with password $2 at gateway URL $1 like a browser; prints the session
# cookie pair (`tessera_session=…`), nothing if the login failed.
login_session() {
  local tsr="$1" pass="$2" jar login_url page flow csrf
  jar="$(mktemp "$WORK/jar.XXXXXX")"
  login_url="$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "$tsr/")"
  page="$(curl -s -c "$jar" -b "$jar" "$login_url")"
  flow="$(printf '%s' "$page" | sed -n 's/.*name="flow" value="\([^"]*\)".*/\1/p' | head -1)"
  csrf="$(printf '%s' "$page" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)"
  curl -s -c "$jar" -b "$jar" -o /dev/null -D "$jar.headers" \
    --data-urlencode "flow=$flow" --data-urlencode "csrf=$csrf" --data-urlencode "idp=local" \
    --data-urlencode "username=bench" --data-urlencode "password=$pass" "$tsr/.tessera/login"
  sed -n 's/^[Ss]et-[Cc]ookie: *\(tessera_session=[^;]*\).*/\1/p' "$jar.headers" | tr -d '\r' | head -1
}

# Starts Tessera binary $1 as gateway $2 (a name for its files) on the configuration of
# bench_config, one worker on CPU 1, and signs in; sets GW_URL (with a trailing /), GW_COOKIE
# and GW_PID (env and taskset exec: the process started is the gateway itself).
start_gateway() {
  local bin="$1" name="$2" port pass hash
  port="$(free_port)"; pass="bench-$RANDOM$RANDOM"
  hash="$(printf '%s\n' "$pass" | "$bin" hash-password)"
  bench_config "$WORK/$name.yaml" "$port" "$hash"
  env -u RUST_LOG TOKIO_WORKER_THREADS=1 taskset -c 1 "$bin" run --config "$WORK/$name.yaml" \
    >"$WORK/$name.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  GW_URL="http://127.0.0.1:$port/"
  wait_gateway "${GW_URL%/}" 100 || die "$name did not start: $(tail -3 "$WORK/$name.log")"
  GW_COOKIE="$(login_session "${GW_URL%/}" "$pass")"
  [ -n "$GW_COOKIE" ] || die "login failed on $name"
  [ "$(curl -s -H "Cookie: $GW_COOKIE" "$GW_URL")" = "ok" ] || die "$name does not proxy"
}
