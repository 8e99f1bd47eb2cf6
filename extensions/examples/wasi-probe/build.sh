#!/usr/bin/env bash
# Builds the WASI probes next to this script, each the standard way, WASI *not* stubbed:
#   python.wasm  from probe.py  (componentize-py, no --stub-wasi)
#   js.wasm      from probe.js  (jco componentize --backend quickjs, no --backend-qjs-stub-wasi)
# (the C probe is the test guest extensions/test-guests/src/wasi-import.c).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../common.sh"

ensure_componentize_py
ensure_jco
check_wit_deps "$HERE/wit"

# componentize-py bundles the app's directory: build from a copy that holds only the probe.
mkdir -p "$BUILD_TMP/app"
cp "$HERE/probe.py" "$BUILD_TMP/app/"
"${COMPONENTIZE_PY[@]}" --quiet --wit-path "$HERE/wit" --world wasi-probe \
  componentize --python-path "$BUILD_TMP/app" probe --output "$HERE/python.wasm.tmp"
mv "$HERE/python.wasm.tmp" "$HERE/python.wasm"
check_wasi_component "$HERE/python.wasm" is-authenticated

"$JCO" componentize "$HERE/probe.js" --wit "$HERE/wit" --world-name wasi-probe \
  --backend quickjs --backend-qjs-disable-async --out "$HERE/js.wasm.tmp" >/dev/null
mv "$HERE/js.wasm.tmp" "$HERE/js.wasm"
check_wasi_component "$HERE/js.wasm" is-authenticated
