"""The edge Worker running in workerd (wrangler dev, prebuilt), in front of real `regional`
processes on moto. Each test gets its own regions and edge so faults never leak between tests."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest
import requests
from conftest import CENTRAL, WEST, error_code
from harness import edge, moto, procs, regional
from harness.regional import set_faults

# West is preferred (weight) so a test knows which region is tried first.
WEIGHTS = {WEST: 100.0, CENTRAL: 1.0}
SCHEDULED = "/__scheduled?cron=*+*+*+*+*"


class Stack:
    def __init__(self, moto_server, table, routing=None, fallback=False, cors=None,
                 weights=None):
        self.procs = []
        self.moto = moto_server
        self.table = table
        self.west = self._keep(regional.start_regional(moto_server.url, WEST, table))
        self.central = self._keep(regional.start_regional(moto_server.url, CENTRAL, table))
        self.fallback = self._keep(regional.start_regional(moto_server.url, CENTRAL, table)) if fallback else None
        self.edge = self._keep(edge.start_edge(
            {WEST: self.west.url, CENTRAL: self.central.url},
            fallback=self.fallback.url if self.fallback else "",
            routing={"hedge": False, **(routing or {})}, cors=cors, weights=weights or WEIGHTS))

    def _keep(self, proc):
        self.procs.append(proc)
        return proc

    def stop(self):
        for p in reversed(self.procs):
            p.stop()

    def get(self, path, **kw):
        return requests.get(self.edge.url + path, timeout=20, **kw)

    def status(self):
        return {r["name"]: r for r in self.get("/_edge/status").json()["regions"]}


@pytest.fixture
def stack(moto_server, table, request):
    params = getattr(request, "param", {})
    s = Stack(moto_server, table, **params)
    yield s
    s.stop()



def test_seed_calls_through_the_edge_with_read_your_writes(stack):
    item_id = f"edge-{uuid.uuid4().hex[:8]}"
    r = requests.post(stack.edge.url + "/create", json={"item_id": item_id}, timeout=10)
    assert r.status_code == 200 and r.json() == {"item_id": item_id}
    assert r.headers["x-served-by"] == WEST and r.headers["x-edge-attempts"] == "1"
    token = r.headers["x-tandem-affinity"]
    assert token.startswith(WEST + ".") and "tandem_affinity=" in r.headers["set-cookie"]
    assert "edge;dur=" in r.headers["server-timing"]
    # A mobile client sends the token back as a header; its read goes to the writing region.
    r = stack.get(f"/get/{item_id}", headers={"x-tandem-affinity": token})
    assert r.status_code == 200 and r.json()["retrieved from"] == WEST
    assert stack.get("/health").status_code == 200


def test_request_id_is_propagated_to_the_region(stack):
    rid = f"rid-{uuid.uuid4().hex[:10]}"
    r = stack.get("/items?limit=1", headers={"x-request-id": rid})
    assert r.headers["x-request-id"] == rid
    assert rid in stack.west.log()


def test_retry_after_connection_refused(stack):
    stack.west.kill()
    for i in range(8):
        r = stack.get("/items?limit=1")
        assert r.status_code == 200, r.text
        assert r.headers["x-served-by"] == CENTRAL
    assert "ejected" in stack.status()[WEST]["state"]
    # Once ejected, requests go straight to the healthy region.
    assert stack.get("/items?limit=1").headers["x-edge-attempts"] == "1"


@pytest.mark.parametrize("stack", [{"routing": {"per_try_timeout_ms": 600}}], indirect=True)
def test_per_try_timeout_on_a_slow_region(stack):
    set_faults(stack.west, latency_ms=5000)
    started = time.monotonic()
    r = stack.get("/items?limit=1")
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and r.headers["x-served-by"] == CENTRAL
    assert r.headers["x-edge-attempts"] == "2"
    assert elapsed < 3.0, elapsed


def test_status_404_seen_by_the_cron_probe(stack):
    set_faults(stack.west, status=404)
    assert stack.get(SCHEDULED).status_code == 200
    # One failed probe is one sample (from one probing location): not enough to drain.
    assert stack.status()[WEST]["state"] == "healthy"
    assert stack.status()[WEST]["last_probe"]["failures_in_row"] == 1
    for _ in range(2):
        assert stack.get(SCHEDULED).status_code == 200
    assert stack.status()[WEST]["state"] == "drained"
    assert stack.status()[WEST]["last_probe"]["status"] == 404
    r = stack.get("/items?limit=1")
    assert r.headers["x-served-by"] == CENTRAL and r.headers["x-edge-attempts"] == "1"
    # Restored: the next probe brings the region back.
    set_faults(stack.west, status=200)
    stack.get(SCHEDULED)
    assert stack.status()[WEST]["state"] == "healthy"
    assert stack.get("/items?limit=1").headers["x-served-by"] == WEST


def test_status_404_seen_by_live_traffic(stack):
    set_faults(stack.west, status=404)
    first = stack.get("/items?limit=1")
    # West answered, and its answer said "drained" in x-region-status: the edge read it and kept
    # it to itself (an internal header, never shown to clients).
    assert first.status_code == 200 and first.headers["x-served-by"] == WEST
    assert "x-region-status" not in first.headers
    for _ in range(5):
        r = stack.get("/items?limit=1")
        assert r.headers["x-served-by"] == CENTRAL


@pytest.mark.parametrize("stack", [{"fallback": True}], indirect=True)
def test_fallback_origin_then_503(stack):
    stack.west.kill()
    stack.central.kill()
    r = stack.get("/items?limit=1")
    assert r.status_code == 200, r.text
    assert r.headers["x-served-by"] == CENTRAL  # the fallback (Route 53 name) answered
    assert stack.get("/_edge/status").json()["counters"]["fallbacks"] >= 1
    stack.fallback.kill()
    r = stack.get("/items?limit=1")
    assert r.status_code == 503 and error_code(r) == "no_region_available"
    assert r.headers["retry-after"] == "1" and r.headers["x-served-by"] == "edge"


@pytest.mark.parametrize("stack", [{"cors": ["https://app.example.com"]}], indirect=True)
def test_cors_preflight(stack):
    ok = requests.options(stack.edge.url + "/items", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, idempotency-key"}, timeout=10)
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in ok.headers["access-control-allow-methods"]
    allowed = ok.headers["access-control-allow-headers"]
    assert all(h in allowed for h in ("idempotency-key", "if-match", "if-none-match")), allowed
    bad = requests.options(stack.edge.url + "/items", headers={
        "Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}, timeout=10)
    assert bad.status_code == 403 and error_code(bad) == "cors_origin_not_allowed"
    r = stack.get("/items?limit=1", headers={"Origin": "https://app.example.com"})
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    exposed = r.headers["access-control-expose-headers"]
    assert "x-served-by" in exposed and "etag" in exposed, exposed


@pytest.mark.parametrize("stack", [{"routing": {"per_try_timeout_ms": 800}}], indirect=True)
def test_idempotent_post_retried_across_regions_is_one_item(stack):
    """West stores the item but its answer is late (lost): the edge retries in central with the
    idempotency key it added, so both writes land on the same id: one item."""
    set_faults(stack.west, response_delay_ms=3000)
    marker = uuid.uuid4().hex
    r = requests.post(stack.edge.url + "/items", json={"marker": marker}, timeout=20)
    assert r.status_code == 201, r.text
    assert r.headers["x-served-by"] == CENTRAL and r.headers["x-edge-attempts"] == "2"
    time.sleep(3.5)  # let west finish its (late) handling
    ids = set()
    for region in (WEST, CENTRAL):
        items = moto.client(stack.moto.url, region).scan(TableName=stack.table)["Items"]
        ids |= {i["item_id"]["S"] for i in items if i.get("marker", {}).get("S") == marker}
    assert ids == {r.json()["item_id"]}
    assert r.json()["item_id"].startswith("idem-")


def test_body_over_the_item_limit_is_413_at_the_edge(stack):
    r = requests.post(stack.edge.url + "/items", data=b"{" + b" " * (401 * 1024) + b"}",
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert r.headers["x-served-by"] == "edge"


def test_invalid_configuration_is_a_500_that_names_the_field_only_in_the_log(moto_server):
    port = procs.free_port()
    bad = edge.start_edge_raw(port, {"REGIONS": "[{\"name\": \"x\"}]", **edge.OPEN})
    try:
        r = requests.get(bad.url + "/items", timeout=10)
        assert r.status_code == 500 and error_code(r) == "edge_misconfigured"
        assert r.json()["error"]["message"] == "edge misconfigured"
        assert "REGIONS" not in r.text
        deadline = time.monotonic() + 5
        while "edge_config_invalid" not in bad.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        line = next(line for line in bad.log().splitlines() if "edge_config_invalid" in line)
        assert "REGIONS" in line
    finally:
        bad.stop()


def test_a_region_at_its_limit_gets_no_retries_and_its_clients_go_elsewhere(stack):
    """West answers every request 429 (a region at its API Gateway limit). The client gets the
    first 429 as it is (a region's own answer), then the edge stops adding to West's load: most
    requests are shed to Central, and Central's own failures are never retried into West."""
    set_faults(stack.west, error_rate=1.0, error_status=429)
    first = stack.get("/items?limit=1")
    assert first.status_code == 429 and first.headers["x-served-by"] == WEST
    served = [stack.get("/items?limit=1") for _ in range(30)]
    by = [r.headers["x-served-by"] for r in served]
    assert all(r.status_code in (200, 429) for r in served), [r.status_code for r in served]
    assert by.count(CENTRAL) >= 20, by
    counters = stack.get("/_edge/status").json()["counters"]
    assert counters["shed"] == by.count(CENTRAL) and counters["overloaded"] == 0, counters
    # Central now fails every request: while West is at its limit, Central's failures are never
    # retried into West (that would be a second attempt). The client gets the edge's 503 rather
    # than West pushed past its limit.
    set_faults(stack.central, error_rate=1.0, error_status=503)
    for _ in range(8):
        r = stack.get("/items?limit=1")
        assert r.status_code in (429, 503), r.text
        assert r.headers.get("x-edge-attempts", "0") in ("0", "1"), dict(r.headers)


def assert_all_served_by(stack, region, n):
    served = [stack.get("/items?limit=1") for _ in range(n)]
    assert all(r.status_code == 200 for r in served), [r.status_code for r in served]
    assert all(r.headers["x-served-by"] == region for r in served)


def test_a_region_whose_table_throttles_is_at_its_limit_not_failing(stack):
    """West's table keeps throttling (the regional's own 503 `throttled`, marked
    `x-region-limit: dynamodb`). The edge serves the request from Central instead, sheds most of
    West's next requests to Central, never retries into West while it is full, and does not
    count West's refusals against its health (a full region is not a broken one)."""
    settings = set_faults(stack.west, error_rate=1.0, error_status=503, error_code="throttled")
    assert settings["error_code"] == "throttled"
    raw = requests.get(stack.west.url + "/items?limit=1", timeout=5)
    assert raw.status_code == 503 and error_code(raw) == "throttled"
    assert raw.headers["x-region-limit"] == "dynamodb" and raw.headers["retry-after"] == "1"
    first = stack.get("/items?limit=1")
    assert first.status_code == 200 and first.headers["x-served-by"] == CENTRAL
    assert first.headers["x-edge-attempts"] == "2", dict(first.headers)
    assert_all_served_by(stack, CENTRAL, 30)
    counters = stack.get("/_edge/status").json()["counters"]
    assert counters["shed"] >= 20, counters
    west = stack.status()[WEST]
    assert west["state"] == "healthy" and west["consecutive_failures"] == 0, west
    # Central now fails every request: its failures are not retried into West while West's
    # table is full; the client gets the edge's 503.
    set_faults(stack.central, error_rate=1.0, error_status=503)
    for _ in range(8):
        r = stack.get("/items?limit=1")
        assert r.status_code == 503, r.text
        assert r.headers.get("x-edge-attempts", "0") in ("0", "1"), dict(r.headers)


def test_a_5xx_the_function_did_not_write_is_a_refusal_for_load_and_a_failure(stack):
    """West answers as API Gateway does when Lambda's concurrency is used up (a 503 without
    `x-region-status`: the function never ran). The edge cannot tell that from a crash and treats
    it as both: West's first attempts are shed as from a region at its limit, and its failures
    eject it. Clients are served by Central throughout."""
    set_faults(stack.west, error_rate=1.0, error_status=503, error_code="platform")
    raw = requests.get(stack.west.url + "/items?limit=1", timeout=5)
    assert raw.status_code == 503 and raw.json() == {"message": "Service Unavailable"}
    assert "x-region-status" not in raw.headers
    assert_all_served_by(stack, CENTRAL, 12)
    counters = stack.get("/_edge/status").json()["counters"]
    assert counters["shed"] >= 1, counters
    assert stack.status()[WEST]["state"] != "healthy", stack.status()[WEST]


def test_every_region_at_its_limit_is_the_edges_own_503_regions_overloaded(stack):
    set_faults(stack.west, error_rate=1.0, error_status=429)
    set_faults(stack.central, error_rate=1.0, error_status=429)
    answers = [stack.get("/items?limit=1") for _ in range(20)]
    shed = [r for r in answers if r.status_code == 503]
    assert len(shed) >= 10, [r.status_code for r in answers]
    for r in shed:
        assert error_code(r) == "regions_overloaded"
        assert r.headers["x-served-by"] == "edge" and r.headers["retry-after"] == "1"
        assert "x-edge-attempts" not in r.headers or r.headers["x-edge-attempts"] == "0"
    # The regions' own answers are 429s; nothing else.
    assert all(r.status_code in (429, 503) for r in answers)
    assert stack.get("/_edge/status").json()["counters"]["overloaded"] == len(shed)
    # The regions recover; a window (5 s) after their last refusal the edge sheds nothing.
    set_faults(stack.west, error_rate=0.0)
    set_faults(stack.central, error_rate=0.0)
    time.sleep(5.5)
    after = [stack.get("/items?limit=1") for _ in range(5)]
    assert all(r.status_code == 200 for r in after), [r.status_code for r in after]


class HalfAnswerOrigin:
    """A stand-in region in a gray failure its health check does not show: `/health` is a whole
    200, every other answer promises 100 bytes of JSON, sends 10 and closes the connection (a
    crashed or cut-off function behind a proxy that had sent the head)."""

    def __init__(self):
        self.cut = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # stopped
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            if head.split(b" ", 2)[1].startswith(b"/health"):
                body = b'{"status":"ok","region":"eu-west-1"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                return
            self.cut += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"x-served-by: eu-west-1\r\ncontent-length: 100\r\n\r\n{\"items\":")

    def stop(self):
        self._listener.close()


