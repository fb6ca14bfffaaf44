"""The whole system on one machine: moto with the table in every region, the replicator standing
in for global-table replication, one `regional` per region (admin route on), and the edge in
workerd with a ticker that fires its cron probe.

`python -m tests.harness.stack up [--regions a,b,c] [--replication-lag-ms N] [--open]` (or
`scripts/up.sh`) starts it closed (see `Access`; `--open` for the seed's open flow), prints its
throwaway token and signing key, then the URLs (the edge and each region last), and stays up until
Ctrl-C or SIGTERM; then it stops every process it started, by PID, and leaves none behind.
The drill (`drill.py`) uses the same `Stack` to run its faults.

Never binds anything but 127.0.0.1, and never stops a process it did not start.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from . import edge, moto, procs, regional, tokens

DEFAULT_REGIONS = ("eu-west-1", "eu-central-1")
DEFAULT_TABLE = "tandem-items"
#: wrangler dev runs crons only when asked: the ticker asks this often (the deployed cron is 60 s;
#: 5 s keeps a local drill short).
TICK_S = 5.0
SCHEDULED = "/__scheduled?cron=*+*+*+*+*"
#: Where `up` writes its URLs and PIDs while it runs.
UP_FILE = procs.STATE / "stack" / "up.json"
#: The per-client limit of the closed stack; the `[[ratelimits]]` binding in wrangler.toml holds
#: the same numbers (the binding enforces them, the edge reports them in 429s).
RATE_LIMIT = {"limit": 100, "period_s": 60}


class Access:
    """A closed stack's throwaway secrets, made fresh for each stack: the HS256 key the edge
    checks tokens with, the SigV4 key pair the edge signs with and the regions check, and the
    operator token `/_edge/status` needs. `token` is a JWT with both scopes, valid 7 days."""

    def __init__(self, jwks_url: str | None = None):
        #: An identity provider's JWKS (RS256/ES256 tokens) besides the local HS256 secret.
        self.jwks_url = jwks_url
        self.jwt_secret = secrets.token_hex(32)
        self.access_key_id = "AKIDLOCAL" + secrets.token_hex(6).upper()
        self.secret_access_key = secrets.token_urlsafe(30)
        self.operator_token = secrets.token_hex(16)
        self.token = tokens.hs256(tokens.claims(), self.jwt_secret)

    def edge_vars(self) -> dict[str, str]:
        return {
            "AUTH": json.dumps({"issuer": tokens.LOCAL_ISSUER, "audience": tokens.LOCAL_AUDIENCE,
                                # A rotated key is picked up within a second (tests wait that).
                                "unknown_kid_refresh_s": 1,
                                **({"jwks_url": self.jwks_url} if self.jwks_url else {})}),
            "JWT_HS256_SECRET": self.jwt_secret,
            "ORIGIN_AUTH": "sigv4",
            "SIGV4_ACCESS_KEY_ID": self.access_key_id,
            "SIGV4_SECRET_ACCESS_KEY": self.secret_access_key,
            "OPERATOR_TOKEN": self.operator_token,
            "RATE_LIMIT": json.dumps(RATE_LIMIT),
        }

    def regional_env(self) -> dict[str, str]:
        return {"SIGV4_ACCESS_KEY_ID": self.access_key_id,
                "SIGV4_SECRET_ACCESS_KEY": self.secret_access_key}


class Stack:
    """Starts and stops the local system; every process is kept by PID in `started`."""

    def __init__(self, regions=DEFAULT_REGIONS, table: str = DEFAULT_TABLE,
                 replication_lag_ms: int = 0, edge_port: int | None = None,
                 tick_s: float = TICK_S, weights: dict[str, float] | None = None,
                 routing: dict | None = None, name: str = "stack", closed: bool = False,
                 jwks_url: str | None = None):
        regions = list(regions)
        if not 2 <= len(regions) <= 5 or len(set(regions)) != len(regions):
            raise ValueError(f"need 2 to 5 distinct regions, got {regions}")
        self.regions = regions
        self.table = table
        self.replication_lag_ms = replication_lag_ms
        self.edge_port = edge_port
        self.tick_s = tick_s
        self.weights = weights
        self.routing = routing
        self.name = name
        #: Signs the edge's affinity tokens; made fresh for each stack, kept across edge restarts.
        self.affinity_secret = secrets.token_hex(32)
        #: A closed stack's secrets (caller tokens, SigV4, operator token); `None`: open.
        self.access = Access(jwks_url) if closed else None
        self.started: list[procs.Proc] = []
        self.moto: procs.Proc | None = None
        self.replicator: procs.Proc | None = None
        self.regional: dict[str, procs.Proc] = {}
        self.ports: dict[str, int] = {}
        self.edge: procs.Proc | None = None
        self._state_dir = procs.STATE / "stack" / f"{name}-{uuid.uuid4().hex[:8]}"
        self._stop_ticker = threading.Event()
        self._ticker: threading.Thread | None = None
        self.ticks = 0

    def _keep(self, proc: procs.Proc) -> procs.Proc:
        self.started.append(proc)
        return proc

    def start(self) -> "Stack":
        """Starts everything; on any failure stops what it started and re-raises."""
        try:
            self.moto = self._keep(moto.start_moto())
            for region in self.regions:
                moto.create_table(self.moto.url, region, self.table)
            self.replicator = self._keep(self._start_replicator())
            for region in self.regions:
                self.ports[region] = procs.free_port()
                self.regional[region] = self._keep(self._start_region(region))
            self._state_dir.mkdir(parents=True, exist_ok=True)
            self.edge = self._keep(self._start_edge(self.edge_port))
            self.probe()
            if self.tick_s > 0:
                self._ticker = threading.Thread(target=self._tick, name="cron-ticker", daemon=True)
                self._ticker.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_region(self, region: str) -> procs.Proc:
        return regional.start_regional(
            self.moto.url, region, self.table, port=self.ports[region],
            extra_env=self.access.regional_env() if self.access else None)

    def _start_edge(self, port: int | None) -> procs.Proc:
        return edge.start_edge(
            {r: self.regional[r].url for r in self.regions}, routing=self.routing,
            port=port, weights=self.weights, state_dir=str(self._state_dir / "wrangler"),
            affinity_secret=self.affinity_secret,
            access=self.access.edge_vars() if self.access else None)

    def client_headers(self) -> dict[str, str]:
        """What a client sends on every call: the bearer token on a closed stack."""
        return {"Authorization": f"Bearer {self.access.token}"} if self.access else {}

    def edge_status(self) -> dict:
        """The edge's `/_edge/status` (with the operator token on a closed stack)."""
        return edge.status(self.edge)

    def _start_replicator(self) -> procs.Proc:
        port = procs.free_port()
        argv = [sys.executable, "-m", "tests.harness.replicator", "--endpoint", self.moto.url,
                "--table", self.table, "--regions", ",".join(self.regions),
                "--lag-ms", str(self.replication_lag_ms), "--port", str(port)]
        proc = procs.start(f"replicator-{port}", argv, port=port)
        procs.wait_http(proc, "/health", timeout=20)
        return proc

    def _tick(self) -> None:
        while not self._stop_ticker.wait(self.tick_s):
            try:
                self.probe()
                self.ticks += 1
            except requests.RequestException:
                pass  # the edge may be restarting; the next tick tries again

    def probe(self) -> None:
        """Fires the edge's cron handler once (every region probed, results shared in KV)."""
        requests.get(self.edge.url + SCHEDULED, timeout=10)

    def stop(self) -> None:
        """Stops every process this stack started, newest first, by PID."""
        self._stop_ticker.set()
        if self._ticker:
            self._ticker.join(timeout=15)
        for proc in reversed(self.started):
            proc.stop()
        shutil.rmtree(self._state_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        """Every PID this stack started (each is also its process group's id)."""
        return [p.pid for p in self.started]

    # --- drill controls -----------------------------------------------------------------------

    def set_faults(self, region: str, **settings) -> dict:
        """Changes a region's faults through its admin route (status, latency_ms, ...)."""
        return regional.set_faults(self.regional[region], **settings)

    def kill_region(self, region: str) -> None:
        """Ends a region's process at once (SIGKILL), as a crash would."""
        self.regional[region].kill()

    def restart_region(self, region: str) -> procs.Proc:
        """Starts a region's process again on the same port."""
        self.regional[region].stop()
        proc = self._keep(self._start_region(region))
        self.regional[region] = proc
        return proc

    def restart_edge(self) -> procs.Proc:
        """Starts the edge again on the same port and KV state: a fresh isolate, as after a
        deploy, an eviction or a panic."""
        self.edge.stop()
        self.edge = self._keep(self._start_edge(self.edge.port))
        return self.edge

    def replicator_status(self) -> dict:
        return requests.get(self.replicator.url + "/status", timeout=5).json()

    def pause_replication(self) -> dict:
        """Stops applying replicated changes (as FIS's global-table-pause-replication); they are
        still read, and applied in order on `resume_replication`. Returns the status."""
        return self._replicator_post("/pause")

    def resume_replication(self) -> dict:
        return self._replicator_post("/resume")

    def _replicator_post(self, path: str) -> dict:
        response = requests.post(self.replicator.url + path, timeout=5)
        response.raise_for_status()
        return response.json()

    def describe(self) -> dict:
        return {
            "edge": self.edge.url,
            "closed": self.access is not None,
            # The up state file is the one place the local operator token is written (never
            # printed): `/_edge/status` needs it on a closed stack.
            "operator_token": self.access.operator_token if self.access else None,
            "regions": {r: self.regional[r].url for r in self.regions},
            "moto": self.moto.url,
            "replicator": self.replicator.url + "/status",
            "table": self.table,
            "pids": self.pids(),
            "logs": str(procs.STATE / "logs"),
        }


def remaining(pids: list[int]) -> list[int]:
    """PIDs of live processes in the process groups of `pids` (each process the harness starts
    leads its own group, so its children, e.g. wrangler's workerd, are in it too)."""
    groups = set(pids)
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) in groups:
            alive.append(int(entry.name))
    return sorted(alive)


