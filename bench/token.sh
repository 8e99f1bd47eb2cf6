#!/usr/bin/env bash
# OpenID provider benchmark: Tessera's built-in provider vs panva's oidc-provider (node), in one
# run on loopback, same machine, same ES256 key (the very same key file), equivalent clients:
#   1. token endpoint, client_credentials, RFC 9068 JWT access token signed ES256   (wrk)
#   2. token endpoint, client_credentials, opaque access token                     (wrk)
#   3. token endpoint, refresh_token with rotation, N concurrent chains each using the token
#      its previous call returned (opaque access token + ES256 ID token)  (bench/oidc/refresh-load.mjs)
#   4. authorization-code round trip: authorize -> sign-in form (-> consent form for
#      oidc-provider) -> code -> token, a new user agent each time      (bench/oidc/code-load.mjs)
#   5. the same round trip in an existing session (SSO): authorize -> code -> token
#   6. introspection of a JWT access token and of an opaque one (wrk, the token's own client)
#   7. client_credentials with RS256 and with EdDSA JWTs (both providers restarted with that key)
# Then a flood: FLOOD seconds of client_credentials (ES256 JWT) at full speed from one client
# against Tessera, with a browser-like code flow running meanwhile; Tessera's peak RSS and
# the code flows completed are reported. And `openssl speed` of the three signatures, pinned
# like the providers, as the reference of what one signature costs on this CPU.
# Each scenario runs ROUNDS times per provider, interleaved (T,O,T,O,…); the table has medians.
# Tessera runs with `logger: {level: warn}`: no per-request access log lines (they are
# info-level events); oidc-provider logs nothing per request either.
# The table is printed and written into docs/benchmarks.md under "## OIDC provider" (only
# that section is touched: the file is re-read right before writing).
#
# Usage: bench/token.sh        (from anywhere; installs wrk/node/npm packages when missing)
# Knobs (environment):
#   DURATION=10      seconds per measured run     ROUNDS=3          runs per provider and scenario
#   CONNECTIONS=32   wrk connections              THREADS=1         wrk threads
#   CHAINS=32        refresh chains               FLOWS=8           concurrent code round trips
#   WARMUP=2         seconds of the same load before each measured run (each run gets a freshly
#                    started provider: see start_provider)
#   PIN=1            taskset: load generators on CPU 0, the providers on the other CPUs
#   WORKERS=         Tessera's tokio worker threads (default: the CPUs the providers may use;
#                    oidc-provider is one node process = one thread of JavaScript)
#   QUIET_MAX=10     before each run wait (at most QUIET_WAIT=60 s) until other processes use
#                    at most this % of the machine; a run during which they used more than
#                    FOREIGN_MAX=10 % is repeated (at most RETRIES=3 times); the largest share
#                    seen during the kept runs is reported
#   SCENARIOS="cc-jwt cc-opaque refresh code-full code-sso intro-jwt intro-opaque cc-rs256 cc-eddsa"
#                    which rows to measure
#   FLOOD=60         seconds of the flood (0: none)
#   WRITE_DOCS=1     update docs/benchmarks.md (0 = print only)
#   BENCH_TARGET_DIR cargo target dir of the release build (default ~/.cache/tessera-bench/target,
#                    not the shared ./target: no lock contention with other builds)
#   TESSERA_BIN      use this binary instead of building
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
CHAINS="${CHAINS:-32}"
FLOWS="${FLOWS:-8}"
WARMUP="${WARMUP:-2}"
PIN="${PIN:-1}"
QUIET_MAX="${QUIET_MAX:-10}"
QUIET_WAIT="${QUIET_WAIT:-60}"
FOREIGN_MAX="${FOREIGN_MAX:-10}"
RETRIES="${RETRIES:-3}"
WRITE_DOCS="${WRITE_DOCS:-1}"
FLOOD="${FLOOD:-60}"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for t in wrk node npm curl python3 taskset; do
  command -v "$t" >/dev/null 2>&1 || die "$t is required"
