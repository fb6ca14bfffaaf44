"""Idempotency (same region and across regions), the STATUS switch, the admin route and faults."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from conftest import CENTRAL, WEST, error_code
from harness import regional


def key():
    return f"key-{uuid.uuid4().hex}"


def test_replayed_key_returns_first_response_and_stores_nothing_new(west):
    k = key()
    first = requests.post(f"{west.url}/items", json={"n": 1}, headers={"Idempotency-Key": k})
    assert first.status_code == 201
    replay = requests.post(f"{west.url}/items", json={"n": 1}, headers={"Idempotency-Key": k})
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["location"] == first.headers["location"]
    assert replay.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    # Nothing was written again: the stored item is still the first write.
    stored = requests.get(f"{west.url}{first.headers['location']}")
    assert stored.headers["ETag"] == first.headers["ETag"]
    assert stored.json()["updated_at"] == first.json()["updated_at"]


def test_a_replay_never_passes_a_later_write_off_as_the_first_result(west, central, moto_server,
                                                                      table):
    """A keyed create's result over 300 KB is not kept on the key's record: a replay answers
    from the item, but only while it is still that first write. Replaced, deleted or created
    again by someone else since, the replay is 409 `idempotency_result_gone` (the create did
    happen; read the item), never 404 and never the later write marked as a replay. The same
    holds in a region that has the item but not yet the key's record."""
    big = {"blob": "y" * (310 * 1024)}
    k = key()
    first = requests.post(f"{west.url}/items", json=big, headers={"Idempotency-Key": k})
    assert first.status_code == 201
    path = first.headers["location"]
    replay = requests.post(f"{west.url}/items", json=big, headers={"Idempotency-Key": k})
    assert replay.status_code == 201 and replay.headers["idempotency-replayed"] == "true"
    assert replay.headers["ETag"] == first.headers["ETag"]
    changes = [
        ("replaced", lambda: requests.put(f"{west.url}{path}", json={"owner": "second"})),
        ("deleted", lambda: requests.delete(f"{west.url}{path}")),
        ("created again", lambda: requests.put(f"{west.url}{path}", json={"owner": "mallory"})),
    ]
    for what, change in changes:
        assert change().status_code in (200, 201, 204), what
        before = requests.get(f"{west.url}{path}")
        r = requests.post(f"{west.url}/items", json=big, headers={"Idempotency-Key": k})
        assert r.status_code == 409 and error_code(r) == "idempotency_result_gone", (what, r.text)
        assert "retry-after" not in r.headers, "retrying cannot help"
        after = requests.get(f"{west.url}{path}")
        assert (after.status_code, after.headers.get("ETag")) == \
            (before.status_code, before.headers.get("ETag")), what

    # Another region holding the item (replicated) but not the key's record, the item replaced
    # there since: a small body, so only the item can answer.
    from harness import moto
    k, small = key(), {"colour": "blue"}
    first = requests.post(f"{west.url}/items", json=small, headers={"Idempotency-Key": k})
    item_id = first.json()["item_id"]
    stored = moto.client(moto_server.url, WEST).get_item(
        TableName=table, Key={"item_id": {"S": item_id}})["Item"]
    moto.client(moto_server.url, CENTRAL).put_item(TableName=table, Item=stored)
    assert requests.put(f"{central.url}/items/{item_id}", json={"colour": "red"}).status_code == 200
    r = requests.post(f"{central.url}/items", json=small, headers={"Idempotency-Key": k})
    assert r.status_code == 409 and error_code(r) == "idempotency_result_gone", r.text
    assert requests.get(f"{central.url}/items/{item_id}").json()["colour"] == "red"
    # Still the first write there: a replay.
    k = key()
    first = requests.post(f"{west.url}/items", json=small, headers={"Idempotency-Key": k})
    stored = moto.client(moto_server.url, WEST).get_item(
        TableName=table, Key={"item_id": {"S": first.json()["item_id"]}})["Item"]
    moto.client(moto_server.url, CENTRAL).put_item(TableName=table, Item=stored)
    r = requests.post(f"{central.url}/items", json=small, headers={"Idempotency-Key": k})
    assert r.status_code == 201 and r.headers["idempotency-replayed"] == "true", r.text
    assert r.headers["ETag"] == first.headers["ETag"]


