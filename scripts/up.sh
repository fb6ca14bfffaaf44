#!/usr/bin/env bash
# Starts the whole system on this machine and keeps it up until Ctrl-C: moto with the table in
# every region, the replicator (global-table replication), one regional per region (admin route
# on) and the edge in workerd, with a ticker firing its cron probe every 5 s. It runs closed, like
# production (caller tokens at the edge, SigV4 between the edge and the regions): before its
# `edge: URL` line it prints `token: <JWT>` and `signing-key: <key id>:<secret>`, throwaway and
# made fresh at each start. The last lines are `edge: URL` and `region NAME: URL`. Ctrl-C or
# SIGTERM stops everything it started.
#   scripts/up.sh [--regions eu-west-1,eu-central-1,us-east-1] [--replication-lag-ms 500] [--open]
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/prepare-stack.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m tests.harness.stack up "$@"
