"""The soak (issue 9, item 6): steady mixed load through the edge for minutes, with no faults, to
see whether anything a client sees fails and whether the Worker's memory stays put.

It starts the local stack (`Stack`: moto, the replicator, two regionals, the edge in workerd via
wrangler dev, the cron ticker) and drives it from `--clients` threads at `--rate` requests per
second in total, on a fixed schedule (a late request skips its missed slots, it never bursts).
Each client keeps its own `requests.Session`, so its own cookies, as a browser would (the edge's
affinity cookie among them). Per request it picks, by weight (`MIX`):

- create: `POST /items` with a fresh `Idempotency-Key`; half the items are *shared* (other
  clients read and write them), half *private* (only their creator touches them);
- read own: `GET /items/{id}` of an item this client created at least 1 s earlier;
- read shared: the same for one of the 20 newest shared items another client created at least
  1 s earlier (a 404 here is the bug seen before: read from the other region before replication);
- put own / put shared: `PUT /items/{id}` with `If-Match:` the ETag this client last saw of it;
- delete: `DELETE /items/{id}` (with its ETag) of a private item of this client's;
- read deleted: `GET` of an item this client deleted, which must answer 404.

Each answer is one outcome: **ok**; **expected_404** (a read of the client's own delete);
**conflict_412** (a PUT on a shared item whose tag another client's write replaced: two writers
raced); **stale_read** (a 200 that shows an older write of a private item than its only writer
was acknowledged, or an item this client deleted); or a **client-visible error**: any other
status than the one the call should get (201, 200, 200, 204, 404), a 200 with another item's
marker, a connection error, or no answer within 10 s. Each error is diagnosed at once: the item
is read from every region directly, so its details say where it was stored.

Every `--sample-s` (30 s) it records the isolate's Wasm memory (`GET /_edge/status` ->
`wasm_memory_bytes`) and the RSS of workerd under wrangler dev: the processes in the process
group of the wrangler the harness started (read from /proc), the one running the Worker and, apart,
wrangler's own proxy workerd (the one bound to the public port).

Then, as a control, the same load and sampling against a trivial JavaScript pass-through Worker
(`tests/edge/passthrough_control.mjs`) in wrangler dev in front of one regional (own moto), for
`--control-minutes` (default: as long), sequentially.

**Wasm flat after warm-up:** the samples taken at or after `--warm-up-s` (120 s) are at least two
and their largest minus their smallest is at most `FLAT_PAGES` (4) Wasm pages of 64 KiB
(262,144 bytes). Wasm memory only grows, by whole pages; a sample smaller than the one before it
means a new isolate (counted as `isolate_restarts`).

Outputs in `--out` (default .state/soak/): soak.json, requests.csv (every request), and a
one-screen summary on stdout. `python -m tests.harness.soak [--minutes 10] [--rate 30]` or
`scripts/soak.sh`. It never leaves 127.0.0.1, never stops a process it did not start, and bounds
every load loop in count and in time.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import shlex
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from . import edge, moto, procs, regional
from .stack import DEFAULT_REGIONS, Stack

CLIENT_TIMEOUT_S = 10.0
WASM_PAGE = 65536
#: "Flat" allows this many page growths after warm-up.
FLAT_PAGES = 4
CONTROL_SCRIPT = procs.ROOT / "tests" / "edge" / "passthrough_control.mjs"
COMPATIBILITY_DATE = "2026-04-26"
COOKIE = "tandem_affinity"
#: Operation weights (each client, each request).
MIX = (("create", 0.20), ("read_own", 0.35), ("read_shared", 0.12), ("put_own", 0.15),
       ("put_shared", 0.08), ("delete", 0.05), ("read_deleted", 0.05))
SHARED_SHARE = 0.5
SHARED_RECENT = 20
#: Errors diagnosed by reading the item from every region (bounded).
MAX_DIAGNOSED = 100
EDGE_TARGET, CONTROL_TARGET = "edge", "control"


@dataclass
class SoakSettings:
    minutes: float = 10.0
    rate: float = 30.0
    clients: int = 6
    sample_s: float = 30.0
    warm_up_s: float = 120.0
    #: None: as long as the edge run; 0: no control run.
    control_minutes: float | None = None
    read_min_age_s: float = 1.0
    regions: tuple[str, ...] = DEFAULT_REGIONS
    out: Path = procs.STATE / "soak"
    seed: int = 0


@dataclass
class Item:
    item_id: str
    marker: str
    owner: int
    shared: bool
    created_t: float
    region: str
    n: int = 0  # the owner's last acknowledged n (what a read of a private item must show)
    deleted_t: float | None = None


@dataclass
class Record:
    target: str
    client: int
    op: str
    method: str
    path: str
    t_send: float
    t_done: float
    latency_ms: float
    status: int | None
    outcome: str  # ok | expected_404 | conflict_412 | stale_read | error
    kind: str  # for errors and stale reads: what was wrong
    code: str  # the error body's code, if any
    served_by: str
    attempts: str
    request_id: str
    affinity: str  # the region the client's affinity cookie named when it sent the request
    item_owner: int | None
    item_region: str  # where the item was created
    minute: int = 0


class Clock:
    def __init__(self):
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0


class Pool:
    """The shared items every client may read and write."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[Item] = []

    def add(self, item: Item) -> None:
        with self.lock:
            self.items.append(item)

    def recent(self, now: float, min_age: float, exclude_owner: int) -> list[Item]:
        with self.lock:
            out = []
            for item in reversed(self.items):
                if item.owner != exclude_owner and item.created_t <= now - min_age:
                    out.append(item)
                    if len(out) == SHARED_RECENT:
                        break
            return out


