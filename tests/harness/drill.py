"""The failover drill: the seed's Step 6 (take a region out with STATUS=404, check that new items
land in the healthy region) under steady load, preceded by a pause of replication while both
regions take writes and followed by a crash, a slow region, recovery, and three partial faults of
region A (latency doubled, gray failure, flapping health), measured through the edge and, side by
side under the same load and the same faults, a client pinned to region A and HAProxy in front of
both regions; plus a DNS-failover model replayed on the recorded health timeline.

Phases (each `--phase-s` long):
  1. all healthy
  2. replication paused (as FIS's aws:dynamodb:global-table-pause-replication): the replicator
     holds every change; two more writers, one pinned to A and one to B, write the same items
     with If-Match; at the phase's end they stop, replication resumes and the next phase starts
     once the held changes are applied (the catch-up time belongs to this phase)
  3. region A drained: its STATUS set to 404 (admin route); it still serves requests
  4. region A's process killed (SIGKILL)
  5. region B slowed (+`--slow-ms` per request, below the edge's per-try timeout), A still down
  6. restored: A restarted on the same port (STATUS 200), B's latency 0, edge probe fired
  7. A slow: A's latency_ms set to pinned-A's p50 of phase 6 (its latency about doubles), no
     errors; cleared at the phase's end
  8. A flapping: A's /health STATUS toggles 404 / 200 every `--flap-s` (2) s from the phase's
     start (first 404), by a thread of the drill; at the phase's end 200 again, a probe fired,
     and the next phase waits until the edge reports A in service (at most RECOVERY_WAIT_S)
  9. A gray: A answers 503 at once to `--gray-error-rate` (0.2) of requests, its STATUS 200;
     cleared at the end of the load. regional's error injection spares /health, which keeps
     answering 200: a gray failure as users meet it
  Phases 7-9 (`--fault-phase-s` long, default `--phase-s`) each start with fresh clients: every
  client thread drops its session (cookies: the edge's affinity token) and each writer takes new
  items, so each phase starts with clients where the edge's ranking puts them (region A), not
  where an earlier phase's read-your-writes affinity left them (region B after the drain). The
  gray phase comes last: the failure penalty it leaves on A outlives the phase (30 s without
  traffic to A) and would send the next phase's fresh clients to B.

Load: per target, `--concurrency` client threads (each with its own requests.Session), each
sending `--rate` requests per second on a fixed schedule (a late request skips its missed slots,
it never bursts). `--writers` of them are writers, the others creators/readers:
- a creator/reader sends a create (POST /items with a unique client marker, no Idempotency-Key)
  with probability `--write-share`, else a read (GET /items/{id}) of an id the same target
  created at least `--read-min-age-s` ago;
- a writer owns `--writer-items` items and goes round them: one slot GET /items/{id} (learns the
  ETag, or 404), the next slot a write based on that read: PUT with If-Match (or, with
  probability `--delete-share`, DELETE with If-Match) when it found the item, PUT without
  If-Match (recreate) when it found none; after a 412/409 it simply reads again on its next turn.
Every request is recorded; the counts are bounded by rate x time.

Client-visible error: anything but 201 for a create and 200 with the right marker for a read
(a 404 for an acknowledged item counts), a connection error, or no answer within 10 s; for a
writer, a write answered other than 2xx, 412, 409 (or 404 to a DELETE: the item is gone), and a
read of an item it owns that does not show its own last acknowledged write (stale read). 412,
409 and 404-to-DELETE answers are conflicts reported to the client, counted apart.

Writes lost silently (`writer_fates`, after replication caught up and every region was read):
an acknowledged write W (a 2xx PUT with the ETag it returned, or a 204 DELETE) is *kept* if it
is the final state of its item (the final ETag is W's; for a delete: the item is gone), or a
later acknowledged write was conditioned on W's ETag (If-Match: it saw W), or, for a delete, an
acknowledged PUT answered 201 (recreated) was based on a read answered 404 and sent after W was
acknowledged. Otherwise W was overwritten or undone without any client being told: lost.

Per phase and target also: attempts per request (the edge: its `x-edge-attempts`; HAProxy:
1 + the retries its request log shows; pinned-A: 1), the share of first attempts sent to region A
after the phase's first `--settle-s` (5) s (the edge does not say where an attempt went: the
first attempt's region is `x-served-by` when `x-edge-attempts` is 1, else the other region, since
with two regions each is tried at most once; a hedged read won by the first region is the
exception, counted wrongly, and bounded by the phase's hedge counter), and, from a poll of
`/_edge/status` every 0.5 s during phases 7-9 and HAProxy's log, how often each took A out of
service (drains, ejections; HAProxy "is DOWN") against the flips.

Outputs in `--out` (default .state/drill/): requests.csv (every request), health.csv (the
health timeline), edge-status.csv (the poll), phase-N.json, summary.json, chart.svg, table.txt.

`python -m tests.harness.drill [--phase-s 20] [--concurrency 8] [--out DIR]` or scripts/drill.sh.
It never leaves 127.0.0.1, never stops a process it did not start, and bounds every load loop in
count and in time.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from . import chart, dnsmodel, haproxy, moto, procs
from .stack import Stack

EDGE, PINNED, HAPROXY, SPLIT = "edge", "pinned-A", "haproxy", "pinned-A+B"
#: Short codes for writer item ids, per target.
TARGET_CODES = {EDGE: "e", PINNED: "p", HAPROXY: "h", SPLIT: "s"}
CLIENT_TIMEOUT_S = 10.0
MONITOR_EVERY_S = 0.2
WRITER_OPS = ("get", "put", "delete")


@dataclass
class DrillSettings:
    phase_s: float = 20.0
    concurrency: int = 8
    rate: float = 1.0
    write_share: float = 0.3
    read_min_age_s: float = 1.0
    writers: int = 2
    writer_items: int = 3
    delete_share: float = 0.2
    split_items: int = 3
    slow_ms: int = 300
    #: Phases 7-9 (A slow, gray, flapping): their length (None: `phase_s`).
    fault_phase_s: float | None = None
    gray_error_rate: float = 0.2
    flap_s: float = 2.0
    #: First attempts are counted from this long after a phase's start.
    settle_s: float = 5.0
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

    def phase_lengths(self) -> list[float]:
        """Each phase's planned length (the paused phase's catch-up comes on top)."""
        fault = self.fault_phase_s or self.phase_s
        return [fault if n in FRESH_CLIENT_PHASES else self.phase_s
                for n in range(1, len(PHASE_NAMES) + 1)]


PHASE_NAMES = ["all healthy", "replication paused", "A drained (404)", "A killed",
               "B slow, A down", "restored", "A slow (latency x2)", "A flapping (404/200)",
               "A gray (503s, health 200)"]
(HEALTHY, PAUSED, DRAINED, KILLED, SLOW, RESTORED, A_SLOW, FLAPPING,
 GRAY) = range(1, len(PHASE_NAMES) + 1)
#: Phases that start with fresh clients (new sessions, new writer items), and whose figures
#: include attempts per request and first attempts to region A.
FRESH_CLIENT_PHASES = (A_SLOW, FLAPPING, GRAY)
#: After the flapping phase, how long the drill waits for the edge to report A in service.
RECOVERY_WAIT_S = 15.0
#: How often the edge's /_edge/status is polled during those phases.
EDGE_POLL_S = 0.5


@dataclass
class Record:
    target: str
    thread: int
    op: str  # create | read (creators/readers); get | put | delete (writers)
    t_send: float
    t_done: float
    latency_ms: float
    status: int | None
    ok: bool
    # ok | http_<code> | not_found | wrong_item | stale_read | no_etag | conn_error | timeout |
    # conflict_412 | conflict_409 | conflict_404
    outcome: str
    served_by: str
    region_status: str
    attempts: str
    item_id: str
    marker: str  # creates: the client marker; writer PUTs: the write's own id
    item_region: str
    request_id: str
    conflict: bool = False  # a 412/409 (or 404 to a DELETE) answer: reported, not an error
    if_match: str = ""
    etag: str = ""  # the ETag answered (GET, PUT)
    seen_s: float | None = None  # writes: when the read they were based on was sent
    fate: str = ""  # acknowledged writes, after the data checks: kept | lost
    phase: int = 0
    #: The region the client's affinity token (the edge's cookie) named when it sent, if unexpired.
    affinity: str = ""

    @property
    def error(self) -> bool:
        return not self.ok and not self.conflict


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
class Window:
    """When a client sends: from `start` until `end` (which the drill may move later, when the
    paused phase's catch-up shifts the phases after it), never past `hard_end`."""

    start: float
    end: float
    hard_end: float
    #: Raised by the drill at the start of phases 7-9: every client then starts afresh (a new
    #: session without cookies; a writer also takes new items).
    generation: int = 0


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

    def add(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)
            if record.op == "create" and record.ok:
                self.acked.append((record.t_done, record.item_id, record.marker))


#: Writers' slots move by up to this share of the interval, at random: on an exactly periodic
#: schedule with an even number of clients, HAProxy's round robin would send each client to the
#: same region every time (the two alternations lock in step), hiding what round robin does to a
#: client's read-modify-write.
WRITER_JITTER = 0.25


def _slots(clock: Clock, window: Window, rate: float, first: float, jitter: float = 0.0,
           rng: random.Random | None = None):
    """Yields once per slot at `rate` per second from `first`, until the window closes; a late
    slot skips the ones it missed (never a burst). With `jitter`, each slot moves by up to that
    share of the interval either way (one request per slot all the same). Bounded in count as
    well as in time."""
    interval = 1.0 / rate
    limit = math.ceil((window.hard_end - window.start) * rate) + 5
    next_t = first
    for _ in range(limit):
        now = clock.now()
        due = next_t + (rng.uniform(-jitter, jitter) * interval if jitter and rng else 0.0)
        if due > now:
            time.sleep(due - now)
        if clock.now() >= min(window.end, window.hard_end):
            return
        next_t += interval
        if next_t < clock.now():
            next_t = clock.now()  # late: skip the missed slots, never burst
        yield


#: The edge's affinity cookie: `<region>.<expires_ms>.<mac>`.
AFFINITY_COOKIE = "tandem_affinity"


def _affinity(session: requests.Session) -> str:
    """The region the session's affinity token names, if it has not expired ("" otherwise)."""
    token = session.cookies.get(AFFINITY_COOKIE) or ""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) <= time.time() * 1000:
        return ""
    return parts[0]


