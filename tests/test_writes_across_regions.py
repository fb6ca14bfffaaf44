"""Writes and reads across regions, through the whole local system (moto, the replicator standing
in for global-table replication, two real `regional` processes, the edge in workerd):

- a fresh edge keeps a client without cookies or tokens on one region (create, then read);
- ETags name one write: a stale `If-Match` after a cross-region overwrite is a 412, a create-only
  PUT (`If-None-Match: *`) is refused in the other region once replicated, a cached tag is a 304
  in either region;
- an `Idempotency-Key` reused with another body is refused whatever `item_id` it names;
- a delete is a write: update-then-later-delete and delete-then-later-update across regions
  end with the later one in both regions;
- a write held in a slow region past the edge's per-try timeout never lands after (and so
  never overwrites) the retry that was acknowledged.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from conftest import CENTRAL, WEST, error_code
from harness import moto
from harness.stack import Stack

REGIONS = (WEST, CENTRAL)


def uid(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def system():
    stack = Stack(regions=REGIONS, table=f"items-{uuid.uuid4().hex[:8]}", tick_s=0,
                  name="writes").start()
    yield stack
    stack.stop()


def region_url(stack: Stack, region: str) -> str:
    return stack.regional[region].url


def stored(stack: Stack, region: str, item_id: str) -> dict | None:
    """The item as the region's table holds it (read straight from moto)."""
    out = moto.client(stack.moto.url, region).get_item(
        TableName=stack.table, Key={"item_id": {"S": item_id}}, ConsistentRead=True)
    return out.get("Item")


