#!/usr/bin/env bash
# Runs the internet-scale simulator (edge/sim) on one scenario and compares the four policies.
# Usage: scripts/simulate.sh SCENARIO_FILE [--seed N] [--out DIR] [--threads N]
# Builds tandem-sim with the `measure` profile (release at opt-level 3) when needed, then writes
# DIR/summary.json, DIR/details.json and DIR/chart.svg (DIR defaults to .state/sim/<scenario
# name>). The same seed gives the same bytes; wall times go to stderr. Scenarios: edge/sim/scenarios/,
# results and definitions: docs/scale.md.
source "$(dirname "$0")/lib.sh"
# Paths given relative to the caller's directory stay so after the cd below.
args=()
expect_path=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) args+=("$1"); shift; [ $# -gt 0 ] && { args+=("$(realpath -m -- "$1")"); shift; } ;;
    --seed|--threads) args+=("$1"); shift; [ $# -gt 0 ] && { args+=("$1"); shift; } ;;
    -*) args+=("$1"); shift ;;
    *) if [ "$expect_path" = 1 ]; then args+=("$(realpath -m -- "$1")"); expect_path=0; else args+=("$1"); fi; shift ;;
  esac
done
cd "$ROOT"
cargo build --profile measure -p tandem-sim --locked --quiet
exec "$ROOT/target/measure/tandem-sim" "${args[@]}"