done
if [ ! -d bench/oidc/node_modules ] || [ bench/oidc/package-lock.json -nt bench/oidc/node_modules/.installed ]; then
  log "npm ci in bench/oidc (oidc-provider, jose)"
  (cd bench/oidc && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
fi

# ---------------------------------------------------------------- build
if [ -z "${TESSERA_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/tessera-bench/target}"
  log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --quiet
  TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
[ -x "$TESSERA_BIN" ] || die "no Tessera binary at $TESSERA_BIN"

# ---------------------------------------------------------------- CPU placement
ncpu="$(nproc)"
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ]; then
  CLIENT=(taskset -c 0)
  SERVER=(taskset -c "1-$((ncpu - 1))")
  server_ncpu=$((ncpu - 1))
  placement="pinned: load generators on CPU 0, the provider under test on CPU 1-$((ncpu - 1))"
else
  PIN=0
  CLIENT=(); SERVER=()
  server_ncpu="$ncpu"
  placement="not pinned: load generators and providers share all $ncpu CPUs"
fi
WORKERS="${WORKERS:-$server_ncpu}"

# ---------------------------------------------------------------- scratch dir, cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-token-bench.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() { # $1 url, $2 name: bounded wait for an HTTP 200
  local i
  for i in $(seq 1 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ] && return 0
    sleep 0.1
  done
  die "$2 did not come up at $1 (logs in $WORK)"
}

# ---------------------------------------------------------------- shared key, users, clients
SECRET="bench-secret-$RANDOM$RANDOM$RANDOM"
USER_NAME=bench
USER_PASS="bench-$RANDOM$RANDOM"
REDIRECT="http://localhost/cb"
for alg in ES256 RS256 EdDSA; do
  "$TESSERA_BIN" keys generate --alg "$alg" --out "$WORK/$alg.pem" >/dev/null
done
ALG=ES256  # the key both providers sign with in the next start_provider
HASH="$(printf '%s\n' "$USER_PASS" | "$TESSERA_BIN" hash-password)"

# ---------------------------------------------------------------- Tessera
T_PORT="$(free_port)"
T_URL="http://127.0.0.1:$T_PORT"
for alg in ES256 RS256 EdDSA; do
cat >"$WORK/tessera-$alg.yaml" <<EOF
version: 1
http:
  address: "127.0.0.1:$T_PORT"
logger:
  level: warn        # no per-request access log (it is an info-level event)
  format: json
session:
  # every round trip of the load generators starts a login flow from one IP (127.0.0.1)
  loginFlows: { maxPerClientIP: 100000000, windowSeconds: 60 }
connectors:
  - name: local
    type: local
    # FLOWS concurrent sign-ins of one user from one IP: each holds a throttle reservation
    # while its password is checked, so the default maxFailures would refuse the burst.
    throttle: { maxFailures: 100000, maxUsersPerClientIP: 100000 }
    users:
      - username: $USER_NAME
        passwordHash: "$HASH"      # argon2id, the defaults of \`tessera hash-password\`
        attributes: { email: bench@example.com, email_verified: true }
oidcProvider:
  issuer: $T_URL
  signingKeys: [{ file: $WORK/$alg.pem, alg: $alg }]
apps:
  - name: bench
    type: oidc
    clientID: bench
    clientSecret: $SECRET
    redirectURLs: []
    grantTypes: [client_credentials]
    scopes: [api]
    accessToken: { type: jwt, lifetimeSeconds: 600, allowedAudiences: ["https://api.bench.example"] }
  - name: bench-opaque
    type: oidc
    clientID: bench-opaque
    clientSecret: $SECRET
    redirectURLs: ["$REDIRECT"]
    grantTypes: [client_credentials, authorization_code, refresh_token]
    authentication: { idps: [local] }
    accessToken: { type: opaque, lifetimeSeconds: 600 }
    refreshToken: { allowOfflineAccess: true }
EOF
done

# ---------------------------------------------------------------- oidc-provider
O_PORT="$(free_port)"
O_URL="http://127.0.0.1:$O_PORT"

declare -A URL=([tessera]="$T_URL" [oidcp]="$O_URL")
declare -A TOKEN=([tessera]="$T_URL/oauth2/token" [oidcp]="$O_URL/token")
declare -A INTROSPECT=([tessera]="$T_URL/oauth2/introspect" [oidcp]="$O_URL/token/introspection")
declare -A PID_OF=()
PROVIDERS=(tessera oidcp)