@dataclass
class Load:
    """One target's run: its clients' records and the diagnoses of their errors."""

    target: str
    base_url: str
    regionals: dict[str, str]
    run_id: str
    clock: Clock
    read_min_age_s: float
    pool: Pool = field(default_factory=Pool)
    records: list[Record] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: Record, detail: dict | None) -> None:
        with self.lock:
            self.records.append(record)
            if detail is not None:
                self.errors.append(detail)

    def count(self) -> int:
        with self.lock:
            return len(self.records)


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(body: dict) -> str:
    error = body.get("error")
    return str(error.get("code", "")) if isinstance(error, dict) else ""


class Client:
    """One browser-like client: its own session (cookies), items, and last-seen ETags."""

    def __init__(self, load: Load, n: int, rng: random.Random):
        self.load = load
        self.n = n
        self.rng = rng
        self.session = requests.Session()
        self.own: list[Item] = []
        self.deleted: list[Item] = []
        self.etags: dict[str, str] = {}
        self.seen_n: dict[str, int] = {}
        self.ops = [op for op, _ in MIX]
        self.weights = [w for _, w in MIX]

    def affinity(self) -> str:
        now = time.time()
        for cookie in self.session.cookies:
            if cookie.name == COOKIE and (cookie.expires is None or cookie.expires > now):
                return (cookie.value or "").split(".", 1)[0]
        return ""

    def choose(self, now: float) -> tuple[str, Item | None]:
        readable = [i for i in self.own if i.created_t <= now - self.load.read_min_age_s]
        if not readable:
            return "create", None
        op = self.rng.choices(self.ops, self.weights)[0]
        if op == "create":
            return op, None
        if op == "read_deleted" and self.deleted:
            return op, self.deleted.pop(0)
        if op in ("read_shared", "put_shared"):
            others = self.load.pool.recent(now, self.load.read_min_age_s, self.n)
            if others:
                item = self.rng.choice(others)
                if op == "put_shared" and item.item_id not in self.etags:
                    op = "read_shared"  # never seen it: read it first, as a browser would
                return op, item
        if op == "delete":
            private = [i for i in readable if not i.shared and i.item_id in self.etags]
            if private:
                return op, self.rng.choice(private)
        item = self.rng.choice(readable)
        if op == "put_own" and item.item_id in self.etags:
            return op, item
        return "read_own", item

    def step(self, now: float) -> None:
        op, item = self.choose(now)
        load = self.load
        headers: dict[str, str] = {}
        body = None
        marker = item.marker if item else uuid.uuid4().hex
        shared = item.shared if item else self.rng.random() < SHARED_SHARE
        put_n = 0
        if op == "create":
            method, path = "POST", "/items"
            headers["Idempotency-Key"] = uuid.uuid4().hex
            body = {"soak": load.run_id, "marker": marker, "owner": self.n, "shared": shared, "n": 0}
        elif op in ("read_own", "read_shared", "read_deleted"):
            method, path = "GET", f"/items/{item.item_id}"
        elif op in ("put_own", "put_shared"):
            method, path = "PUT", f"/items/{item.item_id}"
            headers["If-Match"] = self.etags[item.item_id]
            put_n = (item.n if not item.shared else self.seen_n.get(item.item_id, 0)) + 1
            body = {"soak": load.run_id, "marker": marker, "owner": item.owner, "shared": shared,
                    "n": put_n, "by": self.n}
        else:  # delete
            method, path = "DELETE", f"/items/{item.item_id}"
            headers["If-Match"] = self.etags[item.item_id]
        affinity = self.affinity()
        t_send = load.clock.now()
        status, answer, reply_headers, kind = None, {}, {}, ""
        try:
            r = self.session.request(method, load.base_url + path, json=body, headers=headers,
                                     timeout=CLIENT_TIMEOUT_S)
            status, answer, reply_headers = r.status_code, _json(r), r.headers
        except requests.Timeout:
            kind = "timeout"
        except requests.RequestException as e:
            kind = f"conn_error: {type(e).__name__}"
        t_done = load.clock.now()
        outcome = "error" if kind else "ok"
        etag = reply_headers.get("etag", "")
        if status is not None:
            outcome, kind = self.judge(op, item, status, answer, marker, etag, put_n, t_done,
                                       shared, reply_headers)
        record = Record(
            target=load.target, client=self.n, op=op, method=method, path=path,
            t_send=round(t_send, 4), t_done=round(t_done, 4),
            latency_ms=round((t_done - t_send) * 1000, 2), status=status, outcome=outcome,
            kind=kind, code=_error_code(answer), served_by=reply_headers.get("x-served-by", ""),
            attempts=reply_headers.get("x-edge-attempts", ""),
            request_id=reply_headers.get("x-request-id", ""), affinity=affinity,
            item_owner=item.owner if item else None, item_region=item.region if item else "",
            minute=int(t_send // 60))
        detail = None
        if outcome in ("error", "stale_read"):
            detail = {**asdict(record), "body": answer, "item": asdict(item) if item else None}
            with load.lock:
                diagnose = len(load.errors) < MAX_DIAGNOSED
            if diagnose and item is not None:
                detail["stored_now"] = self.stored_now(item.item_id)
        load.add(record, detail)

    def judge(self, op, item, status, answer, marker, etag, put_n, t_done, shared, headers):
        """(outcome, kind) of an answer, updating this client's state."""
        if op == "create":
            if status == 201 and answer.get("marker") == marker and answer.get("item_id"):
                new = Item(item_id=answer["item_id"], marker=marker, owner=self.n, shared=shared,
                           created_t=t_done, region=str(answer.get("region", "")))
                self.own.append(new)
                if etag:
                    self.etags[new.item_id] = etag
                if shared:
                    self.load.pool.add(new)
                return "ok", ""
            return "error", f"create answered {status}" if status != 201 else "create: wrong body"
        if op == "read_deleted":
            if status == 404:
                return "expected_404", ""
            if status == 200:
                return "stale_read", "a deleted item was read back"
            return "error", f"read of own delete answered {status}"
        if op in ("read_own", "read_shared"):
            if status != 200:
                return "error", f"read answered {status}"
            if answer.get("marker") != item.marker:
                return "error", "read: another item's marker"
            if etag:
                self.etags[item.item_id] = etag
            if item.shared:
                self.seen_n[item.item_id] = int(answer.get("n", 0))
            elif answer.get("n") != item.n:
                return "stale_read", f"read n={answer.get('n')}, acknowledged n={item.n}"
            return "ok", ""
        if op in ("put_own", "put_shared"):
            if status == 200 and answer.get("marker") == item.marker:
                if etag:
                    self.etags[item.item_id] = etag
                if item.shared:
                    self.seen_n[item.item_id] = put_n
                else:
                    item.n = put_n
                return "ok", ""
            if status == 412 and item.shared:
                self.etags.pop(item.item_id, None)  # read it again before the next write
                return "conflict_412", ""
            return "error", f"put answered {status}"
        # delete
        if status == 204:
            item.deleted_t = t_done
            self.own.remove(item)
            self.etags.pop(item.item_id, None)
            self.deleted.append(item)
            return "ok", ""
        return "error", f"delete answered {status}"

    def stored_now(self, item_id: str) -> dict:
        """The item as each region stores it right now, read from the regions directly."""
        out = {}
        for region, url in self.load.regionals.items():
            try:
                r = requests.get(f"{url}/items/{item_id}", timeout=5)
                body = _json(r)
                out[region] = {"status": r.status_code, "region": body.get("region"),
                               "version": body.get("version"), "n": body.get("n"),
                               "updated_at": body.get("updated_at")}
            except requests.RequestException as e:
                out[region] = {"status": None, "error": type(e).__name__}
        return out


def _client_loop(client: Client, rate: float, offset: float, end: float) -> None:
    clock = client.load.clock
    interval = 1.0 / rate
    limit = math.ceil(end * rate) + 5  # bounded in count as well as in time
    next_t = offset
    try:
        for _ in range(limit):
            now = clock.now()
            if next_t > now:
                time.sleep(next_t - now)
            if clock.now() >= end:
                break
            next_t += interval
            if next_t < clock.now():
                next_t = clock.now()  # late: skip the missed slots, never burst
            client.step(clock.now())
    finally:
        client.session.close()


# --- memory sampling ---------------------------------------------------------------------------

def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(comm, ppid, pgrp) of a live process, None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1:stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2:].split()
    return comm, int(fields[1]), int(fields[2])


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def workerd_rss(wrangler: procs.Proc) -> dict:
    """RSS (MiB) of the workerd processes wrangler dev runs: every process in the process group
    of the wrangler we started (it leads its group) whose name is workerd. The one bound to the
    public port is wrangler's proxy; the other runs the Worker."""
    worker, proxy = [], []
    public = f"entry=127.0.0.1:{wrangler.port}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if not stat or stat[0] != "workerd" or stat[2] != wrangler.pid:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rss = _rss_mib(int(entry.name))
        if rss is not None:
            (proxy if public in cmdline else worker).append(rss)
    return {"worker": round(sum(worker), 1) if worker else None,
            "proxy": round(sum(proxy), 1) if proxy else None,
            "processes": len(worker) + len(proxy)}


def _sample(load: Load, wrangler: procs.Proc, wasm: bool, extra=None) -> dict:
    out = {"t_s": round(load.clock.now(), 1), "requests": load.count()}
    if wasm:
        out["wasm_memory_bytes"] = None
        try:
            r = requests.get(load.base_url + "/_edge/status", timeout=5)
            status = r.json() if r.ok else {}
            out["wasm_memory_bytes"] = int(status["wasm_memory_bytes"])
            # How the isolate sees each region: state and smoothed latency (diagnosis only).
            out["regions"] = {g.get("name"): {"state": g.get("state"),
                                              "ewma_ms": g.get("ewma_latency_ms")}
                              for g in status.get("regions", []) if isinstance(g, dict)}
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
            pass
    rss = workerd_rss(wrangler)
    out["workerd_rss_mb"], out["proxy_rss_mb"] = rss["worker"], rss["proxy"]
    if extra is not None:
        try:
            out.update(extra())
        except Exception as e:  # noqa: BLE001 (a diagnosis must never stop the soak)
            out["extra_error"] = type(e).__name__
    return out


def _sampler(load: Load, wrangler: procs.Proc, wasm: bool, every: float, stop: threading.Event,
             samples: list[dict], extra=None) -> None:
    samples.append(_sample(load, wrangler, wasm, extra))
    k = 1
    while not stop.wait(max(0.0, k * every - load.clock.now())):
        samples.append(_sample(load, wrangler, wasm, extra))
        k += 1


# --- one run and its figures -------------------------------------------------------------------

def drive(target: str, base_url: str, regionals: dict[str, str], wrangler: procs.Proc,
          seconds: float, settings: SoakSettings, run_id: str, wasm: bool,
          log=print, extra=None) -> tuple[Load, list[dict]]:
    """Runs the load against one target for `seconds`, sampling memory (and `extra()`, a dict
    merged into each sample); returns what it saw."""
    load = Load(target=target, base_url=base_url, regionals=regionals, run_id=run_id,
                clock=Clock(), read_min_age_s=settings.read_min_age_s)
    rng = random.Random(settings.seed or None)
    per_client = settings.rate / settings.clients
    stop = threading.Event()
    samples: list[dict] = []
    sampler = threading.Thread(target=_sampler, name=f"{target}-sampler", daemon=True,
                               args=(load, wrangler, wasm, settings.sample_s, stop, samples,
                                     extra))
    sampler.start()
    threads = []
    for n in range(settings.clients):
        client = Client(load, n, random.Random(rng.random()))
        offset = n / settings.rate  # spread the clients' slots evenly
        threads.append(threading.Thread(target=_client_loop, name=f"{target}-client-{n}",
                                        args=(client, per_client, offset, seconds), daemon=True))
    log(f"soak: {target}: {settings.clients} clients, {settings.rate:g} req/s, {seconds:g} s")
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + CLIENT_TIMEOUT_S * 2 + 30)
    stop.set()
    sampler.join(30)
    samples.append(_sample(load, wrangler, wasm, extra))
    return load, samples


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def figures(load: Load) -> dict:
    records = load.records
    counts = {k: sum(r.outcome == k for r in records)
              for k in ("ok", "expected_404", "conflict_412", "stale_read", "error")}
    kinds: dict[str, int] = {}
    for r in records:
        if r.outcome == "error":
            key = f"{r.op}: {r.kind}" + (f" ({r.code})" if r.code else "")
            kinds[key] = kinds.get(key, 0) + 1
    per_minute = []
    for minute in sorted({r.minute for r in records}):
        inside = [r for r in records if r.minute == minute]
        per_minute.append({
            "minute": minute, "requests": len(inside),
            "client_errors": sum(r.outcome == "error" for r in inside),
            "p50_ms": percentile([r.latency_ms for r in inside], 0.50),
            "p99_ms": percentile([r.latency_ms for r in inside], 0.99)})
    ops: dict[str, int] = {}
    served: dict[str, int] = {}
    for r in records:
        ops[r.op] = ops.get(r.op, 0) + 1
        if r.served_by:
            served[r.served_by] = served.get(r.served_by, 0) + 1
    return {
        "requests": len(records), "client_errors": counts["error"],
        "expected_404": counts["expected_404"], "conflicts_412": counts["conflict_412"],
        "stale_reads": counts["stale_read"], "error_kinds": kinds,
        "p50_ms": percentile([r.latency_ms for r in records], 0.50),
        "p99_ms": percentile([r.latency_ms for r in records], 0.99),
        "per_minute": per_minute, "ops": ops, "served_by": served,
        "retried": sum(1 for r in records if r.attempts not in ("", "1")),
    }