def test_a_region_that_cuts_its_answers_short_is_retried_and_never_reaches_a_client(moto_server, table):
    """A 200 whose body stops short is a failure, not an answer: the edge reads the whole answer
    before it replies, so no client gets a cut-off body; the request is retried in the other
    region, and the region that cuts them (its health check still 200) stops being tried first."""
    half = HalfAnswerOrigin()
    central = regional.start_regional(moto_server.url, CENTRAL, table)
    proc = edge.start_edge({WEST: half.url, CENTRAL: central.url}, routing={"hedge": False},
                           weights=WEIGHTS)
    try:
        answers = [requests.get(proc.url + "/items?limit=1", timeout=20) for _ in range(10)]
        for r in answers:
            assert r.status_code == 200 and r.headers["x-served-by"] == CENTRAL, r.text
            assert "items" in r.json()
        assert answers[0].headers["x-edge-attempts"] == "2", "West (preferred) was tried first"
        assert half.cut >= 1
        assert half.cut < len(answers), f"West kept being tried first: {half.cut} cut answers"
        assert answers[-1].headers["x-edge-attempts"] == "1"
    finally:
        proc.stop()
        central.stop()
        half.stop()


def affinity_token(secret: str, region: str, expires_ms: int) -> str:
    """An affinity token as the edge makes one: `region.expiry_ms.` + the first 16 bytes of its
    HMAC-SHA-256 (keyed by the secret's text), in hex."""
    import hashlib
    import hmac
    payload = f"{region}.{expires_ms}"
    tag = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{tag.hex()}"