def test_seed_create_replay_is_200_and_another_key_conflicts(west):
    item_id = f"seed-{uuid.uuid4().hex[:8]}"
    k = key()
    for _ in range(2):
        r = requests.post(f"{west.url}/create", json={"item_id": item_id}, headers={"Idempotency-Key": k})
        assert r.status_code == 200 and r.json() == {"item_id": item_id}
    other = requests.post(f"{west.url}/create", json={"item_id": item_id}, headers={"Idempotency-Key": key()})
    assert other.status_code == 409 and error_code(other) == "item_exists"


def test_create_retried_in_another_region_is_one_item(west, central, moto_server, table):
    """The edge retries a create in another region. Both regions share one moto; with
    replication (the dev stack's replicator) the two writes land on the same id, so the table
    holds one item whichever region wins."""
    k = key()
    marker = uuid.uuid4().hex
    body = {"colour": "green", "marker": marker}
    a = requests.post(f"{west.url}/items", json=body, headers={"Idempotency-Key": k})
    b = requests.post(f"{central.url}/items", json=body, headers={"Idempotency-Key": k})
    assert a.status_code == b.status_code == 201
    assert a.json()["item_id"] == b.json()["item_id"]
    item_id = a.json()["item_id"]
    # Once the item has reached the other region (here: copied as the replicator would), a
    # third retry there is a replay, not a conflict and not a new item.
    from harness import moto
    west_db = moto.client(moto_server.url, WEST)
    central_db = moto.client(moto_server.url, CENTRAL)
    stored = west_db.get_item(TableName=table, Key={"item_id": {"S": item_id}})["Item"]
    central_db.put_item(TableName=table, Item=stored)
    c = requests.post(f"{central.url}/items", json=body, headers={"Idempotency-Key": k})
    assert c.status_code == 201 and c.headers["idempotency-replayed"] == "true"
    assert c.json() == b.json(), "the replay answers with this region's first result"
    # Every region holds exactly one item from these three creates.
    for db in (west_db, central_db):
        items = db.scan(TableName=table)["Items"]
        assert [i["item_id"]["S"] for i in items if i.get("marker", {}).get("S") == marker] == [item_id]


@pytest.fixture
def scratch(moto_server, table):
    """A regional of its own, so faults set here do not leak into other tests."""
    proc = regional.start_regional(moto_server.url, WEST, table)
    yield proc
    proc.stop()


def test_status_env_forces_health(moto_server, table):
    proc = regional.start_regional(moto_server.url, CENTRAL, table, status=404)
    try:
        r = requests.get(f"{proc.url}/health")
        assert r.status_code == 404 and r.json()["region"] == CENTRAL
        # Only health is forced: the API still serves.
        assert requests.get(f"{proc.url}/items?limit=1").status_code == 200
    finally:
        proc.stop()


def test_admin_flip_on_a_running_process(scratch, admin):
    assert requests.get(f"{scratch.url}/health").status_code == 200
    assert admin(scratch, status=404)["status"] == 404
    assert requests.get(f"{scratch.url}/health").status_code == 404
    # Live traffic carries the drain signal too, so a router learns it without a probe.
    r = requests.get(f"{scratch.url}/items?limit=1")
    assert r.status_code == 200 and r.headers["x-region-status"] == "404"
    admin(scratch, status=200)
    assert requests.get(f"{scratch.url}/items?limit=1").headers["x-region-status"] == "200"
    assert requests.get(f"{scratch.url}/health").status_code == 200


