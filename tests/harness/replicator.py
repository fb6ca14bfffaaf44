"""Global-table replication for moto, which accepts replica settings and ignores them.

Reads every region's DynamoDB stream (the real Streams API: list_streams, describe_stream,
get_shard_iterator, get_records) and applies each INSERT, MODIFY and REMOVE to the table of every
other region, the way DynamoDB global tables do:

- **Last writer wins, deletes included.** Every write has a version `(time, region)`: a put's is
  the item's `updated_at` (RFC 3339 UTC with milliseconds, so text order is time order) and
  `region`; a delete's is the time the delete happened (below) and the region it happened in.
  The newer version wins in every region; a tie goes to the higher region name, and between a put
  and a delete from the same region in the same millisecond, to the put (that region's own stream
  put them in that order, and a delete is always timed after the item it removed). Every replica
  so settles on the same outcome whatever order the copies arrive in. Puts are conditional
  writes, so a copy never overwrites a newer item that reached the target first.
- **When a delete happened:** the REMOVE record's `ApproximateCreationDateTime`. moto 5.2.5 sets
  it (`StreamRecord`, `utcnow()`) at the moment it applies the delete and serialises it as epoch
  seconds to the millisecond (the same precision as `updated_at`, on the same host clock as the
  regionals that stamp `updated_at`), so it is the delete's own time, not the replicator's (the
  time a record is read is late by the poll interval, the lag and any pause, and would let a
  delete beat writes made after it). If that time is not after the deleted item's `updated_at`
  (same millisecond), the delete is timed 1 ms after the item: it certainly came after what it
  removed. (Real DynamoDB Streams round this field to the second; against AWS a tombstone's time
  would have to come from the writer. The regional needs no change for moto.)
- **Tombstones:** each delete is remembered per region as (region, item id) → its version, in
  memory: a replicated put older than the target's tombstone is refused; a replicated delete
  removes the target's copy only if that copy is older, and records the tombstone there either
  way; a region's own delete records a tombstone for that region as soon as its REMOVE is read
  (before any lag or pause), so an older put arriving later cannot bring the item back; a
  recreate newer than the tombstone wins. Tombstones are kept 24 h (as DynamoDB keeps its
  replication tombstones) and at most 100,000, the oldest dropped first; a copy older than 24 h
  that arrives later could resurrect an item, as it could in DynamoDB; a restart forgets them.
- **Repairs:** if a region's own table ends up older than its tombstone (a replicated put landed
  between a local delete and the replicator reading it, or a local write was stamped before a
  replicated delete that landed first), the replicator deletes that stale copy there too, with
  the same condition, when it next handles a record of that item from that region.
- **No echo:** every write the replicator makes is remembered as (region, item id, image); the
  stream record that write produces in the target region is recognised by its image and dropped
  instead of being sent back (a delete by the image `ALL_OLD` returned, which moto's REMOVE
  carries as its OldImage). An echoed delete would be timed when the replicator made it, too late.
- An optional **lag** holds every record back this long before it is applied (per source, in
  stream order), to make replication lag visible in a drill.
- **Pause** (as AWS FIS's `aws:dynamodb:global-table-pause-replication`): `pause()` / `resume()`,
  or `POST /pause` / `POST /resume` on the status port. While paused, records are still read and
  queued but not applied; on resume they are applied in the order read (each source's in stream
  order).

It must never write to a region's table anything that did not come from a region's stream, and
never drop a record: a failed write is retried until it succeeds or the replicator stops.
Items of every kind replicate the same way, including the regional's idempotency key records
(ids starting with "\\u0001idem:").

Run in-process (`Replicator(...).run(stop_event)`) or as a process:
`python -m tests.harness.replicator --endpoint URL --table T --regions a,b [--lag-ms N] [--port P]`;
with `--port`, `GET /status` answers with counters (and `GET /health` with 200), and
`POST /pause` and `POST /resume` answer with the status.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.exceptions import BotoCoreError, ClientError

try:  # as part of the harness package, or as `python -m tests.harness.replicator`
    from . import moto
except ImportError:  # pragma: no cover
    from harness import moto  # type: ignore[no-redef]

log = logging.getLogger("replicator")

#: Poll interval right after records arrived, and when a stream was quiet.
BUSY_POLL_S = 0.05
IDLE_POLL_S = 0.1
#: How often shards are listed again (real streams split shards over time; moto keeps one).
DESCRIBE_EVERY_S = 5.0
#: Lag samples kept for the status page (the first ones; enough for any drill).
MAX_LAG_SAMPLES = 200_000
#: Wait before retrying a write that failed for a reason other than the LWW condition.
RETRY_AFTER_S = 0.2

#: How long and how many tombstones are kept (DynamoDB keeps its own for about 24 h).
TOMBSTONE_TTL_S = 24 * 3600.0
MAX_TOMBSTONES = 100_000

# Condition of a replicated put: the target has no item, or an older one, or an equally old one
# from a region that sorts lower (the tie-break every replica applies the same way).
PUT_CONDITION = "attribute_not_exists(#id) OR #u < :u OR (#u = :u AND #r < :r)"
# Condition of a delete: the target's item is older than the delete (the same tie-break; an item
# of the delete's own region from the same millisecond is a recreate, and is kept).
DELETE_CONDITION = ("attribute_exists(#id) AND (attribute_not_exists(#u) OR #u < :u"
                    " OR (#u = :u AND (attribute_not_exists(#r) OR #r < :r)))")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)

#: A write's version: (time as RFC 3339 text with milliseconds, region).
Version = tuple[str, str]


def _text(image: dict, name: str) -> str:
    value = image.get(name, {})
    return value.get("S", "") if isinstance(value, dict) else ""


def _fingerprint(image: dict) -> str:
    """A stable text form of an item image (what the replicator wrote, to recognise its echo)."""
    return json.dumps(image, sort_keys=True, separators=(",", ":"))


def _to_ms(text: str) -> int | None:
    """Milliseconds since the epoch of an `updated_at` (None if it is not RFC 3339)."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return (at - _EPOCH) // _MS