# (Re)starts provider $1 on its port with the key of $ALG, after the previous process has
# exited. Every measured run gets a fresh process (each starts from the same empty state;
# opaque tokens are store entries for their lifetime on both).
start_provider() {
  local p="$1" old="${PID_OF[$1]:-}" i
  if [ -n "$old" ]; then
    kill "$old" 2>/dev/null || true
    for i in $(seq 1 150); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$old" 2>/dev/null || true
    wait "$old" 2>/dev/null || true
  fi
  case "$p" in
    tessera)
      env -u RUST_LOG TOKIO_WORKER_THREADS="$WORKERS" "${SERVER[@]}" "$TESSERA_BIN" run --config "$WORK/tessera-$ALG.yaml" \
        >>"$WORK/tessera.stdout" 2>>"$WORK/tessera.stderr" &
      ;;
    oidcp)
      "${SERVER[@]}" node bench/oidc/provider.mjs --port "$O_PORT" --key "$WORK/$ALG.pem" --alg "$ALG" --redirect "$REDIRECT" --secret "$SECRET" \
        >>"$WORK/oidc-provider.stdout" 2>>"$WORK/oidc-provider.stderr" &
      ;;
  esac
  PID_OF[$p]=$!
  PIDS+=("${PID_OF[$p]}")
  wait_http "${URL[$p]}/.well-known/openid-configuration" "$p"
}
start_provider tessera
start_provider oidcp
basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$SECRET" | base64 -w0)"; }

# Both must answer the same requests with equivalent tokens before anything is measured.
for p in "${PROVIDERS[@]}"; do
  out="$(curl -s -H "Authorization: $(basic bench)" -d 'grant_type=client_credentials&scope=api' "${TOKEN[$p]}")"
  python3 - "$p" "$out" <<'EOF' || die "$p: client_credentials (jwt) check failed: $out"
import base64, json, sys
r = json.loads(sys.argv[2])
h = json.loads(base64.urlsafe_b64decode(r["access_token"].split(".")[0] + "=="))
assert h["alg"] == "ES256" and h["typ"].lower() == "at+jwt", h
c = json.loads(base64.urlsafe_b64decode(r["access_token"].split(".")[1] + "=="))
assert c["aud"] == "https://api.bench.example" and c["client_id"] == "bench" and c["scope"] == "api", c
EOF
  out="$(curl -s -H "Authorization: $(basic bench-opaque)" -d 'grant_type=client_credentials' "${TOKEN[$p]}")"
  python3 -c 'import json,sys; t=json.loads(sys.argv[1])["access_token"]; assert t.count(".") == 0, t' "$out" \
    || die "$p: client_credentials (opaque) check failed: $out"
done
log "both providers issue ES256 JWT access tokens (client bench) and opaque ones (bench-opaque)"

# ---------------------------------------------------------------- measurement helpers
CLK_TCK="$(getconf CLK_TCK)"
proc_ticks() { # utime+stime of the given pids (and their threads)
  local pid sum=0 f
  for pid in "$@"; do
    read -r -a f <"/proc/$pid/stat" || die "process $pid is gone"
    sum=$((sum + f[13] + f[14]))
  done
  echo "$sum"
}
machine_ticks() { # -> "busy total"
  local c
  read -r -a c < <(head -1 /proc/stat)
  echo "$((c[1] + c[2] + c[3] + c[6] + c[7] + c[8])) $((c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7] + c[8]))"
}
children_ticks() { # sets TICKS: CPU ticks of this shell's finished children (wrk, node load
  # generators). `times` must run in this shell itself, not in a $(…) subshell (whose own
  # children count starts at zero), hence the file and the global.
  times >"$WORK/times.txt"
  TICKS="$(awk -v hz="$CLK_TCK" 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
    printf "%d\n", ((u[1] * 60 + u[2]) + (s[1] * 60 + s[2])) * hz }' "$WORK/times.txt")"
}
wait_quiet() { # until other processes use at most QUIET_MAX % of the machine (bounded)
  local start=$SECONDS b0 t0 b1 t1 s0 s1 busy
  while :; do
    read -r b0 t0 < <(machine_ticks); s0="$(proc_ticks "${PID_OF[tessera]}" "${PID_OF[oidcp]}")"
    sleep 1
    read -r b1 t1 < <(machine_ticks); s1="$(proc_ticks "${PID_OF[tessera]}" "${PID_OF[oidcp]}")"
    busy=$(( 100 * (b1 - b0 - (s1 - s0)) / (t1 - t0) ))
    [ "$busy" -le "$QUIET_MAX" ] && return 0
    if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then
      log "other processes still use ${busy}% of the machine after ${QUIET_WAIT}s: measuring anyway"
      return 0
    fi
  done
}

