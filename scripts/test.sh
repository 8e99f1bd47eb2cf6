#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then
# formatting, lints, unit + integration tests (real binary), and browser end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== service extensions (examples and test guests, built from source)"
scripts/build-extensions.sh
echo "== cargo test"
cargo test --all-targets
echo "== deploy manifests"
TESSERA_BIN="${CARGO_TARGET_DIR:-target}/debug/tessera" scripts/validate-deploy.sh
echo "== end-to-end (browser)"
target_dir="${CARGO_TARGET_DIR:-target}"
# The test files are listed, not found: given a directory, node --test also descends into
# dot folders such as tests/e2e/.pydeps (Python packages) and runs any test-like .js there.
TESSERA_BIN="$(realpath "$target_dir/debug/tessera")" node --test --test-concurrency=1 tests/e2e/*.test.mjs