def _http(session: requests.Session, method: str, url: str, clock: Clock, **kwargs):
    """One request; returns (t_send, t_done, status, headers, JSON body or {}, outcome,
    affinity: the region the session's affinity token named when it was sent)."""
    affinity = _affinity(session)
    t_send = clock.now()
    status, headers, body, outcome = None, {}, {}, "ok"
    try:
        r = session.request(method, url, timeout=CLIENT_TIMEOUT_S, **kwargs)
        status, headers = r.status_code, r.headers
        if r.content:
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
    return t_send, clock.now(), status, headers, body, outcome, affinity


def _record(load_name: str, thread: int, op: str, t_send: float, t_done: float, status, headers,
            outcome: str, item_id: str, marker: str, item_region: str, affinity: str = "",
            **extra) -> Record:
    return Record(
        target=load_name, thread=thread, op=op, t_send=round(t_send, 4), t_done=round(t_done, 4),
        latency_ms=round((t_done - t_send) * 1000, 2), status=status, ok=outcome == "ok",
        outcome=outcome, served_by=headers.get("x-served-by", ""),
        region_status=headers.get("x-region-status", ""),
        attempts=headers.get("x-edge-attempts", ""), item_id=item_id, marker=marker,
        item_region=item_region, request_id=headers.get("x-request-id", ""), affinity=affinity,
        **extra)


def _one_request(session: requests.Session, load: TargetLoad, op: str, item: tuple | None,
                 run_id: str, clock: Clock, thread: int) -> Record:
    marker = item[2] if item else uuid.uuid4().hex
    if op == "create":
        sent = _http(session, "POST", f"{load.base_url}/items", clock,
                     json={"marker": marker, "drill": run_id, "target": load.name})
    else:
        sent = _http(session, "GET", f"{load.base_url}/items/{item[1]}", clock)
    t_send, t_done, status, headers, body, outcome, affinity = sent
    if status is not None:
        if op == "create":
            outcome = "ok" if status == 201 and body.get("marker") == marker else f"http_{status}"
        elif status == 404:
            outcome = "not_found"
        elif status != 200:
            outcome = f"http_{status}"
        elif body.get("marker") != marker:
            outcome = "wrong_item"
    return _record(load.name, thread, op, t_send, t_done, status, headers, outcome,
                   body.get("item_id", "") if op == "create" else item[1], marker,
                   body.get("region", ""), affinity)


def _client(load: TargetLoad, thread: int, settings: DrillSettings, run_id: str, clock: Clock,
            window: Window, rng: random.Random) -> None:
    """A creator/reader."""
    first = window.start + thread / (settings.rate * settings.concurrency)
    session = requests.Session()
    generation = window.generation
    try:
        for _ in _slots(clock, window, settings.rate, first):
            if window.generation != generation:  # a fresh client from now on
                generation = window.generation
                session.close()
                session = requests.Session()
            candidates = load.readable(clock.now(), settings.read_min_age_s)
            if not candidates or rng.random() < settings.write_share:
                record = _one_request(session, load, "create", None, run_id, clock, thread)
            else:
                record = _one_request(session, load, "read", rng.choice(candidates), run_id,
                                      clock, thread)
            load.add(record)
    finally:
        session.close()


# --- writers ----------------------------------------------------------------------------------

@dataclass
class Known:
    """What a writer's own last answer for an item said: present (with its ETag), absent, or
    unknown (after a conflict, an error or a timeout; and before its first write)."""

    state: str = "unknown"
    etag: str = ""


def _writer_get(session: requests.Session, load_name: str, base_url: str, thread: int,
                item_id: str, known: Known | None, clock: Clock) -> Record:
    """GET of a writer's item. With `known` (an item this client alone writes), a read that does
    not show the client's own last acknowledged write is a stale read (an error)."""
    t_send, t_done, status, headers, body, outcome, affinity = _http(
        session, "GET", f"{base_url}/items/{item_id}", clock)
    etag = headers.get("etag", "") if status == 200 else ""
    if status == 200:
        if not etag:
            outcome = "no_etag"
        elif known and ((known.state == "present" and etag != known.etag)
                        or known.state == "absent"):
            outcome = "stale_read"
    elif status == 404:
        if known and known.state == "present":
            outcome = "not_found"
    elif status is not None:
        outcome = f"http_{status}"
    return _record(load_name, thread, "get", t_send, t_done, status, headers, outcome, item_id,
                   body.get("write", "") if status == 200 else "", body.get("region", ""),
                   affinity, etag=etag)


def _writer_write(session: requests.Session, load_name: str, base_url: str, thread: int,
                  seen: Record, known: Known, clock: Clock, rng: random.Random, run_id: str,
                  delete_share: float) -> Record:
    """The write a read-modify-write client makes after reading `seen`: PUT or DELETE with
    If-Match on the tag it read, or a recreate (PUT without If-Match) after a 404."""
    url = f"{base_url}/items/{seen.item_id}"
    write_id = ""
    if seen.status == 200 and rng.random() < delete_share:
        op, if_match = "delete", seen.etag
        sent = _http(session, "DELETE", url, clock, headers={"If-Match": if_match})
    else:
        op, if_match = "put", (seen.etag if seen.status == 200 else "")
        write_id = uuid.uuid4().hex
        body = {"drill": run_id, "kind": "writer", "target": load_name, "writer": thread,
                "write": write_id}
        sent = _http(session, "PUT", url, clock, json=body,
                     headers={"If-Match": if_match} if if_match else {})
    t_send, t_done, status, headers, body, outcome, affinity = sent
    etag = ""
    if status is not None:
        if op == "put" and status in (200, 201):
            etag = headers.get("etag", "")
            outcome = ("ok" if etag and body.get("write") == write_id
                       else "no_etag" if not etag else "wrong_item")
        elif op == "delete" and status == 204:
            outcome = "ok"
        elif status in (409, 412) or (op == "delete" and status == 404):
            outcome = f"conflict_{status}"
        else:
            outcome = f"http_{status}"
    if outcome == "ok":
        known.state, known.etag = ("present", etag) if op == "put" else ("absent", "")
    else:
        known.state, known.etag = "unknown", ""
    return _record(load_name, thread, op, t_send, t_done, status, headers, outcome,
                   seen.item_id, write_id, body.get("region", "") if op == "put" else "",
                   affinity, conflict=outcome.startswith("conflict_"), if_match=if_match, etag=etag,
                   seen_s=seen.t_send)


def _writer(load: TargetLoad, base_url: str, thread: int, items: list[str], owned: bool,
            first: float, settings: DrillSettings, run_id: str, clock: Clock, window: Window,
            rng: random.Random) -> None:
    """A read-modify-write client going round `items`: a GET in one slot, the write based on it
    in the next. `owned`: no other client writes these items (its reads are judged). When the
    window's generation changes, a fresh client takes over: a new session, and (owned items)
    new items, `<id>-g<generation>`, so nothing it expects depends on the old client's writes."""
    base_items = list(items)
    known = {i: Known() for i in items}
    turn = rng.randrange(len(items))
    seen: Record | None = None
    session = requests.Session()
    generation = window.generation
    try:
        for _ in _slots(clock, window, settings.rate, first, WRITER_JITTER, rng):
            if window.generation != generation:
                generation = window.generation
                session.close()
                session = requests.Session()
                seen = None
                if owned:
                    items = [f"{i}-g{generation}" for i in base_items]
                    known = {i: Known() for i in items}
            if seen is None:
                item_id = items[turn % len(items)]
                turn += 1
                record = _writer_get(session, load.name, base_url, thread, item_id,
                                     known[item_id] if owned else None, clock)
                if record.status == 404 or (record.status == 200 and record.etag):
                    seen = record
            else:
                record = _writer_write(session, load.name, base_url, thread, seen,
                                       known[seen.item_id], clock, rng, run_id,
                                       settings.delete_share)
                seen = None
            load.add(record)
    finally:
        session.close()


def _seed_shared(stack: Stack, items: list[str], run_id: str, timeout_s: float = 15.0) -> dict:
    """Writes the paused phase's shared items in region A and waits until every region holds
    that write: {item id: ETag}. Not part of any phase."""
    a = stack.regions[0]
    etags = {}
    with requests.Session() as session:
        for item_id in items:
            r = session.put(f"{stack.regional[a].url}/items/{item_id}", timeout=CLIENT_TIMEOUT_S,
                            json={"drill": run_id, "kind": "writer", "target": SPLIT,
                                  "writer": -1, "write": "seed"})
            r.raise_for_status()
            etags[item_id] = r.headers["etag"]
        deadline = time.monotonic() + timeout_s
        for item_id, etag in etags.items():
            for region in stack.regions[1:]:
                while True:
                    r = session.get(f"{stack.regional[region].url}/items/{item_id}", timeout=5)
                    if r.status_code == 200 and r.headers.get("etag") == etag:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"shared item {item_id} never reached {region}")
                    time.sleep(0.05)
    return etags


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
    if not model:
        try:
            model = next((line.split(":", 1)[1].strip()
                          for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("model name")), "")
        except OSError:
            pass
    return {"nproc": os.cpu_count(), "cpu": model, "load_avg": list(os.getloadavg()),
            "edge_build": _digest(procs.ROOT / "edge" / "build" / "index_bg.wasm"),
            "regional_build": _digest(Path(os.environ.get("TANDEM_REGIONAL_BIN", "")
                                           or procs.ROOT / "target" / "debug" / "regional"))}


