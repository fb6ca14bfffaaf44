"""HAProxy (Debian's package) in front of the regions, as a careful operator would set it up: the
drill's measured baseline for "a good load balancer without the edge".

The configuration, and why:
- Active checks `GET /health` every second, `expect status 200`, down after 2 failures, up after 2
  successes: the same signal Route 53 and the edge's probe read, about 2 s to react.
- `balance roundrobin` over every region (active-active, like the project), `retries 2` with
  `option redispatch 1` so each retry goes to another server at once (HAProxy otherwise waits
  min(timeout connect, 1 s) before retrying the same server, and redispatches only the last try).
- `retry-on all-retryable-errors` (connection failures, empty and junk responses, response
  timeouts, 500/502/503/504) for reads; `http-request disable-l7-retry` for a POST **without** an
  `Idempotency-Key`, so such a POST is retried only when it could not be sent at all
  (conn-failure). Retrying a POST after a timeout or an empty response could store it twice; the
  regions honour `Idempotency-Key`, so a keyed POST may be retried like a read. `option
  http-buffer-request` keeps a request's body so that PUTs and keyed POSTs can be retried at all
  (without it HAProxy retries only requests without a body).
- `timeout connect 1s`, `timeout server 2s` (the edge's per-try timeout), `timeout queue 2s`.
- Passive checks on live traffic too, so the comparison with the edge's outlier detection is fair
  in gray failures: `observe layer7` counts 5xx answers (and connection failures) as errors,
  `error-limit 5` consecutive errors trigger `on-error mark-down` (the server is marked down at
  once and comes back through its active checks, `rise 2`). HAProxy has no failure-rate rule:
  a server failing one request in five rarely has five errors in a row.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import procs

CONFIG_TEMPLATE = """\
# Written by tests/harness/haproxy.py for one drill run.
global
    maxconn 1024
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 1s
    timeout client 15s
    timeout server 2s
    timeout queue 2s
    timeout check 1s
    timeout http-keep-alive 5s
    retries 2
    option redispatch 1
    retry-on all-retryable-errors
    # A request with a body can be retried only if HAProxy kept it: buffer it (bodies here are
    # small JSON, like the edge, which buffers up to 400 KB).
    option http-buffer-request

frontend api
    bind 127.0.0.1:{port}
    default_backend regions

backend regions
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    # A POST without an idempotency key is only retried when it could not be sent at all.
    http-request disable-l7-retry if METH_POST !{{ req.hdr(idempotency-key) -m found }}
    default-server inter 1s fall 2 rise 2 observe layer7 error-limit 5 on-error mark-down
{servers}
"""


def binary() -> str | None:
    """The haproxy binary, or None when it is not installed (`apt-get install -y haproxy`)."""
    return shutil.which("haproxy")


def render(port: int, regions: dict[str, str]) -> str:
    """The configuration for a frontend on `port` over `regions` (name -> http://host:port)."""
    servers = "\n".join(
        f"    server {name} {url.removeprefix('http://')} check" for name, url in regions.items()
    )
    return CONFIG_TEMPLATE.format(port=port, servers=servers)


def start_haproxy(regions: dict[str, str], config_dir: Path, port: int | None = None) -> procs.Proc:
    """Starts HAProxy in the foreground (`-db`) on a free port; waits until it answers."""
    exe = binary()
    if exe is None:
        raise RuntimeError("haproxy is not installed (scripts/drill.sh installs it)")
    port = port or procs.free_port()
    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / "haproxy.cfg"
    config.write_text(render(port, regions))
    check = procs.start(f"haproxy-check-{port}", [exe, "-c", "-f", str(config)])
    if check.popen.wait(20) != 0:
        raise RuntimeError(f"haproxy refused its configuration:\n{check.log()}")
    proc = procs.start(f"haproxy-{port}", [exe, "-db", "-f", str(config)], port=port)
    procs.wait_http(proc, "/health", timeout=20, ok=lambda r: r.status_code == 200)
    return proc
