"""Benchmarks of the figures named in the issues, printed as a table (see docs/benchmarks.md).

Run through scripts/bench.sh, which builds the release binary, the overhead bench and the edge.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

import boto3
import requests

from . import edge, procs, regional

ROOT = procs.ROOT
RELEASE = ROOT / "target" / "release" / "regional"
TABLE = "bench"
ITEM = "bench-item"


def machine() -> str:
    return f"{os.cpu_count()} cores, {procs.cpu_model()}, {platform.system()} {platform.release()}"


def start_dynalite() -> procs.Proc:
    port = procs.free_port()
    proc = procs.start(f"dynalite-{port}", [str(ROOT / "node_modules/.bin/dynalite"), "--port", str(port),
                                            "--createTableMs", "0"], port=port)
    procs.wait_http(proc, "/", timeout=20)
    db = boto3.client("dynamodb", endpoint_url=proc.url, region_name="eu-west-1",
                      aws_access_key_id="local", aws_secret_access_key="local")
    db.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST")
    db.get_waiter("table_exists").wait(TableName=TABLE)
    db.put_item(TableName=TABLE, Item={
        "item_id": {"S": ITEM}, "name": {"S": "bench"}, "n": {"N": "42"}, "region": {"S": "eu-west-1"},
        "created_at": {"S": "2026-11-29T10:00:00.000Z"}, "updated_at": {"S": "2026-11-29T10:00:00.000Z"},
        "version": {"N": "1"}})
    return proc


def regional_env(endpoint: str, port: int) -> dict:
    return {"AWS_REGION": "eu-west-1", "TABLE_NAME": TABLE, "LISTEN_ADDR": f"127.0.0.1:{port}",
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint, "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local", "AWS_EC2_METADATA_DISABLED": "true", "RUST_LOG": "warn"}


def startup_ms(endpoint: str, runs: int = 20) -> list[float]:
    """Process start to the first 200 from /health, polled over a raw socket."""
    import socket
    results = []
    for _ in range(runs):
        port = procs.free_port()
        env = dict(os.environ, **regional_env(endpoint, port))
        started = time.perf_counter()
        p = subprocess.Popen([str(RELEASE)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if s.recv(64).startswith(b"HTTP/1.1 200"):
                            break
                except OSError:
                    pass
                if time.perf_counter() - started > 10:
                    raise RuntimeError("regional did not start")
            results.append((time.perf_counter() - started) * 1000)
        finally:
            p.terminate()
            p.wait(5)
    return results


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wrk(url: str, connections: int, seconds: int = 10) -> dict:
    out = subprocess.run(["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    def ms(label):
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50": ms("50%"), "p99": ms("99%"), "rps": float(rps.group(1)) if rps else float("nan"),
            "non2xx": int(errors.group(1)) if errors else 0}


def start_miniflare(regions: dict[str, str], routing: dict) -> procs.Proc:
    """The edge in workerd through Miniflare (no wrangler dev proxy in front)."""
    import json
    port = procs.free_port()
    variables = {"REGIONS": edge.regions_var(regions), "ROUTING": json.dumps(routing),
                 "CORS_ORIGINS": "[]", "FALLBACK_ORIGIN": "", **edge.OPEN}
    proc = procs.start(f"bench-miniflare-{port}", ["node", str(ROOT / "tests/edge/serve.mjs")],
                       env={"EDGE_VARS": json.dumps(variables), "PORT": str(port)}, port=port)
    procs.wait_http(proc, "/_edge/status", timeout=30)
    return proc


def idempotency_cost(url: str, creates: int = 1000) -> None:
    """p50 of POST /items without and with an Idempotency-Key (a new key each time): what the
    key record (claim, then result) adds per create. Sequential, one client."""
    session = requests.Session()
    body = {"name": "bench", "n": 1}

    def timed(headers) -> list[float]:
        out = []
        for _ in range(creates):
            started = time.perf_counter()
            session.post(f"{url}/items", json=body, headers=headers()).raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
        return out

    timed(lambda: {})  # warm-up
    plain = timed(lambda: {})
    keyed = timed(lambda: {"Idempotency-Key": os.urandom(12).hex()})
    p50 = statistics.median
    print(f"idempotency key per create (n={creates} each): p50 {p50(plain):.3f} ms without a key, "
          f"{p50(keyed):.3f} ms with one, added {p50(keyed) - p50(plain):.3f} ms; write units: "
          f"1 without a key, 3 with one (claim, item, result; each <= 1 KB here)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--only", choices=["idempotency"], help="measure only this figure")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    if args.only == "idempotency":
        dyn = start_dynalite()
        port = procs.free_port()
        svc = procs.start(f"bench-regional-{port}", [str(RELEASE)], env=regional_env(dyn.url, port),
                          port=port)
        try:
            procs.wait_http(svc, "/health")
            idempotency_cost(svc.url)
        finally:
            svc.stop()
            dyn.stop()
        return
    size = RELEASE.stat().st_size
    print(f"regional release binary (stripped): {size / 1e6:.2f} MB ({size} bytes)")
    wasm = (ROOT / "edge/build/index_bg.wasm").read_bytes()
    print(f"edge wasm: {len(wasm) / 1024:.0f} KiB raw, {len(gzip.compress(wasm, 9)) / 1024:.0f} KiB gzip -9")

    dyn = start_dynalite()
    running = [dyn]
    try:
        starts = startup_ms(dyn.url)
        print(f"start-up to first 200 /health: median {statistics.median(starts):.1f} ms, "
              f"min {min(starts):.1f}, max {max(starts):.1f} (n={len(starts)})")

        port = procs.free_port()
        svc = procs.start(f"bench-regional-{port}", [str(RELEASE)], env=regional_env(dyn.url, port), port=port)
        running.append(svc)
        procs.wait_http(svc, "/health")
        session = requests.Session()
        for _ in range(10_000):
            session.get(f"{svc.url}/items/{ITEM}").raise_for_status()
        print(f"RSS after 10k GET /items/{{id}}: {rss_mib(svc.pid):.1f} MiB")
        idempotency_cost(svc.url)

        bench_bin = sorted(glob.glob(str(ROOT / "target/measure/deps/overhead-*")), key=os.path.getmtime)
        bench_bin = [b for b in bench_bin if os.access(b, os.X_OK) and not b.endswith(".d")][-1]
        env = dict(os.environ, BENCH_DYNAMODB_ENDPOINT=dyn.url, BENCH_SERVICE_ADDR=f"127.0.0.1:{port}",
                   BENCH_TABLE=TABLE, BENCH_ITEM_ID=ITEM, BENCH_REQUESTS=str(args.requests),
                   AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_EC2_METADATA_DISABLED="true")
        print("service overhead over direct GetItem (dynalite):")
        cpu_before = cpu_seconds(svc.pid)
        print(subprocess.run([bench_bin], env=env, capture_output=True, text=True, check=True, timeout=600).stdout,
              end="")
        handled = 2 * args.requests + 100 * (1 + 32)  # both concurrency levels and their warm-ups
        print(f"service CPU per request (user+system): {(cpu_seconds(svc.pid) - cpu_before) / handled * 1e6:.0f} µs")

        regions = {"eu-west-1": svc.url}
        routing = {"hedge": False}
        served = start_miniflare(regions, routing)
        running.append(served)
        dev = edge.start_edge(regions, routing=routing)
        running.append(dev)
        print("edge added latency (wrk, 10 s each, GET /items/{id}; workerd via Miniflare, and via wrangler dev):")
        for c in (1, 16):
            direct = wrk(f"{svc.url}/items/{ITEM}", c)
            for label, proc in (("workerd", served), ("wrangler dev", dev)):
                via = wrk(f"{proc.url}/items/{ITEM}", c)
                print(f"  c={c:<2} {label:<12} direct p50={direct['p50']:.3f} p99={direct['p99']:.3f} ms"
                      f" {direct['rps']:.0f} req/s | via edge p50={via['p50']:.3f} p99={via['p99']:.3f} ms"
                      f" {via['rps']:.0f} req/s | added p50={via['p50'] - direct['p50']:.3f} ms"
                      f" p99={via['p99'] - direct['p99']:.3f} ms | non-2xx {direct['non2xx']}/{via['non2xx']}")
    finally:
        for p in reversed(running):
            p.stop()


if __name__ == "__main__":
    main()