def up(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stack up", description="Starts the local system.")
    parser.add_argument("--regions", default=",".join(DEFAULT_REGIONS),
                        help="comma-separated AWS region names, 2 to 5 (default: %(default)s)")
    parser.add_argument("--replication-lag-ms", type=int, default=0,
                        help="hold every replicated change back this long (default 0)")
    parser.add_argument("--edge-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--tick-s", type=float, default=TICK_S,
                        help="how often the edge's cron probe is fired (default %(default)s s)")
    parser.add_argument("--state-file", type=Path, default=UP_FILE,
                        help="where the URLs and PIDs are written while up (%(default)s)")
    parser.add_argument("--open", action="store_true",
                        help="no caller tokens and unsigned origin requests (the seed's open "
                             "flow); by default the stack runs closed, like production")
    args = parser.parse_args(argv)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    stack = Stack(regions, replication_lag_ms=args.replication_lag_ms, edge_port=args.edge_port,
                  tick_s=args.tick_s, name="up", closed=not args.open)
    try:
        stack.start()
    except Exception as e:  # noqa: BLE001 (one clear line, then exit)
        print(f"stack: start failed: {e}", file=sys.stderr)
        return 1
    try:
        info = stack.describe()
        args.state_file.parent.mkdir(parents=True, exist_ok=True)
        args.state_file.write_text(json.dumps(info, indent=2))
        print(f"moto: {stack.moto.url}")
        print(f"replicator: {info['replicator']} (lag {args.replication_lag_ms} ms)")
        print(f"logs: {info['logs']}; state: {args.state_file}")
        print("pids: " + " ".join(str(p) for p in stack.pids()))
        print(f"up in {time.monotonic() - started:.1f} s; Ctrl-C stops everything")
        if stack.access:
            # The only secrets ever printed: throwaway, made for this start.
            print(f"token: {stack.access.token}")
            print(f"signing-key: {stack.access.access_key_id}:{stack.access.secret_access_key}")
        print(f"edge: {stack.edge.url}")
        for region in regions:
            print(f"region {region}: {stack.regional[region].url}")
        sys.stdout.flush()
        warned: set[str] = set()
        while not stop.wait(1.0):
            for proc in [stack.moto, stack.replicator, stack.edge, *stack.regional.values()]:
                if not proc.alive() and proc.name not in warned:
                    warned.add(proc.name)
                    print(f"stack: {proc.name} exited; see {proc.log_path}", file=sys.stderr)
    finally:
        print("stack: stopping", file=sys.stderr)
        stack.stop()
        args.state_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "up":
        print("usage: python -m tests.harness.stack up [--regions a,b] [--replication-lag-ms N] "
              "[--open]", file=sys.stderr)
        return 2
    return up(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
