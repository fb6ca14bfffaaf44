"""What the edge's security features cost per request, measured in workerd (docs/benchmarks.md,
"Security costs").

`python -m tests.harness.authbench [--runner wrangler|miniflare] [--requests 500] [--warmup 50]
[--block 25] [--cold-samples 3] [--out .state/authbench/authbench.json]`
(or `scripts/bench.sh --only auth [...]`). About 2–4 minutes.

Everything runs in workerd, offline, 127.0.0.1 only: by default in `wrangler dev --local` (as
the harness runs the edge everywhere), or with `--runner miniflare` in Miniflare alone (no
wrangler proxy or inspector in front, less overhead per request). The origin is trivial (a
Python HTTP server in its own process answering 200 `{}` to anything), so what differs between
two rows is the Worker's own work:

- **The edge** (the built bundle, `edge/build/`, copied at the start so a rebuild during the run
  changes nothing; pure-Rust verification with `tandem-jwt`), in three edges started side by
  side, with the vars `edge.start_edge` passes: *open* (`AUTH` off, `ORIGIN_AUTH` none: the baseline),
  *sigv4* (`AUTH` off, every attempt signed) and *auth* (`AUTH` with `JWT_HS256_SECRET` and a
  JWKS on 127.0.0.1 holding one RSA-2048 and one P-256 key; `ORIGIN_AUTH` none). On *auth*:
  one HS256 / RS256 / ES256 token reused (warm key, verified token cached), and RS256 / ES256
  with a fresh token per request (distinct `jti`, minted beforehand: warm key, every request
  verifies).
- **WebCrypto**: a tiny JavaScript Worker (written to a temporary directory, never to `edge/`)
  that verifies the same tokens with `crypto.subtle.importKey('jwk', ...)` and
  `crypto.subtle.verify`, then forwards like the edge. The header `x-bench-verify` picks what it
  does: `none` (its baseline), `cached` (a Map of verified tokens, key imported once), `warm`
  (key imported once, every request verifies), `cold` (key imported on every request).
- **Cold key** on the edge: the first API request of a freshly started edge (its KV empty: the
  JWKS is fetched from the URL, stored in KV, then the token verified), a few samples, next to
  the first request of a fresh open edge.

One client, sequential requests over keep-alive, `GET /items/bench-item`. Each row gets
`--warmup` requests first, then `--requests` measured ones, sent in blocks of `--block` with
the rows interleaved (a new shuffled order each round), so drifting background load touches
every row alike. Per row: latency p50/p99 at the client, and CPU per request of the workerd
running the Worker (every thread's run time from `/proc/<pid>/task/*/schedstat`, in ns, read
before and after each block; the median over the row's blocks) and of every process the runner
started (wrangler's proxy workerd and node included). "added" is the row minus its approach's
baseline (a different process for the edge's rows, the same one for WebCrypto's); "one
verification alone" subtracts rows of the same process. Writes JSON to `--out` and prints
Markdown tables.

Stops only the processes it started (by PID, `procs.Proc.stop`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import requests

from . import edge, jwks, procs, tokens

ROOT = procs.ROOT
BUILD = ROOT / "edge" / "build"
WASM = BUILD / "index_bg.wasm"
PATH = "/items/bench-item"
COMPATIBILITY_DATE = "2026-04-26"
OUT = procs.STATE / "authbench" / "authbench.json"

# The WebCrypto Worker: verification as the edge does it (compact JWS, alg from the header, key
# by kid and its JWK alg, iss/aud/exp/nbf/sub, the read scope), with the platform's SubtleCrypto.
JS_WORKER = r"""
const LEEWAY_S = 60;
const CACHE_SIZE = 1024;
const ALGORITHMS = {
  RS256: { import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, verify: { name: "RSASSA-PKCS1-v1_5" } },
  ES256: { import: { name: "ECDSA", namedCurve: "P-256" }, verify: { name: "ECDSA", hash: "SHA-256" } },
};
const decoder = new TextDecoder();
const encoder = new TextEncoder();
let jwks = null;              // kid -> JWK (from the JWKS var, parsed once)
const warmKeys = new Map();   // kid -> Promise<CryptoKey> (imported once per isolate)
const verified = new Map();   // token -> claims (the "cached" mode; insertion order = age)

function keys(env) {
  if (!jwks) jwks = new Map(JSON.parse(env.JWKS).keys.map((k) => [k.kid, k]));
  return jwks;
}

