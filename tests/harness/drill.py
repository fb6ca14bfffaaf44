"""The failover drill: the seed's Step 6 (take a region out with STATUS=404, check that new items
land in the healthy region) under steady load, followed by a crash, a slow region and recovery,
measured through the edge and, side by side under the same load and the same faults, a client
pinned to region A and HAProxy in front of both regions; plus a DNS-failover model replayed on
the recorded health timeline.

Phases (each `--phase-s` long):
  1. all healthy
  2. region A drained: its STATUS set to 404 (admin route); it still serves requests
  3. region A's process killed (SIGKILL)
  4. region B slowed (+`--slow-ms` per request, below the edge's per-try timeout), A still down
  5. restored: A restarted on the same port (STATUS 200), B's latency 0, edge probe fired

Load: per target, `--concurrency` client threads (each with its own requests.Session), each
sending `--rate` requests per second on a fixed schedule (a late request skips its missed slots,
it never bursts): a create (POST /items with a unique client marker, no Idempotency-Key) with
probability `--write-share`, else a read (GET /items/{id}) of an id the same target created at
least `--read-min-age-s` ago. Every request is recorded; the counts are bounded by rate x time.

Client-visible error: anything but 201 for a create and 200 with the right marker for a read
(a 404 for an acknowledged item counts), a connection error, or no answer within 10 s.

Outputs in `--out` (default .state/drill/): requests.csv (every request), health.csv (the
health timeline), phase-N.json, summary.json, chart.svg, table.txt.

`python -m tests.harness.drill [--phase-s 20] [--concurrency 8] [--out DIR]` or scripts/drill.sh.
It never leaves 127.0.0.1, never stops a process it did not start, and bounds every load loop in
count and in time.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from . import chart, dnsmodel, haproxy, moto, procs
from .stack import Stack

EDGE, PINNED, HAPROXY = "edge", "pinned-A", "haproxy"
CLIENT_TIMEOUT_S = 10.0
MONITOR_EVERY_S = 0.2


@dataclass
class DrillSettings:
    phase_s: float = 20.0
    concurrency: int = 8
    rate: float = 3.0
    write_share: float = 0.3
    read_min_age_s: float = 1.0
    slow_ms: int = 300
    regions: tuple[str, str] = ("eu-west-1", "eu-central-1")
    replication_lag_ms: int = 0
    catch_up_timeout_s: float = 60.0
    haproxy: bool = True
    out: Path = procs.STATE / "drill"
    seed: int = 0

    @property
    def a(self) -> str:
        return self.regions[0]

    @property
    def b(self) -> str:
        return self.regions[1]


PHASE_NAMES = ["all healthy", "A drained (404)", "A killed", "B slow, A down", "restored"]


@dataclass
class Record:
    target: str
    thread: int
    op: str  # create | read
    t_send: float
    t_done: float
    latency_ms: float
    status: int | None
    ok: bool
    outcome: str  # ok | http_<code> | not_found | wrong_item | conn_error | timeout
    served_by: str
    region_status: str
    attempts: str
    item_id: str
    marker: str
    item_region: str
    request_id: str
    phase: int = 0


@dataclass
class Event:
    phase: int
    action: str
    t_start: float
    t_done: float


class Clock:
    """Seconds since the drill's start (monotonic)."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.wall0 = time.time()

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class TargetLoad:
    """One target's clients and what they recorded."""

    name: str
    base_url: str
    records: list[Record] = field(default_factory=list)
    acked: list[tuple[float, str, str]] = field(default_factory=list)  # (t_done, id, marker)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def readable(self, now: float, min_age: float) -> list[tuple[float, str, str]]:
        with self.lock:
            cut = len(self.acked)
            while cut and self.acked[cut - 1][0] > now - min_age:
                cut -= 1
            return self.acked[:cut]


