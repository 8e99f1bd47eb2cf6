#!/usr/bin/env bash
# Builds the misbehaving and special-purpose test guests into out/<name>.wasm (see README.md)
# from src/<name>.c with the committed bindings (bindings/, checked against the WIT).
#   build.sh [NAME...]   (default: all)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../examples/common.sh"
source "$HERE/guests.sh"

check_wit_deps "$HERE/wit"
check_bindings "$HERE/wit" "$HERE/bindings" "$HERE/regen-bindings.sh"
ensure_clang
ensure_jco
mkdir -p "$HERE/out"

# wanted NAME: whether NAME was asked for (no arguments: everything is).
WANTED=("$@")
wanted() {
  ((${#WANTED[@]} == 0)) && return 0
  local w
  for w in "${WANTED[@]}"; do [[ "$w" == "$1" ]] && return 0; done
  return 1
}

for guest in "${GUESTS[@]}"; do
  read -r name exports <<<"$guest"
  wanted "$name" || continue
  src="$HERE/src/$name.c"
  bindings="$HERE/bindings/$name"
  out="$HERE/out/$name.wasm"
  case "$name" in
    wasi-import)
      # printf pulls in wasi_snapshot_preview1; the preview1 adapter (shipped with jco)
      # turns that into wasi:cli / wasi:io imports.
      core="$BUILD_TMP/$name.core.wasm"
      compile_core "$core" "$bindings" -I "$HERE/src" "$src"
      core_imports "$core" | grep -qx wasi_snapshot_preview1 ||
        die "$core was meant to import wasi_snapshot_preview1"
      "$JCO" new "$core" --wasi-reactor -o "$out.tmp" >/dev/null
      mv "$out.tmp" "$out"
      echo "--- $name.wasm: $(stat -c %s "$out") bytes"
      "$JCO" wit "$out" | grep -E '^  (import|export) '
      "$JCO" wit "$out" | grep -Eq '^  import wasi:' || die "$out does not import WASI"
      ;;
    *)
      build_c_component "$out" "$bindings" -I "$HERE/src" "$src"
      # shellcheck disable=SC2086 # one word per export
      check_component "$out" $exports
      ;;
  esac
done

# not-a-component.wasm: the core module of c-isauth, not wrapped into a component.
if wanted not-a-component; then
  out="$HERE/out/not-a-component.wasm"
  compile_core "$out.tmp" "$HERE/bindings/c-isauth" -I "$HERE/src" "$HERE/src/c-isauth.c"
  mv "$out.tmp" "$out"
  echo "--- not-a-component.wasm: $(stat -c %s "$out") bytes (a core module)"
  # A core module's header is "\0asm" and version 1 (01 00 00 00); a component's is 0d 00 01 00.
  [[ "$(od -An -tx1 -j4 -N4 "$out" | tr -d ' ')" == 01000000 ]] || die "$out is not a core module"
fi