function b64url(segment) {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw new Error("malformed");
  const bin = atob(segment.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((segment.length + 3) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function verify(token, env, mode) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("malformed");
  const header = JSON.parse(decoder.decode(b64url(parts[0])));
  const alg = ALGORITHMS[header.alg];
  if (!alg) throw new Error("unsupported_alg");
  const jwk = keys(env).get(header.kid);
  if (!jwk) throw new Error("unknown_kid");
  if (jwk.alg !== header.alg) throw new Error("key_mismatch");
  let key;
  if (mode === "cold") {
    key = await crypto.subtle.importKey("jwk", jwk, alg.import, false, ["verify"]);
  } else {
    let pending = warmKeys.get(header.kid);
    if (!pending) {
      pending = crypto.subtle.importKey("jwk", jwk, alg.import, false, ["verify"]);
      warmKeys.set(header.kid, pending);
    }
    key = await pending;
  }
  const signed = encoder.encode(parts[0] + "." + parts[1]);
  if (!(await crypto.subtle.verify(alg.verify, key, b64url(parts[2]), signed))) throw new Error("bad_signature");
  const claims = JSON.parse(decoder.decode(b64url(parts[1])));
  const now = Date.now() / 1000;
  if (claims.iss !== env.ISSUER) throw new Error("wrong_issuer");
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(env.AUDIENCE)) throw new Error("wrong_audience");
  if (typeof claims.exp !== "number" || now >= claims.exp + LEEWAY_S) throw new Error("expired");
  if (claims.nbf !== undefined && (typeof claims.nbf !== "number" || now < claims.nbf - LEEWAY_S)) throw new Error("not_yet_valid");
  if (typeof claims.sub !== "string" || !claims.sub) throw new Error("missing_claim");
  return claims;
}

async function check(token, env, mode) {
  if (mode !== "cached") return verify(token, env, mode);
  const hit = verified.get(token);
  if (hit && Date.now() / 1000 < hit.exp + LEEWAY_S) return hit;
  const claims = await verify(token, env, "warm");
  if (verified.size >= CACHE_SIZE) verified.delete(verified.keys().next().value);
  verified.set(token, claims);
  return claims;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const mode = request.headers.get("x-bench-verify") || "none";
    const headers = new Headers(request.headers);
    if (mode !== "none") {
      const auth = request.headers.get("authorization") || "";
      if (!auth.startsWith("Bearer ")) return Response.json({ error: "missing_token" }, { status: 401 });
      let claims;
      try {
        claims = await check(auth.slice(7), env, mode);
      } catch (e) {
        return Response.json({ error: e.message }, { status: 401 });
      }
      if (!String(claims.scope || "").split(" ").includes("items:read")) {
        return Response.json({ error: "insufficient_scope" }, { status: 403 });
      }
      headers.set("x-tandem-subject", claims.sub);
    }
    headers.delete("authorization");
    headers.delete("x-bench-verify");
    return fetch(new URL(url.pathname + url.search, env.ORIGIN), { method: request.method, headers, body: request.body });
  },
};
"""


# --- the origin ----------------------------------------------------------------------------------

def serve_origin(port: int) -> None:
    """The stub origin (run in its own process): 200 `{}` to any request, keep-alive."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms.
        disable_nagle_algorithm = True

        def _answer(self):
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"{}")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer  # noqa: N815

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def start_origin() -> procs.Proc:
    port = procs.free_port()
    proc = procs.start(f"authbench-origin-{port}",
                       [sys.executable, "-m", "tests.harness.authbench", "--serve-origin", str(port)],
                       port=port)
    procs.wait_http(proc, "/health", timeout=20, ok=lambda r: r.status_code == 200)
    return proc


# --- the Workers ---------------------------------------------------------------------------------

# Serves one JavaScript Worker from workerd through Miniflare's API (no wrangler proxy, no
# inspector): MF_OPTIONS (JSON) plus PORT. Written next to the Worker in the temporary directory;
# `miniflare` resolves from the repository's node_modules.
MINIFLARE_RUNNER = r"""
import { Miniflare } from "miniflare";
const options = JSON.parse(process.env.MF_OPTIONS);
const mf = new Miniflare({ ...options, host: "127.0.0.1", port: Number(process.env.PORT) });
console.log(`ready ${await mf.ready}`);
const stop = async () => { await mf.dispose(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
"""

RUNNERS = ("wrangler", "miniflare")


