#!/usr/bin/env bash
# Regenerates the committed C bindings (bindings/) from ../wit after the WIT changed, and
# records in bindings/WIT_SHA256 what they were generated from. Installs the pinned
# wit-bindgen-cli into ${TESSERA_TOOLS:-~/.cache/tessera-tools} if needed (cargo, ~4 min).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../common.sh"

ensure_wit_bindgen
check_wit_deps "$EXAMPLES_DIR/wit"
rm -rf "$HERE/bindings"
out="$("$WIT_BINDGEN" c "$EXAMPLES_DIR/wit" --world auth --out-dir "$HERE/bindings" 2>&1)" ||
  die "wit-bindgen failed: $out"
write_bindings_stamp "$EXAMPLES_DIR/wit" "$HERE/bindings"
echo "regenerated $HERE/bindings:"
cat "$HERE/bindings/WIT_SHA256"
