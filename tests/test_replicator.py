"""The replicator against a real moto server: every interleaving of update, delete and recreate in
two regions settles on the same last writer in both, deletes included (issue 8).

Each test has a fresh table in both regions and its own Replicator, run in-process: in a thread
(no lag, 300 ms lag, or paused while both regions write and then resumed), or stepped by the test
so that a chosen region's changes arrive first. The tables are written with boto3 the way the
regional writes them: every item carries item_id, created_at, updated_at (RFC 3339 UTC,
milliseconds), region and version; a delete is a plain DeleteItem.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests

from harness import moto, procs
from harness.replicator import Replicator, Tombstones, _serve_status, _to_ms, delete_version

A, B = "eu-west-1", "eu-central-1"  # A sorts higher: it wins a tie
REGIONS = [A, B]
#: Between two writes, so each has its own millisecond (and a delete's moto time is after them).
GAP_S = 0.004
SETTLE_TIMEOUT_S = 12.0
MODES = ["lag0", "lag300", "paused", f"first-{A}", f"first-{B}"]


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Pair:
    """Two regions of one fresh table and a replicator between them, driven per `mode`."""

    def __init__(self, endpoint: str, mode: str):
        self.mode = mode
        self.table = f"repl-{uuid.uuid4().hex[:8]}"
        for region in REGIONS:
            moto.create_table(endpoint, region, self.table)
        self.ddb = {r: moto.client(endpoint, r) for r in REGIONS}
        self.replicator = Replicator(endpoint, self.table, REGIONS,
                                     lag_ms=300 if mode == "lag300" else 0)
        self.stop = threading.Event()
        self.thread = None
        if not mode.startswith("first-"):
            self.thread = threading.Thread(target=self.replicator.run, args=(self.stop,),
                                           name="replicator", daemon=True)
            self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join(timeout=5)

    # --- writes, as the regional makes them --------------------------------------------------

    def put(self, region: str, item_id: str, version: int, created_at: str | None = None) -> dict:
        now = now_text()
        item = {
            "item_id": {"S": item_id}, "created_at": {"S": created_at or now},
            "updated_at": {"S": now}, "region": {"S": region}, "version": {"N": str(version)},
            "note": {"S": f"v{version} written in {region}"},
        }
        self.ddb[region].put_item(TableName=self.table, Item=item)
        time.sleep(GAP_S)
        return item

    def delete(self, region: str, item_id: str) -> bool:
        """True when there was an item to delete (the regional answers 404 otherwise)."""
        out = self.ddb[region].delete_item(TableName=self.table, Key={"item_id": {"S": item_id}},
                                           ReturnValues="ALL_OLD")
        time.sleep(GAP_S)
        return "Attributes" in out

    def get(self, region: str, item_id: str) -> dict | None:
        out = self.ddb[region].get_item(TableName=self.table, Key={"item_id": {"S": item_id}},
                                        ConsistentRead=True)
        return out.get("Item")

    # --- replication -------------------------------------------------------------------------

    def before_writes(self) -> None:
        if self.mode == "paused":
            self.replicator.pause()

    def after_writes(self) -> None:
        if self.mode == "paused":
            time.sleep(0.3)  # records are read while paused, but nothing is applied
            assert self.replicator.status()["pending"] > 0
            self.replicator.resume()
        elif self.mode.startswith("first-"):
            # Only the chosen region's stream is read and applied; the other's changes come after.
            self.replicator.step(regions=[self.mode.removeprefix("first-")])

    def settle(self, item_id: str, expected: dict | None, hold: bool = True) -> None:
        """Waits until both regions hold `expected` (None: no item) and nothing is pending,
        then checks that it stays so (no late resurrection)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        states = None
        while time.monotonic() < deadline:
            if self.thread is None:
                self.replicator.step()
            states = {r: self.get(r, item_id) for r in REGIONS}
            if self.replicator.status()["pending"] == 0 and all(
                    s == expected for s in states.values()):
                break
            time.sleep(0.03)
        else:
            pytest.fail(f"not settled on {expected} in {SETTLE_TIMEOUT_S} s: {states}; "
                        f"{self.replicator.status()}")
        if not hold:
            return
        hold_until = time.monotonic() + 0.3 + self.replicator.lag_s
        while time.monotonic() < hold_until:
            if self.thread is None:
                self.replicator.step()
            time.sleep(0.05)
        assert {r: self.get(r, item_id) for r in REGIONS} == {r: expected for r in REGIONS}
        assert self.replicator.status()["pending"] == 0
        assert self.replicator.status()["counters"].get("write_errors", 0) == 0


