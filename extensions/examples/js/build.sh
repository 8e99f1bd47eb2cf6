#!/usr/bin/env bash
# Builds auth.wasm (next to this script) from auth.js: jco componentize with the QuickJS
# backend, WASI stubbed (the component imports only the Tessera host API) and without the
# component-model async ABI (plain synchronous exports).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../common.sh"

ensure_jco
check_wit_deps "$EXAMPLES_DIR/wit"
"$JCO" componentize "$HERE/auth.js" \
  --wit "$EXAMPLES_DIR/wit" --world-name auth \
  --backend quickjs --backend-qjs-stub-wasi --backend-qjs-disable-async \
  --out "$HERE/auth.wasm.tmp" >/dev/null
mv "$HERE/auth.wasm.tmp" "$HERE/auth.wasm"
check_component "$HERE/auth.wasm" is-authenticated authenticate backchannel-authenticate \
  build-access-token-claims build-id-token-claims
