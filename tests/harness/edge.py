"""The edge Worker in workerd, through `wrangler dev --local` (prebuilt bundle, offline)."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

from . import procs

WRANGLER = procs.ROOT / "node_modules" / ".bin" / "wrangler"

OFFLINE_ENV = {
    "WRANGLER_SEND_METRICS": "false",
    "WRANGLER_SEND_ERROR_REPORTS": "false",
    "WRANGLER_HIDE_BANNER": "true",
    "CLOUDFLARE_CF_FETCH_ENABLED": "false",
    "CI": "true",
    "XDG_CONFIG_HOME": str(procs.STATE / "xdg"),
    "NO_COLOR": "1",
}

# Approximate coordinates of AWS regions (the edge ranks by distance to the client).
COORDINATES = {
    "eu-west-1": (53.35, -6.26), "eu-central-1": (50.11, 8.68), "us-east-1": (38.95, -77.45),
    "us-west-2": (45.84, -119.70), "ap-southeast-1": (1.29, 103.85), "eu-west-2": (51.51, -0.13),
    "eu-north-1": (59.33, 18.07), "ap-northeast-1": (35.68, 139.69),
}


def regions_var(regions: dict[str, str], weights: dict[str, float] | None = None) -> str:
    """REGIONS for a mapping of region name -> origin URL (weights default to 1)."""
    return json.dumps([
        {"name": name, "origin": origin, "lat": COORDINATES.get(name, (0, 0))[0],
         "lon": COORDINATES.get(name, (0, 0))[1], "weight": (weights or {}).get(name, 1.0)}
        for name, origin in regions.items()
    ])


#: An open edge (the seed's flow): no caller token, unsigned origin requests, no rate limit,
#: and `/_edge/status` open (names only). Most system tests use it; `access` closes it.
OPEN = {"AUTH": "off", "ORIGIN_AUTH": "none", "RATE_LIMIT": "off"}


def start_edge(regions: dict[str, str], fallback: str = "", routing: dict | None = None,
               cors: list[str] | None = None, port: int | None = None, name: str = "edge",
               state_dir: str | None = None, weights: dict[str, float] | None = None,
               affinity_secret: str | None = None, access: dict | None = None) -> "procs.Proc":
    """Starts wrangler dev on a free port with the given regions; waits until it answers.
    The affinity tokens are signed with a throwaway secret made for this start (or the one
    given); `proc.extra["affinity_secret"]` keeps it for tests that forge or check tokens.
    `access` holds the access vars and secrets (see `edge/src/core/access.rs`; default: `OPEN`);
    with an `OPERATOR_TOKEN` among them, `proc.extra["operator_token"]` keeps it."""
    port = port or procs.free_port()
    secret = affinity_secret or secrets.token_hex(32)
    variables = {
        "REGIONS": regions_var(regions, weights),
        "FALLBACK_ORIGIN": fallback,
        "ROUTING": json.dumps(routing or {}),
        "CORS_ORIGINS": json.dumps(cors or []),
        "AFFINITY_SECRET": secret,
        **(access if access is not None else OPEN),
    }
    proc = start_edge_raw(port, variables, name=name, state_dir=state_dir)
    proc.extra["affinity_secret"] = secret
    proc.extra["operator_token"] = variables.get("OPERATOR_TOKEN")
    procs.wait_http(proc, "/_edge/status", timeout=60, ok=lambda r: r.status_code == 200,
                    headers=operator_headers(proc))
    return proc


def operator_headers(proc: "procs.Proc") -> dict[str, str]:
    """The header `/_edge/status` needs on this edge (none on an open one)."""
    token = proc.extra.get("operator_token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def status(proc: "procs.Proc") -> dict:
    """The edge's `/_edge/status` report."""
    import requests
    r = requests.get(proc.url + "/_edge/status", headers=operator_headers(proc), timeout=10)
    r.raise_for_status()
    return r.json()


def start_edge_raw(port: int, variables: dict[str, str], name: str = "edge",
                   state_dir: str | None = None, https: bool = False) -> "procs.Proc":
    """Starts wrangler dev with exactly these vars; waits until it answers HTTP at all. With
    `https`, it serves HTTPS with the certificate wrangler makes for itself on this machine
    (self-signed: clients skip verification)."""
    inspector = procs.free_port()
    # A fresh state directory per start (KV holds probe results), removed when the edge stops.
    persist = state_dir or tempfile.mkdtemp(prefix=f"wrangler-{port}-", dir=procs.STATE)
    argv = [str(WRANGLER), "dev", "--local", "--ip", "127.0.0.1", "--port", str(port),
            "--inspector-port", str(inspector), "--show-interactive-dev-session=false",
            "--test-scheduled", "--persist-to", persist, "--log-level", "log"]
    if https:
        argv += ["--local-protocol", "https"]
    for key, value in variables.items():
        argv += ["--var", f"{key}:{value}"]
    env = dict(OFFLINE_ENV)
    env["PATH"] = os.environ.get("PATH", "")
    proc = procs.start(f"{name}-{port}", argv, env=env, port=port)
    if not state_dir:
        proc.cleanup.append(Path(persist))
    if https:
        proc.extra["scheme"] = "https"
    procs.wait_http(proc, "/_edge/status", timeout=60, verify=not https)
    return proc