def _ms_text(ms: int) -> str:
    """Milliseconds since the epoch as the regional writes `updated_at`."""
    return (_EPOCH + ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def put_version(image: dict) -> Version:
    return (_text(image, "updated_at"), _text(image, "region"))


def delete_version(record: dict, region: str) -> tuple[Version, bool]:
    """The version of a REMOVE record of `region`'s stream: the time moto applied the delete (its
    `ApproximateCreationDateTime`, to the millisecond), and at least 1 ms after the deleted item's
    `updated_at`. Second value: False when the record had no creation time (never with moto),
    so the time is the reading time."""
    data = record["dynamodb"]
    created = data.get("ApproximateCreationDateTime")
    known = isinstance(created, datetime) or isinstance(created, (int, float))
    if isinstance(created, datetime):
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        # Rounded, not floored: moto sends whole milliseconds, a float may parse a hair below.
        ms = (created - _EPOCH + _MS / 2) // _MS
    elif isinstance(created, (int, float)):
        ms = round(created * 1000)
    else:
        ms = round(time.time() * 1000)
    old = _to_ms(_text(data.get("OldImage") or {}, "updated_at"))
    if old is not None and ms <= old:
        ms = old + 1
    return (_ms_text(ms), region), known


def delete_beats_put(delete: Version, put: Version) -> bool:
    """True when a delete is newer than a put: a later time, or the same millisecond and a higher
    region (the same region in the same millisecond: the put, which came after in its stream)."""
    return delete[0] > put[0] or (delete[0] == put[0] and delete[1] > put[1])


class Tombstones:
    """The newest delete of each (region, item id), for `ttl_s` after it was recorded and at most
    `max_count` of them (the oldest recorded are dropped first). Thread-safe (the status page
    counts them)."""

    def __init__(self, ttl_s: float = TOMBSTONE_TTL_S, max_count: int = MAX_TOMBSTONES,
                 clock=time.monotonic):
        self.ttl_s = ttl_s
        self.max_count = max_count
        self._clock = clock
        self._items: collections.OrderedDict[tuple[str, str], tuple[Version, float]] = (
            collections.OrderedDict())
        self.dropped = 0
        self._lock = threading.Lock()

    def record(self, region: str, item_id: str, version: Version) -> None:
        """Keeps the newer of this delete and the one already recorded."""
        key = (region, item_id)
        with self._lock:
            now = self._clock()
            self._trim(now)
            held = self._items.get(key)
            if held is not None and held[0] >= version:
                return
            self._items[key] = (version, now)
            self._items.move_to_end(key)
            self._trim(now)

    def get(self, region: str, item_id: str) -> Version | None:
        with self._lock:
            self._trim(self._clock())
            held = self._items.get((region, item_id))
            return held[0] if held else None

    def _trim(self, now: float) -> None:
        while self._items:
            key, (_, at) = next(iter(self._items.items()))
            if len(self._items) <= self.max_count and now - at < self.ttl_s:
                return
            del self._items[key]
            self.dropped += 1

    def __len__(self) -> int:
        with self._lock:
            self._trim(self._clock())
            return len(self._items)


@dataclass
class _Shard:
    iterator: str | None
    last_sequence: str | None = None


@dataclass
class _Source:
    """One region's stream, as the replicator reads it."""

    region: str
    arn: str | None = None
    shards: dict[str, _Shard] = field(default_factory=dict)
    described_at: float = 0.0


@dataclass
class _Pending:
    due: float
    source: str
    record: dict
    #: The write's version: a put's (updated_at, region), a delete's (when it happened, source).
    version: Version = ("", "")
    attempts: int = 0
    #: Regions already written (a retry after a failed write skips them).
    done: set[str] = field(default_factory=set)


class Replicator:
    """Copies every change of each region's table to the other regions (see the module doc)."""

    def __init__(self, endpoint: str, table: str, regions: list[str], lag_ms: int = 0,
                 start_at: str = "TRIM_HORIZON", key: str = moto.TABLE_KEY):
        if len(regions) < 2:
            raise ValueError("replication needs at least two regions")
        self.table = table
        self.regions = list(regions)
        self.lag_s = max(0, lag_ms) / 1000.0
        self.start_at = start_at
        self.key = key
        self._ddb = {r: moto.client(endpoint, r) for r in regions}
        self._streams = {r: moto.streams_client(endpoint, r) for r in regions}
        self._sources = {r: _Source(r) for r in regions}
        self._pending: collections.deque[_Pending] = collections.deque()
        # (target region, item id, image fingerprint) of writes this replicator made, not yet
        # seen again in the target's stream. A counter, since the same image can be written twice.
        self._ours: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self.tombstones = Tombstones()
        self._paused = threading.Event()
        self.counters = collections.Counter()
        self.last_poll_at = 0.0
        self.last_applied_at = 0.0
        # Replication lag of each applied record: now minus the record's creation time.
        self._lags_ms: list[float] = []

    # --- reading streams -------------------------------------------------------------------

    def _describe(self, source: _Source, now: float) -> None:
        client = self._streams[source.region]
        if source.arn is None:
            streams = client.list_streams(TableName=self.table).get("Streams", [])
            if not streams:
                return
            source.arn = streams[0]["StreamArn"]
        shards = client.describe_stream(StreamArn=source.arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in source.shards:
                continue
            # A shard seen later than start-up is read from its beginning: it holds only new
            # records (its parent is read to its end first, in stream order per item).
            kind = self.start_at if source.described_at == 0.0 else "TRIM_HORIZON"
            iterator = client.get_shard_iterator(StreamArn=source.arn, ShardId=shard_id,
                                                 ShardIteratorType=kind)["ShardIterator"]
            source.shards[shard_id] = _Shard(iterator)
        source.described_at = now

    def _read(self, source: _Source, now: float) -> int:
        """Reads new records of one region into the pending queue; returns how many."""
        if source.arn is None or now - source.described_at >= DESCRIBE_EVERY_S:
            self._describe(source, now)
        client = self._streams[source.region]
        count = 0
        for shard_id, shard in list(source.shards.items()):
            if shard.iterator is None:
                continue
            try:
                out = client.get_records(ShardIterator=shard.iterator, Limit=1000)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                    raise
                kind = "AFTER_SEQUENCE_NUMBER" if shard.last_sequence else "TRIM_HORIZON"
                extra = {"SequenceNumber": shard.last_sequence} if shard.last_sequence else {}
                shard.iterator = client.get_shard_iterator(
                    StreamArn=source.arn, ShardId=shard_id, ShardIteratorType=kind, **extra,
                )["ShardIterator"]
                continue
            records = out.get("Records", [])
            shard.iterator = out.get("NextShardIterator")  # None: the shard is closed and read
            for record in records:
                shard.last_sequence = record["dynamodb"]["SequenceNumber"]
                self._pending.append(self._queued(source.region, record, now))
            count += len(records)
        return count

    def _queued(self, region: str, record: dict, now: float) -> _Pending:
        """A record read from `region`'s stream, with its version. A delete of the region's own
        (not one this replicator made) is a tombstone there from now on, lag or pause or not."""
        data = record["dynamodb"]
        if record["eventName"] != "REMOVE":
            version = put_version(data.get("NewImage") or {})
        else:
            version, known = delete_version(record, region)
            if not known:
                self.counters["deletes_timed_when_read"] += 1
            old = data.get("OldImage")
            if old is not None:
                item_id = _text(data["Keys"], self.key)
                with self._lock:
                    ours = self._ours[(region, item_id, "REMOVE:" + _fingerprint(old))] > 0
                if not ours:
                    self.tombstones.record(region, item_id, version)
        return _Pending(now + self.lag_s, region, record, version)

    # --- applying records --------------------------------------------------------------------

    def _apply(self, p: _Pending) -> bool:
        """Applies one record to every other region (and, to its own, only a repair: see the
        module doc). False when a write must be retried."""
        record = p.record
        event = record["eventName"]
        data = record["dynamodb"]
        item_id = _text(data["Keys"], self.key)
        image = data.get("OldImage" if event == "REMOVE" else "NewImage")
        if image is None:
            self.counters["skipped_without_image"] += 1
            return True
        fingerprint = _fingerprint(image)
        mark = (p.source, item_id, "REMOVE:" + fingerprint if event == "REMOVE" else fingerprint)
        with self._lock:
            if self._ours[mark] > 0:
                self._ours[mark] -= 1
                if self._ours[mark] == 0:
                    del self._ours[mark]
                self.counters["echoes_dropped"] += 1
                return True
        for target in self.regions:
            if target in p.done:
                continue
            try:
                if event == "REMOVE":
                    outcome = self._apply_delete(target, p.source, item_id, p.version)
                else:
                    outcome = self._apply_put(target, p.source, item_id, image, p.version)
            except (ClientError, BotoCoreError) as e:
                self.counters["write_errors"] += 1
                log.warning("write to %s failed (will retry): %s", target, e)
                return False
            p.done.add(target)
            if outcome:
                self.counters[outcome] += 1
        self.counters[f"records_{event.lower()}"] += 1
        self.last_applied_at = time.monotonic()
        created = data.get("ApproximateCreationDateTime")
        if hasattr(created, "timestamp") and len(self._lags_ms) < MAX_LAG_SAMPLES:
            self._lags_ms.append((time.time() - created.timestamp()) * 1000)
        return True

    def _apply_put(self, target: str, source: str, item_id: str, image: dict,
                   version: Version) -> str | None:
        """A put from `source` at `target`; returns the counter to count it under."""
        tombstone = self.tombstones.get(target, item_id)
        if target == source:
            # The source holds this write already, unless it was made under a newer delete.
            if tombstone is not None and delete_beats_put(tombstone, version):
                return "repaired" if self._delete(target, item_id, tombstone) else None
            return None
        if tombstone is not None and delete_beats_put(tombstone, version):
            return "refused_by_tombstone"
        return "applied" if self._put(target, item_id, image) else "kept_newer"

    def _apply_delete(self, target: str, source: str, item_id: str,
                      version: Version) -> str | None:
        """A delete from `source` at `target` (at the source itself, it removes a copy that a
        replicated put left there before the delete was read)."""
        self.tombstones.record(target, item_id, version)
        wrote = self._delete(target, item_id, version)
        if target == source:
            return "repaired" if wrote else None
        return "applied" if wrote else "kept_newer"

    def _remember(self, mark: tuple[str, str, str], delta: int) -> None:
        with self._lock:
            self._ours[mark] += delta
            if self._ours[mark] <= 0:
                del self._ours[mark]

    def _put(self, target: str, item_id: str, image: dict) -> bool:
        mark = (target, item_id, _fingerprint(image))
        self._remember(mark, +1)  # before the write: its stream record may be read at once
        try:
            self._ddb[target].put_item(
                TableName=self.table, Item=image, ConditionExpression=PUT_CONDITION,
                ExpressionAttributeNames={"#id": self.key, "#u": "updated_at", "#r": "region"},
                ExpressionAttributeValues={":u": {"S": _text(image, "updated_at")},
                                           ":r": {"S": _text(image, "region")}},
            )
            return True
        except ClientError as e:
            self._remember(mark, -1)
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False  # the target has this write or a newer one
            raise
        except BotoCoreError:
            self._remember(mark, -1)
            raise

    def _delete(self, target: str, item_id: str, version: Version) -> bool:
        """Deletes the target's item if it is older than `version`; False when it is not."""
        try:
            out = self._ddb[target].delete_item(
                TableName=self.table, Key={self.key: {"S": item_id}},
                ConditionExpression=DELETE_CONDITION, ReturnValues="ALL_OLD",
                ExpressionAttributeNames={"#id": self.key, "#u": "updated_at", "#r": "region"},
                ExpressionAttributeValues={":u": {"S": version[0]}, ":r": {"S": version[1]}},
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        # Remembered after the write, from what it removed (the REMOVE record's OldImage): this
        # thread reads the streams only after the write returned.
        self._remember((target, item_id, "REMOVE:" + _fingerprint(out.get("Attributes", {}))), +1)
        return True

    def _drain(self, now: float) -> None:
        """Applies every due record in order; stops at the first that must be retried, and
        while paused."""
        while self._pending and self._pending[0].due <= now and not self._paused.is_set():
            p = self._pending[0]
            if not self._apply(p):
                p.attempts += 1
                p.due = now + RETRY_AFTER_S
                return
            self._pending.popleft()

    # --- the loop ----------------------------------------------------------------------------

    def pause(self) -> None:
        """Stops applying records (they are still read, and queued in order)."""
        self._paused.set()
        log.info("replication paused")

    def resume(self) -> None:
        """Applies the queued records again, in the order they were read."""
        self._paused.clear()
        log.info("replication resumed (%d records queued)", len(self._pending))

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def step(self, regions: list[str] | None = None) -> int:
        """One poll of every region (or of `regions` only: tests use it to choose which copy
        arrives first) and one drain; returns how many records were read."""
        now = time.monotonic()
        read = 0
        for source in self._sources.values():
            if regions is not None and source.region not in regions:
                continue
            try:
                read += self._read(source, now)
            except (ClientError, BotoCoreError) as e:
                self.counters["read_errors"] += 1
                log.warning("reading %s's stream failed (will retry): %s", source.region, e)
        self.last_poll_at = time.monotonic()
        self._drain(self.last_poll_at)
        return read

    def run(self, stop: threading.Event) -> None:
        """Polls until `stop` is set (every 50 ms while busy, 100 ms when quiet)."""
        while not stop.is_set():
            read = self.step()
            busy = read > 0 or bool(self._pending)
            stop.wait(BUSY_POLL_S if busy else IDLE_POLL_S)

    def status(self) -> dict:
        now = time.monotonic()
        with self._lock:
            ours = sum(self._ours.values())
        return {
            "regions": self.regions,
            "table": self.table,
            "configured_lag_ms": int(self.lag_s * 1000),
            "paused": self.paused,
            "pending": len(self._pending),
            "tombstones": len(self.tombstones),
            "unseen_own_writes": ours,
            "since_last_poll_s": round(now - self.last_poll_at, 3) if self.last_poll_at else None,
            "counters": dict(self.counters),
            "lag_ms": _percentiles(list(self._lags_ms)),
        }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    values.sort()
    at = lambda q: round(values[min(len(values) - 1, int(q * len(values)))], 1)  # noqa: E731
    return {"count": len(values), "p50": at(0.5), "p99": at(0.99), "max": round(values[-1], 1)}


def _serve_status(replicator: Replicator, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path == "/health":
                body, code = b'{"status":"healthy"}', 200
            elif self.path == "/status":
                body, code = json.dumps(replicator.status()).encode(), 200
            else:
                body, code = b'{"error":"not found"}', 404
            self._send(body, code)

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if self.path == "/pause":
                replicator.pause()
            elif self.path == "/resume":
                replicator.resume()
            else:
                return self._send(b'{"error":"not found"}', 404)
            self._send(json.dumps(replicator.status()).encode(), 200)

        def _send(self, body: bytes, code: int) -> None:
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the status page is polled
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="status", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the moto server's URL")
    parser.add_argument("--table", required=True)
    parser.add_argument("--regions", required=True, help="comma-separated, at least two")
    parser.add_argument("--lag-ms", type=int, default=0, help="hold each record back this long")
    parser.add_argument("--start-at", choices=["TRIM_HORIZON", "LATEST"], default="TRIM_HORIZON")
    parser.add_argument("--port", type=int, default=0, help="serve GET /status here (0: off)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    replicator = Replicator(args.endpoint, args.table, args.regions.split(","), args.lag_ms,
                            args.start_at)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = _serve_status(replicator, args.port) if args.port else None
    log.info("replicating %s between %s (lag %d ms)", args.table, args.regions, args.lag_ms)
    try:
        replicator.run(stop)
    finally:
        if server:
            server.shutdown()
        log.info("stopped: %s", json.dumps(replicator.status()["counters"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
