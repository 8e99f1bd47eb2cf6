# Helpers shared by the build scripts of extensions/examples/* and extensions/test-guests.
# Source it from a bash script that runs with `set -euo pipefail`.

EXAMPLES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EXTENSIONS_DIR="$(dirname "$EXAMPLES_DIR")"
# Tools installed with cargo live outside the repository so CI can keep them across runs.
TESSERA_TOOLS="${TESSERA_TOOLS:-$HOME/.cache/tessera-tools}"
# The generator of the committed C bindings (only regen-bindings.sh runs it).
WIT_BINDGEN_VERSION=0.63.0

# npm tooling (jco: componentize, new, wit, transpile) is one pinned install in
# examples/js/node_modules, shared by every build script.
JS_TOOLS_DIR="$EXAMPLES_DIR/js"
JCO="$JS_TOOLS_DIR/node_modules/.bin/jco"

die() {
  echo "error: $*" >&2
  exit 1
}

# Installs the pinned npm tools unless node_modules already matches package-lock.json.
ensure_jco() {
  command -v npm >/dev/null || die "npm not found (Node.js 20 or later is needed)"
  local stamp="$JS_TOOLS_DIR/node_modules/.package-lock.json"
  if [[ ! -x "$JCO" || ! -f "$stamp" || "$JS_TOOLS_DIR/package-lock.json" -nt "$stamp" ]]; then
    echo "installing npm tools (npm ci in $JS_TOOLS_DIR)" >&2
    (cd "$JS_TOOLS_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
}

# componentize-py, pip-installed into examples/python/.pydeps (shared by every Python build).
COMPONENTIZE_PY_VERSION=0.25.1
PYDEPS="$EXAMPLES_DIR/python/.pydeps"
COMPONENTIZE_PY=(env PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$PYDEPS" "$PYDEPS/bin/componentize-py")

ensure_componentize_py() {
  if [[ "$("${COMPONENTIZE_PY[@]}" --version 2>/dev/null)" != \
    "componentize-py $COMPONENTIZE_PY_VERSION" ]]; then
    command -v python3 >/dev/null || die "python3 not found"
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $PYDEPS" >&2
    rm -rf "$PYDEPS"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --target "$PYDEPS" "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
  fi
}

# Node runs the smoke tests on jco-transpiled components; Node 20 needs a flag for the
# extended-const proposal that the interpreter guests use (on by default from Node 22).
node_wasm() {
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if ((major < 22)); then
    node --experimental-wasm-extended-const "$@"
  else
    node "$@"
  fi
}

# The `deps/tessera-extension` entry of a WIT directory must reach extensions/wit.
check_wit_deps() {
  local wit_dir="$1"
  [[ -f "$wit_dir/deps/tessera-extension/extension.wit" ]] ||
    die "$wit_dir/deps/tessera-extension does not reach extensions/wit (it is a symlink to ../../../wit)"
}

# check_component FILE [EXPORT...]
# Prints the component's WIT and fails unless it is a component that imports nothing but
# tessera:extension/host and tessera:extension/types (0.1.x) and exports each EXPORT (an
# interface name without package and version, e.g. is-authenticated).
check_component() {
  local wasm="$1"
  shift
  _check_component "$wasm" 'tessera:extension/(host|types)@0\.1\.[0-9]+' "$@"
}

# check_wasi_component FILE [EXPORT...]
# The same, for a guest built the standard way: it may (and must) also import the WASI 0.2
# interfaces Tessera's deny-by-default WASI provides (wasi:cli, clocks, random, io,
# filesystem, sockets), nothing else (no wasi:http).
check_wasi_component() {
  local wasm="$1"
  shift
  _check_component "$wasm" \
    '(tessera:extension/(host|types)@0\.1|wasi:(cli|clocks|random|io|filesystem|sockets)/[a-z-]+@0\.2)\.[0-9]+' "$@"
  "$JCO" wit "$wasm" | grep -Eq '^  import wasi:' || die "$wasm does not import WASI"
}

_check_component() {
  local wasm="$1" allowed="$2"
  shift 2
  local wit
  wit="$("$JCO" wit "$wasm" 2>&1)" || die "$wasm is not a component: $wit"
  echo "--- $(basename "$wasm"): $(stat -c %s "$wasm") bytes"
  # Only the lines of the world itself (indented by two spaces), not those of inline interfaces.
  grep -E '^  (import|export) ' <<<"$wit" | sed -E 's/ \{$/ { ... }/'
  local bad
  bad="$(grep -E '^  import ' <<<"$wit" |
    grep -Ev "^  import $allowed;\$" || true)"
  [[ -z "$bad" ]] || die "$wasm imports more than Tessera provides:"$'\n'"$bad"
  local name
  for name in "$@"; do
    grep -Eq "^  export tessera:extension/$name@0\\.1\\.[0-9]+;\$" <<<"$wit" ||
      die "$wasm does not export tessera:extension/$name@0.1.x"
  done
}

# is_fresh OUTPUT INPUT... : OUTPUT exists and is newer than every INPUT (files or directories,
# searched recursively, following symlinks).
is_fresh() {
  local out="$1"
  shift
  [[ -f "$out" ]] || return 1
  [[ -z "$(find -L "$@" -newer "$out" -print -quit 2>/dev/null)" ]]
}

# ---- C: committed wit-bindgen bindings and their staleness check ----
#
# `regen-bindings.sh` writes the bindings and bindings/WIT_SHA256: the first line is a hash of
# every .wit file the bindings come from (names and contents, deps included) and the
# generator's version; the other lines are sha256sum lines of the generated files. Builds
# only compare: they need neither cargo nor wit-bindgen.

# wit_stamp WIT_DIR: the first line of WIT_SHA256 for the WIT files under WIT_DIR.
wit_stamp() {
  local hash
  hash="$(cd "$1" && find -L . -name '*.wit' -type f | LC_ALL=C sort |
    while read -r f; do printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"; done |
    sha256sum | cut -d' ' -f1)"
  echo "wit $hash wit-bindgen-cli $WIT_BINDGEN_VERSION"
}