# Issues a token to client $2 at provider $1 (form $3) and checks that introspection by the
# same client answers it active; prints the token.
issue_checked() {
  local p="$1" client="$2" form="$3" tok answer
  tok="$(curl -s -H "Authorization: $(basic "$client")" -d "$form" "${TOKEN[$p]}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')" || die "$p: no token for $client"
  answer="$(curl -s -H "Authorization: $(basic "$client")" -d "token=$tok" "${INTROSPECT[$p]}")"
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["active"] is True, r' "$answer" 2>/dev/null \
    || { log "$p: introspection of a fresh token of $client is not active: $answer"; return 1; }
  printf '%s' "$tok"
}

# The key a scenario's providers sign with.
alg_of() {
  case "$1" in cc-rs256) echo RS256 ;; cc-eddsa) echo EdDSA ;; *) echo ES256 ;; esac
}

# One load run: $1 scenario, $2 provider, $3 seconds. Prints "rate p50_ms p99_ms client_cpu_pct".
load() {
  local scenario="$1" p="$2" secs="$3" out
  case "$scenario" in
    cc-jwt|cc-opaque|cc-rs256|cc-eddsa|intro-jwt|intro-opaque)
      local client=bench body='grant_type=client_credentials&scope=api' url="${TOKEN[$p]}"
      case "$scenario" in
        cc-opaque) client=bench-opaque; body='grant_type=client_credentials' ;;
        intro-*)
          [ "$scenario" = intro-opaque ] && { client=bench-opaque; body='grant_type=client_credentials'; }
          local tok
          if ! tok="$(issue_checked "$p" "$client" "$body")"; then
            # oidc-provider keeps no record of its JWT access tokens and does not introspect
            # them: its row then introspects its opaque token (said under the table).
            [ "$scenario" = intro-jwt ] && [ "$p" = oidcp ] || die "$p: introspection check failed"
            echo "intro-jwt" >"$WORK/oidcp-intro-jwt-is-opaque"
            client=bench-opaque
            tok="$(issue_checked "$p" "$client" 'grant_type=client_credentials')" || die "$p: introspection check failed"
          fi
          body="token=$tok"
          url="${INTROSPECT[$p]}"
          ;;
      esac
      out="$(BODY="$body" AUTH="$(basic "$client")" timeout $((secs + 30)) "${CLIENT[@]}" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency -s bench/post.lua "$url")" \
        || die "wrk failed on $p ($scenario)"
      printf '%s\n' "$out" >>"$WORK/wrk.log"
      read -r _ rps p50 p99 serr non2xx < <(grep '^RESULT' <<<"$out") || die "no wrk result: $out"
      [ "$non2xx" = 0 ] || die "$p $scenario: $non2xx non-2xx responses"
      # Socket errors are wrk's 2 s timeouts when the provider's CPU was taken away: the run
      # is reported as spoiled (-1 foreign load) and repeated.
      echo "$rps $(awk -v a="$p50" -v b="$p99" 'BEGIN { printf "%.3f %.3f", a / 1000, b / 1000 }') - $serr"
      ;;
    refresh|code-full|code-sso)
      local args=(--issuer "${URL[$p]}" --client bench-opaque --secret "$SECRET" --redirect "$REDIRECT"
        --username "$USER_NAME" --password "$USER_PASS" --seconds "$secs")
      if [ "$scenario" = refresh ]; then
        out="$(timeout $((secs + 60)) "${CLIENT[@]}" node bench/oidc/refresh-load.mjs "${args[@]}" --chains "$CHAINS")" \
          || die "refresh-load failed on $p"
      else
        out="$(timeout $((secs + 60)) "${CLIENT[@]}" node bench/oidc/code-load.mjs "${args[@]}" \
          --mode "${scenario#code-}" --concurrency "$FLOWS")" || die "code-load failed on $p"
      fi
      python3 - "$out" <<'EOF'
import json, sys
r = json.loads(sys.argv[1].splitlines()[-1])
print(f"{r['rate']:.1f} {r['p50_ms']:.3f} {r['p99_ms']:.3f} {r['client_cpu_pct']:.0f} 0")
EOF
      ;;
  esac
}