def _digest(path: Path) -> str:
    """The first 12 hex digits of a file's SHA-256 ("" when missing): which build ran."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return ""


# --- partial faults (phases 7-9) ----------------------------------------------------------------

class Flapper:
    """Toggles a region's /health STATUS 404 / 200 every `period_s` on a fixed schedule (first
    404 at once), until stopped; then 200 again. Every change is a flip, kept with its time."""

    def __init__(self, stack: Stack, region: str, period_s: float, clock: Clock,
                 events: list[Event], phase: int, limit_s: float):
        self.stack, self.region, self.period_s, self.clock = stack, region, period_s, clock
        self.events, self.phase = events, phase
        self.flips: list[tuple[float, int]] = []
        self.failed: list[str] = []
        self.status = 200
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._limit = math.ceil(limit_s / period_s) + 2
        self._thread = threading.Thread(target=self._run, name="flapper", daemon=True)

    def _set(self, status: int) -> None:
        with self._lock:
            if status == self.status:
                return
            t = self.clock.now()
            try:
                self.stack.set_faults(self.region, status=status)
            except (requests.RequestException, RuntimeError) as e:
                self.failed.append(f"{t:.3f}: {e}")
                return
            self.status = status
            self.flips.append((round(t, 3), status))
            self.events.append(Event(self.phase, f"{self.region} STATUS={status} (flip)",
                                     round(t, 3), round(self.clock.now(), 3)))

    def start(self) -> None:
        self._set(404)  # the phase's start: the first flip
        self._thread.start()

    def _run(self) -> None:
        t0 = self.clock.now()
        for k in range(1, self._limit):
            if self._stop.wait(max(0.0, t0 + k * self.period_s - self.clock.now())):
                return
            self._set(404 if self.status == 200 else 200)

    def stop(self) -> None:
        """Stops flipping and leaves the region at 200 (the fault cleared)."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._set(200)


def _state_name(state) -> str:
    """An `/_edge/status` region state: "healthy", "drained", "trial_due", ... or "ejected"."""
    return state if isinstance(state, str) else next(iter(state), "?") if isinstance(state, dict) else "?"


class EdgePoller:
    """Polls `/_edge/status` every EDGE_POLL_S while running: (t, {region: state}, counters)."""

    def __init__(self, stack: Stack, clock: Clock):
        self.stack, self.clock = stack, clock
        self.samples: list[tuple[float, dict, dict]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, hard_end: float) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(hard_end,), name="edge-poller",
                                            daemon=True)
            self._thread.start()

    def _run(self, hard_end: float) -> None:
        for _ in range(math.ceil(hard_end / EDGE_POLL_S) + 1):
            if self._stop.wait(EDGE_POLL_S) or self.clock.now() > hard_end:
                return
            t = self.clock.now()
            report = _edge_status(self.stack)
            if "regions" in report:
                self.samples.append((round(t, 3), report["regions"], report["counters"]))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


#: HAProxy's `option httplog` line: client [accept date] frontend backend/server
#: TR/Tw/Tc/Tr/Ta status bytes cookies(2) termination-state ac/fc/bc/sc/rc ... "request".
HAPROXY_LINE = re.compile(
    r'^\S+ \[(?P<date>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\] \S+ (?P<backend>[^/\s]+)/'
    r'(?P<server>\S+) [-+\d/]+ (?P<status>-?\d+) \S+ \S+ \S+ \S+ '
    r'\d+/\d+/\d+/\d+/(?P<retries>\+?\d+) ')
HAPROXY_STATE = re.compile(r"Server (?P<backend>[^/\s]+)/(?P<server>\S+) is (?P<state>UP|DOWN)")


class LogTail:
    """Reads a process's output as it is written; each line gets the drill time it was read at
    (within 0.2 s)."""

    def __init__(self, proc: procs.Proc, clock: Clock):
        self.path, self.clock = proc.log_path, clock
        self.offset = proc.log_path.stat().st_size if proc.log_path.exists() else 0
        self.lines: list[tuple[float, str]] = []
        self._rest = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="haproxy-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(4 << 20)
        except OSError:
            return
        self.offset += len(chunk)
        text = self._rest + chunk.decode(errors="replace")
        *complete, self._rest = text.split("\n")
        t = round(self.clock.now(), 3)
        self.lines.extend((t, line) for line in complete if line)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._read()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._read()

    def times(self, text: str) -> list[float]:
        """When lines containing `text` were read."""
        return [t for t, line in self.lines if text in line]


class HaproxyTail(LogTail):
    """HAProxy's output: its request log and its server state changes."""

    def requests(self) -> list[dict]:
        """Every logged request: send time (drill clock, from the accept date), server, status,
        retries (`+` means redispatched: HAProxy counts a retry to another server as both)."""
        out = []
        for _, line in self.lines:
            m = HAPROXY_LINE.match(line)
            if not m:
                continue
            try:
                accepted = datetime.strptime(m["date"], "%d/%b/%Y:%H:%M:%S.%f").timestamp()
            except ValueError:
                continue
            out.append({"t_send": round(accepted - self.clock.wall0, 3), "server": m["server"],
                        "status": int(m["status"]), "retries": int(m["retries"].lstrip("+"))})
        return out

    def state_changes(self) -> list[tuple[float, str, str]]:
        """(read at, server, UP | DOWN) for each change (a line repeated on stderr and in the
        log counts once)."""
        state: dict[str, str] = {}
        out = []
        for t, line in self.lines:
            m = HAPROXY_STATE.search(line)
            if m and state.get(m["server"], "UP") != m["state"]:
                state[m["server"]] = m["state"]
                out.append((t, m["server"], m["state"]))
        return out


def _first_region(r: Record, regions: list[str]) -> str | None:
    """The region an edge request's first attempt went to, derived from its answer: the serving
    region when `x-edge-attempts` is 1; with two regions (each tried at most once), the other one
    when it is 2 or more (a retry or a hedge that won; a hedge the first region won anyway is
    counted wrongly: bounded by the hedge counter). None when not known (no answer, the edge's
    own 503, more than two regions)."""
    if r.served_by not in regions or not r.attempts.isdigit():
        return None
    if int(r.attempts) <= 1:
        return r.served_by
    if len(regions) == 2:
        return regions[1] if r.served_by == regions[0] else regions[0]
    return None


def first_attempts(records: list[Record], phase: dict, bad: str, regions: list[str],
                   settle_s: float, target: str) -> dict:
    """Share of first attempts sent to `bad` among requests sent after the phase's first
    `settle_s` and before its fault was cleared (`fault_end_s`). The edge: derived
    (`_first_region`); pinned-A: always A."""
    t0 = phase["start_s"] + settle_s
    t1 = phase.get("fault_end_s") or phase["end_s"]
    inside = [r for r in records if r.phase == phase["n"] and t0 <= r.t_send < t1]
    if target == PINNED:
        firsts = [regions[0]] * len(inside)
    else:
        firsts = [_first_region(r, regions) for r in inside]
    known = [(r, f) for r, f in zip(inside, firsts) if f is not None]
    to_bad = [r for r, f in known if f == bad]
    # The edge: a request with an affinity token goes to the region it names first while that
    # region is in service (read-your-writes after a write it served: a write that failed over
    # earns the other region's token); only requests without a token follow the ranking alone.
    by_token: dict[str, dict] = {}
    for r, f in known:
        slot = by_token.setdefault(r.affinity or "none", {"known": 0, "to_bad": 0})
        slot["known"] += 1
        slot["to_bad"] += f == bad
    return {
        "after_s": settle_s, "until_s": round(t1 - phase["start_s"], 3), "region": bad,
        "requests": len(inside), "known": len(known),
        "to_bad": len(to_bad),
        "share": round(len(to_bad) / len(known), 3) if known else None,
        "pinned_by_affinity": sum(r.affinity == bad for r in to_bad),
        "by_affinity_token": dict(sorted(by_token.items())),
    }


def attempts_per_request(records: list[Record], phase: dict, target: str) -> float | None:
    """The edge: the mean of `x-edge-attempts` (answers that carry it); pinned-A: 1."""
    inside = [r for r in records if r.phase == phase["n"]]
    if target == PINNED:
        return 1.0 if inside else None
    counts = [int(r.attempts) for r in inside if r.attempts.isdigit()]
    return round(sum(counts) / len(counts), 3) if counts else None


def haproxy_phase(logged: list[dict], phase: dict, bad: str, regions: list[str],
                  settle_s: float, changes: list[tuple[float, str, str]]) -> dict:
    """HAProxy's figures for a phase from its request log: attempts per request (1 + retries),
    first attempts to `bad` after `settle_s` (the serving server when there was no retry; with
    two servers, the other one after a retry, `option redispatch 1` sending every retry to
    another server), and how often it marked `bad` DOWN."""
    inside = [x for x in logged if phase["start_s"] <= x["t_send"] < phase["end_s"]]
    late = [x for x in inside if phase["start_s"] + settle_s <= x["t_send"]
            < (phase.get("fault_end_s") or phase["end_s"])]

    def first(x: dict) -> str | None:
        if x["retries"] == 0:
            return x["server"]
        if len(regions) == 2 and x["server"] in regions:
            return regions[1] if x["server"] == regions[0] else regions[0]
        return None

    known = [f for f in map(first, late) if f is not None]
    downs = [c for c in changes if c[1] == bad and c[2] == "DOWN"
             and phase["start_s"] <= c[0] < phase["end_s"]]
    return {
        "logged": len(inside),
        "attempts_per_request": (round(sum(1 + x["retries"] for x in inside) / len(inside), 3)
                                 if inside else None),
        "retried": sum(x["retries"] > 0 for x in inside),
        "first_attempts": {"after_s": settle_s, "region": bad, "known": len(known),
                           "to_bad": sum(f == bad for f in known),
                           "share": (round(sum(f == bad for f in known) / len(known), 3)
                                     if known else None)},
        "marked_down": len(downs),
    }


