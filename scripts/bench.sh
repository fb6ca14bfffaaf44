#!/usr/bin/env bash
# Measures the figures the issues name (start-up, memory, binary and bundle size, service overhead
# over DynamoDB, edge added latency) on this machine and prints them. Bounded in time; loopback
# only. Usage: scripts/bench.sh [--requests N]
#        scripts/bench.sh --only auth [authbench options]: the security costs alone (SigV4 signing
#        bench, then tests/harness/authbench.py: JWT verification in workerd, tandem-jwt vs
#        WebCrypto; see docs/benchmarks.md, "Security costs").
#        scripts/bench.sh --only lambda [lambdabench options]: CPU per warm GET /get/{id} in Lambda
#        mode against a local runtime API emulator, connections kept as in AWS (options: --n,
#        --warmup, --count N for instructions under callgrind, --perf DIR [--perf-dwarf],
#        --strace, --closing for the first connection-closing setup, --only-lambda-get,
#        --binary PATH; tests/harness/lambdabench.py; see docs/benchmarks.md, "Cost per request
#        in Lambda mode").
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
if [ "${1:-}" = "--only" ] && [ "${2:-}" = "auth" ]; then
  shift 2
  scripts/install-tools.sh python node
  [ -f edge/build/index.js ] || { scripts/install-tools.sh wasm && scripts/build-edge.sh; }
  cargo bench --profile measure -p edge --bench signing --locked -- --noplot 2>&1 | grep -E "^signing|time:" || true
  exec "$VENV/bin/python" -m tests.harness.authbench "$@"
fi
if [ "${1:-}" = "--only" ] && [ "${2:-}" = "lambda" ]; then
  shift 2
  scripts/install-tools.sh python
  cargo build -p regional --release --locked
  exec "$VENV/bin/python" -m tests.harness.lambdabench "$@"
fi
scripts/install-tools.sh python node wasm system
cargo build -p regional --release --locked
cargo bench --profile measure -p regional --bench overhead --no-run --locked
[ -f edge/build/index.js ] || scripts/build-edge.sh
cargo bench --profile measure -p edge --bench routing --locked -- --noplot 2>&1 | grep -E "^routing|time:" || true
cd "$ROOT/tests" && exec "$VENV/bin/python" -m harness.bench "$@"