read -r -a SCENARIOS <<<"${SCENARIOS:-cc-jwt cc-opaque refresh code-full code-sso intro-jwt intro-opaque cc-rs256 cc-eddsa}"
RESULTS="$WORK/results.txt"
: >"$RESULTS"
log "$ROUNDS rounds x ${#PROVIDERS[@]} providers x ${#SCENARIOS[@]} scenarios x ${DURATION}s ($placement; Tessera $WORKERS worker threads)"
RSS_MAX="$WORK/rss.txt"
: >"$RSS_MAX"
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
for s in "${SCENARIOS[@]}"; do
  ALG="$(alg_of "$s")"
  for r in $(seq 1 "$ROUNDS"); do
    for p in "${PROVIDERS[@]}"; do
      # A run during which other processes were busy is repeated (at most RETRIES times).
      for try in $(seq 0 "$RETRIES"); do
        start_provider "$p"
        load "$s" "$p" "$WARMUP" >/dev/null
        wait_quiet
        read -r b0 t0 < <(machine_ticks); s0="$(proc_ticks "${PID_OF[tessera]}" "${PID_OF[oidcp]}")"; children_ticks; c0=$TICKS
        # (not `read < <(load …)`: the load generator must be a waited-for child of this
        # shell, so that `times` counts its CPU and it is not taken for foreign load)
        load "$s" "$p" "$DURATION" >"$WORK/run.out"
        read -r rate p50 p99 ccpu serr <"$WORK/run.out"
        read -r b1 t1 < <(machine_ticks); s1="$(proc_ticks "${PID_OF[tessera]}" "${PID_OF[oidcp]}")"; children_ticks; c1=$TICKS
        foreign=$(( 100 * (b1 - b0 - (s1 - s0) - (c1 - c0)) / (t1 - t0) ))
        [ "$foreign" -ge 0 ] || foreign=0
        [ "$foreign" -le "$FOREIGN_MAX" ] && [ "$serr" = 0 ] && break
        [ "$try" -lt "$RETRIES" ] && log "$s $p: other processes used ${foreign}% of the machine, $serr socket errors (timeouts): repeating the run"
      done
      [ "$serr" = 0 ] || die "$p $s: $serr socket errors even after $RETRIES repeats"
      echo "$p $s $(rss_mib "${PID_OF[$p]}")" >>"$RSS_MAX"
      echo "$s $p $r $rate $p50 $p99 $ccpu $foreign" >>"$RESULTS"
      printf '   %-9s %-8s round %s  %10.1f /s   p50 %8.2f ms   p99 %8.2f ms   (load generator CPU %s%%, foreign load %s%%)\n' \
        "$s" "$p" "$r" "$rate" "$p50" "$p99" "$ccpu" "$foreign" >&2
    done
  done
done