def edge_transitions(samples: list[tuple[float, dict, dict]], region: str, phase: dict) -> dict:
    """From the poll: how often the edge took `region` out of service during a phase (a change
    from any other state into drained, or into ejected), and the polls in each state."""
    inside = [(t, regions.get(region, "?")) for t, regions, _ in samples
              if phase["start_s"] <= t < phase["end_s"]]
    before = [regions.get(region, "?") for t, regions, _ in samples if t < phase["start_s"]]
    previous = _state_name(before[-1]) if before else "healthy"
    drains = ejections = 0
    states: dict[str, int] = {}
    for _, state in inside:
        name = _state_name(state)
        states[name] = states.get(name, 0) + 1
        if name != previous:
            drains += name == "drained"
            ejections += name == "ejected"
        previous = name
    return {"polls": len(inside), "every_s": EDGE_POLL_S, "drains": drains,
            "ejections": ejections, "states": states}


def counter_diff(edge_status: list[dict], n: int) -> dict | None:
    """The edge's counters over phase n (snapshots at its start and at the next phase's, or after
    the last phase); None when a snapshot is missing."""
    start = next((s for s in edge_status if s.get("before_phase") == n), None)
    end = next((s for s in edge_status if s.get("before_phase") == n + 1
                or s.get("after_phase") == n), None)
    if not start or not end or "counters" not in start or "counters" not in end:
        return None
    return {k: end["counters"][k] - start["counters"].get(k, 0)
            for k in end["counters"] if isinstance(end["counters"][k], (int, float))}


def dns_holding(timeline: dnsmodel.Timeline, preference: list[str], cfg: dnsmodel.DnsConfig,
                t0: float, t1: float, windows: list[tuple[float, float]]) -> list[dict]:
    """The DNS model's client per window: the share of the time it holds the preferred region
    (its first attempts go there: it has no other) and how often the modelled health check of
    that region changed its verdict, mean over the same grid of checker and resolver phases as
    `dnsmodel.evaluate`."""
    held_share = [[] for _ in windows]
    verdicts = [[] for _ in windows]
    a = preference[0]
    for i in range(dnsmodel.PHI_STEPS):
        phi = cfg.interval_s * i / dnsmodel.PHI_STEPS
        health = {r: dnsmodel._dns_health(timeline, r, cfg, phi, t0, t1) for r in preference}
        for w, (start, end) in enumerate(windows):
            verdicts[w].append(sum(start <= t < end for t, _ in health[a][1:]))
        for j in range(dnsmodel.PSI_STEPS):
            psi = cfg.ttl_s * j / dnsmodel.PSI_STEPS

            def answer(t: float) -> str:
                return next((r for r in preference if dnsmodel._at(health[r], t)), a)

            # The client's answer changes only when it resolves again: (from, held) pieces.
            pieces = [(t0, answer(t0))]
            t = t0 + psi
            while t < t1:
                pieces.append((t, answer(t)))
                t += cfg.ttl_s
            for w, (start, end) in enumerate(windows):
                holding = 0.0
                for k, (since, region) in enumerate(pieces):
                    until = pieces[k + 1][0] if k + 1 < len(pieces) else t1
                    if region == a:
                        holding += max(0.0, min(until, end) - max(since, start))
                held_share[w].append(holding / (end - start) if end > start else 0.0)
    return [{"holds_a_share": round(sum(h) / len(h), 3) if h else None,
             "health_verdict_changes_a": round(sum(v) / len(v), 2) if v else None}
            for h, v in zip(held_share, verdicts)]


# --- analysis ---------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def writer_summary(records: list[Record]) -> dict:
    """The writers' figures for some records (fates set by `writer_fates`)."""
    gets = [r for r in records if r.op == "get"]
    writes = [r for r in records if r.op in ("put", "delete")]
    kinds: dict[str, int] = {}
    for r in writes:
        if r.conflict:
            code = r.outcome.removeprefix("conflict_")
            kinds[code] = kinds.get(code, 0) + 1
    acked = [r for r in writes if r.ok]
    return {
        "reads": len(gets),
        "read_errors": sum(r.error for r in gets),
        "writes": len(writes),
        "acknowledged": len(acked),
        "acknowledged_by_op": {op: sum(r.op == op for r in acked) for op in ("put", "delete")},
        "kept": sum(r.fate == "kept" for r in acked),
        "lost_silently": sum(r.fate == "lost" for r in acked),
        "conflicts": sum(r.conflict for r in writes),
        "conflict_kinds": kinds,
        "write_errors": sum(r.error for r in writes),
    }


def phase_summary(records: list[Record], phase: dict, faulty: str | None,
                  fault_t: float | None) -> dict:
    inside = [r for r in records if r.phase == phase["n"]]
    ok = [r for r in inside if r.ok]
    kinds: dict[str, int] = {}
    for r in inside:
        if r.error:
            kinds[r.outcome] = kinds.get(r.outcome, 0) + 1
    share: dict[str, float] = {}
    for r in ok:
        share[r.served_by or "-"] = share.get(r.served_by or "-", 0) + 1
    out = {
        "requests": len(inside),
        "creates": sum(r.op == "create" for r in inside),
        "reads": sum(r.op == "read" for r in inside),
        "errors": sum(r.error for r in inside),
        "error_kinds": kinds,
        "p50_ms": _pct([r.latency_ms for r in inside], 0.50),
        "p99_ms": _pct([r.latency_ms for r in inside], 0.99),
        "share": {k: round(v / len(ok), 3) for k, v in sorted(share.items())} if ok else {},
        "retried": sum(1 for r in inside if r.attempts not in ("", "1")),
        "writers": writer_summary([r for r in inside if r.op in WRITER_OPS]),
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
                 f"{b} served; check: every create sent from then until phase {RESTORED} is "
                 f"stored with region={b}. Creates that {a} acknowledged between the flip and "
                 "convergence are counted, not failed: they were in flight or sent before "
                 "anything told the router (the edge learns the flip from the region's "
                 "x-region-status header)."),
        "flip_s": round(flip.t_start, 3),
        "converged_after_flip_s": (round(converged - flip.t_start, 3) if converged is not None
                                   else None),
        "creates_in_a_before_convergence": len(in_a_before),
        "creates_in_a_after_flip": len(in_a_after_flip),
        "creates_after_convergence": len(after_conv),
        "violations": len(wrong),
        "holds": converged is not None and not wrong,
    }


LOST_RULE = (
    "An acknowledged write W (a 2xx PUT, with the ETag it answered, or a 204 DELETE) is kept if "
    "(a) it is the final state of its item once replication caught up and every region agrees "
    "(the final ETag is W's; for a DELETE, the item is gone), or (b) a later write known to have "
    "been applied was sent with If-Match: W's ETag (it saw W): an acknowledged PUT or DELETE, or "
    "a PUT whose answer the client never got but whose own write id was read back later (by a "
    "GET or in the final state), or (c), for a DELETE, an acknowledged PUT answered 201 (it "
    "recreated the item) was based on a read answered 404 that was sent after W was "
    "acknowledged (it saw the item gone). Otherwise W is lost silently: overwritten or undone "
    "while every client was told it succeeded.")


def writer_fates(records: list[Record], final: dict[str, tuple[str, str]],
                 final_writes: dict[str, str] | None = None) -> None:
    """Sets `fate` (kept | lost) on every acknowledged writer write, by LOST_RULE. `final`:
    item id -> ("present", ETag) or ("absent", ""); `final_writes`: item id -> the write id the
    final item carries."""
    acked = [r for r in records if r.op in ("put", "delete") and r.ok]
    # Write ids read back: those PUTs were applied, whatever their client was told.
    read_back = {(r.item_id, r.marker) for r in records if r.op == "get" and r.status == 200}
    read_back |= {(i, w) for i, w in (final_writes or {}).items() if w}
    applied = acked + [r for r in records if r.op == "put" and not r.ok and r.marker
                       and (r.item_id, r.marker) in read_back]
    conditioned = {(r.item_id, r.if_match) for r in applied if r.if_match}
    recreates: dict[str, list[Record]] = {}
    for r in acked:
        if r.op == "put" and r.status == 201 and not r.if_match and r.seen_s is not None:
            recreates.setdefault(r.item_id, []).append(r)
    for w in acked:
        state, etag = final.get(w.item_id, ("absent", ""))
        if w.op == "put":
            kept = (state == "present" and etag == w.etag) or (w.item_id, w.etag) in conditioned
        else:
            kept = state == "absent" or any(rc.seen_s >= w.t_done
                                            for rc in recreates.get(w.item_id, []))
        w.fate = "kept" if kept else "lost"


def _scan(endpoint: str, region: str, table: str, run_id: str) -> dict[str, dict]:
    client = moto.client(endpoint, region)
    items: dict[str, dict] = {}
    kwargs = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            if item.get("drill", {}).get("S") == run_id:
                items[item["item_id"]["S"]] = {
                    "kind": item.get("kind", {}).get("S", "create"),
                    "marker": item.get("marker", {}).get("S", ""),
                    "write": item.get("write", {}).get("S", ""),
                    "updated_at": item.get("updated_at", {}).get("S", ""),
                    "region": item.get("region", {}).get("S", ""),
                    "version": item.get("version", {}).get("N", ""),
                    "target": item.get("target", {}).get("S", ""),
                }
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _same_write(x: dict, y: dict) -> bool:
    return all(x[k] == y[k] for k in ("updated_at", "region", "version"))


