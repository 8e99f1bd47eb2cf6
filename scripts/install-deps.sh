#!/usr/bin/env bash
# Installs what the test suite needs, skipping what is already there: Debian packages
# (chromium for the browser tests) and npm packages into tests/e2e/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -f tests/e2e/package-lock.json ]; then
  if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.installed ]; then
    echo "installing npm packages into tests/e2e/node_modules"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
  fi
fi