def test_admin_refuses_wrong_token_and_bad_settings(scratch):
    url = f"{scratch.url}/admin/faults"
    r = requests.put(url, json={"status": 404}, headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    r = requests.put(url, json={"status": 404})
    assert r.status_code == 401
    auth = {"Authorization": f"Bearer {regional.ADMIN_TOKEN}"}
    r = requests.put(url, json={"error_rate": 3}, headers=auth)
    assert r.status_code == 400 and error_code(r) == "invalid_fault_settings"
    r = requests.put(url, json={"colour": 1}, headers=auth)
    assert r.status_code == 400
    assert requests.get(f"{scratch.url}/health").status_code == 200
    # GET shows the switches (refused settings changed nothing), with the token only.
    assert requests.get(url).status_code == 401
    shown = requests.get(url, headers=auth)
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == 200 and shown.json()["error_rate"] == 0, shown.json()
    requests.put(url, json={"latency_ms": 5}, headers=auth).raise_for_status()
    assert requests.get(url, headers=auth).json()["latency_ms"] == 5
    requests.put(url, json={"latency_ms": 0}, headers=auth).raise_for_status()


def test_admin_is_disabled_without_token(moto_server, table):
    proc = regional.start_regional(moto_server.url, WEST, table, admin=False)
    try:
        r = requests.put(f"{proc.url}/admin/faults", json={"status": 404},
                         headers={"Authorization": f"Bearer {regional.ADMIN_TOKEN}"})
        assert r.status_code == 403 and error_code(r) == "admin_disabled"
        assert requests.get(f"{proc.url}/health").status_code == 200
    finally:
        proc.stop()


def test_latency_and_error_faults(scratch, admin):
    admin(scratch, latency_ms=300)
    started = time.monotonic()
    assert requests.get(f"{scratch.url}/health").status_code == 200
    assert time.monotonic() - started >= 0.3
    admin(scratch, latency_ms=0, error_rate=1.0)
    r = requests.get(f"{scratch.url}/items?limit=1")
    assert r.status_code == 503 and error_code(r) == "injected_fault"
    assert r.headers["retry-after"] == "1"
    # A gray failure: every request fails while the health check still says 200.
    assert requests.get(f"{scratch.url}/health").status_code == 200
    # The admin route itself is never faulted, so a drill can always undo it.
    admin(scratch, error_rate=0.0)
    assert requests.get(f"{scratch.url}/items?limit=1").status_code == 200


def test_table_outage_is_503_without_internals(moto_server, table):
    """A region whose DynamoDB endpoint is gone answers 503 with Retry-After, and deep health
    fails while shallow health (the process) still answers."""
    from harness import procs
    dead = f"http://127.0.0.1:{procs.free_port()}"
    proc = regional.start_regional(dead, WEST, table)
    try:
        r = requests.get(f"{proc.url}/items/x", timeout=15)
        assert r.status_code == 503 and error_code(r) == "table_unavailable"
        assert r.headers["retry-after"] == "1"
        assert "127.0.0.1" not in r.text and "dispatch" not in r.text.lower()
        assert requests.get(f"{proc.url}/health?deep=true", timeout=5).status_code == 503
        assert requests.get(f"{proc.url}/health").status_code == 200
    finally:
        proc.stop()


def test_bad_configuration_fails_with_one_line(tmp_path):
    import subprocess
    out = subprocess.run([str(regional.binary())], env={"AWS_REGION": "eu-west-1", "TABLE_NAME": "t",
                                                          "STATUS": "banana"},
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert out.stderr.strip() == ('regional: configuration error: STATUS must be an HTTP status code '
                                  'between 100 and 599, got "banana"')
    assert "panicked" not in out.stderr


def test_a_key_reused_with_another_body_is_refused(west):
    k = key()
    first = requests.post(f"{west.url}/items", json={"n": 1}, headers={"Idempotency-Key": k})
    assert first.status_code == 201
    other = requests.post(f"{west.url}/items", json={"n": 2}, headers={"Idempotency-Key": k})
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    stored = requests.get(f"{west.url}{first.headers['location']}").json()
    assert stored["n"] == 1 and stored["version"] == 1