def data_checks(stack: Stack, loads: list[TargetLoad], run_id: str, timeout_s: float,
                setup_etags: dict[str, str] | None = None) -> dict:
    """Waits for replication, then: creates (duplicates, lost acknowledged creates,
    unacknowledged creates stored) and writers (every region's final state of each writer item,
    the fate of every acknowledged PUT and DELETE)."""
    setup_etags = setup_etags or {}
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
        converged = all(set(t) == set(first) and all(_same_write(t[i], first[i]) for i in t)
                        for t in tables.values())
        missing = [i for i in acked if any(i not in t for t in tables.values())]
        status = _safe(stack.replicator_status)
        idle = status.get("pending") == 0 and not status.get("paused")
        if (converged and not missing and idle) or time.monotonic() - started > timeout_s:
            break
        time.sleep(0.25)
    catch_up_s = round(time.monotonic() - started, 2)
    creates = {region: {i: t for i, t in table.items() if t["kind"] != "writer"}
               for region, table in tables.items()}

    by_marker: dict[str, set[str]] = {}
    for table in creates.values():
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
    stored = creates[stack.regions[0]]
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
        "acknowledged_creates": len(acked),
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
        "writers": writer_checks(stack, loads, tables, setup_etags),
    }


def writer_checks(stack: Stack, loads: list[TargetLoad], tables: dict[str, dict],
                  setup_etags: dict[str, str]) -> dict:
    """Reads every writer item from every region's own URL (after the catch-up), checks that
    every region agrees, and judges every acknowledged write by LOST_RULE."""
    records = [r for load in loads for r in load.records if r.op in WRITER_OPS]
    items = sorted({r.item_id for r in records} | set(setup_etags))

    def read_final(item_id: str) -> dict[str, tuple]:
        answers = {}
        for region in stack.regions:
            try:
                r = requests.get(f"{stack.regional[region].url}/items/{item_id}", timeout=10)
                body = r.json() if r.status_code == 200 else {}
                answers[region] = (r.status_code, r.headers.get("etag", ""), body.get("write", ""))
            except (requests.RequestException, ValueError) as e:
                answers[region] = (type(e).__name__, "", "")
        return answers

    with ThreadPoolExecutor(8) as pool:
        finals = dict(zip(items, pool.map(read_final, items)))
    disagree, final, final_write = {}, {}, {}
    for item_id, answers in finals.items():
        views = set(answers.values())
        # The moto scan (the tables themselves) must agree with what the regions answer.
        in_tables = {region: item_id in tables[region] for region in stack.regions}
        if len(views) != 1 or any(in_tables[reg] != (ans[0] == 200) for reg, ans in answers.items()):
            disagree[item_id] = {reg: f"{ans[0]} {ans[1]}".strip() for reg, ans in answers.items()}
        status, etag, write = answers[stack.regions[0]]
        final[item_id] = ("present", etag) if status == 200 else ("absent", "")
        final_write[item_id] = write
    writer_fates(records, final, final_write)

    acked = [r for r in records if r.op in ("put", "delete") and r.ok]
    put_etags = {(r.item_id, r.etag): r for r in acked if r.op == "put"}
    unacked_puts = {(r.item_id, r.marker): r for r in records
                    if r.op == "put" and not r.ok and r.marker}
    from_unacked, unexplained, mismatch = [], [], []
    for item_id, (state, etag) in final.items():
        if state != "present":
            continue
        w = put_etags.get((item_id, etag))
        if w is None:
            if setup_etags.get(item_id) == etag:
                continue
            u = unacked_puts.get((item_id, final_write[item_id]))
            if u is not None:  # a write its client saw fail (or never heard of), applied anyway
                from_unacked.append({"item": item_id, "target": u.target, "phase": u.phase,
                                     "outcome": u.outcome})
            else:
                unexplained.append(item_id)
        elif final_write[item_id] != w.marker:
            mismatch.append(item_id)
    lost = [{"target": r.target, "phase": r.phase, "item": r.item_id, "op": r.op,
             "etag": r.etag, "t_send": r.t_send, "served_by": r.served_by}
            for r in acked if r.fate == "lost"]
    return {
        "rule": LOST_RULE,
        "items": len(items),
        "present_at_end": sum(s == "present" for s, _ in final.values()),
        "absent_at_end": sum(s == "absent" for s, _ in final.values()),
        "regions_agree": not disagree,
        "disagreements": disagree,
        "checked_reads": len(items) * len(stack.regions),
        "acknowledged_writes": len(acked),
        "acknowledged_updates": sum(r.op == "put" and bool(r.if_match) for r in acked),
        "acknowledged_recreates": sum(r.op == "put" and not r.if_match for r in acked),
        "acknowledged_deletes": sum(r.op == "delete" for r in acked),
        "kept": sum(r.fate == "kept" for r in acked),
        "lost_silently": len(lost),
        "lost": lost,
        "final_from_unacknowledged_write": from_unacked,
        "final_write_differs_from_its_answer": mismatch,
        "final_from_no_known_write": unexplained,
    }


# --- the run ----------------------------------------------------------------------------------

#: Caught up after a pause: a marker written in each region reaches every other one this fast.
CAUGHT_UP_S = 1.0


def _write_sentinels(stack: Stack, run_id: str, deadline: float) -> dict[str, str] | None:
    """Writes one marker item in each region: {region: ETag} (None if a region would not take it
    before the deadline). Tagged apart from the run's items, so no data check counts them."""
    etags = {}
    for region in stack.regions:
        while region not in etags:
            try:
                r = requests.put(f"{stack.regional[region].url}/items/sentinel-{run_id}-{region}",
                                 json={"drill": f"sentinel-{run_id}"}, timeout=CLIENT_TIMEOUT_S)
                if r.status_code in (200, 201) and r.headers.get("etag"):
                    etags[region] = r.headers["etag"]
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)  # e.g. a 503 while moto is busy applying the held changes
    return etags


def _sentinels_arrived(stack: Stack, run_id: str, sentinels: dict[str, str],
                       deadline: float) -> bool:
    """Until every region's marker has reached every other region (False at the deadline)."""
    waiting = {(source, target) for source in sentinels for target in stack.regions
               if target != source}
    with requests.Session() as session:
        while True:
            for source, target in sorted(waiting):
                try:
                    r = session.get(f"{stack.regional[target].url}/items/sentinel-{run_id}-{source}",
                                    timeout=5)
                    if r.status_code == 200 and r.headers.get("etag") == sentinels[source]:
                        waiting.discard((source, target))
                except requests.RequestException:
                    pass
            if not waiting:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)  # gently: every read is work for moto, which is busy catching up


