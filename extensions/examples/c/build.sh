#!/usr/bin/env bash
# Builds auth.wasm (next to this script) from auth.c: clang for wasm32-wasi with the committed
# bindings (bindings/, checked against the WIT), wrapped into a component by `jco new`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../common.sh"

check_wit_deps "$EXAMPLES_DIR/wit"
check_bindings "$EXAMPLES_DIR/wit" "$HERE/bindings" "$HERE/regen-bindings.sh"
ensure_clang
ensure_jco
build_c_component "$HERE/auth.wasm" "$HERE/bindings" "$HERE/auth.c"
check_component "$HERE/auth.wasm" is-authenticated authenticate backchannel-authenticate \
  build-access-token-claims build-id-token-claims
