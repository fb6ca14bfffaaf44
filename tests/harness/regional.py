"""The `regional` binary, run as a local HTTP server against a local DynamoDB endpoint."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from . import procs

ADMIN_TOKEN = "local-admin-token-0123456789"


def binary() -> Path:
    """The built binary: $TANDEM_REGIONAL_BIN, else target/debug/regional."""
    path = Path(os.environ.get("TANDEM_REGIONAL_BIN", procs.ROOT / "target" / "debug" / "regional"))
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build it with `cargo build -p regional`")
    return path


def start_regional(endpoint: str, region: str, table: str, status: int | None = None,
                   admin: bool = True, port: int | None = None, extra_env: dict | None = None) -> procs.Proc:
    port = port or procs.free_port()
    env = {
        "AWS_REGION": region,
        "TABLE_NAME": table,
        "LISTEN_ADDR": f"127.0.0.1:{port}",
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUST_LOG": "info",
    }
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    if status is not None:
        env["STATUS"] = str(status)
    if admin:
        env["ADMIN_TOKEN"] = ADMIN_TOKEN
    env.update(extra_env or {})
    proc = procs.start(f"regional-{region}-{port}", [str(binary())], env=env, port=port)
    proc.extra["region"] = region
    procs.wait_http(proc, "/health", timeout=20)
    return proc


def set_faults(proc: procs.Proc, **settings) -> dict:
    """Changes a running regional's faults through its admin route (status, latency_ms,
    response_delay_ms, error_rate); fails loudly if the route refuses."""
    r = requests.put(f"{proc.url}/admin/faults", json=settings, timeout=5,
                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    if r.status_code != 200:
        raise RuntimeError(f"admin route refused {settings}: {r.status_code} {r.text}")
    return r.json()