# ---------------------------------------------------------------- flood
# FLOOD seconds of client_credentials (ES256 JWT) from one client at full speed, a user's
# browser-like code flow (sign-in each time) running meanwhile; Tessera's RSS sampled.
FLOOD_LINE=""
if [ "$FLOOD" -gt 0 ]; then
  ALG=ES256
  start_provider tessera
  tpid="${PID_OF[tessera]}"
  log "flood: ${FLOOD}s of client_credentials at full speed, a code flow meanwhile"
  echo 0 >"$WORK/flood-rss"
  ( peak=0; while kill -0 "$tpid" 2>/dev/null; do
      m="$(rss_mib "$tpid" 2>/dev/null || echo 0)"
      [ "$m" -gt "$peak" ] && { peak=$m; echo "$peak" >"$WORK/flood-rss"; }
      sleep 0.5
    done ) &
  sampler=$!
  PIDS+=("$sampler")
  "${CLIENT[@]}" node bench/oidc/code-load.mjs --issuer "$T_URL" --client bench-opaque --secret "$SECRET" \
    --redirect "$REDIRECT" --username "$USER_NAME" --password "$USER_PASS" --seconds "$FLOOD" \
    --mode full --concurrency 1 >"$WORK/flood-logins.out" 2>&1 &
  logins=$!
  out="$(BODY='grant_type=client_credentials&scope=api' AUTH="$(basic bench)" timeout $((FLOOD + 30)) "${CLIENT[@]}" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${FLOOD}s" --latency -s bench/post.lua "${TOKEN[tessera]}")" \
    || die "wrk failed in the flood"
  wait "$logins" || die "the code flow failed during the flood: $(tail -3 "$WORK/flood-logins.out")"
  kill "$sampler" 2>/dev/null || true
  read -r _ f_rps _ _ f_serr f_non2xx < <(grep '^RESULT' <<<"$out")
  f_login="$(python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print("%.1f" % r["rate"])' "$WORK/flood-logins.out")"
  FLOOD_LINE="Flood (${FLOOD} s of \`client_credentials\`, ES256 JWT, one client at full speed on Tessera): $(printf '%.0f' "$f_rps") req/s, $f_non2xx non-2xx, $f_serr socket errors; peak RSS **$(cat "$WORK/flood-rss") MiB**; a user's code flow with sign-in ran meanwhile at $f_login round trips/s (no failure)."
  log "$FLOOD_LINE"
fi

# ---------------------------------------------------------------- openssl speed
# One signature's own cost on this CPU (OpenSSL's assembly), pinned like the providers.
SPEED="$("${SERVER[@]}" openssl speed -seconds "${SPEED_SECONDS:-3}" ecdsap256 rsa2048 ed25519 2>/dev/null)"
SPEED_REF="$(python3 - "$SPEED" <<'PY'
import re, sys
t = sys.argv[1]
out = []
for name, pat in [("ES256", r"256 bits ecdsa \(nistp256\)"), ("RS256", r"rsa 2048 bits"), ("EdDSA", r"253 bits EdDSA \(Ed25519\)")]:
    m = re.search(pat + r"\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", t)
    if m:
        out.append(f"{name}={float(m.group(1)):.0f}/{float(m.group(2)):.0f}")
print(" ".join(out))
PY
)"
log "openssl speed (sign/verify per second, one core): $SPEED_REF"

if grep -q '"level":"ERROR"' "$WORK/tessera.stderr"; then
  die "Tessera logged errors: $(grep '"level":"ERROR"' "$WORK/tessera.stderr" | head -3)"
fi
T_RSS="$(awk '$1 == "tessera" && $3 > m { m = $3; s = $2 } END { print m " MiB (after " s ")" }' "$RSS_MAX")"
O_RSS="$(awk '$1 == "oidcp" && $3 > m { m = $3; s = $2 } END { print m " MiB (after " s ")" }' "$RSS_MAX")"

# ---------------------------------------------------------------- table
TABLE="$(python3 - "$RESULTS" "$T_RSS" "$O_RSS" "$SPEED_REF" "$([ -f "$WORK/oidcp-intro-jwt-is-opaque" ] && echo 1 || echo 0)" "$FLOOD_LINE" <<'EOF'
import statistics, sys
runs = {}
foreign = 0
client_cpu = {}
for line in open(sys.argv[1]):
    s, p, _, rate, p50, p99, ccpu, fl = line.split()
    runs.setdefault((s, p), []).append((float(rate), float(p50), float(p99)))
    foreign = max(foreign, int(fl))
    if ccpu != "-":
        client_cpu[s] = max(client_cpu.get(s, 0), int(ccpu))
