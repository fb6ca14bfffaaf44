#!/usr/bin/env bash
# Installs every tool the project needs, pinned, into the user-level cache (idempotent, quick when
# already there). Usage: scripts/install-tools.sh [rust|wasm|python|node|infra|system|all]...
source "$(dirname "$0")/lib.sh"

cargo_tool() { # name version binary [extra cargo-install flags]
  local name=$1 version=$2 bin=$3; shift 3
  local root; root=$(tool_root "$name" "$version")
  if [ -x "$root/bin/$bin" ]; then return 0; fi
  log "installing $name $version (one-time, a few minutes)"
  # Tools need not be fast: a cheaper profile saves minutes on a fresh 2-core machine.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_TARGET_DIR="$CACHE/tool-build" \
    cargo install --quiet "$name" --version "=$version" --root "$root" "$@"
}

install_rust() {
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
}
install_wasm() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build --locked
  # wasm-bindgen-cli's own lockfile pins a crate version the registry lacks: no --locked.
  cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen
}
install_python() {
  # venvs are not relocatable: build in place, mark complete last.
  if [ ! -f "$VENV/.complete" ]; then
    log "creating python venv $VENV"
    rm -rf "$VENV" && python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r "$ROOT/scripts/requirements.txt" && touch "$VENV/.complete"
  fi
}
install_node() {
  local stamp="$ROOT/node_modules/.tandem-lock"
  local want; want=$(sha256sum "$ROOT/package-lock.json" | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
  fi
}
install_infra() {
  cargo_tool cfn-guard "$CFN_GUARD_VERSION" cfn-guard --locked
  if [ ! -f "$CHECKOV_VENV/.complete" ]; then
    log "creating checkov venv $CHECKOV_VENV"
    rm -rf "$CHECKOV_VENV" && python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install --quiet -r "$ROOT/scripts/requirements-checkov.txt" && touch "$CHECKOV_VENV/.complete"
  fi
}

install_system() { # Debian packages: haproxy (the drill's comparison), wrk (benchmarks),
  # chromium (the browser test drives /usr/bin/chromium with playwright-core; no browser download)
  local missing=()
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt-get)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case $what in
    rust) install_rust ;; wasm) install_wasm ;; python) install_python ;;
    node) install_node ;; infra) install_infra ;; system) install_system ;;
    all) install_rust; install_python; install_node; install_wasm; install_infra; install_system ;;
    *) echo "unknown: $what" >&2; exit 2 ;;
  esac
done