def start_js_worker(origin: str, jwks_doc: dict, runner: str) -> procs.Proc:
    """The WebCrypto Worker in wrangler dev (or Miniflare), from a private directory removed
    when it stops."""
    port = procs.free_port()
    procs.STATE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"authbench-js-{port}-", dir=procs.STATE))
    (work / "worker.mjs").write_text(JS_WORKER)
    variables = {"ORIGIN": origin, "ISSUER": tokens.LOCAL_ISSUER, "AUDIENCE": tokens.LOCAL_AUDIENCE,
                 "JWKS": json.dumps(jwks_doc)}
    if runner == "miniflare":
        (work / "serve.mjs").write_text(MINIFLARE_RUNNER)
        options = {"modules": True, "scriptPath": str(work / "worker.mjs"),
                   "compatibilityDate": COMPATIBILITY_DATE, "bindings": variables, "cf": False}
        proc = procs.start(f"authbench-js-mf-{port}", ["node", str(work / "serve.mjs")],
                           env={"MF_OPTIONS": json.dumps(options), "PORT": str(port)},
                           port=port, cwd=work)
    else:
        (work / "wrangler.toml").write_text(
            f'name = "authbench-webcrypto"\nmain = "worker.mjs"\n'
            f'compatibility_date = "{COMPATIBILITY_DATE}"\n')
        argv = [str(edge.WRANGLER), "dev", "--config", str(work / "wrangler.toml"), "--local",
                "--ip", "127.0.0.1", "--port", str(port), "--inspector-port",
                str(procs.free_port()), "--show-interactive-dev-session=false",
                "--persist-to", str(work / "state"), "--log-level", "log"]
        for key, value in variables.items():
            argv += ["--var", f"{key}:{value}"]
        env = dict(edge.OFFLINE_ENV)
        env["PATH"] = os.environ.get("PATH", "")
        proc = procs.start(f"authbench-js-{port}", argv, env=env, port=port, cwd=work)
    proc.cleanup.append(work)
    proc.extra["runner"] = runner
    procs.wait_http(proc, "/health", timeout=60, ok=lambda r: r.status_code == 200)
    return proc


def snapshot_build(work: Path) -> dict:
    """Copies edge/build/ into `work/build` and returns what was copied: the edge is served from
    this copy, so a rebuild of edge/build/ by someone else during the run (wrangler dev would
    reload it) changes nothing measured here. Retries while the build is being written."""
    for _ in range(20):
        before = {f.name: (f.stat().st_mtime_ns, f.stat().st_size)
                  for f in (BUILD / "index.js", WASM)}
        target = work / "build"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(BUILD, target)
        after = {f.name: (f.stat().st_mtime_ns, f.stat().st_size)
                 for f in (BUILD / "index.js", WASM)}
        copied = (target / "index_bg.wasm").stat().st_size
        if before == after and copied == after[WASM.name][1] and time.time_ns() - max(
                m for m, _ in after.values()) > 2_000_000_000:
            return {"dir": str(target), "built_at": time.strftime(
                "%Y-%m-%d %H:%M:%S %Z", time.localtime(after[WASM.name][0] / 1e9))}
        time.sleep(3)  # being rebuilt: wait until it has been still for 2 s
    raise RuntimeError("edge/build/ kept changing; try again later")


#: Serves the snapshot of the edge from workerd through Miniflare (as `tests/edge/serve.mjs`
#: does for edge/build/): MF_OPTIONS holds the build directory and the vars.
MINIFLARE_EDGE_OPTIONS = {"compatibilityDate": COMPATIBILITY_DATE, "kvNamespaces": ["EDGE_STATE"],
                          "cf": False}


def start_edge(build: Path, origin: str, access: dict, runner: str, name: str) -> procs.Proc:
    """The edge (the snapshot `build` of edge/build/) in front of `origin` (one region, no
    hedging) with these access vars, as `edge.start_edge` starts it (same vars, the project's
    wrangler.toml with `main` pointing at the snapshot, a fresh KV state) in wrangler dev, or in
    Miniflare alone (in-memory KV). Waits until `/_edge/status` answers 200."""
    regions = {"eu-west-1": origin}
    port = procs.free_port()
    variables = {"REGIONS": edge.regions_var(regions), "FALLBACK_ORIGIN": "",
                 "ROUTING": json.dumps({"hedge": False}), "CORS_ORIGINS": "[]",
                 "AFFINITY_SECRET": secrets.token_hex(32), **access}
    work = Path(tempfile.mkdtemp(prefix=f"{name}-{port}-", dir=procs.STATE))
    if runner == "wrangler":
        config = (ROOT / "wrangler.toml").read_text()
        config = re.sub(r'(?m)^main\s*=.*$', f'main = {json.dumps(str(build / "index.js"))}', config)
        (work / "wrangler.toml").write_text(config)
        argv = [str(edge.WRANGLER), "dev", "--config", str(work / "wrangler.toml"), "--local",
                "--ip", "127.0.0.1", "--port", str(port), "--inspector-port",
                str(procs.free_port()), "--show-interactive-dev-session=false",
                "--test-scheduled", "--persist-to", str(work / "state"), "--log-level", "log"]
        for key, value in variables.items():
            argv += ["--var", f"{key}:{value}"]
        env = dict(edge.OFFLINE_ENV)
        env["PATH"] = os.environ.get("PATH", "")
        proc = procs.start(f"{name}-{port}", argv, env=env, port=port, cwd=work)
    else:
        (work / "serve.mjs").write_text(MINIFLARE_RUNNER)
        options = {**MINIFLARE_EDGE_OPTIONS, "modulesRoot": str(build),
                   "modules": [{"type": "ESModule", "path": str(build / "index.js")},
                               {"type": "CompiledWasm", "path": str(build / "index_bg.wasm")}],
                   "bindings": variables}
        proc = procs.start(f"{name}-mf-{port}", ["node", str(work / "serve.mjs")],
                           env={"MF_OPTIONS": json.dumps(options), "PORT": str(port)},
                           port=port, cwd=work)
    proc.cleanup.append(work)
    proc.extra["runner"] = runner
    proc.extra["operator_token"] = variables.get("OPERATOR_TOKEN")
    procs.wait_http(proc, "/_edge/status", timeout=60, ok=lambda r: r.status_code == 200,
                    headers=edge.operator_headers(proc))
    return proc