def _resume_and_catch_up(stack: Stack, run_id: str, timeout_s: float) -> dict:
    """Resumes replication and waits until it has caught up: a marker written in each region
    before the resume (after every change held during the pause) has reached every other region
    (the replicator applies each region's changes in stream order, so everything held before it
    has been applied), and then a marker written afresh arrives within CAUGHT_UP_S (the changes
    made during the catch-up, under load, are applied too)."""
    deadline = time.monotonic() + timeout_s
    sentinels = _write_sentinels(stack, run_id, deadline)
    started = time.monotonic()
    status = stack.resume_replication()
    rounds = []
    caught_up = False
    while sentinels is not None:
        t0 = time.monotonic()
        arrived = _sentinels_arrived(stack, run_id, sentinels, deadline)
        rounds.append(round(time.monotonic() - t0, 3))
        if not arrived:
            break
        if len(rounds) > 1 and rounds[-1] <= CAUGHT_UP_S:
            caught_up = True
            break
        sentinels = _write_sentinels(stack, run_id, deadline)
    return {"queued_at_resume": status.get("pending"), "caught_up": caught_up,
            "caught_up_after_resume_s": round(time.monotonic() - started, 3),
            "marker_rounds_s": rounds,
            "rule": ("caught up: a marker written in each region after the pinned writers "
                     "stopped, before the resume, has reached every other region (the replicator "
                     "applies each region's changes in stream order), and then a marker written "
                     f"afresh arrives within {CAUGHT_UP_S:g} s")}


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
        hp = None
        if settings.haproxy and haproxy.binary():
            hp = haproxy.start_haproxy({r: stack.regional[r].url for r in stack.regions}, out)
            started_procs.append(hp)
            loads.append(TargetLoad(HAPROXY, hp.url))
        else:
            haproxy_note = "haproxy not installed" if settings.haproxy else "disabled"
            log(f"drill: HAProxy column skipped ({haproxy_note})")
        for load in loads:
            _warm_up(load, run_id)
        split = TargetLoad(SPLIT, f"{stack.regional[a].url} | {stack.regional[b].url}")
        split_items = [f"w-{run_id}-{TARGET_CODES[SPLIT]}-{k}" for k in range(settings.split_items)]
        setup_etags = _seed_shared(stack, split_items, run_id)

        machine_at_start = _machine()
        clock = Clock()
        samples: list[tuple[float, str, int | None]] = []
        monitor = threading.Thread(target=_monitor, args=(stack, clock, stop_monitor, samples),
                                   name="monitor", daemon=True)
        monitor.start()
        lengths = settings.phase_lengths()
        planned_start = [sum(lengths[:i]) for i in range(len(lengths))]
        total = sum(lengths)
        window = Window(0.0, total, total + settings.catch_up_timeout_s + RECOVERY_WAIT_S
                        + CLIENT_TIMEOUT_S)
        hp_tail = HaproxyTail(hp, clock) if hp else None
        if hp_tail:
            hp_tail.start()
        edge_tail = LogTail(stack.edge, clock)
        edge_tail.start()
        poller = EdgePoller(stack, clock)
        creators = settings.concurrency - settings.writers
        for load in loads:
            for i in range(settings.concurrency):
                first = i / (settings.rate * settings.concurrency)
                thread_rng = random.Random(rng.random())
                if i < creators:
                    target, args = _client, (load, i, settings, run_id, clock, window, thread_rng)
                else:
                    code = TARGET_CODES[load.name]
                    items = [f"w-{run_id}-{code}{i}-{k}" for k in range(settings.writer_items)]
                    target = _writer
                    args = (load, load.base_url, i, items, True, first, settings, run_id, clock,
                            window, thread_rng)
                t = threading.Thread(target=target, name=f"{load.name}-{i}", daemon=True, args=args)
                threads.append(t)
                t.start()
        log(f"drill: load on {', '.join(l.name for l in loads)}: {settings.concurrency} clients "
            f"({settings.writers} writers) each at {settings.rate}/s, {settings.phase_s:g} s per "
            f"phase ({lengths[-1]:g} s for phases {A_SLOW}-{FLAPPING})")

        events: list[Event] = []
        faults: dict = {}  # what phases 7-9 set, for the summary
        flapper: Flapper | None = None
        edge_status: list[dict] = []
        split_threads: list[threading.Thread] = []
        pause: dict = {}

        def act(phase: int, action: str, fn) -> None:
            t_start = clock.now()
            fn()
            events.append(Event(phase, action, round(t_start, 3), round(clock.now(), 3)))
            log(f"  t={t_start:6.2f}s phase {phase}: {action}")

        def pause_and_split() -> None:
            pause["status_at_pause"] = stack.pause_replication()
            now = clock.now()
            split_window = Window(now, now + settings.phase_s, window.hard_end)
            for i, region in enumerate((a, b)):
                t = threading.Thread(
                    target=_writer, name=f"{SPLIT}-{i}", daemon=True,
                    args=(split, stack.regional[region].url, i, split_items, False,
                          now + i / (2 * settings.rate), settings, run_id, clock, split_window,
                          random.Random(rng.random())))
                split_threads.append(t)
                t.start()

        def resume_and_catch_up() -> None:
            for t in split_threads:
                t.join(timeout=CLIENT_TIMEOUT_S + 5)
            t_resume = clock.now()
            pause.update({"resumed_at_s": round(t_resume, 3),
                          **_resume_and_catch_up(stack, run_id, settings.catch_up_timeout_s)})

        def restore() -> None:
            stack.restart_region(a)
            stack.set_faults(a, status=200)
            stack.set_faults(b, latency_ms=0)
            stack.probe()

        def a_p50_ms() -> float:
            """pinned-A's p50 over its good answers of the phase before (A up, no fault): A's
            own latency as a client next to it sees it."""
            since = max((e.t_start for e in events if e.phase == RESTORED), default=0.0)
            with loads[1].lock:
                values = [r.latency_ms for r in loads[1].records if r.ok and r.t_send >= since]
            return _pct(values, 0.5) or 50.0

        def slow_a() -> None:
            faults["a_p50_before_ms"] = a_p50_ms()
            faults["latency_ms"] = max(1, round(faults["a_p50_before_ms"]))
            stack.set_faults(a, latency_ms=faults["latency_ms"])

        def gray_a() -> None:
            faults["gray"] = stack.set_faults(a, error_rate=settings.gray_error_rate,
                                              error_status=503, latency_ms=0)

        def flap_a() -> None:
            nonlocal flapper
            flapper = Flapper(stack, a, settings.flap_s, clock, events, FLAPPING,
                              lengths[FLAPPING - 1] + settings.catch_up_timeout_s)
            flapper.start()

        def clear(n: int) -> None:
            """Ends phase n's fault at its end (phases 7-9)."""
            if n == A_SLOW:
                act(n, f"{a} latency_ms=0 (cleared)", lambda: stack.set_faults(a, latency_ms=0))
            elif n == GRAY:
                act(n, f"{a} error_rate=0 (cleared)", lambda: stack.set_faults(a, error_rate=0))
            elif n == FLAPPING and flapper is not None:
                act(n, f"{a} flapping stopped, STATUS=200 (cleared); probe fired",
                    lambda: (flapper.stop(), stack.probe()))
                if n < len(PHASE_NAMES):
                    act(n, f"waited until the edge reports {a} in service", wait_in_service)

        def wait_in_service() -> None:
            """Until /_edge/status says A is healthy (its next probe read), at most
            RECOVERY_WAIT_S: the next phase's fresh clients then start where the ranking puts
            them, not where the drain left them."""
            started = clock.now()
            state = "?"
            for _ in range(int(RECOVERY_WAIT_S / 0.25) + 1):
                state = _state_name(_edge_status(stack).get("regions", {}).get(a, "?"))
                if state == "healthy" or clock.now() - started > RECOVERY_WAIT_S:
                    break
                time.sleep(0.25)
            faults["recovered"] = {"state": state, "after_s": round(clock.now() - started, 3)}

        actions = {
            HEALTHY: ("load starts, all healthy", lambda: None),
            PAUSED: (f"replication paused; writers pinned to {a} and to {b} write the same "
                     f"{settings.split_items} items", pause_and_split),
            DRAINED: (f"{a} STATUS=404 (admin route)", lambda: stack.set_faults(a, status=404)),
            KILLED: (f"{a} killed (SIGKILL)", lambda: stack.kill_region(a)),
            SLOW: (f"{b} latency_ms={settings.slow_ms}",
                   lambda: stack.set_faults(b, latency_ms=settings.slow_ms)),
            RESTORED: (f"{a} restarted on its port, STATUS 200; {b} latency 0; probe fired",
                       restore),
            A_SLOW: (f"fresh clients; {a} latency_ms = pinned-A's p50 of phase {RESTORED}",
                     slow_a),
            GRAY: (f"fresh clients; {a} error_rate={settings.gray_error_rate:g} (503 at once; "
                   "/health spared, 200)", gray_a),
            FLAPPING: (f"fresh clients; {a} STATUS toggles 404/200 every {settings.flap_s:g} s",
                       flap_a),
        }
        shift = 0.0  # the paused phase's catch-up moves every later phase
        for n in range(1, len(PHASE_NAMES) + 1):
            wait = planned_start[n - 1] + shift - clock.now()
            if wait > 0:
                time.sleep(wait)
            if n - 1 in FRESH_CLIENT_PHASES:
                planned = clock.now()
                clear(n - 1)
                shift += clock.now() - planned  # the recovery wait moves the later phases
                window.end = total + shift
            if n == PAUSED + 1:
                planned = clock.now()
                window.end = window.hard_end  # the load goes on while the regions catch up
                act(PAUSED, "pinned writers stopped; replication resumed; waited for the catch-up",
                    resume_and_catch_up)
                shift += clock.now() - planned
                window.end = total + shift
            if n > 1:
                edge_status.append({"before_phase": n, **_edge_status(stack)})
            if n in FRESH_CLIENT_PHASES:
                poller.start(window.hard_end)
                window.generation += 1  # the clients' next requests come from fresh clients
            act(n, *actions[n])
            if n == A_SLOW:
                log(f"    {a}: pinned-A p50 {faults['a_p50_before_ms']} ms in phase {RESTORED}; "
                    f"latency_ms={faults['latency_ms']}")
        wait = total + shift - clock.now()
        if wait > 0:
            time.sleep(wait)
        clear(len(PHASE_NAMES))  # the last phase's fault ends with the load
        for t in threads + split_threads:
            t.join(timeout=max(1.0, window.end - clock.now()) + CLIENT_TIMEOUT_S + 5)
        end_s = clock.now()
        # wrangler dev reloads the Worker when edge/build changes (a rebuild during the run): the
        # isolate, and all it knew about the regions, starts over. Counted, so a reader knows.
        edge_reloads = stack.edge.log().count("Reloading local server")
        edge_status.append({"after_phase": len(PHASE_NAMES), **_edge_status(stack)})
        poller.stop()
        edge_tail.stop()
        if hp_tail:
            hp_tail.stop()
        stop_monitor.set()
        monitor.join(timeout=5)
        partial = {
            "faults": faults,
            "flips": flapper.flips if flapper else [],
            "flip_errors": flapper.failed if flapper else [],
            "edge_polls": poller.samples,
            "haproxy_requests": hp_tail.requests() if hp_tail else [],
            "haproxy_state_changes": hp_tail.state_changes() if hp_tail else [],
            "edge_reloads_at": edge_tail.times("Reloading local server"),
            "machine_at_start": machine_at_start,
        }

        all_loads = loads + [split]
        phases = phase_table(events, end_s)
        assign_phases(all_loads, phases)
        log("drill: load done; waiting for replication, then checking the data")
        checks = data_checks(stack, all_loads, run_id, settings.catch_up_timeout_s, setup_etags)
        summary = analyse(settings, run_id, clock, all_loads, events, samples, end_s, checks,
                          edge_status, haproxy_note, stack, edge_reloads, pause, partial)
        summary["pids"] = stack.pids() + [p.pid for p in started_procs]
        write_outputs(out, summary, all_loads, samples)
        log(summary["table"])
        log(f"drill: outputs in {out}")
        return summary
    finally:
        stop_monitor.set()
        for proc in reversed(started_procs):
            proc.stop()
        stack.stop()


def _edge_status(stack: Stack) -> dict:
    """The edge's /_edge/status, reduced to each region's state and the counters (through
    `Stack.edge_status()` when the stack has it: it knows how to authenticate)."""
    try:
        fetch = getattr(stack, "edge_status", None)
        if callable(fetch):
            report = fetch()
            if hasattr(report, "json"):
                report = report.json()
        else:
            r = requests.get(stack.edge.url + "/_edge/status", timeout=5)
            if r.status_code != 200:
                return {"error": f"/_edge/status answered {r.status_code}"}
            report = r.json()
        return {"regions": {r["name"]: r["state"] for r in report["regions"]},
                "counters": report["counters"]}
    except (requests.RequestException, ValueError, KeyError, TypeError) as e:
        return {"error": str(e)}


def phase_table(events: list[Event], end_s: float) -> list[dict]:
    """Each phase from its first event to the next phase's; phases 7-9 also say when their
    fault was cleared (`fault_end_s`)."""
    starts: dict[int, float] = {}
    cleared: dict[int, float] = {}
    for e in events:
        starts[e.phase] = min(starts.get(e.phase, e.t_start), e.t_start)
        if "(cleared)" in e.action:
            cleared[e.phase] = min(cleared.get(e.phase, e.t_start), e.t_start)
    ordered = [starts[n] for n in range(1, len(PHASE_NAMES) + 1)]
    return [{"n": i + 1, "name": PHASE_NAMES[i], "start_s": ordered[i],
             "end_s": ordered[i + 1] if i + 1 < len(ordered) else end_s,
             **({"replication": "paused"} if i + 1 == PAUSED else {}),
             **({"fault_end_s": cleared[i + 1]} if i + 1 in cleared else {})}
            for i in range(len(PHASE_NAMES))]