@pytest.fixture(params=MODES)
def pair(request, moto_server):
    p = Pair(moto_server.url, request.param)
    yield p
    p.close()


# Each scenario: the writes after an item written in A has reached both regions; returns what
# both regions must hold in the end (None: no item). `first` is the first item, as written.

def update_b_then_delete_a(p: Pair, id_: str, first: dict):
    p.put(B, id_, 2)
    p.delete(A, id_)
    return None


def delete_a_then_update_b(p: Pair, id_: str, first: dict):
    p.delete(A, id_)
    return p.put(B, id_, 2, first["created_at"]["S"])


def delete_a_then_recreate_a(p: Pair, id_: str, first: dict):
    p.delete(A, id_)
    return p.put(A, id_, 1)


def delete_a_then_recreate_b(p: Pair, id_: str, first: dict):
    p.delete(A, id_)
    return p.put(B, id_, 1)


def delete_a_recreate_a_then_delete_b(p: Pair, id_: str, first: dict):
    p.delete(A, id_)
    recreated = p.put(A, id_, 1)
    # B holds the first item or the recreate, and deletes it; or (unlikely) A's delete reached B
    # first and the recreate not yet: then B had nothing to delete and the recreate stands.
    return None if p.delete(B, id_) else recreated


def delete_in_both(p: Pair, id_: str, first: dict):
    p.delete(A, id_)
    p.delete(B, id_)
    return None


def concurrent_updates_b_last(p: Pair, id_: str, first: dict):
    p.put(A, id_, 2, first["created_at"]["S"])
    return p.put(B, id_, 2, first["created_at"]["S"])


def concurrent_updates_a_last(p: Pair, id_: str, first: dict):
    p.put(B, id_, 2, first["created_at"]["S"])
    return p.put(A, id_, 2, first["created_at"]["S"])


SCENARIOS = [update_b_then_delete_a, delete_a_then_update_b, delete_a_then_recreate_a,
             delete_a_then_recreate_b, delete_a_recreate_a_then_delete_b, delete_in_both,
             concurrent_updates_b_last, concurrent_updates_a_last]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_interleavings_settle_on_the_last_writer_in_both_regions(pair, scenario):
    # The first-<region> modes also cover the older write arriving after the newer one, both
    # ways: e.g. delete_a_then_update_b in first-eu-central-1 is an older delete arriving after
    # a newer put (the put stays), update_b_then_delete_a in first-eu-west-1 an older put
    # arriving after a newer delete (it is refused by A's own tombstone).
    id_ = f"item-{uuid.uuid4().hex[:8]}"
    first = pair.put(A, id_, 1)
    pair.settle(id_, first, hold=False)
    pair.before_writes()
    expected = scenario(pair, id_, first)
    pair.after_writes()
    pair.settle(id_, expected)


@pytest.mark.parametrize("mode", ["lag0", "paused"])
def test_idempotency_key_records_replicate_like_items(moto_server, mode):
    """The regional's key records (ids "\\u0001idem:...") are items like any other."""
    p = Pair(moto_server.url, mode)
    try:
        id_ = "\u0001idem:" + uuid.uuid4().hex
        first = p.put(A, id_, 1)
        p.settle(id_, first, hold=False)
        p.before_writes()
        update_b_then_delete_a(p, id_, first)
        recreated = p.put(B, id_, 1)
        p.after_writes()
        p.settle(id_, recreated)
    finally:
        p.close()