speed = dict(kv.split("=") for kv in sys.argv[4].split()) if sys.argv[4] else {}
oidcp_intro_opaque = sys.argv[5] == "1"
flood_line = sys.argv[6]
label = {
    "cc-jwt": "`client_credentials`, ES256 JWT access token",
    "cc-rs256": "`client_credentials`, RS256 JWT access token",
    "cc-eddsa": "`client_credentials`, EdDSA (Ed25519) JWT access token",
    "cc-opaque": "`client_credentials`, opaque access token",
    "intro-jwt": "introspection of an ES256 JWT access token" + (" (oidc-provider: of its opaque token †)" if oidcp_intro_opaque else ""),
    "intro-opaque": "introspection of an opaque access token",
    "refresh": "`refresh_token`, rotation (opaque AT + ES256 ID token)",
    "code-full": "authorization code round trip, signing in each time",
    "code-sso": "authorization code round trip, existing session (SSO)",
}
unit = {s: "req/s" for s in label}
unit.update({"code-full": "round trips/s", "code-sso": "round trips/s"})
signs = {"cc-jwt": "ES256", "cc-rs256": "RS256", "cc-eddsa": "EdDSA"}
def med(s, p):
    r = runs[(s, p)]
    return tuple(statistics.median(x[i] for x in r) for i in range(3)), min(x[0] for x in r), max(x[0] for x in r)
def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"
print("| scenario | Tessera | oidc-provider | Tessera ÷ oidc-provider |")
print("|---|---:|---:|---:|")
ratios = {}
for s in label:
    if (s, "tessera") not in runs:
        continue
    (tr, t50, t99), tlo, thi = med(s, "tessera")
    (orate, o50, o99), olo, ohi = med(s, "oidcp")
    ratios[s] = tr / orate
    cell = lambda r, lo, hi, p50, p99: f"**{fmt(r)}** {unit[s]} ({fmt(lo)}–{fmt(hi)}); p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    print(f"| {label[s]} | {cell(tr, tlo, thi, t50, t99)} | {cell(orate, olo, ohi, o50, o99)} | **{ratios[s]:.1f}×** |")
print()
targets = [("cc-jwt", 5), ("cc-opaque", 10), ("intro-jwt", 10), ("intro-opaque", 10), ("refresh", 5)]
short = {"cc-jwt": "client_credentials ES256 JWT", "cc-opaque": "client_credentials opaque",
         "intro-jwt": "introspection of a JWT", "intro-opaque": "introspection of an opaque token",
         "refresh": "refresh with rotation"}
met = [f"{short[s]} ≥ {t}×: **{'met' if ratios[s] >= t else 'NOT met'}** ({ratios[s]:.1f}×)"
       for s, t in targets if s in ratios]
if met:
    print("Targets (issue #14) — " + "; ".join(met) + ".")
    print()
limits = []
for s, alg in signs.items():
    if (s, "tessera") in runs and alg in speed:
        sign_s = float(speed[alg].split("/")[0])
        limits.append(f"{alg}: Tessera issues {fmt(med(s, 'tessera')[0][0])} tokens/s = **{med(s, 'tessera')[0][0] / sign_s:.0%}** of OpenSSL's {fmt(sign_s)} signatures/s")
if speed:
    print("The signature's own cost on this CPU (`openssl speed`, one core, sign/s / verify/s): "
          + ", ".join(f"{k} {v}" for k, v in speed.items()) + ". "
          + ("; ".join(limits) + " (one core for everything: HTTP, client authentication, JSON, the signature)." if limits else ""))
    print()
if oidcp_intro_opaque:
    print("† oidc-provider keeps no record of its JWT access tokens and answers their introspection `active: false`; its row introspects its opaque token instead.")
    print()
if flood_line:
    print(flood_line)
    print()
cc = ", ".join(f"{k} {v}%" for k, v in client_cpu.items())
print(f"Largest CPU share used by other processes during a run: {foreign}% of the machine. "
      f"Busiest node load generator (one core is 100%): {cc or 'n/a'}. "
      f"Largest resident memory after a run (each run starts a fresh process): Tessera {sys.argv[2]}, oidc-provider {sys.argv[3]}.")
EOF
)"
printf '\n%s\n\n' "$TABLE"

