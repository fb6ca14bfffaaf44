#!/usr/bin/env bash
# The failover drill (see docs/drill.md): the seed's STATUS=404 test under load, then a crash, a
# slow region and recovery, measured through the edge, a client pinned to region A and HAProxy,
# with a Route 53 DNS-failover model. Installs Debian's haproxy if it is missing.
#   scripts/drill.sh [--phase-s 20] [--concurrency 8] [--rate 3] [--out .state/drill]
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/prepare-stack.sh"
"$ROOT/scripts/install-tools.sh" system
cd "$ROOT"
exec "$VENV/bin/python" -m tests.harness.drill "$@"
