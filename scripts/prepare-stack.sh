#!/usr/bin/env bash
# Makes sure everything the local stack runs is installed and built, building only what is
# missing or older than its sources: the regional binary (cargo build -p regional) and the edge
# bundle (scripts/build-edge.sh). Quick when nothing changed. Used by up.sh and drill.sh.
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/install-tools.sh" python node wasm

# True when $1 is missing or any file under the other arguments is newer than it.
stale() {
  local target=$1; shift
  [ ! -e "$target" ] && return 0
  [ -n "$(find "$@" -newer "$target" -type f -print -quit 2>/dev/null)" ]
}

regional_bin="${TANDEM_REGIONAL_BIN:-$ROOT/target/debug/regional}"
if [ -z "${TANDEM_REGIONAL_BIN:-}" ] && stale "$regional_bin" "$ROOT/regional" "$ROOT/Cargo.lock"; then
  log "building regional (cargo build -p regional)"
  (cd "$ROOT" && cargo build --quiet --locked -p regional)
fi
[ -x "$regional_bin" ] || { log "missing $regional_bin"; exit 1; }

if stale "$ROOT/edge/build/index.js" "$ROOT/edge/src" "$ROOT/edge/Cargo.toml"; then
  log "building the edge (scripts/build-edge.sh)"
  "$ROOT/scripts/build-edge.sh"
fi
