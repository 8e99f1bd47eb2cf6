#!/usr/bin/env bash
# Builds the example service extensions (extensions/examples/{c,python,js}/auth.wasm), the
# WASI probes built the standard way (extensions/examples/wasi-probe/{python,js}.wasm) and the
# test guests (extensions/test-guests/out/*.wasm), skipping each step whose outputs are newer
# than its inputs, and prints the time each step took and the size of each output.
#
#   scripts/build-extensions.sh [--force] [--check] [STEP...]
#     STEP     c, python, js, wasi-probe, test-guests (default: all)
#     --force  rebuild even when the outputs are up to date
#     --check  afterwards, run the smoke tests (the components transpiled by jco and run in
#              Node with a mock host API: extensions/*/smoke-test.mjs)
#
# Toolchains are installed on first use: npm packages into extensions/examples/js/node_modules,
# componentize-py into extensions/examples/python/.pydeps, Debian's clang + wasi-libc if clang
# cannot target wasm32-wasi. Nothing needs cargo (the C bindings are committed; see
# extensions/examples/c/README.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/extensions/examples/common.sh"
EX="$ROOT/extensions/examples"
TG="$ROOT/extensions/test-guests"

force=false
check=false
steps=()
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    --check) check=true ;;
    c | python | js | wasi-probe | test-guests) steps+=("$arg") ;;
    *) die "unknown argument: $arg (see the top of $0)" ;;
  esac
done
((${#steps[@]})) || steps=(c python js wasi-probe test-guests)

# Inputs every step depends on: the contract, the shared helpers, the pinned npm tools.
COMMON_INPUTS=("$EXTENSIONS_DIR/wit" "$EX/common.sh" "$EX/js/package-lock.json" "$0")

step_inputs() {
  case "$1" in
    c) echo "$EX/wit $EX/c/auth.c $EX/c/json.h $EX/c/sha256.h $EX/c/bindings $EX/c/build.sh" ;;
    python) echo "$EX/wit $EX/python/app.py $EX/python/build.sh" ;;
    js) echo "$EX/wit $EX/js/auth.js $EX/js/build.sh" ;;
    wasi-probe) echo "$EX/wasi-probe/wit $EX/wasi-probe/probe.py $EX/wasi-probe/probe.js $EX/wasi-probe/build.sh" ;;
    test-guests) echo "$TG/wit $TG/src $TG/bindings $TG/build.sh $TG/guests.sh $EX/c/json.h" ;;
  esac
}

step_outputs() {
  case "$1" in
    c | python | js) echo "$EX/$1/auth.wasm" ;;
    wasi-probe) printf '%s\n' "$EX/wasi-probe/python.wasm" "$EX/wasi-probe/js.wasm" ;;
    test-guests)
      source "$TG/guests.sh"
      local g
      for g in "${GUESTS[@]}"; do echo "$TG/out/${g%% *}.wasm"; done
      echo "$TG/out/not-a-component.wasm"
      ;;
  esac
}

step_script() {
  case "$1" in
    c | python | js | wasi-probe) echo "$EX/$1/build.sh" ;;
    test-guests) echo "$TG/build.sh" ;;
  esac
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

summary=()
t0="$(now)"
ensure_jco
summary+=("$(printf '%-12s %s' "npm tools" "$(elapsed "$t0")")")

for step in "${steps[@]}"; do
  read -r -a inputs <<<"$(step_inputs "$step")"
  mapfile -t outputs < <(step_outputs "$step")
  fresh=true
  if $force; then
    fresh=false
  else
    for out in "${outputs[@]}"; do
      is_fresh "$out" "${COMMON_INPUTS[@]}" "${inputs[@]}" || { fresh=false; break; }
    done
  fi
  t0="$(now)"
  if $fresh; then
    status="up to date"
  else
    echo "=== building $step"
    "$(step_script "$step")"
    status="built"
  fi
  summary+=("$(printf '%-12s %-8s %s' "$step" "$(elapsed "$t0")" "$status")")
  for out in "${outputs[@]}"; do
    summary+=("$(printf '    %-60s %10s bytes' "${out#"$ROOT/"}" "$(stat -c %s "$out")")")
  done
done

if $check; then
  t0="$(now)"
  echo "=== smoke tests"
  for step in "${steps[@]}"; do
    case "$step" in
      test-guests) node_wasm "$TG/smoke-test.mjs" ;;
      # The probes are tested through the gateway only (tests/it/extensions.rs).
      wasi-probe) ;;
      *) node_wasm "$EX/smoke-test.mjs" "$EX/$step/auth.wasm" ;;
    esac
  done
  summary+=("$(printf '%-12s %s' "smoke tests" "$(elapsed "$t0")")")
fi

echo "=== summary"
printf '%s\n' "${summary[@]}"
