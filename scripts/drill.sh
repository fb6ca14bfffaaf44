#!/usr/bin/env bash
# The failover drill (see docs/drill.md): writers and readers under load through a pause of
# replication with both regions written, then the seed's STATUS=404 test, a crash, a slow region,
# recovery, and three partial faults of region A (latency doubled, /health flapping, gray: fast
# 503s), measured through the edge, a client pinned to region A and HAProxy, with a Route 53
# DNS-failover model. Installs Debian's haproxy if it is missing.
#   scripts/drill.sh [--phase-s 20] [--concurrency 8] [--writers 2] [--rate 1] [--out .state/drill]
#   scripts/drill.sh --fault-phase-s 30 --settle-s 5 ...   # longer phases 7-9 only
#   scripts/drill.sh --no-build ...   # use target/debug/regional and edge/build as they are
#   scripts/drill.sh --help           # every option (builds nothing)
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
build=1
args=()
for arg in "$@"; do
  case $arg in
    --no-build) build=0 ;;
    -h|--help) exec "$VENV/bin/python" -m tests.harness.drill --help ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$build" -eq 1 ]; then
  "$ROOT/scripts/prepare-stack.sh"
else
  for f in "${TANDEM_REGIONAL_BIN:-$ROOT/target/debug/regional}" "$ROOT/edge/build/index.js" \
           "$ROOT/edge/build/index_bg.wasm"; do
    [ -e "$f" ] || { log "--no-build: $f is missing"; exit 1; }
  done
fi
"$ROOT/scripts/install-tools.sh" system
exec "$VENV/bin/python" -m tests.harness.drill ${args[@]+"${args[@]}"}
