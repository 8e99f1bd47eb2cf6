#!/usr/bin/env bash
# Regenerates the committed C bindings of every test guest (bindings/<world>/, generated with
# `--rename-world guest` so all guests share one naming) after the WIT changed, and records in
# bindings/WIT_SHA256 what they were generated from. Installs the pinned wit-bindgen-cli into
# ${TESSERA_TOOLS:-~/.cache/tessera-tools} if needed (cargo, ~4 min).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../examples/common.sh"
source "$HERE/guests.sh"

ensure_wit_bindgen
check_wit_deps "$HERE/wit"
rm -rf "$HERE/bindings"
for guest in "${GUESTS[@]}"; do
  world="${guest%% *}"
  out="$("$WIT_BINDGEN" c "$HERE/wit" --world "$world" --rename-world guest \
    --out-dir "$HERE/bindings/$world" 2>&1)" || die "wit-bindgen failed for $world: $out"
done
write_bindings_stamp "$HERE/wit" "$HERE/bindings"
echo "regenerated $HERE/bindings:"
cat "$HERE/bindings/WIT_SHA256"