def assign_phases(loads: list[TargetLoad], phases: list[dict]) -> None:
    """Every request belongs to the phase in which it was sent."""
    for load in loads:
        for r in load.records:
            r.phase = 1
            for p in phases:
                if r.t_send >= p["start_s"]:
                    r.phase = p["n"]


def analyse(settings: DrillSettings, run_id: str, clock: Clock, loads: list[TargetLoad],
            events: list[Event], samples, end_s: float, checks: dict, edge_status: list[dict],
            haproxy_note: str | None, stack: Stack, edge_reloads: int = 0,
            pause: dict | None = None, partial: dict | None = None) -> dict:
    a, b = settings.a, settings.b
    phases = phase_table(events, end_s)
    assign_phases(loads, phases)
    first_event: dict[int, Event] = {}
    for e in events:
        first_event.setdefault(e.phase, e)
    # Phase 5's slow region is the only one up, so it serves to the end: nothing to time there.
    faulty = {DRAINED: (a, first_event[DRAINED].t_start), KILLED: (a, first_event[KILLED].t_start)}
    targets = {}
    partial = partial or {}
    regions = [a, b]
    hp_logged = partial.get("haproxy_requests", [])
    hp_changes = [tuple(c) for c in partial.get("haproxy_state_changes", [])]
    for load in loads:
        per_phase = [phase_summary(load.records, p, *faulty.get(p["n"], (None, None)))
                     for p in phases]
        for p, s in zip(phases, per_phase):
            if load.name in (EDGE, PINNED):
                s["attempts_per_request"] = attempts_per_request(load.records, p, load.name)
            elif load.name == HAPROXY and hp_logged:
                s["haproxy_log"] = haproxy_phase(hp_logged, p, a, regions, settings.settle_s,
                                                 hp_changes)
                s["attempts_per_request"] = s["haproxy_log"]["attempts_per_request"]
            if p["n"] not in FRESH_CLIENT_PHASES:
                continue
            if load.name in (EDGE, PINNED):
                s["first_attempts"] = first_attempts(load.records, p, a, regions,
                                                     settings.settle_s, load.name)
            elif "haproxy_log" in s:
                s["first_attempts"] = s["haproxy_log"]["first_attempts"]
        targets[load.name] = {
            "url": load.base_url,
            "phases": per_phase,
            "writers": writer_summary([r for r in load.records if r.op in WRITER_OPS]),
        }
        if load.name != SPLIT:
            targets[load.name]["seed_check"] = seed_check(
                load.records, a, b, first_event[DRAINED], first_event[RESTORED].t_start)
    timeline = dnsmodel.Timeline(samples)
    windows = [(p["start_s"], p["end_s"]) for p in phases]
    request_times = [r.t_send for r in loads[0].records]
    dns = {cfg.name: dnsmodel.evaluate(timeline, [a, b], cfg, 0.0, end_s, windows, request_times)
           for cfg in dnsmodel.CONFIGS}
    # Phases 7-9: where the modelled DNS client goes (its first and only attempt), and, in the
    # gray phase, the errors it would see: while the client holds A it fails as often as
    # pinned-A did (no retry). (Where it holds comes from the recorded health timeline, which in
    # the gray phase has A's /health failing too, as regional's error injection covers it.)
    pinned_phases = targets[PINNED]["phases"] if PINNED in targets else []
    for cfg in dnsmodel.CONFIGS:
        holding = dns_holding(timeline, [a, b], cfg, 0.0, end_s, windows)
        for n, (w, h) in enumerate(zip(dns[cfg.name]["windows"], holding), start=1):
            if n not in FRESH_CLIENT_PHASES:
                continue
            w.update(h)
            if n == GRAY and pinned_phases and pinned_phases[n - 1]["requests"]:
                pin = pinned_phases[n - 1]
                w["gray_failed_requests_est"] = round(
                    (h["holds_a_share"] or 0) * pin["errors"] / pin["requests"] * w["requests"], 1)
    edge_polls = partial.get("edge_polls", [])
    flips = [tuple(f) for f in partial.get("flips", [])]
    partial_faults = {
        "rule": (f"phases {A_SLOW}-{FLAPPING} start with fresh clients (new sessions, new writer "
                 f"items); first attempts are counted from {settings.settle_s:g} s after a phase's "
                 "start. The edge's first attempt: x-served-by when x-edge-attempts is 1, else "
                 "the other region (two regions, each tried at most once; a hedge won by the "
                 "first region is counted wrongly, at most the phase's hedge counter). HAProxy's: "
                 "from its request log, the server when it logged no retry, else the other one "
                 "(option redispatch 1). Drains and ejections: transitions of the region's "
                 f"state in /_edge/status polled every {EDGE_POLL_S:g} s, and the ejection "
                 "counter; HAProxy: its 'is DOWN' messages."),
        "faults": partial.get("faults", {}),
        "flip_errors": partial.get("flip_errors", []),
        "phases": {},
    }
    for p in phases:
        if p["n"] not in FRESH_CLIENT_PHASES:
            continue
        partial_faults["phases"][p["n"]] = {
            "flips": sum(p["start_s"] <= t < p["end_s"] for t, _ in flips),
            "edge": edge_transitions(edge_polls, a, p),
            "edge_counters": counter_diff(edge_status, p["n"]),
            "haproxy_marked_down": sum(1 for t, server, state in hp_changes
                                       if server == a and state == "DOWN"
                                       and p["start_s"] <= t < p["end_s"]),
            "dns_health_verdict_changes": {
                name: d["windows"][p["n"] - 1].get("health_verdict_changes_a")
                for name, d in dns.items()},
        }
    pause = dict(pause or {})
    pause.pop("status_at_pause", None)
    summary = {
        "run_id": run_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.wall0)),
        "machine": {**_machine(), "at_start": partial.get("machine_at_start")},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "regions": {"a": a, "b": b},
        "phases": phases,
        "events": [asdict(e) for e in events],
        "targets": targets,
        "pause": pause,
        "haproxy": haproxy_note or "measured",
        "dns_model": {name: {k: v for k, v in d.items() if k != "failing_share"}
                      for name, d in dns.items()},
        "data_checks": checks,
        "edge_status": edge_status,
        "partial_faults": partial_faults,
        "edge_reloads": edge_reloads,
        # When (drill time, within 0.2 s) and in which phase: a reload empties the isolate.
        "edge_reloads_at": [{"t": t, "phase": next((p["n"] for p in reversed(phases)
                                                    if t >= p["start_s"]), 1)}
                            for t in partial.get("edge_reloads_at", [])],
        "replicator": _safe(stack.replicator_status),
    }
    summary["table"] = table(summary)
    summary["_edge_polls"] = edge_polls
    summary["_chart"] = chart.render(
        end_s, phases, [l.name for l in loads], [a, b],
        [asdict(r) for l in loads for r in l.records],
        {name: d["failing_share"] for name, d in dns.items()}, dnsmodel.STEP_S,
        f"tandem drill {run_id}: {settings.concurrency} clients ({settings.writers} writers) x "
        f"{settings.rate}/s per target, {settings.phase_s:g} s per phase")
    return summary


def _safe(fn):
    try:
        return fn()
    except (requests.RequestException, ValueError) as e:
        return {"error": str(e)}


