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
# Knobs: REQUESTS=20000 CONNECTIONS=8 KEEP_PROFILE=<dir> (keeps each binary's callgrind
#   output there, for `callgrind_annotate --inclusive=yes <file>`)
#   HOOK=c | c-cached: the policy also runs the C test guest's IsAuthenticated, uncached or
#   cached (see bench_config in bench/common.sh): issue 17's cost of a hook, in instructions
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

# shellcheck source=bench/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_scratch callgrind
start_upstream

cat >"$WORK/count.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("COMPLETED %d %d\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status))
end
EOF

measure() { # $1 binary -> "instructions/request"
  local bin="$1" port pass hash tsr session out ir done_n errs
  port="$(free_port)"
  pass="bench-$RANDOM$RANDOM"
  hash="$(printf '%s\n' "$pass" | "$bin" hash-password)"
  bench_config "$WORK/tessera.yaml" "$port" "$hash"
  out="$WORK/callgrind.out"
  rm -f "$out"*
  env -u RUST_LOG TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out" "$bin" run --config "$WORK/tessera.yaml" \
    >"$WORK/tessera.log" 2>&1 &
  local vg=$!
  tsr="http://127.0.0.1:$port"
  wait_gateway "$tsr" 1200 || die "Tessera under valgrind did not come up: $(tail -5 "$WORK/tessera.log")"
  session="$(login_session "$tsr" "$pass")"
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
  if [ -n "${KEEP_PROFILE:-}" ]; then
    mkdir -p "$KEEP_PROFILE"
    for f in "$out"*; do cp "$f" "$KEEP_PROFILE/$(basename "$bin").$(basename "$f")"; done
  fi
  ir="$(cat "$out"* | sed -n 's/^totals: *\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s}')"
  [ -n "$ir" ] && [ "$ir" -gt 0 ] || die "no callgrind summary for $bin"
  echo "$((ir / done_n)) $done_n"
}

printf '| binary | instructions / request | requests counted |\n|---|---|---|\n'
for bin in "${BINS[@]}"; do
  read -r per n < <(measure "$bin")
  printf '| `%s` | %s | %s |\n' "$bin" "$per" "$n"
done