def wasm_flat(samples: list[dict], warm_up_s: float) -> dict:
    """The flat-after-warm-up rule (module doc) over the Wasm samples."""
    values = [(s["t_s"], s["wasm_memory_bytes"]) for s in samples
              if s.get("wasm_memory_bytes") is not None]
    after = [v for t, v in values if t >= warm_up_s]
    restarts = sum(1 for (_, a), (_, b) in zip(values, values[1:]) if b < a)
    growth = (max(after) - min(after)) if after else None
    return {"flat": len(after) >= 2 and growth <= FLAT_PAGES * WASM_PAGE,
            "samples_after_warm_up": len(after), "growth_after_warm_up_bytes": growth,
            "first_bytes": values[0][1] if values else None,
            "last_bytes": values[-1][1] if values else None,
            "isolate_restarts": restarts,
            "missing_samples": sum(1 for s in samples if s.get("wasm_memory_bytes") is None)}


def rss_growth(samples: list[dict], warm_up_s: float) -> dict:
    """workerd's RSS over the run, and from the first sample at or after warm-up to the last
    (also per 1,000 requests sent between those two samples)."""
    values = [s for s in samples if s.get("workerd_rss_mb") is not None]
    after = [s for s in values if s["t_s"] >= warm_up_s]
    out = {"first_mb": values[0]["workerd_rss_mb"] if values else None,
           "last_mb": values[-1]["workerd_rss_mb"] if values else None,
           "max_mb": max(s["workerd_rss_mb"] for s in values) if values else None,
           "growth_mb": round(values[-1]["workerd_rss_mb"] - values[0]["workerd_rss_mb"], 1)
           if values else None,
           "growth_after_warm_up_mb": None, "growth_after_warm_up_mb_per_1000_requests": None}
    if len(after) >= 2:
        growth = after[-1]["workerd_rss_mb"] - after[0]["workerd_rss_mb"]
        sent = after[-1]["requests"] - after[0]["requests"]
        out["growth_after_warm_up_mb"] = round(growth, 1)
        if sent:
            out["growth_after_warm_up_mb_per_1000_requests"] = round(growth / sent * 1000, 3)
    return out