# check_bindings WIT_DIR BINDINGS_DIR REGEN_SCRIPT
check_bindings() {
  local wit_dir="$1" bindings="$2" regen="$3" stamp="$2/WIT_SHA256"
  local hint="run extensions/${regen#"$EXTENSIONS_DIR/"}"
  [[ -f "$stamp" ]] || die "bindings are missing: $hint"
  [[ "$(head -n1 "$stamp")" == "$(wit_stamp "$wit_dir")" ]] || die "bindings are stale: $hint"
  (cd "$bindings" && tail -n +2 WIT_SHA256 | sha256sum --check --quiet --strict >/dev/null 2>&1) ||
    die "bindings in $bindings were edited by hand: $hint"
}

# write_bindings_stamp WIT_DIR BINDINGS_DIR (after generating every file in BINDINGS_DIR)
write_bindings_stamp() {
  local wit_dir="$1" bindings="$2"
  local lines
  lines="$(wit_stamp "$wit_dir"
    cd "$bindings" && find . -type f ! -name WIT_SHA256 | LC_ALL=C sort | xargs sha256sum)"
  echo "$lines" >"$bindings/WIT_SHA256"
}

# Installs wit-bindgen-cli (C generator only) into $TESSERA_TOOLS unless the pinned version is there.
ensure_wit_bindgen() {
  WIT_BINDGEN="$TESSERA_TOOLS/bin/wit-bindgen"
  if [[ "$("$WIT_BINDGEN" --version 2>/dev/null)" != "wit-bindgen-cli $WIT_BINDGEN_VERSION" ]]; then
    command -v cargo >/dev/null || die "cargo is needed to install wit-bindgen-cli"
    echo "installing wit-bindgen-cli $WIT_BINDGEN_VERSION into $TESSERA_TOOLS (a few minutes)" >&2
    cargo install wit-bindgen-cli --version "$WIT_BINDGEN_VERSION" --locked \
      --no-default-features --features c --root "$TESSERA_TOOLS" >&2
  fi
}

# ---- C: compiling ----

CLANG="${CLANG:-clang}"
# Reactor (library) model: no main; exports are called any number of times. No debug info.
C_FLAGS=(--target=wasm32-wasi -O2 -std=c11 -Wall -Wextra -mexec-model=reactor
  -Wl,--strip-debug)

# Makes sure clang can build wasm32-wasi modules; installs the Debian packages if not.
ensure_clang() {
  local probe="$BUILD_TMP/probe"
  echo 'int probe(void) { return 0; }' >"$probe.c"
  if "$CLANG" "${C_FLAGS[@]}" -o "$probe.wasm" "$probe.c" 2>/dev/null; then
    return
  fi
  local packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
  echo "clang cannot build wasm32-wasi modules: installing ${packages[*]}" >&2
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null ||
      die "install ${packages[*]} (Debian/Ubuntu) or set CLANG to a clang with wasi-libc"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
  "$CLANG" "${C_FLAGS[@]}" -o "$probe.wasm" "$probe.c" || die "clang still cannot build for wasm32-wasi"
}

# core_imports CORE.wasm: the module names of a core module's imports, one per line.
core_imports() {
  "$JCO" print "$1" | sed -nE 's/^  \(import "([^"]*)".*/\1/p' | sort -u
}

# compile_core OUT.wasm BINDINGS_DIR SOURCE... [-- CLANG_ARG...]
# Compiles and links a core module with the bindings of one world.
compile_core() {
  local out="$1" bindings="$2"
  shift 2
  "$CLANG" "${C_FLAGS[@]}" -I "$bindings" -I "$EXAMPLES_DIR/c" -o "$out" \
    "$@" "$bindings"/*.c "$bindings"/*_component_type.o
}

# build_c_component OUT.wasm BINDINGS_DIR SOURCE...
# A core module that imports nothing but the host API, wrapped into a component by `jco new`
# (no WASI adapter: the module must not import wasi_snapshot_preview1).
build_c_component() {
  local out="$1" bindings="$2"
  shift 2
  local core="$BUILD_TMP/$(basename "$out" .wasm).core.wasm"
  compile_core "$core" "$bindings" "$@"
  local foreign
  foreign="$(core_imports "$core" | grep -v '^tessera:extension/' || true)"
  [[ -z "$foreign" ]] || die "$core imports more than the host API: $foreign"
  "$JCO" new "$core" -o "$out.tmp" >/dev/null
  mv "$out.tmp" "$out"
}

BUILD_TMP="$(mktemp -d)"
trap 'rm -rf "$BUILD_TMP"' EXIT