def _one_request(session: requests.Session, load: TargetLoad, op: str, item: tuple | None,
                 run_id: str, clock: Clock, thread: int) -> Record:
    marker = item[2] if item else uuid.uuid4().hex
    t_send = clock.now()
    status, outcome, headers, body = None, "ok", {}, {}
    try:
        if op == "create":
            r = session.post(f"{load.base_url}/items", timeout=CLIENT_TIMEOUT_S,
                             json={"marker": marker, "drill": run_id, "target": load.name})
        else:
            r = session.get(f"{load.base_url}/items/{item[1]}", timeout=CLIENT_TIMEOUT_S)
        status, headers = r.status_code, r.headers
        try:
            body = r.json()
        except ValueError:  # e.g. HAProxy's own HTML error pages
            body = {}
        if not isinstance(body, dict):
            body = {}
    except requests.Timeout:
        outcome = "timeout"
    except requests.RequestException:
        outcome = "conn_error"
    t_done = clock.now()
    if status is not None:
        if op == "create":
            outcome = "ok" if status == 201 and body.get("marker") == marker else f"http_{status}"
        elif status == 404:
            outcome = "not_found"
        elif status != 200:
            outcome = f"http_{status}"
        elif body.get("marker") != marker:
            outcome = "wrong_item"
    return Record(
        target=load.name, thread=thread, op=op, t_send=round(t_send, 4), t_done=round(t_done, 4),
        latency_ms=round((t_done - t_send) * 1000, 2), status=status, ok=outcome == "ok",
        outcome=outcome, served_by=headers.get("x-served-by", ""),
        region_status=headers.get("x-region-status", ""),
        attempts=headers.get("x-edge-attempts", ""),
        item_id=body.get("item_id", "") if op == "create" else item[1],
        marker=marker, item_region=body.get("region", ""),
        request_id=headers.get("x-request-id", ""),
    )


def _client(load: TargetLoad, thread: int, settings: DrillSettings, run_id: str, clock: Clock,
            start: float, end: float, rng: random.Random) -> None:
    interval = 1.0 / settings.rate
    limit = math.ceil((end - start) * settings.rate) + 5  # bounded in count as well as in time
    next_t = start + interval * thread / settings.concurrency
    session = requests.Session()
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
            candidates = load.readable(clock.now(), settings.read_min_age_s)
            if not candidates or rng.random() < settings.write_share:
                record = _one_request(session, load, "create", None, run_id, clock, thread)
            else:
                record = _one_request(session, load, "read", rng.choice(candidates), run_id,
                                      clock, thread)
            with load.lock:
                load.records.append(record)
                if record.op == "create" and record.ok:
                    load.acked.append((record.t_done, record.item_id, record.marker))
    finally:
        session.close()


def _warm_up(load: TargetLoad, run_id: str, count: int = 5) -> None:
    """A few unrecorded creates and reads per target (first connections, isolate start), stored
    under another drill tag so the data checks never see them."""
    with requests.Session() as session:
        for _ in range(count):
            r = session.post(f"{load.base_url}/items", timeout=CLIENT_TIMEOUT_S,
                             json={"marker": uuid.uuid4().hex, "drill": f"warm-up-{run_id}"})
            if r.status_code == 201:
                session.get(f"{load.base_url}/items/{r.json()['item_id']}", timeout=CLIENT_TIMEOUT_S)


def _monitor(stack: Stack, clock: Clock, stop: threading.Event,
             samples: list[tuple[float, str, int | None]]) -> None:
    """Records every region's /health answer every 200 ms (None: nothing answered)."""
    while not stop.wait(MONITOR_EVERY_S):
        for region in stack.regions:
            t = clock.now()
            try:
                status = requests.get(stack.regional[region].url + "/health", timeout=1).status_code
            except requests.RequestException:
                status = None
            samples.append((round(t, 3), region, status))


def _machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"nproc": os.cpu_count(), "cpu": model}


