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

Connections are kept as in AWS by default: the emulator answers HTTP/1.1 keep-alive with each
response (headers and body) in one write, as the real runtime API does, and DynamoDB is moto's
WSGI app served by a small keep-alive HTTP/1.1 server (`serve_dynamodb`, its own process), since
moto_server's werkzeug closes every connection where real DynamoDB keeps it. `--closing` runs
the first setup instead (moto_server, the emulator writing a response's body apart from its
headers, which made lambda_runtime drop the connection): a new connection to each per
invocation.

    source scripts/lib.sh; $VENV/bin/python -m tests.harness.lambdabench [--n 2000] [--warmup 200]
        [--perf DIR]   # also `perf record -g` the Lambda-mode GET run (writes DIR/perf.data)
        [--perf-dwarf] # with --perf: DWARF call graphs, for a build without frame pointers
        [--strace]     # also `strace -c -f` a Lambda-mode GET run (syscalls per invocation)
        [--closing]    # the first, connection-closing setup (see above)
        [--only-lambda-get]  # just the two Lambda-mode GET rows (quicker, for A/B runs)
        [--only-lambda]      # the four Lambda-mode rows (GET and /health)
        [--binary PATH]      # another build of regional (e.g. an unstripped one to profile)
        [--pin]        # the function alone on the last CPU, the rest on the others
        [--count N]    # also user-space instructions per invocation, N invocations under callgrind
