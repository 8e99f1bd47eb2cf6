#!/usr/bin/env bash
# Builds auth.wasm (next to this script) from app.py with componentize-py, WASI stubbed (the
# component imports only the Tessera host API). componentize-py is pip-installed into .pydeps.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../common.sh"

ensure_componentize_py
ensure_jco
check_wit_deps "$EXAMPLES_DIR/wit"
# componentize-py bundles the app's directory: build from a copy that holds only the app
# (and keep Python from writing __pycache__ next to the source).
mkdir -p "$BUILD_TMP/app"
cp "$HERE/app.py" "$BUILD_TMP/app/"
"${COMPONENTIZE_PY[@]}" --quiet \
  --wit-path "$EXAMPLES_DIR/wit" --world auth \
  componentize --stub-wasi --python-path "$BUILD_TMP/app" app --output "$HERE/auth.wasm.tmp"
mv "$HERE/auth.wasm.tmp" "$HERE/auth.wasm"
check_component "$HERE/auth.wasm" is-authenticated authenticate backchannel-authenticate \
  build-access-token-claims build-id-token-claims
