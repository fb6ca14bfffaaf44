#!/usr/bin/env bash
# The soak (see docs/benchmarks.md, "Soak"): steady mixed load through the edge with no faults for
# --minutes, then the same load through a JavaScript pass-through Worker (the control); records
# client-visible errors, latency per minute, the Worker's Wasm memory and workerd's RSS every 30 s.
# Writes DIR/soak.json and DIR/requests.csv and prints a summary. Exit code 1 if a client saw an
# error. With TANDEM_PREBUILT=1 it uses target/ and edge/build/ as they are (no build step).
#   scripts/soak.sh [--minutes 10] [--rate 30] [--clients 6] [--control-minutes M] [--out .state/soak]
source "$(dirname "$0")/lib.sh"
if [ "${TANDEM_PREBUILT:-}" = 1 ]; then
  [ -f "$ROOT/edge/build/index.js" ] || { log "edge/build/ is missing"; exit 1; }
else
  "$ROOT/scripts/prepare-stack.sh"
fi
cd "$ROOT"
export TANDEM_SOAK_COMMAND="scripts/soak.sh $*"
exec "$VENV/bin/python" -m tests.harness.soak "$@"