def test_pause_and_resume_on_the_status_port(moto_server):
    """POST /pause and /resume answer 200 with the status; while paused records are read but
    not applied, and on resume they are applied in order."""
    p = Pair(moto_server.url, "lag0")
    port = procs.free_port()
    server = _serve_status(p.replicator, port)
    url = f"http://127.0.0.1:{port}"
    try:
        assert requests.get(url + "/status", timeout=5).json()["paused"] is False
        response = requests.post(url + "/pause", timeout=5)
        assert response.status_code == 200 and response.json()["paused"] is True
        assert requests.get(url + "/status", timeout=5).json()["paused"] is True

        id_ = f"item-{uuid.uuid4().hex[:8]}"
        p.put(A, id_, 1)
        p.put(A, id_, 2)
        last = p.put(A, id_, 3)
        time.sleep(0.4)
        status = requests.get(url + "/status", timeout=5).json()
        assert status["pending"] == 3, status  # read ...
        assert p.get(B, id_) is None  # ... and not applied

        response = requests.post(url + "/resume", timeout=5)
        assert response.status_code == 200 and response.json()["paused"] is False
        p.settle(id_, last)
        assert p.replicator.status()["counters"]["records_modify"] == 2
        assert requests.post(url + "/nothing", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
        p.close()


def test_a_delete_is_timed_when_it_happened_not_by_the_deleted_item(moto_server):
    """The REMOVE's version is moto's creation time of the record (ms), not the old item's
    updated_at, and never earlier than 1 ms after it."""
    p = Pair(moto_server.url, f"first-{A}")  # stepped by hand: nothing runs in between
    try:
        id_ = f"item-{uuid.uuid4().hex[:8]}"
        old = "2026-01-01T00:00:00.000Z"
        item = {"item_id": {"S": id_}, "updated_at": {"S": old}, "region": {"S": A},
                "version": {"N": "1"}}
        p.ddb[A].put_item(TableName=p.table, Item=item)
        before = now_text()
        p.ddb[A].delete_item(TableName=p.table, Key={"item_id": {"S": id_}})
        after = now_text()
        stream = p.replicator._streams[A]
        arn = stream.list_streams(TableName=p.table)["Streams"][0]["StreamArn"]
        shard = stream.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        iterator = stream.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        remove = stream.get_records(ShardIterator=iterator)["Records"][1]
        assert remove["eventName"] == "REMOVE"
        (at, region), known = delete_version(remove, A)
        assert known and region == A
        assert before <= at <= after, (before, at, after)

        # A delete in the same millisecond as the item it removed is timed 1 ms after it.
        remove["dynamodb"]["OldImage"]["updated_at"] = {"S": at}
        (bumped, _), _ = delete_version(remove, A)
        assert _to_ms(bumped) == _to_ms(at) + 1
        remove["dynamodb"]["OldImage"]["updated_at"] = {"S": "2026-12-31T23:59:59.999Z"}
        assert delete_version(remove, A)[0][0] == "2027-01-01T00:00:00.000Z"
    finally:
        p.close()


def test_tombstones_are_bounded_in_age_and_count():
    clock = [0.0]
    tombs = Tombstones(ttl_s=10.0, max_count=3, clock=lambda: clock[0])
    tombs.record(A, "x", ("2026-01-01T00:00:00.002Z", A))
    tombs.record(A, "x", ("2026-01-01T00:00:00.001Z", B))  # older: the newer one is kept
    assert tombs.get(A, "x") == ("2026-01-01T00:00:00.002Z", A)
    for n in range(3):
        clock[0] += 1
        tombs.record(B, f"y{n}", ("2026-01-01T00:00:01.000Z", B))
    assert len(tombs) == 3 and tombs.get(A, "x") is None  # the oldest recorded went first
    clock[0] += 9.5
    assert tombs.get(B, "y0") is None and tombs.get(B, "y2") is not None  # older than 10 s
    clock[0] += 10
    assert len(tombs) == 0
