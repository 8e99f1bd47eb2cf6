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

# shellcheck source=bench/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_scratch ab
start_upstream taskset -c 1

# Starts binary $1 as gateway $2 (A or B); sets URL_$2 and COOKIE_$2.
start() {
  start_gateway "$1" "$2"
  eval "URL_$2=\$GW_URL; COOKIE_$2=\$GW_COOKIE"
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