def test_affinity_tokens_pin_only_when_genuine_and_bad_ones_are_ignored(stack):
    """West is preferred; a genuine token for central (signed with the edge's secret, by header
    or by cookie) sends the read there. A forged, altered, expired, too-long-lived, unknown-region
    or 10 KB token is ignored: the read is served as if none came, never refused."""
    secret = stack.edge.extra["affinity_secret"]
    soon = int(time.time() * 1000) + 5_000
    genuine = affinity_token(secret, CENTRAL, soon)
    for how in ({"x-tandem-affinity": genuine}, {"Cookie": f"a=b; tandem_affinity={genuine}"}):
        r = stack.get("/items?limit=1", headers=how)  # (no replication here: a listing)
        assert r.status_code == 200 and r.headers["x-served-by"] == CENTRAL, (how, r.headers)
    bad = {
        "forged": affinity_token("x" * 64, CENTRAL, soon),
        "altered": genuine[:-1] + ("0" if genuine[-1] != "0" else "1"),
        "expired": affinity_token(secret, CENTRAL, int(time.time() * 1000) - 1_000),
        "past the window": affinity_token(secret, CENTRAL, int(time.time() * 1000) + 3_600_000),
        "unknown region": affinity_token(secret, "us-east-1", soon),
        "overlong": "a" * 10_000,
        "garbage": "..\u00ff..",
    }
    for name, token in bad.items():
        for how in ({"x-tandem-affinity": token}, {"Cookie": f"tandem_affinity={token}"}):
            r = stack.get("/items?limit=1", headers=how)
            assert r.status_code == 200 and r.headers["x-served-by"] == WEST, (name, r.text)


def test_without_an_affinity_secret_no_token_is_issued_or_honoured(moto_server, table):
    west = regional.start_regional(moto_server.url, WEST, table)
    central = regional.start_regional(moto_server.url, CENTRAL, table)
    variables = {"REGIONS": edge.regions_var({WEST: west.url, CENTRAL: central.url}, WEIGHTS),
                 "ROUTING": '{"hedge": false}', **edge.OPEN}
    proc = edge.start_edge_raw(procs.free_port(), variables, name="edge-no-affinity")
    try:
        r = requests.post(proc.url + "/items", json={"n": 1}, timeout=10)
        assert r.status_code == 201 and r.headers["x-served-by"] == WEST, r.text
        assert "x-tandem-affinity" not in r.headers and "set-cookie" not in r.headers
        token = affinity_token("s" * 64, CENTRAL, int(time.time() * 1000) + 5_000)
        r = requests.get(f"{proc.url}/items/{r.json()['item_id']}", timeout=10,
                         headers={"x-tandem-affinity": token})
        assert r.status_code == 200 and r.headers["x-served-by"] == WEST
    finally:
        proc.stop()
        central.stop()
        west.stop()