# --- the control -------------------------------------------------------------------------------

def start_control(origin: str, port: int | None = None) -> procs.Proc:
    """The pass-through Worker in wrangler dev (local, offline), as the edge runs, in front of
    `origin`. Its config is written to a private directory removed when it stops (so wrangler
    never reads the project's wrangler.toml)."""
    port = port or procs.free_port()
    inspector = procs.free_port()
    procs.STATE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"soak-control-{port}-", dir=procs.STATE))
    config = work / "wrangler.toml"
    config.write_text(f'name = "soak-control"\nmain = {json.dumps(str(CONTROL_SCRIPT))}\n'
                      f'compatibility_date = "{COMPATIBILITY_DATE}"\n')
    argv = [str(edge.WRANGLER), "dev", "--config", str(config), "--local", "--ip", "127.0.0.1",
            "--port", str(port), "--inspector-port", str(inspector),
            "--show-interactive-dev-session=false", "--persist-to", str(work / "state"),
            "--log-level", "log", "--var", f"ORIGIN:{origin}"]
    env = dict(edge.OFFLINE_ENV)
    env["PATH"] = os.environ.get("PATH", "")
    proc = procs.start(f"soak-control-{port}", argv, env=env, port=port, cwd=work)
    proc.cleanup.append(work)
    procs.wait_http(proc, "/health", timeout=60, ok=lambda r: r.status_code == 200)
    return proc


