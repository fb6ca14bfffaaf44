#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what it needs (pinned), checks
# formatting and lints, runs the native Rust tests, builds the Worker, runs the system tests
# against real components (moto, regional processes, workerd) and the offline infra checks.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
started=$(date +%s)
step() { log "== $* ($(( $(date +%s) - started ))s)"; }

step "install tools"
scripts/install-tools.sh rust python node wasm infra system

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p edge -p tandem-jwt --target wasm32-unknown-unknown --locked -- -D warnings

step "native Rust tests (regional, edge core)"
cargo test --workspace --locked

step "build the regional binary and the edge Worker"
cargo build -p regional --locked
scripts/build-edge.sh

step "system tests: regional on moto, edge in workerd, drill"
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider

step "edge: wrangler deploy --dry-run"
out=$("$ROOT/node_modules/.bin/wrangler" deploy --dry-run --outdir "$STATE/dry-run" 2>&1) || { echo "$out"; exit 1; }
if grep -q "WARNING" <<<"$out"; then echo "$out"; echo "wrangler deploy --dry-run printed a WARNING" >&2; exit 1; fi
log "wrangler deploy --dry-run: ok"

step "infra: cfn-lint, cfn-guard, checkov, deploy dry run"
CFN_LINT="$VENV/bin/cfn-lint" CFN_GUARD="$CFN_GUARD_BIN" CHECKOV="$CHECKOV_VENV/bin/checkov" \
  PYTHON="$VENV/bin/python" infra/check.sh

step "all tests passed"
