#!/usr/bin/env bash
# Installs what the test suite needs, skipping what is already there: Debian packages
# (chromium for the browser tests, redis-server for the Redis store tests, slapd and
# ldap-utils for the LDAP tests, clang + wasi-libc for the C extensions), npm packages
# into tests/e2e/node_modules, and the Python packages of the authlib relying party into
# tests/e2e/.pydeps (never system-wide).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)  # tests/e2e/requirements.txt
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)  # tests/it/redis.rs
# Ingresses in front of the gateway (tests/it/forward_auth.rs): nginx with auth_request, Caddy.
{ [ -x /usr/sbin/nginx ] && /usr/sbin/nginx -V 2>&1 | grep -q http_auth_request_module; } || need_apt+=(nginx-light)
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
{ [ -x /usr/sbin/slapd ] && command -v ldapsearch >/dev/null 2>&1; } || need_apt+=(slapd ldap-utils)  # tests/it/ldap.rs
# C service extensions (extensions/examples/c, extensions/test-guests): clang for wasm32-wasi.
{ command -v clang >/dev/null 2>&1 && [ -d /usr/include/wasm32-wasi ] && command -v wasm-ld >/dev/null 2>&1; } \
  || need_apt+=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # `env` so the variable survives sudo's environment reset (slapd's package asks questions)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # The nginx and caddy packages start system servers on port 80; the tests run their own.
  for svc in nginx caddy; do
    if [[ " ${need_apt[*]} " == *" $svc"* ]]; then
      if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
      else
        $SUDO service "$svc" stop >/dev/null 2>&1 || true
      fi
    fi
  done
  if [[ " ${need_apt[*]} " == *" slapd "* ]]; then
    # The package sets up and starts a system slapd on port 389. The tests run their own on
    # free loopback ports, so stop that one and keep it from starting at boot.
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now slapd >/dev/null 2>&1 || true
    else
      $SUDO service slapd stop >/dev/null 2>&1 || true
      $SUDO update-rc.d slapd disable >/dev/null 2>&1 || true
    fi
  fi
fi

if [ -f tests/e2e/package-lock.json ]; then
  if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.installed ]; then
    echo "installing npm packages into tests/e2e/node_modules"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
  fi
fi

if [ -f tests/e2e/requirements.txt ]; then
  if [ ! -d tests/e2e/.pydeps ] || [ tests/e2e/requirements.txt -nt tests/e2e/.pydeps/.installed ]; then
    echo "installing Python packages into tests/e2e/.pydeps"
    rm -rf tests/e2e/.pydeps
    # --target: a folder of the repository, not the system's (or user's) site-packages.
    python3 -m pip install --quiet --disable-pip-version-check --no-input \
      --target tests/e2e/.pydeps -r tests/e2e/requirements.txt
    touch tests/e2e/.pydeps/.installed
  fi
fi