# --- analysis ---------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def phase_summary(records: list[Record], phase: dict, faulty: str | None,
                  fault_t: float | None) -> dict:
    inside = [r for r in records if r.phase == phase["n"]]
    ok = [r for r in inside if r.ok]
    kinds: dict[str, int] = {}
    for r in inside:
        if not r.ok:
            kinds[r.outcome] = kinds.get(r.outcome, 0) + 1
    share: dict[str, float] = {}
    for r in ok:
        share[r.served_by or "-"] = share.get(r.served_by or "-", 0) + 1
    out = {
        "requests": len(inside),
        "creates": sum(r.op == "create" for r in inside),
        "reads": sum(r.op == "read" for r in inside),
        "errors": len(inside) - len(ok),
        "error_kinds": kinds,
        "p50_ms": _pct([r.latency_ms for r in inside], 0.50),
        "p99_ms": _pct([r.latency_ms for r in inside], 0.99),
        "share": {k: round(v / len(ok), 3) for k, v in sorted(share.items())} if ok else {},
        "retried": sum(1 for r in inside if r.attempts not in ("", "1")),
    }
    if faulty and fault_t is not None:
        # Answers the faulty region gave after the fault, in flight at the fault or sent later.
        served = [r.t_done for r in records if r.ok and r.served_by == faulty
                  and fault_t <= r.t_done < phase["end_s"]]
        out["faulty_region"] = faulty
        out["last_served_by_faulty_s"] = round(max(served) - fault_t, 3) if served else None
    return out


def seed_check(records: list[Record], a: str, b: str, flip: Event, restore_t: float) -> dict:
    """The seed's check: after the edge converged, every new item is stored in the healthy region."""
    after = [r for r in records if r.t_send >= flip.t_start and r.t_send < restore_t]
    elsewhere = [r.t_done for r in after if r.ok and r.served_by == b]
    converged = min(elsewhere) if elsewhere else None
    creates = [r for r in records if r.op == "create" and r.ok and r.t_send < restore_t]
    in_a_before = [r for r in creates if r.item_region == a and r.t_done >= flip.t_start
                   and (converged is None or r.t_send < converged)]
    after_conv = [r for r in creates if converged is not None and r.t_send >= converged]
    wrong = [r for r in after_conv if r.item_region != b]
    in_a_after_flip = [r for r in creates if r.item_region == a and r.t_done >= flip.t_start]
    return {
        "rule": ("converged = completion of the first request, sent after the STATUS flip, that "
                 f"{b} served; check: every create sent from then until phase 5 is stored with "
                 f"region={b}. Creates that {a} acknowledged between the flip and convergence are "
                 "counted, not failed: they were in flight or sent before anything told the "
                 "router (the edge learns the flip from the region's x-region-status header)."),
        "flip_s": round(flip.t_start, 3),
        "converged_after_flip_s": (round(converged - flip.t_start, 3) if converged is not None
                                   else None),
        "creates_in_a_before_convergence": len(in_a_before),
        "creates_in_a_after_flip": len(in_a_after_flip),
        "creates_after_convergence": len(after_conv),
        "violations": len(wrong),
        "holds": converged is not None and not wrong,
    }


