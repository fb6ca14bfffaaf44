#!/usr/bin/env bash
# Measures the figures the issues name (start-up, memory, binary and bundle size, service overhead
# over DynamoDB, edge added latency) on this machine and prints them. Bounded in time; loopback
# only. Usage: scripts/bench.sh [--requests N]
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
scripts/install-tools.sh python node wasm system
cargo build -p regional --release --locked
cargo bench --profile measure -p regional --bench overhead --no-run --locked
[ -f edge/build/index.js ] || scripts/build-edge.sh
cargo bench --profile measure -p edge --bench routing --locked -- --noplot 2>&1 | grep -E "^routing|time:" || true
cd "$ROOT/tests" && exec "$VENV/bin/python" -m harness.bench "$@"
