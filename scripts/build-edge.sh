#!/usr/bin/env bash
# Builds the edge Worker into edge/build/ with the pinned worker-build, wasm-bindgen, wasm-opt
# and esbuild (all local: worker-build would otherwise download them).
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/install-tools.sh" node wasm
cd "$ROOT/edge"
RUST_BACKTRACE=0 "$WORKER_BUILD_BIN" --profile wasm-release >"$STATE/edge-build.log" 2>&1 || {
  tail -40 "$STATE/edge-build.log" >&2; exit 1; }
log "edge built: $(du -b build/index_bg.wasm 2>/dev/null | cut -f1) bytes of wasm"