def auth_vars(jwks_url: str, hs256_secret: str) -> dict[str, str]:
    """A closed edge checking tokens (HS256 secret + JWKS), origin requests unsigned."""
    return {"AUTH": json.dumps({"issuer": tokens.LOCAL_ISSUER, "audience": tokens.LOCAL_AUDIENCE,
                                "jwks_url": jwks_url}),
            "JWT_HS256_SECRET": hs256_secret, "ORIGIN_AUTH": "none", "RATE_LIMIT": "off",
            "OPERATOR_TOKEN": secrets.token_hex(16)}


def sigv4_vars() -> dict[str, str]:
    """An open edge that signs every origin attempt."""
    return {"AUTH": "off", "ORIGIN_AUTH": "sigv4", "RATE_LIMIT": "off",
            "SIGV4_ACCESS_KEY_ID": "AKIDBENCH" + secrets.token_hex(6).upper(),
            "SIGV4_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}


# --- CPU of a wrangler dev -----------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int] | None:
    """(comm, pgrp) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return stat[stat.find("(") + 1:stat.rfind(")")], int(fields[2])


def group_processes(proc: procs.Proc) -> dict[int, str]:
    """The processes in the process group of a wrangler dev (or Miniflare) we started (it leads
    its group), by role: `worker` (the workerd running the Worker), `proxy` (wrangler's workerd
    bound to the public port), `other` (node). Miniflare runs one workerd: the Worker's."""
    out = {}
    public = f"entry=127.0.0.1:{proc.port}"
    wrangler = proc.extra.get("runner", "wrangler") == "wrangler"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if not stat or stat[1] != proc.pid:
            continue
        role = "other"
        if stat[0] == "workerd" and not wrangler:
            role = "worker"
        elif stat[0] == "workerd":
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            role = "proxy" if public in cmdline else "worker"
        out[int(entry.name)] = role
    return out


def cpu_ns(processes: dict[int, str]) -> dict[int, int]:
    """Run time so far (ns, every live thread) of each of these processes (gone: left out)."""
    out = {}
    for pid in processes:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        total = 0
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        out[pid] = total
    return out


def cpu_delta(processes: dict[int, str], before: dict[int, int], after: dict[int, int]
              ) -> tuple[int, int]:
    """(the Worker's, all) run time between two readings, over the processes alive at both."""
    worker = total = 0
    for pid in before.keys() & after.keys():
        delta = after[pid] - before[pid]
        total += delta
        if processes.get(pid) == "worker":
            worker += delta
    return worker, total


# --- rows ----------------------------------------------------------------------------------------

@dataclass
class Row:
    """One measured case: where it is sent and what each request carries."""

    approach: str            # "edge (tandem-jwt)" or "WebCrypto (JS Worker)"
    case: str
    baseline: bool
    proc: procs.Proc
    headers: Callable[[int], dict[str, str]]
    session: requests.Session = field(default_factory=requests.Session)
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_worker_ns: int = 0
    cpu_all_ns: int = 0
    #: Per block: (Worker CPU ns per request, all processes' CPU ns per request).
    blocks: list[tuple[float, float]] = field(default_factory=list)
    non_200: list[str] = field(default_factory=list)
    processes: dict[int, str] = field(default_factory=dict)
    worker_pids: set[int] = field(default_factory=set)
    reconnects: int = 0

    def send(self) -> float:
        headers = self.headers(self.sent)
        self.sent += 1
        try:
            started = time.perf_counter()
            r = self.session.get(self.proc.url + PATH, headers=headers, timeout=10)
        except requests.ConnectionError:
            # The server closed the idle keep-alive connection just as it was reused (the rows
            # take turns, so a connection may idle for seconds): send again, timed afresh.
            self.reconnects += 1
            started = time.perf_counter()
            r = self.session.get(self.proc.url + PATH, headers=headers, timeout=10)
        elapsed = (time.perf_counter() - started) * 1000
        if r.status_code != 200 and len(self.non_200) < 5:
            self.non_200.append(f"{r.status_code} {r.text[:200]}")
        elif r.status_code != 200:
            self.non_200.append(str(r.status_code))
        return elapsed

    def block(self, n: int) -> None:
        # Found again each block: a Worker process that went away (wrangler dev reloading it)
        # would otherwise count as zero.
        self.processes = group_processes(self.proc)
        self.worker_pids.update(p for p, role in self.processes.items() if role == "worker")
        before = cpu_ns(self.processes)
        for _ in range(n):
            self.latencies_ms.append(self.send())
        worker, total = cpu_delta(self.processes, before, cpu_ns(self.processes))
        self.cpu_worker_ns += worker
        self.cpu_all_ns += total
        self.blocks.append((worker / n, total / n))

    def cpu_us(self, which: int) -> float:
        """CPU per request (µs): the median over the blocks (a block that caught a garbage
        collection, a background compile or another job's burst does not move it)."""
        return statistics.median(b[which] for b in self.blocks) / 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarize(row: Row, base: Row) -> dict:
    n = len(row.latencies_ms)
    out = {"approach": row.approach, "case": row.case, "requests": n,
           "p50_ms": round(statistics.median(row.latencies_ms), 3),
           "p99_ms": round(percentile(row.latencies_ms, 0.99), 3),
           "cpu_worker_us": round(row.cpu_us(0), 1),
           "cpu_all_us": round(row.cpu_us(1), 1),
           "cpu_worker_mean_us": round(row.cpu_worker_ns / n / 1000, 1),
           "cpu_all_mean_us": round(row.cpu_all_ns / n / 1000, 1),
           "cpu_worker_blocks_us": [round(b[0] / 1000, 1) for b in row.blocks],
           "non_200": len(row.non_200), "non_200_examples": row.non_200[:5],
           "reconnects": row.reconnects}
    out["added_p50_ms"] = round(out["p50_ms"] - statistics.median(base.latencies_ms), 3)
    out["added_p99_ms"] = round(out["p99_ms"] - percentile(base.latencies_ms, 0.99), 3)
    out["added_cpu_worker_us"] = round(out["cpu_worker_us"] - base.cpu_us(0), 1)
    out["added_cpu_all_us"] = round(out["cpu_all_us"] - base.cpu_us(1), 1)
    return out


def verification_costs(rows: list[dict]) -> list[dict]:
    """One signature check alone, inside one process: a row that verifies every request minus the
    row with the same algorithm whose token is reused (a cache hit), both sent to the same
    Worker, so the difference is the verification (and, for `cold`, the key import)."""
    by = {(r["approach"], r["case"]): r for r in rows}
    pairs = []
    for alg in ("RS256", "ES256"):
        cached = f"{alg}, token reused (warm key, cached)"
        pairs += [(EDGE, f"{alg}, fresh token (warm key, verified)", cached, f"{alg} verify, warm key"),
                  (JS, f"{alg}, fresh token (warm key, verified)", cached, f"{alg} verify, warm key"),
                  (JS, f"{alg}, fresh token, key imported per request (cold)", cached,
                   f"{alg} import + verify (cold key)")]
    out = []
    for approach, case, base, label in pairs:
        a, b = by.get((approach, case)), by.get((approach, base))
        if a and b:
            out.append({"approach": approach, "what": label,
                        "p50_ms": round(a["p50_ms"] - b["p50_ms"], 3),
                        "cpu_worker_us": round(a["cpu_worker_us"] - b["cpu_worker_us"], 1),
                        "cpu_all_us": round(a["cpu_all_us"] - b["cpu_all_us"], 1)})
    return out


# --- cold key ------------------------------------------------------------------------------------

def first_request(proc: procs.Proc, headers: dict[str, str]) -> dict:
    """The first API request of a freshly started edge: latency, and the Worker's CPU for it
    (read 0.3 s after the answer, so work finishing after the response is counted)."""
    processes = group_processes(proc)
    before = cpu_ns(processes)
    started = time.perf_counter()
    r = requests.get(proc.url + PATH, headers=headers, timeout=15)
    ms = (time.perf_counter() - started) * 1000
    time.sleep(0.3)
    worker, total = cpu_delta(processes, before, cpu_ns(processes))
    return {"status": r.status_code, "ms": round(ms, 3),
            "cpu_worker_us": round(worker / 1000, 1), "cpu_all_us": round(total / 1000, 1)}


def cold_samples(build: Path, samples: int, origin: str, server: jwks.JwksServer, hs256_secret: str,
                 rsa: tokens.RsaKey, ec: tokens.EcKey, runner: str, log) -> dict:
    """Per sample: a fresh open edge's first request, then a fresh closed edge's first request
    with an RS256 token and another's with an ES256 token (JWKS fetch + verify), each followed
    by a second request with a new token (warm key) for comparison."""
    out: dict[str, list[dict]] = {"open": [], "RS256": [], "ES256": []}
    for i in range(samples):
        for case in ("open", "RS256", "ES256"):
            access = edge.OPEN if case == "open" else auth_vars(server.url, hs256_secret)
            proc = start_edge(build, origin, access, runner, f"authbench-cold-{case}")
            try:
                if case == "open":
                    make = lambda: {}  # noqa: E731
                else:
                    key = rsa if case == "RS256" else ec
                    make = lambda key=key: {  # noqa: E731
                        "Authorization": "Bearer " + key.sign(tokens.claims(jti=uuid.uuid4().hex))}
                fetches = server.fetches
                first = first_request(proc, make())
                first["jwks_fetches"] = server.fetches - fetches
                second = first_request(proc, make())
                out[case].append({"first": first, "second": second})
                log(f"  cold sample {i + 1} {case}: first {first['ms']:.2f} ms "
                    f"(Worker CPU {first['cpu_worker_us']:.0f} µs, JWKS fetches "
                    f"{first['jwks_fetches']}), second {second['ms']:.2f} ms")
            finally:
                proc.stop()
    summary = {}
    for case, runs in out.items():
        summary[case] = {
            "first_ms": [r["first"]["ms"] for r in runs],
            "first_cpu_worker_us": [r["first"]["cpu_worker_us"] for r in runs],
            "second_ms": [r["second"]["ms"] for r in runs],
            "second_cpu_worker_us": [r["second"]["cpu_worker_us"] for r in runs],
            "jwks_fetches": [r["first"].get("jwks_fetches", 0) for r in runs],
            "statuses": [[r["first"]["status"], r["second"]["status"]] for r in runs],
        }
    return summary


# --- machine -------------------------------------------------------------------------------------

def machine() -> dict:
    mem = ""
    try:
        kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:")).split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": procs.cpu_model(), "memory": mem,
            "kernel": f"{platform.system()} {platform.release()}",
            "load_average_at_start": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def wasm_size(wasm: Path) -> dict:
    raw = wasm.read_bytes()
    try:  # exactly `gzip -9 -c edge/build/index_bg.wasm | wc -c` (of the snapshot)
        gz = len(subprocess.run(["gzip", "-9", "-c", str(wasm)], capture_output=True,
                                check=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        gz = len(gzip.compress(raw, 9))
    return {"raw_bytes": len(raw), "gzip9_bytes": gz, "gzip9_kib": round(gz / 1024, 1),
            "goal_kb": 500, "goal_met": gz <= 500 * 1000}


# --- output --------------------------------------------------------------------------------------

def tables(result: dict) -> str:
    m = result["machine"]
    lines = [f"runner: {result['settings']['runner']}",
             f"machine: {m['nproc']} cores, {m['cpu_model'] or 'unknown CPU'}, {m['memory']}, "
             f"{m['kernel']}; load average at start {' / '.join(f'{x:.2f}' for x in m['load_average_at_start'])}, "
             f"at end {' / '.join(f'{x:.2f}' for x in result['load_average_at_end'])}",
             f"requests per row: {result['settings']['requests']} after "
             f"{result['settings']['warmup']} warm-up, blocks of {result['settings']['block']}, "
             f"rows interleaved; {result['elapsed_s']:.0f} s in all", "",
             "| approach | case | p50 / p99 ms | added p50 / p99 ms | Worker CPU µs/req | added | "
             "all processes' CPU µs/req | added |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['approach']} | {r['case']} | {r['p50_ms']:.3f} / {r['p99_ms']:.3f} | "
            f"{r['added_p50_ms']:+.3f} / {r['added_p99_ms']:+.3f} | {r['cpu_worker_us']:.0f} | "
            f"{r['added_cpu_worker_us']:+.0f} | {r['cpu_all_us']:.0f} | {r['added_cpu_all_us']:+.0f} |"
            + (f" **{r['non_200']} non-200**" if r["non_200"] else ""))
    if result.get("verification"):
        lines += ["", "One verification alone (a row verifying every request minus the same "
                  "algorithm's cached-token row, same Worker):", "",
                  "| approach | what | p50 ms | Worker CPU µs | all CPU µs |", "|---|---|---|---|---|"]
        for v in result["verification"]:
            lines.append(f"| {v['approach']} | {v['what']} | {v['p50_ms']:+.3f} | "
                         f"{v['cpu_worker_us']:+.0f} | {v['cpu_all_us']:+.0f} |")
    cold = result.get("cold_key")
    if cold:
        lines += ["", "Cold key (edge): first API request of a freshly started edge, per sample "
                  "(then a second request with a new token):", "",
                  "| case | first request ms | its Worker CPU µs | JWKS fetches | second request ms |",
                  "|---|---|---|---|---|"]
        for case, c in cold.items():
            label = "open (baseline)" if case == "open" else f"{case}: JWKS fetch + KV + verify"
            lines.append(f"| {label} | {', '.join(f'{x:.1f}' for x in c['first_ms'])} | "
                         f"{', '.join(f'{x:.0f}' for x in c['first_cpu_worker_us'])} | "
                         f"{', '.join(str(x) for x in c['jwks_fetches'])} | "
                         f"{', '.join(f'{x:.1f}' for x in c['second_ms'])} |")
    w = result["wasm"]
    lines += ["", f"edge Wasm (edge/build/ as built {w['built_at']}, copied for this run): "
              f"{w['raw_bytes']:,} bytes raw, {w['gzip9_bytes']:,} bytes gzip -9 "
              f"({w['gzip9_kib']} KiB; goal <= 500 KB: {'met' if w['goal_met'] else 'NOT met'})"]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------

EDGE = "edge (tandem-jwt)"
JS = "WebCrypto (JS Worker)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="authbench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=500, help="measured requests per row")
    ap.add_argument("--warmup", type=int, default=50, help="warm-up requests per row")
    ap.add_argument("--block", type=int, default=25, help="requests per row per round")
    ap.add_argument("--cold-samples", type=int, default=3, help="fresh edges per cold-key case")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--runner", choices=RUNNERS, default="wrangler",
                    help="wrangler dev through the harness (default), or Miniflare alone (no "
                         "wrangler proxy or inspector in front: less overhead per request)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--serve-origin", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_origin:
        serve_origin(args.serve_origin)
        return 0
    if not WASM.exists():
        print("edge/build/ is missing: run scripts/build-edge.sh first", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started_at = time.monotonic()
    snapshot_dir = Path(tempfile.mkdtemp(prefix="authbench-build-", dir=procs.STATE))
    snapshot = snapshot_build(snapshot_dir)
    build = Path(snapshot["dir"])
    result: dict = {"machine": machine(), "wasm": {**wasm_size(build / "index_bg.wasm"),
                                                   "built_at": snapshot["built_at"]},
                    "settings": {"requests": args.requests, "warmup": args.warmup,
                                 "block": args.block, "cold_samples": args.cold_samples,
                                 "runner": args.runner,
                                 "path": PATH}}
    log(f"authbench: {result['machine']}")

    hs256_secret = secrets.token_hex(32)
    rsa, ec = tokens.RsaKey("bench-rsa"), tokens.EcKey("bench-ec")
    jwks_doc = {"keys": [rsa.jwk(), ec.jwk()]}
    per_row = args.warmup + args.requests
    log(f"minting {2 * per_row} fresh tokens (distinct jti)...")
    fresh = {"RS256": [rsa.sign(tokens.claims(jti=uuid.uuid4().hex)) for _ in range(per_row)],
             "ES256": [ec.sign(tokens.claims(jti=uuid.uuid4().hex)) for _ in range(per_row)]}
    reused = {"HS256": tokens.hs256(tokens.claims(), hs256_secret),
              "RS256": rsa.sign(tokens.claims()), "ES256": ec.sign(tokens.claims())}

    def bearer(token: str, extra: dict | None = None) -> Callable[[int], dict[str, str]]:
        return lambda _: {"Authorization": f"Bearer {token}", **(extra or {})}

    def each(kind: str, extra: dict | None = None) -> Callable[[int], dict[str, str]]:
        return lambda i: {"Authorization": f"Bearer {fresh[kind][i]}", **(extra or {})}

    server = jwks.JwksServer(jwks_doc["keys"])
    running: list[procs.Proc] = []
    try:
        origin = start_origin()
        running.append(origin)
        log(f"starting three edges and the WebCrypto Worker ({args.runner})...")
        open_edge = start_edge(build, origin.url, edge.OPEN, args.runner, "authbench-open")
        running.append(open_edge)
        sigv4_edge = start_edge(build, origin.url, sigv4_vars(), args.runner, "authbench-sigv4")
        running.append(sigv4_edge)
        auth_edge = start_edge(build, origin.url, auth_vars(server.url, hs256_secret),
                               args.runner, "authbench-auth")
        running.append(auth_edge)
        js = start_js_worker(origin.url, jwks_doc, args.runner)
        running.append(js)

        def mode(m: str) -> dict:
            return {"x-bench-verify": m}

        rows = [
            Row(EDGE, "open (AUTH off, ORIGIN_AUTH none)", True, open_edge, lambda _: {}),
            Row(EDGE, "ORIGIN_AUTH sigv4 only (1 signature per attempt)", False, sigv4_edge,
                lambda _: {}),
            Row(EDGE, "HS256, token reused (cached)", False, auth_edge, bearer(reused["HS256"])),
            Row(EDGE, "RS256, token reused (warm key, cached)", False, auth_edge,
                bearer(reused["RS256"])),
            Row(EDGE, "ES256, token reused (warm key, cached)", False, auth_edge,
                bearer(reused["ES256"])),
            Row(EDGE, "RS256, fresh token (warm key, verified)", False, auth_edge, each("RS256")),
            Row(EDGE, "ES256, fresh token (warm key, verified)", False, auth_edge, each("ES256")),
            Row(JS, "no verification (baseline)", True, js, lambda _: mode("none")),
            Row(JS, "RS256, token reused (warm key, cached)", False, js,
                bearer(reused["RS256"], mode("cached"))),
            Row(JS, "ES256, token reused (warm key, cached)", False, js,
                bearer(reused["ES256"], mode("cached"))),
            Row(JS, "RS256, fresh token (warm key, verified)", False, js,
                each("RS256", mode("warm"))),
            Row(JS, "ES256, fresh token (warm key, verified)", False, js,
                each("ES256", mode("warm"))),
            Row(JS, "RS256, fresh token, key imported per request (cold)", False, js,
                each("RS256", mode("cold"))),
            Row(JS, "ES256, fresh token, key imported per request (cold)", False, js,
                each("ES256", mode("cold"))),
        ]
        for proc in (open_edge, sigv4_edge, auth_edge, js):
            roles = sorted(group_processes(proc).values())
            if roles.count("worker") != 1:
                log(f"warning: {proc.name}: processes by role {roles} (expected one Worker workerd)")
        log(f"warm-up: {args.warmup} requests per row...")
        for row in rows:
            for _ in range(args.warmup):
                row.send()
            if row.non_200:
                raise RuntimeError(f"{row.approach} / {row.case}: {row.non_200[:3]}")
        rng = random.Random(args.seed)
        rounds = -(-args.requests // args.block)
        for i in range(rounds):
            n = min(args.block, args.requests - i * args.block)
            order = rows[:]
            rng.shuffle(order)
            for row in order:
                row.block(n)
            log(f"round {i + 1}/{rounds} done ({time.monotonic() - started_at:.0f} s)")
        baselines = {row.approach: row for row in rows if row.baseline}
        result["rows"] = [summarize(row, baselines[row.approach]) for row in rows]
        result["verification"] = verification_costs(result["rows"])
        result["jwks_fetches_main"] = server.fetches
        # More than one Worker process seen for a row: the Worker was restarted mid-run.
        result["worker_processes_per_row"] = {f"{r.approach} / {r.case}": len(r.worker_pids)
                                              for r in rows}
        if any(len(r.worker_pids) != 1 for r in rows):
            log(f"warning: Worker processes per row: {result['worker_processes_per_row']}")
        for proc in (open_edge, sigv4_edge, auth_edge, js):
            proc.stop()
        if args.cold_samples > 0:
            log(f"cold key: {args.cold_samples} samples per case (a fresh edge each)...")
            result["cold_key"] = cold_samples(build, args.cold_samples, origin.url, server,
                                              hs256_secret, rsa, ec, args.runner, log)
    finally:
        for proc in reversed(running):
            proc.stop()
        server.stop()
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    result["load_average_at_end"] = list(os.getloadavg())
    result["elapsed_s"] = round(time.monotonic() - started_at, 1)
    result["notes"] = {
        "cpu_worker_us": "run time per request of the workerd running the Worker (every thread, "
                         "/proc/<pid>/task/*/schedstat): the median over the row's blocks "
                         "(cpu_worker_mean_us: the mean over all its requests)",
        "cpu_all_us": "the same for every process of that wrangler dev (its proxy workerd, node)",
        "added": "the row minus its approach's baseline (edge: open; WebCrypto: no verification)",
        "verification": "a row verifying every request minus the same algorithm's cached-token "
                        "row on the same Worker process",
        "cold_key": "first API request of a fresh edge (empty KV: JWKS fetched from the URL, put "
                    "in KV, token verified), next to a fresh open edge's first request",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(tables(result))
    print(f"\nJSON: {args.out}")
    bad = [r for r in result["rows"] if r["non_200"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
