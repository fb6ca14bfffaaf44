"""Global-table replication for moto, which accepts replica settings and ignores them.

Reads every region's DynamoDB stream (the real Streams API: list_streams, describe_stream,
get_shard_iterator, get_records) and applies each INSERT, MODIFY and REMOVE to the table of every
other region, the way DynamoDB global tables do:

- **Last writer wins** by the item's `updated_at` (RFC 3339 with milliseconds, UTC, so text order
  is time order). A tie goes to the write whose `region` sorts higher, so every replica settles
  on the same item whatever order the copies arrive in. Enforced by a condition on each write, so
  a copy never overwrites a newer item that reached the target first.
- A **REMOVE** deletes the target's copy only if the target holds nothing newer than the deleted
  item (its `updated_at` is not after the deleted one's).
- **No echo:** every write the replicator makes is remembered as (region, item id, image); the
  stream record that write produces in the target region is recognised by its image and dropped
  instead of being sent back. The LWW condition would refuse an echo anyway; this keeps the
  replicator from even trying.
- An optional **lag** holds every record back this long before it is applied (per source, in
  stream order), to make replication lag visible in a drill.

It must never write to a region's table anything that did not come from another region's stream,
and never drop a record: a failed write is retried until it succeeds or the replicator stops.

Run in-process (`Replicator(...).run(stop_event)`) or as a process:
`python -m tests.harness.replicator --endpoint URL --table T --regions a,b [--lag-ms N] [--port P]`;
with `--port`, `GET /status` answers with counters (and `GET /health` with 200).
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

# Condition of a replicated put: the target has no item, or an older one, or an equally old one
# from a region that sorts lower (the tie-break every replica applies the same way).
PUT_CONDITION = "attribute_not_exists(#id) OR #u < :u OR (#u = :u AND #r < :r)"
# Condition of a replicated delete: the target holds nothing newer than what was deleted.
DELETE_CONDITION = "attribute_exists(#id) AND (attribute_not_exists(#u) OR #u <= :u)"


def _text(image: dict, name: str) -> str:
    value = image.get(name, {})
    return value.get("S", "") if isinstance(value, dict) else ""


def _fingerprint(image: dict) -> str:
    """A stable text form of an item image (what the replicator wrote, to recognise its echo)."""
    return json.dumps(image, sort_keys=True, separators=(",", ":"))


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
                self._pending.append(_Pending(now + self.lag_s, source.region, record))
            count += len(records)
        return count

    # --- applying records --------------------------------------------------------------------

    def _apply(self, p: _Pending) -> bool:
        """Applies one record to every other region. False when a write must be retried."""
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
            if target == p.source or target in p.done:
                continue
            try:
                wrote = (self._delete(target, item_id, image) if event == "REMOVE"
                         else self._put(target, item_id, image))
            except (ClientError, BotoCoreError) as e:
                self.counters["write_errors"] += 1
                log.warning("write to %s failed (will retry): %s", target, e)
                return False
            p.done.add(target)
            self.counters["applied" if wrote else "kept_newer"] += 1
        self.counters[f"records_{event.lower()}"] += 1
        self.last_applied_at = time.monotonic()
        created = data.get("ApproximateCreationDateTime")
        if hasattr(created, "timestamp") and len(self._lags_ms) < MAX_LAG_SAMPLES:
            self._lags_ms.append((time.time() - created.timestamp()) * 1000)
        return True

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

    def _delete(self, target: str, item_id: str, old_image: dict) -> bool:
        mark = (target, item_id, "REMOVE:" + _fingerprint(old_image))
        self._remember(mark, +1)
        try:
            self._ddb[target].delete_item(
                TableName=self.table, Key={self.key: {"S": item_id}},
                ConditionExpression=DELETE_CONDITION,
                ExpressionAttributeNames={"#id": self.key, "#u": "updated_at"},
                ExpressionAttributeValues={":u": {"S": _text(old_image, "updated_at")}},
            )
            return True
        except ClientError as e:
            self._remember(mark, -1)
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        except BotoCoreError:
            self._remember(mark, -1)
            raise

    def _drain(self, now: float) -> None:
        """Applies every due record in order; stops at the first that must be retried."""
        while self._pending and self._pending[0].due <= now:
            p = self._pending[0]
            if not self._apply(p):
                p.attempts += 1
                p.due = now + RETRY_AFTER_S
                return
            self._pending.popleft()

    # --- the loop ----------------------------------------------------------------------------

    def step(self) -> int:
        """One poll of every region and one drain; returns how many records were read."""
        now = time.monotonic()
        read = 0
        for source in self._sources.values():
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
            "pending": len(self._pending),
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