def settle(stack: Stack, item_id: str, timeout_s: float = 15.0) -> list[dict | None]:
    """Waits until replication is idle and both regions hold the same thing for `item_id`."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = stack.replicator_status()
        states = [stored(stack, r, item_id) for r in REGIONS]
        if status["pending"] == 0 and not status.get("paused") and states[0] == states[1]:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"regions did not converge on {item_id}: {states} {status}")
        time.sleep(0.1)


def test_curl_sequence_on_a_fresh_edge_finds_every_item(system):
    """The README's sequence as curl sends it (no cookie jar, no token), 100 times, on an edge
    that has just started: every read finds the item just created."""
    system.restart_edge()
    missing = []
    served = set()
    for n in range(100):
        item_id = uid(f"curl{n}")
        created = requests.post(system.edge.url + "/create", json={"item_id": item_id}, timeout=10)
        assert created.status_code == 200, created.text
        got = requests.get(f"{system.edge.url}/get/{item_id}", timeout=10)
        if got.status_code != 200:
            missing.append((item_id, created.headers["x-served-by"], got.headers["x-served-by"]))
        served.add((created.headers["x-served-by"], got.headers["x-served-by"]))
    assert missing == [], f"{len(missing)} of 100 reads missed: {missing[:5]}"
    assert all(w == r for w, r in served), served


def test_a_stale_if_match_after_a_cross_region_overwrite_is_412(system):
    item_id = uid("race")
    west, central = region_url(system, WEST), region_url(system, CENTRAL)
    created = requests.put(f"{west}/items/{item_id}", json={"v": "start"}, timeout=10)
    assert created.status_code == 201
    tag = created.headers["etag"]
    settle(system, item_id)
    system.pause_replication()
    try:
        a = requests.put(f"{west}/items/{item_id}", json={"v": "west"},
                         headers={"If-Match": tag}, timeout=10)
        time.sleep(0.01)  # the later write, by updated_at: central wins last-writer-wins
        b = requests.put(f"{central}/items/{item_id}", json={"v": "central"},
                         headers={"If-Match": tag}, timeout=10)
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert a.json()["version"] == b.json()["version"] == 2
        assert a.headers["etag"] != b.headers["etag"], "two writes, two tags"
    finally:
        system.resume_replication()
    final = settle(system, item_id)
    assert final[0]["v"]["S"] == "central"
    for url in (west, central):
        lost = requests.put(f"{url}/items/{item_id}", json={"v": "west again"},
                            headers={"If-Match": a.headers["etag"]}, timeout=10)
        assert lost.status_code == 412 and error_code(lost) == "precondition_failed", lost.text
    won = requests.put(f"{west}/items/{item_id}", json={"v": "next"},
                       headers={"If-Match": b.headers["etag"]}, timeout=10)
    assert won.status_code == 200 and won.json()["version"] == 3


def test_if_match_zero_style_tags_work_the_same_for_put_and_delete(system):
    """An item written by another tool (no version, region or time) has a tag too, and PUT and
    DELETE accept it alike."""
    item_id = uid("bare")
    west = region_url(system, WEST)

    def write_bare():
        moto.client(system.moto.url, WEST).put_item(
            TableName=system.table, Item={"item_id": {"S": item_id}, "x": {"N": "1"}})
        tag = requests.get(f"{west}/items/{item_id}", timeout=10).headers["etag"]
        assert tag.startswith('"0-'), tag
        return tag

    tag = write_bare()
    put = requests.put(f"{west}/items/{item_id}", json={"x": 2}, headers={"If-Match": tag},
                       timeout=10)
    assert put.status_code == 200 and put.json()["version"] == 1, put.text
    stale = requests.put(f"{west}/items/{item_id}", json={"x": 3}, headers={"If-Match": tag},
                         timeout=10)
    assert stale.status_code == 412, "the bare item's tag no longer names what is stored"
    tag = write_bare()
    deleted = requests.delete(f"{west}/items/{item_id}", headers={"If-Match": tag}, timeout=10)
    assert deleted.status_code == 204, deleted.text


def test_create_only_puts_and_cached_tags_hold_across_regions(system):
    """`If-None-Match: *` made in one region is refused in the other once replicated (before
    that, both would create and the later write win, as for any two writers), and a tag one
    region gave is a 304 in the other: it names the write, not the region that served it."""
    item_id = uid("create-only")
    west, central = region_url(system, WEST), region_url(system, CENTRAL)
    first = requests.put(f"{west}/items/{item_id}", json={"v": 1}, headers={"If-None-Match": "*"},
                         timeout=10)
    assert first.status_code == 201, first.text
    settle(system, item_id)
    again = requests.put(f"{central}/items/{item_id}", json={"v": 2}, headers={"If-None-Match": "*"},
                         timeout=10)
    assert again.status_code == 412 and error_code(again) == "precondition_failed", again.text
    cached = requests.get(f"{central}/items/{item_id}", headers={"If-None-Match": first.headers["etag"]},
                          timeout=10)
    assert cached.status_code == 304 and cached.headers["etag"] == first.headers["etag"]
    assert cached.headers["x-served-by"] == CENTRAL
    assert settle(system, item_id)[0]["v"] == {"N": "1"}


def test_a_key_reused_with_another_item_id_is_refused_and_stores_nothing(system):
    key = uid("key")
    first_id, second_id = uid("a"), uid("b")
    first = requests.post(system.edge.url + "/items", json={"item_id": first_id},
                          headers={"Idempotency-Key": key}, timeout=10)
    assert first.status_code == 201, first.text
    again = requests.post(system.edge.url + "/items", json={"item_id": second_id},
                          headers={"Idempotency-Key": key}, timeout=10)
    assert again.status_code == 422 and error_code(again) == "idempotency_key_reused", again.text
    replay = requests.post(system.edge.url + "/items", json={"item_id": first_id},
                           headers={"Idempotency-Key": key}, timeout=10)
    assert replay.status_code == 201 and replay.headers["idempotency-replayed"] == "true"
    assert replay.json() == first.json()
    settle(system, first_id)
    assert settle(system, second_id) == [None, None], "nothing stored for the refused request"


@pytest.mark.parametrize("order", ["update_then_delete", "delete_then_update"])
def test_the_later_of_an_update_and_a_delete_wins_in_both_regions(system, order):
    item_id = uid(order)
    west, central = region_url(system, WEST), region_url(system, CENTRAL)
    assert requests.put(f"{west}/items/{item_id}", json={"v": 1}, timeout=10).status_code == 201
    settle(system, item_id)
    system.pause_replication()  # both writes acknowledged before either is replicated
    try:
        if order == "update_then_delete":
            assert requests.put(f"{central}/items/{item_id}", json={"v": 2},
                                timeout=10).status_code == 200
            time.sleep(0.01)
            assert requests.delete(f"{west}/items/{item_id}", timeout=10).status_code == 204
        else:
            assert requests.delete(f"{west}/items/{item_id}", timeout=10).status_code == 204
            time.sleep(0.01)
            assert requests.put(f"{central}/items/{item_id}", json={"v": 2},
                                timeout=10).status_code == 200
    finally:
        system.resume_replication()
    final = settle(system, item_id)
    if order == "update_then_delete":
        assert final == [None, None], f"the later delete wins: {final}"
    else:
        assert final[0] is not None and final[0]["v"]["N"] == "2", f"the later update wins: {final}"


def test_a_write_held_past_the_per_try_timeout_never_overwrites_the_acknowledged_retry():
    """West is tried first and is slow (1.5 s before it handles anything); the edge gives up on
    it after 1 s and the PUT is served by Central. The client then writes again (its affinity
    token sends it to Central). West must not apply its late copy of the first PUT: it would be
    the newest write and win last-writer-wins over the second, acknowledged one."""
    stack = Stack(regions=REGIONS, table=f"items-{uuid.uuid4().hex[:8]}", tick_s=0,
                  weights={WEST: 100.0, CENTRAL: 1.0},
                  routing={"per_try_timeout_ms": 1000, "hedge": False}, name="late").start()
    try:
        item_id = uid("late")
        stack.set_faults(WEST, latency_ms=1500)
        client = requests.Session()
        first = client.put(f"{stack.edge.url}/items/{item_id}", json={"v": "first"}, timeout=10)
        assert first.status_code == 201, first.text
        assert first.headers["x-served-by"] == CENTRAL and first.headers["x-edge-attempts"] == "2"
        second = client.put(f"{stack.edge.url}/items/{item_id}", json={"v": "second"}, timeout=10)
        assert second.status_code == 200 and second.headers["x-served-by"] == CENTRAL, second.text
        time.sleep(1.5)  # West's late copy would have landed by now
        stack.set_faults(WEST, latency_ms=0)
        final = settle(stack, item_id)
        assert final[0]["v"]["S"] == "second", f"the acknowledged write was overwritten: {final}"

        # The same, asked of West directly with the connection kept open: the deadline passes
        # while it waits, so it answers 504 and writes nothing (the edge would retry elsewhere).
        stack.set_faults(WEST, latency_ms=1500)
        other_id = uid("late-direct")
        late = requests.put(f"{region_url(stack, WEST)}/items/{other_id}", json={"v": "x"},
                            headers={"x-tandem-deadline-ms": "1000"}, timeout=10)
        assert late.status_code == 504 and error_code(late) == "deadline_exceeded", late.text
        stack.set_faults(WEST, latency_ms=0)
        assert settle(stack, other_id) == [None, None], "nothing written after the deadline"
    finally:
        stack.stop()


def test_a_create_answered_late_and_retried_elsewhere_is_the_clients_one_201():
    """Found from outside: West writes a create (key claim, item, result) but answers after the
    edge's per-try timeout; the edge retries in Central with the same key (its own when the
    client sent none). Central must answer that create's result (201), not 409 in flight: its
    copy of the key's record has to move on from `in_flight` to `done` (the result is a newer
    write of the record), and while it has not, the item itself (replicated) answers. The
    client, who may hold no key to retry with, gets its 201 and the table one item."""
    stack = Stack(regions=REGIONS, table=f"items-{uuid.uuid4().hex[:8]}", tick_s=0,
                  weights={WEST: 100.0, CENTRAL: 1.0},
                  routing={"per_try_timeout_ms": 1000, "hedge": False}, name="late-create").start()
    try:
        cases = {"no key": ({}, {}), "own key": ({}, {"Idempotency-Key": uid("k")}),
                 "named item": ({"item_id": uid("named")}, {}), "seed create": None}
        for name, case in cases.items():
            stack.restart_edge()  # a fresh isolate: West is tried first again
            stack.set_faults(WEST, response_delay_ms=1500)
            marker = uid("marker")
            if case is None:
                item_id = uid("seed")
                r = requests.post(f"{stack.edge.url}/create", json={"item_id": item_id,
                                                                    "marker": marker}, timeout=10)
                assert r.status_code == 200, (name, r.text)
            else:
                body, headers = case
                r = requests.post(f"{stack.edge.url}/items", json=body | {"marker": marker},
                                  headers=headers, timeout=10)
                assert r.status_code == 201, (name, r.status_code, r.text)
                item_id = r.json()["item_id"]
            assert r.headers["x-edge-attempts"] == "2" and r.headers["x-served-by"] == CENTRAL, \
                (name, dict(r.headers))
            stack.set_faults(WEST, response_delay_ms=0)
            final = settle(stack, item_id)
            assert final[0] and final[0]["marker"]["S"] == marker, (name, final)
            for region in REGIONS:
                found = moto.client(stack.moto.url, region).scan(
                    TableName=stack.table, FilterExpression="marker = :m",
                    ExpressionAttributeValues={":m": {"S": marker}})["Items"]
                assert len(found) == 1, (name, region, found)
        assert "kept_newer" not in stack.replicator_status()["counters"], "a record update was dropped"
    finally:
        stack.stop()