def _scan(endpoint: str, region: str, table: str, run_id: str) -> dict[str, dict]:
    client = moto.client(endpoint, region)
    items: dict[str, dict] = {}
    kwargs = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            if item.get("drill", {}).get("S") == run_id:
                items[item["item_id"]["S"]] = {
                    "marker": item.get("marker", {}).get("S", ""),
                    "updated_at": item.get("updated_at", {}).get("S", ""),
                    "region": item.get("region", {}).get("S", ""),
                    "target": item.get("target", {}).get("S", ""),
                }
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def data_checks(stack: Stack, loads: list[TargetLoad], run_id: str, timeout_s: float) -> dict:
    """Waits for replication, then: duplicates, lost acknowledged writes, unacknowledged writes."""
    acked = {}
    for load in loads:
        for r in load.records:
            if r.op == "create" and r.ok:
                acked.setdefault(r.item_id, []).append(r)
    started = time.monotonic()
    while True:
        tables = {region: _scan(stack.moto.url, region, stack.table, run_id)
                  for region in stack.regions}
        first = tables[stack.regions[0]]
        converged = all(set(t) == set(first) and all(t[i]["updated_at"] == first[i]["updated_at"]
                                                     for i in t)
                        for t in tables.values())
        missing = [i for i in acked if any(i not in t for t in tables.values())]
        if (converged and not missing) or time.monotonic() - started > timeout_s:
            break
        time.sleep(0.25)
    catch_up_s = round(time.monotonic() - started, 2)

    by_marker: dict[str, set[str]] = {}
    for table in tables.values():
        for item_id, item in table.items():
            by_marker.setdefault(item["marker"], set()).add(item_id)
    duplicate_markers = {m: sorted(ids) for m, ids in by_marker.items() if len(ids) > 1}
    duplicate_acks = {i: [r.marker for r in rs] for i, rs in acked.items()
                      if len({r.marker for r in rs}) > 1}

    def read_back(item_id: str) -> list[str]:
        expected = acked[item_id][0].marker
        problems = []
        for region in stack.regions:
            try:
                r = requests.get(f"{stack.regional[region].url}/items/{item_id}", timeout=10)
                if r.status_code != 200 or r.json().get("marker") != expected:
                    problems.append(f"{region}:{r.status_code}")
            except (requests.RequestException, ValueError) as e:
                problems.append(f"{region}:{type(e).__name__}")
        return problems

    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(acked, pool.map(read_back, list(acked))))
    lost = {i: p for i, p in results.items() if p}

    # The seed check reads `region` from the create's answer; the stored item must agree.
    stored = tables[stack.regions[0]]
    region_mismatch = sorted(i for i, rs in acked.items()
                             if i in stored and stored[i]["region"] != rs[0].item_region)
    acked_markers = {r.marker for rs in acked.values() for r in rs}
    failed_creates = {}
    for load in loads:
        for r in load.records:
            if r.op == "create" and not r.ok:
                failed_creates[r.marker] = load.name
    stored_markers = set(by_marker)
    unacked_stored: dict[str, int] = {}
    for marker, target in failed_creates.items():
        if marker in stored_markers and marker not in acked_markers:
            unacked_stored[target] = unacked_stored.get(target, 0) + 1
    return {
        "acknowledged_writes": len(acked),
        "replication_caught_up": converged and not missing,
        "catch_up_s": catch_up_s,
        "items_per_region": {r: len(t) for r, t in tables.items()},
        "replicas_differ": not converged,
        "duplicate_markers": duplicate_markers,
        "duplicate_acks": duplicate_acks,
        "lost_writes": lost,
        "checked_reads": len(acked) * len(stack.regions),
        "unacknowledged_but_stored": unacked_stored,
        "stored_region_differs_from_answer": region_mismatch,
    }


# --- the run ----------------------------------------------------------------------------------