def table(summary: dict) -> str:
    """The tables: client-visible errors per phase and p50/p99, per target and DNS model; the
    writers' acknowledged / lost / conflicts / errors; the seed check and the data checks."""
    phases = summary["phases"]
    width = 24
    head = f"{'':24}" + "".join(f"{p['n']}: {p['name']}"[:width - 1].ljust(width) for p in phases)
    lines = ["client-visible errors/requests, p50/p99 ms (measured)", head]
    for name, t in summary["targets"].items():
        cells = [f"{s['errors']}/{s['requests']} {s['p50_ms']}/{s['p99_ms']}" if s["requests"]
                 else "-" for s in t["phases"]]
        lines.append(name.ljust(24) + "".join(c.ljust(width) for c in cells))
    for name, t in summary["targets"].items():
        kinds = [f"{p['n']}: " + ", ".join(f"{k} {v}" for k, v in s["error_kinds"].items())
                 for p, s in zip(phases, t["phases"]) if s["error_kinds"]]
        if kinds:
            lines.append(f"  {name} errors by kind: " + "; ".join(kinds))
    lines.append("writers: acknowledged writes / lost silently / conflicts reported (412, 409, "
                 "404 to DELETE) / write errors")
    lines.append(head)
    for name, t in summary["targets"].items():
        cells = [f"{w['acknowledged']}/{w['lost_silently']}/{w['conflicts']}/{w['write_errors']}"
                 if w["writes"] else "-" for w in (s["writers"] for s in t["phases"])]
        lines.append(name.ljust(24) + "".join(c.ljust(width) for c in cells))
    lines.append("DNS failover model: error seconds mean (worst), est. failed requests of the edge's load")
    for name, d in summary["dns_model"].items():
        cells = [f"{w['error_s_mean']:g}s ({w['error_s_worst']:g}) ~{w['failed_requests_mean']:g}"
                 for w in d["windows"]]
        lines.append(name[:23].ljust(24) + "".join(c.ljust(width) for c in cells))
    lines.append("seed check (creates sent after convergence stored in B; creates in A after flip):")
    for name, t in summary["targets"].items():
        s = t.get("seed_check")
        if not s:
            continue
        lines.append(f"  {name}: {'holds' if s['holds'] else 'FAILS'}; converged "
                     f"{s['converged_after_flip_s']} s after the flip; "
                     f"{s['creates_in_a_before_convergence']} creates in A before convergence, "
                     f"{s['violations']} after; {s['creates_in_a_after_flip']} in A after the flip")
    p = summary.get("pause") or {}
    if p:
        lines.append(f"pause: {p.get('queued_at_resume')} changes held at resume, applied "
                     f"{'in' if p.get('caught_up') else 'NOT within'} "
                     f"{p.get('caught_up_after_resume_s')} s")
    c = summary["data_checks"]
    lines.append(f"data: {c['acknowledged_creates']} acknowledged creates, replication caught up "
                 f"{c['replication_caught_up']} in {c['catch_up_s']} s, duplicates "
                 f"{len(c['duplicate_markers']) + len(c['duplicate_acks'])}, lost "
                 f"{len(c['lost_writes'])}, unacknowledged but stored "
                 f"{c['unacknowledged_but_stored'] or 0}")
    w = c["writers"]
    lines.append(f"writers' data: {w['items']} items read from every region: regions agree "
                 f"{w['regions_agree']}, {w['present_at_end']} present, {w['absent_at_end']} "
                 f"gone; {w['acknowledged_writes']} acknowledged writes ({w['acknowledged_updates']}"
                 f" updates, {w['acknowledged_recreates']} creates/recreates, "
                 f"{w['acknowledged_deletes']} deletes): {w['kept']} kept, {w['lost_silently']} "
                 f"lost silently; final state from an unacknowledged write: "
                 f"{len(w['final_from_unacknowledged_write'])}")
    lines.extend(partial_table(summary))
    if summary.get("edge_reloads"):
        at = ", ".join(f"t={r['t']:.1f} s (phase {r['phase']})"
                       for r in summary.get("edge_reloads_at", []))
        lines.append(f"NOTE: the Worker was reloaded {summary['edge_reloads']} time(s) during the "
                     f"run (edge/build changed): each reload starts a fresh isolate"
                     + (f"; at {at}" if at else ""))
    lag = summary["replicator"].get("lag_ms", {})
    if lag.get("count"):
        lines.append(f"replication lag (stream record to applied, the pause's held records "
                     f"included): p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms "
                     f"over {lag['count']} records")
    return "\n".join(lines)


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def partial_table(summary: dict) -> list[str]:
    """Phases 7-9 per target: errors, attempts per request, first attempts to A after the
    settle time, p50/p99; flips against drains and ejections."""
    pf = summary.get("partial_faults") or {}
    a = summary["regions"]["a"]
    lines = []
    for p in summary["phases"]:
        n = p["n"]
        if n not in FRESH_CLIENT_PHASES:
            continue
        info = pf.get("phases", {}).get(n) or pf.get("phases", {}).get(str(n)) or {}
        lines.append(f"phase {n} {p['name']} ({p['end_s'] - p['start_s']:.1f} s): errors/requests, "
                     f"attempts per request, first attempts to {a} from "
                     f"{summary['settings']['settle_s']:g} s until the fault was cleared"
                     + (f" ({p['fault_end_s'] - p['start_s']:.1f} s)" if "fault_end_s" in p else "")
                     + ", p50/p99 ms")
        for name, t in summary["targets"].items():
            if name == SPLIT:
                continue
            s = t["phases"][n - 1]
            fa = s.get("first_attempts") or {}
            apr = s.get("attempts_per_request")
            tokens = ", ".join(f"token {k}: {v['to_bad']}/{v['known']}"
                               for k, v in (fa.get("by_affinity_token") or {}).items())
            first = (f"{_share(fa.get('share'))} ({fa.get('to_bad')}/{fa.get('known')}"
                     + (f"; {tokens}" if name == EDGE else "") + ")" if fa else "n/a")
            lines.append(f"  {name:12} {s['errors']}/{s['requests']}  attempts "
                         f"{'n/a' if apr is None else f'{apr:.3f}'}  first to {a} {first}  "
                         f"{s['p50_ms']}/{s['p99_ms']}")
        for name, d in summary["dns_model"].items():
            w = d["windows"][n - 1]
            extra = (f", est. failed ~{w['gray_failed_requests_est']:g} of {w['requests']} "
                     f"(pinned-A's error share while it holds {a})"
                     if "gray_failed_requests_est" in w else "")
            lines.append(f"  {name[:26]:26} holds {a} {_share(w.get('holds_a_share'))} of the "
                         f"phase, attempts 1, health verdict changes "
                         f"{w.get('health_verdict_changes_a')}{extra}")
        edge = info.get("edge") or {}
        counters = info.get("edge_counters") or {}
        lines.append(f"  flips {info.get('flips', 0)}; edge took {a} out: drained "
                     f"{edge.get('drains', 'n/a')}, ejected {edge.get('ejections', 'n/a')} "
                     f"(poll every {edge.get('every_s', EDGE_POLL_S):g} s, states "
                     f"{edge.get('states', {})}); edge counters: ejections "
                     f"{counters.get('ejections', 'n/a')}, retries {counters.get('retries', 'n/a')}"
                     f", hedges {counters.get('hedges', 'n/a')}, least_bad "
                     f"{counters.get('least_bad', 'n/a')}; haproxy marked {a} DOWN "
                     f"{info.get('haproxy_marked_down', 'n/a')} times")
    if pf.get("faults"):
        lines.append(f"phase {A_SLOW}: {a} latency_ms={pf['faults'].get('latency_ms')} (pinned-A "
                     f"p50 {pf['faults'].get('a_p50_before_ms')} ms in phase {RESTORED})")
        rec = pf["faults"].get("recovered")
        if rec:
            lines.append(f"after phase {FLAPPING}: the edge reported {a} {rec['state']} "
                         f"{rec['after_s']} s after the clearing and the probe")
    if pf.get("flip_errors"):
        lines.append(f"flips that failed: {pf['flip_errors']}")
    return lines


def write_outputs(out: Path, summary: dict, loads: list[TargetLoad], samples) -> None:
    svg = summary.pop("_chart")
    polls = summary.pop("_edge_polls", [])
    regions = list(summary["regions"].values())
    with open(out / "edge-status.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t"] + [f"state_{r}" for r in regions] + ["ejections", "retries", "hedges",
                                                               "least_bad"])
        for t, states, counters in polls:
            w.writerow([t] + [_state_name(states.get(r, "?")) for r in regions]
                       + [counters.get(k, "") for k in ("ejections", "retries", "hedges",
                                                        "least_bad")])
    (out / "chart.svg").write_text(svg)
    (out / "table.txt").write_text(summary["table"] + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for p in summary["phases"]:
        n = p["n"]
        per_phase = {
            "phase": p,
            "events": [e for e in summary["events"] if e["phase"] == n],
            "targets": {name: t["phases"][n - 1] for name, t in summary["targets"].items()},
            "lost_silently": [w for w in summary["data_checks"]["writers"]["lost"]
                              if w["phase"] == n],
            "dns_model": {name: d["windows"][n - 1] for name, d in summary["dns_model"].items()},
        }
        if n == PAUSED:
            per_phase["pause"] = summary.get("pause", {})
        if n in FRESH_CLIENT_PHASES:
            per_phase["partial_fault"] = summary["partial_faults"]["phases"].get(n, {})
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
    p.add_argument("--write-share", type=float, default=d.write_share,
                   help="share of creates in a creator/reader's requests (%(default)s)")
    p.add_argument("--read-min-age-s", type=float, default=d.read_min_age_s,
                   help="reads pick ids created at least this long ago (%(default)s)")
    p.add_argument("--writers", type=int, default=d.writers,
                   help="of the clients per target, how many are writers (%(default)s)")
    p.add_argument("--writer-items", type=int, default=d.writer_items,
                   help="items each writer owns (%(default)s)")
    p.add_argument("--delete-share", type=float, default=d.delete_share,
                   help="share of a writer's writes to a found item that are deletes (%(default)s)")
    p.add_argument("--split-items", type=int, default=d.split_items,
                   help="items the two pinned writers of the paused phase share (%(default)s)")
    p.add_argument("--slow-ms", type=int, default=d.slow_ms, help="B's latency in phase 5 (%(default)s)")
    p.add_argument("--fault-phase-s", type=float, default=None,
                   help="seconds for each of phases 7-9 (A slow, gray, flapping; default --phase-s)")
    p.add_argument("--gray-error-rate", type=float, default=d.gray_error_rate,
                   help="share of A's requests answered 503 in phase 8 (%(default)s)")
    p.add_argument("--flap-s", type=float, default=d.flap_s,
                   help="A's /health toggles 404/200 this often in phase 9 (%(default)s s)")
    p.add_argument("--settle-s", type=float, default=d.settle_s,
                   help="first attempts to A are counted from this long into phases 7-9 "
                        "(%(default)s s)")
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
    if not (0 <= args.writers < args.concurrency and 1 <= args.writer_items <= 100
            and 1 <= args.split_items <= 100 and 0 <= args.delete_share <= 1):
        p.error("writers 0..concurrency-1, writer-items and split-items 1..100, delete-share 0..1")
    if not ((args.fault_phase_s is None or 1 <= args.fault_phase_s <= 600)
            and 0 < args.gray_error_rate <= 1 and 0.2 <= args.flap_s <= 60
            and 0 <= args.settle_s < (args.fault_phase_s or args.phase_s)):
        p.error("fault-phase-s 1..600, gray-error-rate (0, 1], flap-s 0.2..60, settle-s below "
                "the phase length")
    settings = DrillSettings(
        phase_s=args.phase_s, concurrency=args.concurrency, rate=args.rate,
        write_share=args.write_share, read_min_age_s=args.read_min_age_s, writers=args.writers,
        writer_items=args.writer_items, delete_share=args.delete_share,
        split_items=args.split_items, slow_ms=args.slow_ms, fault_phase_s=args.fault_phase_s,
        gray_error_rate=args.gray_error_rate, flap_s=args.flap_s, settle_s=args.settle_s,
        regions=regions,
        replication_lag_ms=args.replication_lag_ms, haproxy=not args.no_haproxy, out=args.out,
        seed=args.seed)
    run(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