"""

from __future__ import annotations

import argparse
import http.client
import io
import sys
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote
from pathlib import Path

from . import moto, procs

ROOT = procs.ROOT
RELEASE = ROOT / "target" / "release" / "regional"
REGION = "eu-west-1"
TABLE = "lambdabench"
ITEM = "bench-item"
CALLER = "arn:aws:iam::123456789012:user/tandem-edge"
PREFIX = "/2018-06-01"
PERF_DWARF = False
#: `--pin`: the CPU the function runs on (the harness, moto and the emulator get the others).
PIN_CPU: int | None = None


def pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(PIN_CPU), *argv] if PIN_CPU is not None else argv


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

    def __init__(self, split_writes: bool = False) -> None:
        self.events: queue.Queue = queue.Queue()
        self.done: queue.Queue = queue.Queue()
        self.handed_out: dict[str, float] = {}
        self.init_errors: list[bytes] = []
        #: When the first `next` arrived (the function's init is done), perf_counter seconds.
        self.first_next: float | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real runtime API
            # Buffered: headers and body leave in one write when the handler returns, as from
            # the real runtime API. Unbuffered (http.server's default), the body came in a
            # second segment, so lambda_runtime, which drops a response without reading its
            # body, found it unread and closed the connection: a new one per invocation.
            wbufsize = 0 if split_writes else io.DEFAULT_BUFFER_SIZE

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
                if api.first_next is None:
                    api.first_next = time.perf_counter()
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


def serve_dynamodb(port: int) -> None:
    """Serves moto's WSGI app (the DynamoDB API) on 127.0.0.1:`port` over HTTP/1.1 keep-alive,
    each response with its Content-Length in one write: a connection lasts as long as the client
    keeps it, as with real DynamoDB. For this bench only; the tests use moto_server."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    hop_by_hop = {"content-length", "connection", "transfer-encoding", "keep-alive"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = io.DEFAULT_BUFFER_SIZE

        def log_message(self, *args) -> None:
            pass

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            environ = {
                "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "PATH_INFO": unquote(path),
                "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port),
                "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": self.client_address[0],
                "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
            for key, value in self.headers.items():
                name = key.upper().replace("-", "_")
                if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                    environ[f"HTTP_{name}"] = value
            started: list = []

            def start_response(status: str, headers: list, exc_info=None):
                started[:] = [status, headers]
                return lambda data: None

            chunks = app(environ, start_response)
            try:
                out = b"".join(chunks)
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
            status, headers = started
            code, _, reason = status.partition(" ")
            self.send_response(int(code), reason)
            for k, v in headers:
                if k.lower() not in hop_by_hop:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def start_dynamodb(closing: bool) -> procs.Proc:
    """The DynamoDB endpoint: moto_server (closes every connection) or moto's app kept alive."""
    if closing:
        return moto.start_moto()
    port = procs.free_port()
    proc = procs.start(f"lambdabench-dynamodb-{port}", [sys.executable, "-m", "tests.harness.lambdabench",
                                                         "--serve-dynamodb", str(port)], port=port)
    procs.wait_http(proc, "/moto-api/", timeout=30)
    return proc


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
    return procs.start(f"lambdabench-fn-{api.port}", (wrap or []) + pinned([str(RELEASE)]), env=env)


def run_lambda(endpoint: str, path: str, n: int, warmup: int, rust_log: str, label: str,
               perf_dir: Path | None = None, strace: bool = False, closing: bool = False,
               count: bool = False) -> dict:
    """One Lambda-mode run. `count`: under callgrind, which counts the user-space instructions
    of the measured invocations (its CPU times are valgrind's, not the function's)."""
    api = RuntimeApi(split_writes=closing)
    wrap = ["strace", "-c", "-f", "-o", str(ROOT / ".state" / "lambdabench-strace.txt")] if strace else None
    count_dir = ROOT / ".state" / "lambdabench-callgrind"
    if count:
        shutil.rmtree(count_dir, ignore_errors=True)
        count_dir.mkdir(parents=True)
        wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
                f"--callgrind-out-file={count_dir}/callgrind.out.%p"]
    spawned = time.perf_counter()
    fn = start_function(api, endpoint, rust_log, wrap)
    try:
        for _ in range(warmup):
            resp, _ = api.invoke(api_gateway_v2_event(path), timeout=120 if count else 30)
            if resp.get("statusCode") != 200:
                raise RuntimeError(f"{path}: {resp}")
        pid = fn.pid
        if count:  # callgrind_control -d writes a dump at once; the start-up one is ignored
            for f in count_dir.glob("callgrind.out*"):
                f.unlink()
        if strace:  # the function is strace's child
            pid = int(Path(f"/proc/{fn.pid}/task/{fn.pid}/children").read_text().split()[0])
        recorder = None
        if perf_dir:
            perf_dir.mkdir(parents=True, exist_ok=True)
            # The release binary has no frame pointers: DWARF call graphs (fewer samples, each
            # with a stack copy) give whole user-space stacks; `-g` gives kernel stacks only.
            graph = ["-F", "999", "--call-graph", "dwarf,16384"] if PERF_DWARF else ["-F", "4999", "-g"]
            recorder = subprocess.Popen(["perf", "record", *graph, "-p", str(pid), "-o",
                                         str(perf_dir / "perf.data")], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        events = [api_gateway_v2_event(path) for _ in range(n)]  # built outside the measured span
        if count:  # callgrind counts from here on
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
        time.sleep(0.05)
        before = cpu(pid)
        lat = []
        for event in events:
            resp, seconds = api.invoke(event)
            lat.append(seconds)
        time.sleep(0.05)  # the function's next `next` call is in flight; let it block
        after = cpu(pid)
        instructions = None
        if count:
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
            for dump in sorted(count_dir.glob("callgrind.out*")):
                for line in dump.read_text(errors="replace").splitlines():
                    if line.startswith("summary:"):
                        instructions = max(instructions or 0, int(line.split()[1]) / n)
        if recorder:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)
        if api.init_errors:
            raise RuntimeError(f"init errors: {api.init_errors}")
        out = summary(label, n, before, after, lat)
        if instructions:
            out["user_instructions_per_inv"] = instructions
            print(f"  {'':<44} user-space instructions/inv (callgrind) {instructions / 1000:.1f}k", flush=True)
        # Start-up: process spawned -> its first `next` (config, SDK client, router built).
        out["init_ms"] = (api.first_next - spawned) * 1000 if api.first_next else None
        print(f"  {'':<44} init (spawn -> first next) {out['init_ms']:.1f} ms", flush=True)
        return out
    finally:
        fn.stop()
        api.close()