# ---------------------------------------------------------------- docs/benchmarks.md
if [ "$WRITE_DOCS" = 1 ]; then
  cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  [ -n "$cpu_model" ] || cpu_model="$(uname -m)"
  tessera_v="$("$TESSERA_BIN" version 2>/dev/null | head -1 | sed "s/^tessera //") ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ', working tree with local changes in src/'))"
  op_v="$(node -p 'require("./bench/oidc/node_modules/oidc-provider/package.json").version')"
  wrk_v="$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)"  # wrk -v exits 1
  BLOCK="$WORK/block.md"
  {
    echo "<!-- bench/token.sh:begin (generated by bench/token.sh; edit outside these markers) -->"
    echo "Run on $(date -u +%Y-%m-%d) — $ncpu CPUs ($cpu_model), $(uname -sr); Tessera $tessera_v; oidc-provider $op_v on node $(node -v); wrk $wrk_v."
    echo
    echo "Command: \`bench/token.sh\` (DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS THREADS=$THREADS CHAINS=$CHAINS FLOWS=$FLOWS PIN=$PIN)."
    echo "CPU placement: $placement; Tessera $WORKERS tokio worker thread(s); oidc-provider one node process."
    echo "Each cell: median of $ROUNDS runs of ${DURATION}s (range of the runs in brackets), runs interleaved Tessera, oidc-provider, Tessera, …; every run on a freshly started provider after ${WARMUP}s of the same load; latencies are per request (per round trip for the code flow)."
    echo
    echo "$TABLE"
    echo
    cat <<'EOF'
How it is measured (scripts: `bench/token.sh`, `bench/post.lua`, `bench/oidc/`):

- Both providers sign with the same ES256 key file (made by `tessera keys generate`), use their
  in-memory stores, and have equivalent confidential clients (`client_secret_basic`). Access
  tokens live 600 s on both. Tessera logs at `warn` (no access log lines).
- `client_credentials`: `wrk` POSTs the same form body and Basic header to both
  (`bench/post.lua`). Client `bench` gets an RFC 9068 JWT (`typ: at+jwt`, ES256, audience
  `https://api.bench.example`, scope `api`) from both; on oidc-provider through the resource
  indicators feature (`accessTokenFormat: 'jwt'`). Client `bench-opaque` gets opaque tokens.
  Tessera also stores a record per issued token (for introspection and revocation);
  oidc-provider stores opaque tokens in its LRU memory adapter and no JWT ones.
- `refresh_token`: `bench/oidc/refresh-load.mjs` (node:http, keep-alive), CHAINS chains, each
  sending the refresh token its own previous call returned; every answer must carry a new
  refresh token, an access token and an ID token (rotation is on in both).
- Authorization code: `bench/oidc/code-load.mjs` (PKCE S256, state, nonce, scope `openid email`),
  FLOWS concurrent loops, the same script for both: it fills whatever HTML form the provider
  shows (Tessera: its sign-in page; oidc-provider: devInteractions login, then consent). With
  a sign-in each time, Tessera verifies an argon2id password hash (m=19 MiB, t=2, the
  `hash-password` defaults) — a deliberate cost that dominates that row — while
  devInteractions accepts any password without hashing; the SSO row compares the protocol
  work alone.
- Load generators run on their own CPU; the busiest node generator's CPU use is reported
  above: at 100% a number is the generator's ceiling, not the provider's.
EOF
    echo "<!-- bench/token.sh:end -->"
  } >"$BLOCK"
  # Another script (bench/proxy.sh) owns another section of the same file: touch only ours,
  # on the file as it is right now.
  python3 - "$ROOT/docs/benchmarks.md" "$BLOCK" <<'EOF'
import os, re, sys
doc, block = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
section = "## OIDC provider\n\n" + block + "\n"
os.makedirs(os.path.dirname(doc), exist_ok=True)
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
markers = re.compile(r"<!-- bench/token\.sh:begin.*?<!-- bench/token\.sh:end -->", re.S)
if markers.search(text):
    text = markers.sub(lambda _: block, text, count=1)
elif re.search(r"^## OIDC provider[ \t]*$", text, re.M):
    # our heading without markers: replace up to the next level-2 heading
    text = re.sub(r"^## OIDC provider[ \t]*\n.*?(?=^## |\Z)", lambda _: section + "\n", text, count=1, flags=re.S | re.M)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(doc + ".tmp", "w").write(text.rstrip("\n") + "\n")
os.replace(doc + ".tmp", doc)
EOF
  log "updated docs/benchmarks.md (section \"## OIDC provider\")"
fi
