"""CPU per warm `GET /get/{id}` of the release `regional` binary in Lambda mode (issue 12, part 7).

A minimal emulator of the Lambda Runtime API (`/2018-06-01/runtime/invocation/next`,
`/{id}/response`, `/{id}/error`, `/runtime/init/error`) on 127.0.0.1, in http.server, hands out
API Gateway HTTP API (v2) events one at a time, as Lambda does, with an `authorizer.iam` context
whose `userArn` is the `EDGE_CALLER_ARN` the function is started with. The function reads a
moto table. Measured per run: the function process's CPU per invocation (utime + stime from
/proc/PID/stat, and the sum of every thread's /proc/PID/task/*/schedstat, before/after the
measured invocations, divided by their number) and the emulator-side latency (event handed out →
response received) p50/p99. The same in plain-HTTP mode (one keep-alive connection, and a new
connection per request) for comparison. See docs/benchmarks.md, "Cost per request in Lambda
mode".

    source scripts/lib.sh; $VENV/bin/python -m tests.harness.lambdabench [--n 2000] [--warmup 200]
        [--perf DIR]   # also `perf record -g` the Lambda-mode GET run (writes DIR/perf.data)
        [--strace]     # also `strace -c -f` a Lambda-mode GET run (syscalls per invocation)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import signal
import statistics
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import moto, procs

ROOT = procs.ROOT
RELEASE = ROOT / "target" / "release" / "regional"
REGION = "eu-west-1"
TABLE = "lambdabench"
ITEM = "bench-item"
CALLER = "arn:aws:iam::123456789012:user/tandem-edge"
PREFIX = "/2018-06-01"


def api_gateway_v2_event(path: str, caller: str = CALLER) -> bytes:
    """An API Gateway HTTP API (payload 2.0) event for `GET path`, IAM-authorised as `caller`."""
    now = time.time()
    request_id = uuid.uuid4().hex[:16] + "="
    return json.dumps({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json", "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "tandem-edge", "x-amzn-trace-id": "Root=1-00000000-000000000000000000000000",
            "x-forwarded-for": "203.0.113.7", "x-forwarded-port": "443", "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "authorizer": {"iam": {
                "accessKey": "AKIAEXAMPLE", "accountId": "123456789012", "callerId": "AIDAEXAMPLE",
                "cognitoIdentity": None, "principalOrgId": None, "userArn": caller, "userId": "AIDAEXAMPLE",
            }},
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "domainPrefix": "abc123",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "tandem-edge"},
            "requestId": request_id, "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }).encode()


class RuntimeApi:
    """The emulator: one pending invocation at a time, handed out on `next`, answered on
    `response` or `error`."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.done: queue.Queue = queue.Queue()
        self.handed_out: dict[str, float] = {}
        self.init_errors: list[bytes] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real runtime API

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/runtime/invocation/next":
                    return self._reply(404, b'{"errorType":"NotFound"}')
                inv_id, event = api.events.get()
                headers = {
                    "Lambda-Runtime-Aws-Request-Id": inv_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:eu-west-1:123456789012:function:tandem-regional",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                }
                api.handed_out[inv_id] = time.perf_counter()
                self._reply(200, event, headers)

            def do_POST(self) -> None:
                body = self._body()
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts == ["runtime", "init", "error"]:
                    api.init_errors.append(body)
                    return self._reply(202, b'{"status":"OK"}')
                if len(parts) == 4 and parts[:2] == ["runtime", "invocation"] and parts[3] in ("response", "error"):
                    inv_id = parts[2]
                    self._reply(202, b'{"status":"OK"}')
                    api.done.put((inv_id, parts[3], body, time.perf_counter() - api.handed_out.pop(inv_id)))
                    return
                self._reply(404, b'{"errorType":"NotFound"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: bytes, timeout: float = 30) -> tuple[dict, float]:
        """One invocation, waited for: (the function's response, handed out → answered seconds)."""
        inv_id = str(uuid.uuid4())
        self.events.put((inv_id, event))
        got_id, kind, body, seconds = self.done.get(timeout=timeout)
        if got_id != inv_id or kind != "response":
            raise RuntimeError(f"invocation {inv_id}: {kind} {body[:500]!r}")
        return json.loads(body), seconds

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cpu(pid: int) -> tuple[float, float]:
    """(utime + stime seconds of the whole process, sum of its live threads' on-CPU seconds
    from schedstat). The first counts exited threads too but has clock-tick resolution."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return ticks, ns / 1e9


def summary(label: str, n: int, before, after, lat: list[float]) -> dict:
    lat_ms = sorted(x * 1000 for x in lat)
    out = {"label": label, "n": n,
           "cpu_us_stat": (after[0] - before[0]) / n * 1e6,
           "cpu_us_schedstat": (after[1] - before[1]) / n * 1e6,
           "p50_ms": statistics.median(lat_ms), "p99_ms": lat_ms[int(0.99 * (len(lat_ms) - 1))]}
    print(f"  {label:<44} CPU/inv {out['cpu_us_schedstat']:6.0f} µs (schedstat; stat {out['cpu_us_stat']:4.0f})"
          f"  p50 {out['p50_ms']:.3f} ms  p99 {out['p99_ms']:.3f} ms", flush=True)
    return out


def base_env(endpoint: str, rust_log: str) -> dict:
    return {"AWS_REGION": REGION, "TABLE_NAME": TABLE, "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_EC2_METADATA_DISABLED": "true", "RUST_LOG": rust_log}


def start_function(api: RuntimeApi, endpoint: str, rust_log: str, wrap: list[str] | None = None) -> procs.Proc:
    env = base_env(endpoint, rust_log)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.port}", "EDGE_CALLER_ARN": CALLER,
        "AWS_LAMBDA_FUNCTION_NAME": "tandem-regional", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/tandem-regional",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/03/[$LATEST]bench", "_HANDLER": "bootstrap",
    })
    return procs.start(f"lambdabench-fn-{api.port}", (wrap or []) + [str(RELEASE)], env=env)


def run_lambda(endpoint: str, path: str, n: int, warmup: int, rust_log: str, label: str,
               perf_dir: Path | None = None, strace: bool = False) -> dict:
    api = RuntimeApi()
    wrap = ["strace", "-c", "-f", "-o", str(ROOT / ".state" / "lambdabench-strace.txt")] if strace else None
    fn = start_function(api, endpoint, rust_log, wrap)
    try:
        for _ in range(warmup):
            resp, _ = api.invoke(api_gateway_v2_event(path))
            if resp.get("statusCode") != 200:
                raise RuntimeError(f"{path}: {resp}")
        pid = fn.pid
        if strace:  # the function is strace's child
            pid = int(Path(f"/proc/{fn.pid}/task/{fn.pid}/children").read_text().split()[0])
        recorder = None
        if perf_dir:
            perf_dir.mkdir(parents=True, exist_ok=True)
            recorder = subprocess.Popen(["perf", "record", "-g", "-F", "4999", "-p", str(pid), "-o",
                                         str(perf_dir / "perf.data")], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        events = [api_gateway_v2_event(path) for _ in range(n)]  # built outside the measured span
        time.sleep(0.05)
        before = cpu(pid)
        lat = []
        for event in events:
            resp, seconds = api.invoke(event)
            lat.append(seconds)
        time.sleep(0.05)  # the function's next `next` call is in flight; let it block
        after = cpu(pid)
        if recorder:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)
        if api.init_errors:
            raise RuntimeError(f"init errors: {api.init_errors}")
        return summary(label, n, before, after, lat)
    finally:
        fn.stop()
        api.close()


def run_http(endpoint: str, path: str, n: int, warmup: int, rust_log: str, label: str, keep_alive: bool) -> dict:
    port = procs.free_port()
    env = base_env(endpoint, rust_log)
    env["LISTEN_ADDR"] = f"127.0.0.1:{port}"
    fn = procs.start(f"lambdabench-http-{port}", [str(RELEASE)], env=env, port=port)
    try:
        procs.wait_http(fn, "/health", timeout=20)
        conn = http.client.HTTPConnection("127.0.0.1", port)

        def one() -> float:
            nonlocal conn
            started = time.perf_counter()
            if not keep_alive:
                conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", path, headers={} if keep_alive else {"Connection": "close"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{path}: {r.status}")
            if not keep_alive:
                conn.close()
            return time.perf_counter() - started

        for _ in range(warmup):
            one()
        time.sleep(0.05)
        before = cpu(fn.pid)
        lat = [one() for _ in range(n)]
        time.sleep(0.05)
        after = cpu(fn.pid)
        return summary(label, n, before, after, lat)
    finally:
        fn.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--perf", type=Path, help="perf record -g the Lambda-mode GET run into DIR")
    ap.add_argument("--strace", action="store_true", help="strace -c a Lambda-mode GET run")
    args = ap.parse_args()
    if not RELEASE.exists():
        raise SystemExit(f"{RELEASE} is missing: cargo build -p regional --release")
    print(f"machine: {os.cpu_count()} cores, {procs.cpu_model()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; n={args.n} after {args.warmup} warm-up")
    db = moto.start_moto()
    try:
        moto.create_table(db.url, REGION, TABLE)
        moto.client(db.url, REGION).put_item(TableName=TABLE, Item={
            "item_id": {"S": ITEM}, "name": {"S": "bench"}, "n": {"N": "42"}, "region": {"S": REGION},
            "created_at": {"S": "2026-11-29T10:00:00.000Z"}, "updated_at": {"S": "2026-11-29T10:00:00.000Z"},
            "version": {"N": "1"}})
        get = f"/get/{ITEM}"
        n, w = args.n, args.warmup
        results = [
            run_lambda(db.url, get, n, w, "info", "lambda GET /get/{id}, log on"),
            run_lambda(db.url, get, n, w, "off", "lambda GET /get/{id}, RUST_LOG=off"),
            run_lambda(db.url, "/health", n, w, "info", "lambda GET /health (no DynamoDB), log on"),
            run_lambda(db.url, "/health", n, w, "off", "lambda GET /health, RUST_LOG=off"),
            run_http(db.url, get, n, w, "info", "http keep-alive GET /get/{id}, log on", True),
            run_http(db.url, get, n, w, "off", "http keep-alive GET /get/{id}, RUST_LOG=off", True),
            run_http(db.url, get, n, w, "info", "http new connection GET /get/{id}, log on", False),
        ]
        if args.perf:
            run_lambda(db.url, get, n, w, "info", "lambda GET /get/{id}, log on, under perf", perf_dir=args.perf)
        if args.strace:
            run_lambda(db.url, get, n, w, "info", "lambda GET /get/{id}, log on, under strace -c", strace=True)
            print((ROOT / ".state" / "lambdabench-strace.txt").read_text())
        out = ROOT / ".state" / "lambdabench.json"
        out.write_text(json.dumps(results, indent=1))
        print(f"written: {out}")
    finally:
        db.stop()


if __name__ == "__main__":
    main()