def run_control(settings: SoakSettings, seconds: float, run_id: str, log=print):
    """moto with the table in one region, one regional, the control Worker in front of it."""
    region = settings.regions[0]
    table = f"soak-control-{run_id}"
    started: list[procs.Proc] = []
    try:
        db = moto.start_moto()
        started.append(db)
        moto.create_table(db.url, region, table)
        svc = regional.start_regional(db.url, region, table)
        started.append(svc)
        control = start_control(svc.url)
        started.append(control)
        return drive(CONTROL_TARGET, control.url, {region: svc.url}, control, seconds, settings,
                     run_id, wasm=False, log=log)
    finally:
        for proc in reversed(started):
            proc.stop()


# --- the whole soak ----------------------------------------------------------------------------

def _replication(stack: Stack) -> dict:
    """The replicator's backlog and its lag so far (cumulative percentiles, ms)."""
    status = stack.replicator_status()
    return {"pending": status.get("pending"), "lag_ms": status.get("lag_ms")}


def machine() -> dict:
    return {"nproc": os.cpu_count(), "cpu": procs.cpu_model(),
            "os": f"{platform.system()} {platform.release()}"}


def run(settings: SoakSettings, log=print, command: str = "") -> dict:
    """The soak end to end; writes soak.json and requests.csv to `settings.out`, prints the
    summary and returns soak.json's content."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    seconds = settings.minutes * 60
    control_s = seconds if settings.control_minutes is None else settings.control_minutes * 60
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    log(f"soak: starting the stack ({', '.join(settings.regions)})")
    stack = Stack(settings.regions, name="soak")
    stack.start()
    try:
        edge_load, edge_samples = drive(
            EDGE_TARGET, stack.edge.url, {r: stack.regional[r].url for r in stack.regions},
            stack.edge, seconds, settings, run_id, wasm=True, log=log,
            extra=lambda: {"replicator": _replication(stack)})
        replicator = stack.replicator_status()
    finally:
        stack.stop()
    control_load, control_samples = (None, [])
    if control_s > 0:
        log("soak: control: a JavaScript pass-through Worker in wrangler dev, one regional")
        control_load, control_samples = run_control(settings, control_s, run_id, log=log)

    edge_fig = figures(edge_load)
    flat = wasm_flat(edge_samples, settings.warm_up_s)
    edge_rss = rss_growth(edge_samples, settings.warm_up_s)
    control = None
    if control_load is not None:
        control_fig = figures(control_load)
        control = {**{k: v for k, v in control_fig.items()}, "minutes": control_s / 60,
                   "rss": rss_growth(control_samples, settings.warm_up_s),
                   "samples": control_samples, "errors": control_load.errors}
    no_worse = None
    key = "growth_after_warm_up_mb_per_1000_requests"
    if control and edge_rss[key] is not None and control["rss"][key] is not None:
        no_worse = edge_rss[key] <= control["rss"][key]
    result = {
        "minutes": settings.minutes,
        "requests": edge_fig["requests"],
        "client_errors": edge_fig["client_errors"],
        "expected_404": edge_fig["expected_404"],
        "conflicts_412": edge_fig["conflicts_412"],
        "p50_ms": edge_fig["p50_ms"],
        "p99_ms": edge_fig["p99_ms"],
        "wasm_memory_bytes": [s.get("wasm_memory_bytes") for s in edge_samples],
        "workerd_rss_mb": [s.get("workerd_rss_mb") for s in edge_samples],
        "control_workerd_rss_mb": [s.get("workerd_rss_mb") for s in control_samples],
        "wasm_flat_after_warmup": flat["flat"],
        "rss_growth_no_worse_than_control": no_worse,
        "stale_reads": edge_fig["stale_reads"],
        "error_kinds": edge_fig["error_kinds"],
        "per_minute": edge_fig["per_minute"],
        "ops": edge_fig["ops"],
        "served_by": edge_fig["served_by"],
        "retried": edge_fig["retried"],
        "wasm": flat,
        "workerd_rss": edge_rss,
        "samples": edge_samples,
        "errors": edge_load.errors,
        "replicator": replicator,
        "control": control,
        "settings": {"rate": settings.rate, "clients": settings.clients,
                     "sample_s": settings.sample_s, "warm_up_s": settings.warm_up_s,
                     "read_min_age_s": settings.read_min_age_s, "regions": list(settings.regions),
                     "mix": dict(MIX), "shared_share": SHARED_SHARE,
                     "regional_binary": str(regional.binary())},
        "definitions": {
            "wasm_flat_after_warmup": f"at least 2 samples at t >= warm_up_s and max - min <= "
                                      f"{FLAT_PAGES} x {WASM_PAGE} bytes",
            "workerd_rss_mb": "VmRSS (MiB) of the workerd running the Worker, in the process "
                              "group of the wrangler dev the harness started (proxy apart)",
            "rss_growth_no_worse_than_control": "workerd RSS growth from the first sample at "
                                                "t >= warm_up_s to the last, per 1,000 requests "
                                                "sent in between: the edge's <= the control's"},
        "machine": machine(), "started_at": started_at, "command": command, "run_id": run_id,
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    with open(out / "requests.csv", "w", newline="") as f:
        names = list(Record.__dataclass_fields__)
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for r in edge_load.records + (control_load.records if control_load else []):
            writer.writerow(asdict(r))
    log(summary_text(result))
    return result


def _mb(values: list) -> str:
    kept = [v for v in values if v is not None]
    return f"{kept[0]:.0f} -> {kept[-1]:.0f} MiB (max {max(kept):.0f})" if kept else "-"


def summary_text(result: dict) -> str:
    w, rss, c = result["wasm"], result["workerd_rss"], result["control"]
    lines = [
        f"soak: {result['minutes']:g} min through the edge, {result['requests']} requests "
        f"({result['settings']['clients']} clients, {result['settings']['rate']:g} req/s)",
        f"  client-visible errors: {result['client_errors']}"
        + (f"  {result['error_kinds']}" if result["error_kinds"] else ""),
        f"  expected 404 (own deletes): {result['expected_404']}   412 (writers raced): "
        f"{result['conflicts_412']}   stale reads: {result['stale_reads']}   retried: {result['retried']}",
        f"  latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; served by {result['served_by']}",
        f"  replication lag (the local replicator, ms): {result['replicator'].get('lag_ms')}",
        "  per minute (p50/p99 ms, errors): " + "  ".join(
            f"{m['minute']}: {m['p50_ms']}/{m['p99_ms']}" + (f" E{m['client_errors']}" if m["client_errors"] else "")
            for m in result["per_minute"]),
        f"  wasm memory: {w['first_bytes']} -> {w['last_bytes']} bytes; after warm-up "
        f"(n={w['samples_after_warm_up']}) grew {w['growth_after_warm_up_bytes']} bytes: "
        f"flat={result['wasm_flat_after_warmup']} (isolate restarts {w['isolate_restarts']})",
        f"  workerd RSS (edge): {_mb(result['workerd_rss_mb'])}; after warm-up "
        f"{rss['growth_after_warm_up_mb']} MiB, {rss['growth_after_warm_up_mb_per_1000_requests']} "
        f"MiB per 1,000 requests",
    ]
    if c:
        lines += [
            f"  control ({c['minutes']:g} min, {c['requests']} requests, errors {c['client_errors']}, "
            f"p50 {c['p50_ms']} / p99 {c['p99_ms']} ms): workerd RSS {_mb(result['control_workerd_rss_mb'])}; "
            f"after warm-up {c['rss']['growth_after_warm_up_mb']} MiB, "
            f"{c['rss']['growth_after_warm_up_mb_per_1000_requests']} MiB per 1,000 requests",
            f"  edge RSS growth no worse than the control's: {result['rss_growth_no_worse_than_control']}",
        ]
    for e in result["errors"][:5]:
        lines.append(f"  ! {e['outcome']} {e['method']} {e['path']} -> {e['status']} {e['code'] or e['kind']}"
                     f" served_by={e['served_by']} affinity={e['affinity']} created_in={e['item_region']}"
                     f" stored_now={e.get('stored_now')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    d = SoakSettings()
    p = argparse.ArgumentParser(description="The soak (see the module doc).")
    p.add_argument("--minutes", type=float, default=d.minutes, help="edge run (%(default)s)")
    p.add_argument("--rate", type=float, default=d.rate, help="requests/s in total (%(default)s)")
    p.add_argument("--clients", type=int, default=d.clients, help="client threads (%(default)s)")
    p.add_argument("--control-minutes", type=float, default=None,
                   help="control run (default: as long as the edge run; 0: none)")
    p.add_argument("--sample-s", type=float, default=d.sample_s, help="memory samples (%(default)s s)")
    p.add_argument("--warm-up-s", type=float, default=d.warm_up_s, help="(%(default)s s)")
    p.add_argument("--out", type=Path, default=d.out, help="output directory (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0: random)")
    args = p.parse_args(argv)
    if not (0 < args.minutes <= 120 and 0 < args.rate <= 200 and 1 <= args.clients <= 32
            and 1 <= args.sample_s <= 600 and args.warm_up_s >= 0
            and (args.control_minutes is None or 0 <= args.control_minutes <= 120)):
        p.error("minutes (0, 120], rate (0, 200], clients 1..32, sample-s 1..600")
    settings = SoakSettings(minutes=args.minutes, rate=args.rate, clients=args.clients,
                            sample_s=args.sample_s, warm_up_s=args.warm_up_s,
                            control_minutes=args.control_minutes, out=args.out, seed=args.seed)
    command = os.environ.get("TANDEM_SOAK_COMMAND") or shlex.join(["python", "-m", "tests.harness.soak", *(argv or sys.argv[1:])])
    result = run(settings, command=command)
    return 0 if result["client_errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