def run_http(endpoint: str, path: str, n: int, warmup: int, rust_log: str, label: str, keep_alive: bool) -> dict:
    port = procs.free_port()
    env = base_env(endpoint, rust_log)
    env["LISTEN_ADDR"] = f"127.0.0.1:{port}"
    fn = procs.start(f"lambdabench-http-{port}", pinned([str(RELEASE)]), env=env, port=port)
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
    global RELEASE, PERF_DWARF, PIN_CPU
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--perf", type=Path, help="perf record -g the Lambda-mode GET run into DIR")
    ap.add_argument("--perf-dwarf", action="store_true",
                    help="with --perf: DWARF call graphs (whole user-space stacks, 999 Hz)")
    ap.add_argument("--count", type=int, default=0, metavar="N",
                    help="also count user-space instructions per invocation over N invocations "
                         "under callgrind (steady where CPU time is noisy; for A/B of builds)")
    ap.add_argument("--pin", action="store_true",
                    help="the function alone on the last CPU, everything else on the others "
                         "(less noise from sharing caches with moto's Python)")
    ap.add_argument("--strace", action="store_true", help="strace -c a Lambda-mode GET run")
    ap.add_argument("--closing", action="store_true",
                    help="the first setup: moto_server and an emulator whose connections close")
    ap.add_argument("--only-lambda-get", action="store_true", help="only the Lambda-mode GET rows")
    ap.add_argument("--only-lambda", action="store_true", help="only the Lambda-mode rows (GET, /health)")
    ap.add_argument("--binary", type=Path, default=RELEASE,
                    help="the regional binary to measure (default: the release build)")
    ap.add_argument("--serve-dynamodb", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_dynamodb:
        return serve_dynamodb(args.serve_dynamodb)
    RELEASE = args.binary.resolve()
    PERF_DWARF = args.perf_dwarf
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) > 1:
        PIN_CPU = cpus[-1]
        os.sched_setaffinity(0, cpus[:-1])
    if not RELEASE.exists():
        raise SystemExit(f"{RELEASE} is missing: cargo build -p regional --release")
    setup = "closing (moto_server, split writes)" if args.closing else "keep-alive"
    print(f"machine: {os.cpu_count()} cores, {procs.cpu_model()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; n={args.n} after {args.warmup} warm-up; "
          f"connections: {setup}; binary {RELEASE.stat().st_size} bytes"
          + (f"; function pinned to CPU {PIN_CPU}" if PIN_CPU is not None else ""))
    db = start_dynamodb(args.closing)
    try:
        moto.create_table(db.url, REGION, TABLE)
        moto.client(db.url, REGION).put_item(TableName=TABLE, Item={
            "item_id": {"S": ITEM}, "name": {"S": "bench"}, "n": {"N": "42"}, "region": {"S": REGION},
            "created_at": {"S": "2026-11-29T10:00:00.000Z"}, "updated_at": {"S": "2026-11-29T10:00:00.000Z"},
            "version": {"N": "1"}})
        get = f"/get/{ITEM}"
        n, w, c = args.n, args.warmup, args.closing
        results = [
            run_lambda(db.url, get, n, w, "info", "lambda GET /get/{id}, log on", closing=c),
            run_lambda(db.url, get, n, w, "off", "lambda GET /get/{id}, RUST_LOG=off", closing=c),
        ]
        if not args.only_lambda_get:
            results += [
                run_lambda(db.url, "/health", n, w, "info", "lambda GET /health (no DynamoDB), log on", closing=c),
                run_lambda(db.url, "/health", n, w, "off", "lambda GET /health, RUST_LOG=off", closing=c),
            ]
        if not (args.only_lambda_get or args.only_lambda):
            results += [
                run_http(db.url, get, n, w, "info", "http keep-alive GET /get/{id}, log on", True),
                run_http(db.url, get, n, w, "off", "http keep-alive GET /get/{id}, RUST_LOG=off", True),
                run_http(db.url, get, n, w, "info", "http new connection GET /get/{id}, log on", False),
            ]
        if args.count:
            for log in ("info", "off"):
                results.append(run_lambda(db.url, get, args.count, 50, log,
                                          f"lambda GET /get/{{id}}, RUST_LOG={log}, callgrind", count=True))
        if args.perf:
            run_lambda(db.url, get, n, w, "info", "lambda GET /get/{id}, log on, under perf",
                       perf_dir=args.perf, closing=c)
        if args.strace:
            run_lambda(db.url, get, n, w, "info", "lambda GET /get/{id}, log on, under strace -c",
                       strace=True, closing=c)
            print((ROOT / ".state" / "lambdabench-strace.txt").read_text())
        out = ROOT / ".state" / "lambdabench.json"
        out.write_text(json.dumps(results, indent=1))
        print(f"written: {out}")
    finally:
        db.stop()


if __name__ == "__main__":
    main()