def run(settings: DrillSettings, log=print) -> dict:
    """Runs the whole drill; returns the summary (also written to settings.out)."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    a, b = settings.a, settings.b
    rng = random.Random(settings.seed or None)
    stack = Stack(settings.regions, replication_lag_ms=settings.replication_lag_ms,
                  weights={a: 100.0, b: 1.0}, name="drill")
    started_procs: list[procs.Proc] = []
    threads: list[threading.Thread] = []
    stop_monitor = threading.Event()
    try:
        log(f"drill {run_id}: starting moto, replicator, regions {a} and {b}, edge")
        stack.start()
        loads = [TargetLoad(EDGE, stack.edge.url), TargetLoad(PINNED, stack.regional[a].url)]
        haproxy_note = None
        if settings.haproxy and haproxy.binary():
            hp = haproxy.start_haproxy({r: stack.regional[r].url for r in stack.regions}, out)
            started_procs.append(hp)
            loads.append(TargetLoad(HAPROXY, hp.url))
        else:
            haproxy_note = "haproxy not installed" if settings.haproxy else "disabled"
            log(f"drill: HAProxy column skipped ({haproxy_note})")
        for load in loads:
            _warm_up(load, run_id)

        clock = Clock()
        samples: list[tuple[float, str, int | None]] = []
        monitor = threading.Thread(target=_monitor, args=(stack, clock, stop_monitor, samples),
                                   name="monitor", daemon=True)
        monitor.start()
        total = settings.phase_s * len(PHASE_NAMES)
        for load in loads:
            for i in range(settings.concurrency):
                t = threading.Thread(target=_client, name=f"{load.name}-{i}", daemon=True,
                                     args=(load, i, settings, run_id, clock, 0.0, total,
                                           random.Random(rng.random())))
                threads.append(t)
                t.start()
        log(f"drill: load on {', '.join(l.name for l in loads)}: {settings.concurrency} clients "
            f"each at {settings.rate}/s, {settings.phase_s:g} s per phase")

        events: list[Event] = []
        edge_status: list[dict] = []

        def act(phase: int, action: str, fn) -> None:
            t_start = clock.now()
            fn()
            events.append(Event(phase, action, round(t_start, 3), round(clock.now(), 3)))
            log(f"  t={t_start:6.2f}s phase {phase}: {action}")

        def restore() -> None:
            stack.restart_region(a)
            stack.set_faults(a, status=200)
            stack.set_faults(b, latency_ms=0)
            stack.probe()

        actions = {
            1: ("load starts, all healthy", lambda: None),
            2: (f"{a} STATUS=404 (admin route)", lambda: stack.set_faults(a, status=404)),
            3: (f"{a} killed (SIGKILL)", lambda: stack.kill_region(a)),
            4: (f"{b} latency_ms={settings.slow_ms}", lambda: stack.set_faults(b, latency_ms=settings.slow_ms)),
            5: (f"{a} restarted on its port, STATUS 200; {b} latency 0; probe fired", restore),
        }
        for n in range(1, len(PHASE_NAMES) + 1):
            wait = (n - 1) * settings.phase_s - clock.now()
            if wait > 0:
                time.sleep(wait)
            if n > 1:
                edge_status.append({"before_phase": n, **_edge_status(stack)})
            act(n, *actions[n])
        for t in threads:
            t.join(timeout=max(1.0, total - clock.now()) + CLIENT_TIMEOUT_S + 5)
        end_s = clock.now()
        # wrangler dev reloads the Worker when edge/build changes (a rebuild during the run): the
        # isolate, and all it knew about the regions, starts over. Counted, so a reader knows.
        edge_reloads = stack.edge.log().count("Reloading local server")
        edge_status.append({"after_phase": len(PHASE_NAMES), **_edge_status(stack)})
        stop_monitor.set()
        monitor.join(timeout=5)

        log("drill: load done; waiting for replication, then checking the data")
        checks = data_checks(stack, loads, run_id, settings.catch_up_timeout_s)
        summary = analyse(settings, run_id, clock, loads, events, samples, end_s, checks,
                          edge_status, haproxy_note, stack, edge_reloads)
        summary["pids"] = stack.pids() + [p.pid for p in started_procs]
        write_outputs(out, summary, loads, samples)
        log(summary["table"])
        log(f"drill: outputs in {out}")
        return summary
    finally:
        stop_monitor.set()
        for proc in reversed(started_procs):
            proc.stop()
        stack.stop()


def _edge_status(stack: Stack) -> dict:
    try:
        report = requests.get(stack.edge.url + "/_edge/status", timeout=5).json()
        return {"regions": {r["name"]: r["state"] for r in report["regions"]},
                "counters": report["counters"]}
    except (requests.RequestException, ValueError, KeyError) as e:
        return {"error": str(e)}


def analyse(settings: DrillSettings, run_id: str, clock: Clock, loads: list[TargetLoad],
            events: list[Event], samples, end_s: float, checks: dict, edge_status: list[dict],
            haproxy_note: str | None, stack: Stack, edge_reloads: int = 0) -> dict:
    a, b = settings.a, settings.b
    starts = [e.t_start for e in sorted(events, key=lambda e: e.phase)]
    phases = [{"n": i + 1, "name": PHASE_NAMES[i], "start_s": starts[i],
               "end_s": starts[i + 1] if i + 1 < len(starts) else end_s}
              for i in range(len(PHASE_NAMES))]

    def phase_of(t: float) -> int:
        n = 1
        for p in phases:
            if t >= p["start_s"]:
                n = p["n"]
        return n

    for load in loads:
        for r in load.records:
            r.phase = phase_of(r.t_send)
    by_phase = {e.phase: e for e in events}
    # Phase 4's slow region is the only one up, so it serves to the end: nothing to time there.
    faulty = {2: (a, by_phase[2].t_start), 3: (a, by_phase[3].t_start)}
    targets = {}
    for load in loads:
        per_phase = [phase_summary(load.records, p, *faulty.get(p["n"], (None, None)))
                     for p in phases]
        targets[load.name] = {
            "url": load.base_url,
            "phases": per_phase,
            "seed_check": seed_check(load.records, a, b, by_phase[2], by_phase[5].t_start),
        }
    timeline = dnsmodel.Timeline(samples)
    windows = [(p["start_s"], p["end_s"]) for p in phases]
    request_times = [r.t_send for r in loads[0].records]
    dns = {cfg.name: dnsmodel.evaluate(timeline, [a, b], cfg, 0.0, end_s, windows, request_times)
           for cfg in dnsmodel.CONFIGS}
    summary = {
        "run_id": run_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.wall0)),
        "machine": _machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "regions": {"a": a, "b": b},
        "phases": phases,
        "events": [asdict(e) for e in events],
        "targets": targets,
        "haproxy": haproxy_note or "measured",
        "dns_model": {name: {k: v for k, v in d.items() if k != "failing_share"}
                      for name, d in dns.items()},
        "data_checks": checks,
        "edge_status": edge_status,
        "edge_reloads": edge_reloads,
        "replicator": _safe(stack.replicator_status),
    }
    summary["table"] = table(summary)
    summary["_chart"] = chart.render(
        end_s, phases, [l.name for l in loads], [a, b],
        [asdict(r) for l in loads for r in l.records],
        {name: d["failing_share"] for name, d in dns.items()}, dnsmodel.STEP_S,
        f"tandem drill {run_id}: {settings.concurrency} clients x {settings.rate}/s per target, "
        f"{settings.phase_s:g} s per phase")
    return summary


def _safe(fn):
    try:
        return fn()
    except (requests.RequestException, ValueError) as e:
        return {"error": str(e)}


def table(summary: dict) -> str:
    """One table: client-visible errors per phase and p50/p99, per target and DNS model."""
    phases = summary["phases"]
    width = 24
    head = f"{'':24}" + "".join(f"{p['n']}: {p['name']}"[:width - 1].ljust(width) for p in phases)
    lines = ["client-visible errors/requests, p50/p99 ms (measured)", head]
    for name, t in summary["targets"].items():
        cells = [f"{s['errors']}/{s['requests']} {s['p50_ms']}/{s['p99_ms']}" for s in t["phases"]]
        lines.append(name.ljust(24) + "".join(c.ljust(width) for c in cells))
    for name, t in summary["targets"].items():
        kinds = [f"{p['n']}: " + ", ".join(f"{k} {v}" for k, v in s["error_kinds"].items())
                 for p, s in zip(phases, t["phases"]) if s["error_kinds"]]
        if kinds:
            lines.append(f"  {name} errors by kind: " + "; ".join(kinds))
    lines.append("DNS failover model: error seconds mean (worst), est. failed requests of the edge's load")
    for name, d in summary["dns_model"].items():
        cells = [f"{w['error_s_mean']:g}s ({w['error_s_worst']:g}) ~{w['failed_requests_mean']:g}"
                 for w in d["windows"]]
        lines.append(name[:23].ljust(24) + "".join(c.ljust(width) for c in cells))
    lines.append("seed check (creates sent after convergence stored in B; creates in A after flip):")
    for name, t in summary["targets"].items():
        s = t["seed_check"]
        lines.append(f"  {name}: {'holds' if s['holds'] else 'FAILS'}; converged "
                     f"{s['converged_after_flip_s']} s after the flip; "
                     f"{s['creates_in_a_before_convergence']} creates in A before convergence, "
                     f"{s['violations']} after; {s['creates_in_a_after_flip']} in A after the flip")
    c = summary["data_checks"]
    lines.append(f"data: {c['acknowledged_writes']} acknowledged writes, replication caught up "
                 f"{c['replication_caught_up']} in {c['catch_up_s']} s, duplicates "
                 f"{len(c['duplicate_markers']) + len(c['duplicate_acks'])}, lost "
                 f"{len(c['lost_writes'])}, unacknowledged but stored "
                 f"{c['unacknowledged_but_stored'] or 0}")
    if summary.get("edge_reloads"):
        lines.append(f"NOTE: the Worker was reloaded {summary['edge_reloads']} time(s) during the "
                     "run (edge/build changed): each reload starts a fresh isolate")
    lag = summary["replicator"].get("lag_ms", {})
    if lag.get("count"):
        lines.append(f"replication lag (stream record to applied): p50 {lag['p50']} ms, "
                     f"p99 {lag['p99']} ms, max {lag['max']} ms over {lag['count']} records")
    return "\n".join(lines)


def write_outputs(out: Path, summary: dict, loads: list[TargetLoad], samples) -> None:
    svg = summary.pop("_chart")
    (out / "chart.svg").write_text(svg)
    (out / "table.txt").write_text(summary["table"] + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for p in summary["phases"]:
        n = p["n"]
        per_phase = {
            "phase": p,
            "events": [e for e in summary["events"] if e["phase"] == n],
            "targets": {name: t["phases"][n - 1] for name, t in summary["targets"].items()},
            "dns_model": {name: d["windows"][n - 1] for name, d in summary["dns_model"].items()},
        }
        (out / f"phase-{n}.json").write_text(json.dumps(per_phase, indent=2))
    fields = list(Record.__dataclass_fields__)
    with open(out / "requests.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for load in loads:
            for r in sorted(load.records, key=lambda r: r.t_send):
                w.writerow(asdict(r))
    with open(out / "health.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "region", "status"])
        w.writerows(samples)


def main(argv: list[str] | None = None) -> int:
    d = DrillSettings()
    p = argparse.ArgumentParser(description="The failover drill (see the module doc).")
    p.add_argument("--phase-s", type=float, default=d.phase_s, help="seconds per phase (%(default)s)")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="clients per target (%(default)s)")
    p.add_argument("--rate", type=float, default=d.rate, help="requests/s per client (%(default)s)")
    p.add_argument("--write-share", type=float, default=d.write_share, help="share of creates (%(default)s)")
    p.add_argument("--read-min-age-s", type=float, default=d.read_min_age_s,
                   help="reads pick ids created at least this long ago (%(default)s)")
    p.add_argument("--slow-ms", type=int, default=d.slow_ms, help="B's latency in phase 4 (%(default)s)")
    p.add_argument("--regions", default=",".join(d.regions), help="A,B (%(default)s)")
    p.add_argument("--replication-lag-ms", type=int, default=d.replication_lag_ms)
    p.add_argument("--no-haproxy", action="store_true", help="skip the HAProxy column")
    p.add_argument("--out", type=Path, default=d.out, help="output directory (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0: random)")
    args = p.parse_args(argv)
    regions = tuple(r.strip() for r in args.regions.split(","))
    if len(regions) != 2:
        p.error("--regions takes exactly two regions: A,B")
    if not (0 < args.concurrency <= 64 and 0 < args.rate <= 100 and 1 <= args.phase_s <= 600):
        p.error("concurrency 1..64, rate (0, 100], phase-s 1..600")
    settings = DrillSettings(
        phase_s=args.phase_s, concurrency=args.concurrency, rate=args.rate,
        write_share=args.write_share, read_min_age_s=args.read_min_age_s, slow_ms=args.slow_ms,
        regions=regions, replication_lag_ms=args.replication_lag_ms,
        haproxy=not args.no_haproxy, out=args.out, seed=args.seed)
    run(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
