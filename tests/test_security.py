"""Closed by default, tried from outside: the whole local system started closed (moto, the
replicator, two real `regional` processes checking SigV4, the edge in workerd checking bearer
tokens against a local HS256 secret and a JWKS served on 127.0.0.1), then called as clients,
attackers and operators would call it."""

from __future__ import annotations

import datetime as dt
import json
import select
import shutil
import socket
import tempfile
import time
import uuid

import pytest
import requests
from conftest import CENTRAL, WEST, error_code
from harness import edge, procs, regional, sigv4, tokens
from harness.jwks import JwksServer
from harness.stubserver import StubServer
from harness.stack import Access, Stack


@pytest.fixture(scope="module")
def idp():
    rsa, ec = tokens.RsaKey("rsa-1"), tokens.EcKey("ec-1")
    server = JwksServer([rsa.jwk(), ec.jwk()])
    server.rsa, server.ec = rsa, ec
    yield server
    server.stop()


@pytest.fixture(scope="module")
def closed(idp):
    stack = Stack(closed=True, jwks_url=idp.url, tick_s=0, name="security").start()
    yield stack
    stack.stop()


def call(stack, method, path, token=None, **kw):
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, stack.edge.url + path, headers=headers, timeout=20, **kw)


def hs256(stack, **claims):
    return tokens.hs256(tokens.claims(**claims), stack.access.jwt_secret)


def test_valid_tokens_of_every_kind_pass(closed, idp):
    for name, token in [("hs256", closed.access.token),
                        ("rs256", idp.rsa.sign(tokens.claims(sub="rsa-user"))),
                        ("es256", idp.ec.sign(tokens.claims(sub="ec-user")))]:
        item_id = f"sec-{name}-{uuid.uuid4().hex[:6]}"
        r = call(closed, "POST", "/items", token, json={"item_id": item_id})
        assert r.status_code == 201, (name, r.status_code, r.text)
        got = call(closed, "GET", f"/items/{item_id}", token)
        assert got.status_code == 200 and got.json()["item_id"] == item_id, (name, got.text)


def test_bad_tokens_get_401_with_invalid_token(closed, idp):
    now = int(time.time())
    other_rsa = tokens.RsaKey("rsa-1")  # same kid, another key: a forged signature
    bad = {
        "expired": hs256(closed, lifetime_s=-3600),
        "not yet valid": tokens.hs256({**tokens.claims(), "nbf": now + 3600},
                                      closed.access.jwt_secret),
        "wrong issuer": tokens.hs256({**tokens.claims(), "iss": "someone-else"},
                                     closed.access.jwt_secret),
        "wrong audience": tokens.hs256({**tokens.claims(), "aud": "other-api"},
                                       closed.access.jwt_secret),
        "bad signature": other_rsa.sign(tokens.claims()),
        "alg none": tokens.unsigned(tokens.claims()),
        "HS256 keyed with the RSA public key": tokens.hs256_with_key_bytes(
            tokens.claims(), idp.rsa.public_pem(), "rsa-1"),
        "unknown kid": tokens.RsaKey("never-published").sign(tokens.claims()),
        "garbage": "not.a.token",
    }
    for name, token in bad.items():
        r = call(closed, "GET", "/items?limit=1", token)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert error_code(r) == "token_invalid", (name, r.text)
        assert 'error="invalid_token"' in r.headers["www-authenticate"], name
        assert r.headers["x-served-by"] == "edge", name
    missing = call(closed, "GET", "/items?limit=1")
    assert missing.status_code == 401 and error_code(missing) == "token_missing"
    assert missing.headers["www-authenticate"].startswith("Bearer")


def test_a_read_only_token_reads_but_cannot_write(closed):
    reader = hs256(closed, sub="reader", scopes=(tokens.READ,))
    assert call(closed, "GET", "/items?limit=1", reader).status_code == 200
    r = call(closed, "POST", "/items", reader, json={"item_id": f"ro-{uuid.uuid4().hex[:6]}"})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    # OPTIONS (no preflight: no Origin) is a safe method: the reader gets the region's 405.
    r = call(closed, "OPTIONS", "/items", reader)
    assert r.status_code == 405 and error_code(r) == "method_not_allowed", r.text


def test_health_and_preflight_need_no_token(closed):
    assert call(closed, "GET", "/health").status_code == 200
    r = call(closed, "OPTIONS", "/items",
             headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    # Answered by the edge's CORS rule (this stack allows no origin), never by the token check.
    assert r.status_code == 403 and error_code(r) == "cors_origin_not_allowed", r.text
    assert r.headers["x-served-by"] == "edge"


def test_regions_answer_only_what_the_edge_signed(closed):
    region = closed.regional[WEST]
    direct = requests.get(region.url + "/items?limit=1", timeout=10)
    assert direct.status_code == 403 and error_code(direct) == "signature_missing"
    # The same request through the edge succeeds, served by a region.
    through = call(closed, "GET", "/items?limit=1", closed.access.token)
    assert through.status_code == 200 and through.headers["x-served-by"] in (WEST, CENTRAL)
    # Health stays open for probes and monitors.
    assert requests.get(region.url + "/health", timeout=10).status_code == 200


def test_signed_direct_calls_pass_and_tampered_ones_do_not(closed):
    region = closed.regional[WEST]
    key = (closed.access.access_key_id, closed.access.secret_access_key)
    item_id = f"signed-{uuid.uuid4().hex[:6]}"
    body = f'{{"item_id":"{item_id}"}}'.encode()
    base_headers = {"content-type": "application/json", "idempotency-key": f"k-{item_id}"}

    def signed(method="POST", path="/items", headers=None, payload=body, region_name=WEST,
               when=None):
        return sigv4.sign(method, region.url + path, region_name, *key,
                          headers=headers or base_headers, body=payload, when=when)

    # Tampered path, body and header, a signature 6 minutes old, one for another region.
    attempts = {
        "path": (signed(), "/create", body, "signature_mismatch"),
        "body": (signed(), "/items", body.replace(b"signed-", b"forged-"), "signature_mismatch"),
        "header": ({**signed(), "idempotency-key": "k-other"}, "/items", body,
                   "signature_mismatch"),
        "subject added": ({**signed(), "x-tandem-subject": "mallory"}, "/items", body,
                          "signature_header_unsigned"),
        "precondition added": ({**signed(), "if-none-match": "*"}, "/items", body,
                               "signature_header_unsigned"),
        "if-match added": ({**signed(), "if-match": "*"}, "/items", body,
                           "signature_header_unsigned"),
        "too old": (signed(when=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=6)),
                    "/items", body, "signature_expired"),
        "wrong region": (signed(region_name=CENTRAL), "/items", body, "signature_wrong_scope"),
    }
    for name, (headers, path, payload, code) in attempts.items():
        r = requests.post(region.url + path, data=payload, headers=headers, timeout=10)
        assert r.status_code == 403, (name, r.status_code, r.text)
        assert error_code(r) == code, (name, r.text)
    # None of them wrote anything.
    check = sigv4.sign("GET", f"{region.url}/items/{item_id}", WEST, *key)
    assert requests.get(f"{region.url}/items/{item_id}", headers=check, timeout=10).status_code == 404
    # Signed as the edge would, with the stack's signing key: accepted.
    ok = requests.post(region.url + "/items", data=body, headers=signed(), timeout=10)
    assert ok.status_code == 201, ok.text


def test_methods_the_api_has_no_use_for_get_the_edges_405_with_allow(closed):
    for method, path in [("PATCH", "/items/x"), ("TRACE", "/items"), ("PATCH", "/health"),
                         ("PROPFIND", "/_edge/status")]:
        r = call(closed, method, path, closed.access.token)
        assert r.status_code == 405 and error_code(r) == "method_not_allowed", (method, path)
        assert r.headers["x-served-by"] == "edge"
        allowed = {m.strip() for m in r.headers["Allow"].split(",")}
        assert {"GET", "PUT", "POST", "DELETE"} <= allowed and method not in allowed, allowed


def test_operators_only_see_the_edge_status_and_never_origin_urls(closed):
    assert call(closed, "GET", "/_edge/status").status_code == 401
    assert call(closed, "GET", "/_edge/status", closed.access.token).status_code == 401
    r = call(closed, "GET", "/_edge/status", closed.access.operator_token)
    assert r.status_code == 200
    assert {reg["name"] for reg in r.json()["regions"]} == {WEST, CENTRAL}
    assert "127.0.0.1" not in r.text and "http" not in r.text


def test_the_edge_never_forwards_admin_routes(closed):
    r = call(closed, "PUT", "/admin/faults", regional.ADMIN_TOKEN, json={"status": 404})
    assert r.status_code == 404 and error_code(r) == "route_not_found"
    assert r.headers["x-served-by"] == "edge"
    assert requests.get(closed.regional[WEST].url + "/health", timeout=10).status_code == 200


def test_clients_see_no_internal_headers_and_get_security_headers(closed):
    r = call(closed, "GET", "/items?limit=1", closed.access.token)
    assert r.status_code == 200
    for internal in ("x-region-status", "x-amz-date", "x-tandem-subject", "x-tandem-deadline-ms"):
        assert internal not in r.headers, internal
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    refused = call(closed, "GET", "/items?limit=1")
    assert refused.headers["x-content-type-options"] == "nosniff"


class EchoOrigin:
    """A stand-in region on 127.0.0.1 that records the headers each request brought and answers
    200 with every kind of internal header a region, API Gateway or Lambda may add."""

    INTERNAL = {"x-region-status": "200", "x-region-limit": "dynamodb",
                "x-tandem-deadline-ms": "5", "x-tandem-affinity": "from-a-region",
                "x-amz-cf-id": "cf", "x-amzn-requestid": "r1", "x-amzn-trace-id": "Root=1",
                "apigw-requestid": "a1"}

    def __init__(self):
        self.seen: list[dict[str, str]] = []
        self.calls: list[tuple[str, str]] = []
        self._server = StubServer(self._answer)
        self.url = self._server.url

    def _answer(self, method, path, headers, body):
        self.seen.append(headers)
        self.calls.append((method, path))
        out = {**EchoOrigin.INTERNAL, "x-served-by": WEST, "content-type": "application/json"}
        return 200, out, json.dumps({"items": [], "next_cursor": None}).encode()

    def stop(self):
        self._server.stop()


def test_internal_headers_are_stripped_both_ways():
    """On an open edge nothing overwrites a client's `x-tandem-subject`: only the strip keeps a
    client from speaking for the edge. Of a client's headers only those the API reads reach a
    region (300 junk headers and a 20 KB cookie are served, not passed on to trip a region's
    or API Gateway's header limits). And whatever internal headers a region, API Gateway or
    Lambda adds, the client sees none."""
    origin = EchoOrigin()
    proc = edge.start_edge({WEST: origin.url})
    try:
        forged = {"x-tandem-subject": "mallory", "x-tandem-deadline-ms": "1",
                  "x-forwarded-for": "6.6.6.6", "x-amz-security-token": "stolen",
                  "x-amz-date": "20000101T000000Z", "authorization": "AWS4-HMAC-SHA256 forged"}
        junk = {f"x-junk-{i}": "v" for i in range(300)} | {"cookie": "big=" + "c" * 20_000}
        read = {"if-match": '"1-0123456789ab"', "if-none-match": 'W/"2-0123456789ab"',
                "idempotency-key": "k-1"}
        plain = requests.get(f"{proc.url}/items?limit=1", timeout=20)
        assert plain.status_code == 200
        plain_names = set([h for h in origin.seen if h.get("x-request-id")][-1])
        everyday = {"User-Agent": "app/1.0", "Accept": "application/json", "Origin": "https://x.example",
                    "Referer": "https://x.example/page", "Accept-Language": "fr",
                    "x-tandem-affinity": "not-a-token", "Forwarded": "for=6.6.6.6"}
        r = requests.get(f"{proc.url}/items?limit=1", headers=forged | junk | read | everyday,
                         timeout=20)
        assert r.status_code == 200 and r.headers["x-served-by"] == WEST, r.text
        got = [h for h in origin.seen if h.get("x-request-id")][-1]
        # Exactly the API's headers were added to what a bare request brings: nothing else.
        assert set(got) - plain_names == set(read), set(got) ^ plain_names
        # A bare request brings only what the edge and the runtime add (the client's own
        # User-Agent and Accept stay behind).
        assert plain_names <= {"host", "cf-worker", "x-forwarded-for", "x-request-id",
                               "x-tandem-deadline-ms", "content-length"}, plain_names
        assert "x-tandem-subject" not in got and "authorization" not in got
        assert "x-amz-security-token" not in got and got.get("x-amz-date") != forged["x-amz-date"]
        assert got.get("x-forwarded-for") != "6.6.6.6"
        assert int(got["x-tandem-deadline-ms"]) > 1, "the edge sets the deadline, not the client"
        assert not [name for name in got if name.startswith("x-junk-")] and "cookie" not in got
        assert {name: got.get(name) for name in read} == read
        leaked = [name for name in EchoOrigin.INTERNAL if name in r.headers]
        assert not leaked, leaked
        assert "strict-transport-security" not in r.headers, "HSTS over plain HTTP"
    finally:
        proc.stop()
        origin.stop()


def test_without_a_token_the_rate_limit_is_per_address():
    """An edge without tokens keys its rate limit by the client's address (`CF-Connecting-IP`,
    which Cloudflare sets; locally the test sets it to play two clients): one address over its
    100 a minute gets 429s, another is still served. The stand-in region marks its 200s with
    `x-region-limit`, which must not make the edge take it for a full region either."""
    origin = EchoOrigin()
    access = {**edge.OPEN, "RATE_LIMIT": json.dumps({"limit": 100, "period_s": 60})}
    proc = edge.start_edge({WEST: origin.url}, access=access)
    try:
        statuses = []
        # The binding counts in fixed windows: a flood across two may need up to 200.
        for _ in range(230):
            r = requests.get(f"{proc.url}/items?limit=1", headers={"CF-Connecting-IP": "192.0.2.1"},
                             timeout=20)
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
        assert error_code(r) == "rate_limited" and r.headers["x-served-by"] == "edge"
        other = requests.get(f"{proc.url}/items?limit=1", headers={"CF-Connecting-IP": "192.0.2.2"},
                             timeout=20)
        assert other.status_code == 200 and other.headers["x-served-by"] == WEST, other.text
    finally:
        proc.stop()
        origin.stop()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_over_https_every_answer_carries_hsts():
    """HSTS only over HTTPS (on plain HTTP it would mean nothing and is left out): an answer
    from a region, the edge's own refusal and its error when no region answers all carry it."""
    origin = EchoOrigin()
    variables = {"REGIONS": edge.regions_var({WEST: origin.url}), "ROUTING": "{}",
                 "CORS_ORIGINS": "[]", **edge.OPEN}
    proc = edge.start_edge_raw(procs.free_port(), variables, name="edge-https", https=True)
    try:
        answers = [requests.get(f"{proc.url}/items?limit=1", verify=False, timeout=20),
                   requests.request("TRACE", f"{proc.url}/items", verify=False, timeout=20)]
        origin.stop()
        answers.append(requests.get(f"{proc.url}/items/gone", verify=False, timeout=20))
        assert [r.status_code for r in answers] == [200, 405, 503], [r.text for r in answers]
        for r in answers:
            assert r.headers["strict-transport-security"].startswith("max-age="), r.headers
            assert r.headers["x-content-type-options"] == "nosniff"
    finally:
        proc.stop()
        origin.stop()


def test_the_body_limit_holds_for_a_chunked_body_without_a_length(closed):
    def chunks():
        yield b'{"item_id":"big","blob":"'
        for _ in range(100):  # 100 × 8 KiB: twice the 400 KB limit
            yield b"x" * 8192
        yield b'"}'

    r = call(closed, "POST", "/items", closed.access.token, data=chunks(),
             headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert r.headers["x-served-by"] == "edge"


def lost_by_dev_proxy(answer: bytes) -> bool:
    """Whether this is the 503 wrangler dev's own proxy (not in production) gives when its hop to
    the Worker breaks, which it may when the Worker answers before a request body has ended:
    "Your worker restarted mid-request", in plain text (the edge answers JSON only)."""
    head = answer.partition(b"\r\n\r\n")[0].lower()
    return head.startswith(b"http/1.1 503") and b"content-type: text/plain" in head


def send_endless_body(port: int) -> tuple[int, bytes]:
    """POSTs a chunked body that never ends, up to 16 MiB, until an answer comes; returns the
    bytes sent and what came back (at least the answer's head: the edge may reset the connection
    once it has answered, for the body left unread)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(b"POST /items HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 16384 + b"x" * 16384 + b"\r\n"
        sent, pending, answer = 0, b"", b""
        sock.setblocking(False)
        while sent < 16 * 1024 * 1024 and not answer:
            ready = select.select([sock], [sock], [], 5)
            if ready[0]:
                try:
                    answer = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not answer:  # closed without an answer
                    break
            elif ready[1]:
                pending = pending or chunk
                try:
                    n = sock.send(pending)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    break
                sent, pending = sent + n, pending[n:]
            else:
                break
        sock.setblocking(True)
        while b"\r\n\r\n" not in answer:
            try:
                more = sock.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            answer += more
        return sent, answer
    finally:
        sock.close()


def test_an_endless_body_is_refused_while_it_is_still_being_sent():
    """The body limit is counted as the body streams in: a chunked body that never ends gets its
    413 while the client is still sending, once the edge has read the 400 KB limit and dropped
    up to 4 MiB more (so the connection ends cleanly), and nothing reaches a region. An edge
    that read bodies whole first would never answer (the test sends at most 16 MiB, never the
    body's end). It has an edge of its own: wrangler dev's local proxy in front of the Worker
    may lose the request when the Worker answers before the body ends (then it answers its own
    503, which has no counterpart in production, and the next attempt is made)."""
    origin = EchoOrigin()
    proc = edge.start_edge({WEST: origin.url})
    try:
        attempts = []
        for _ in range(4):
            sent, answer = send_endless_body(proc.port)
            attempts.append((sent, answer[:200]))
            if not lost_by_dev_proxy(answer):
                break
        # Answered with the body still open (the socket buffers hold a few MiB more than was read).
        assert answer.startswith(b"HTTP/1.1 413"), attempts
        assert [c for c in origin.calls if c[0] != "GET"] == [], origin.calls
    finally:
        proc.stop()
        origin.stop()


def test_preconditions_reach_the_regions_signed(closed):
    """`If-None-Match` is forwarded and signed (a region refuses it unsigned), as `If-Match` is:
    a create-only PUT through the edge is a 201 then a 412, and a GET naming the stored write
    a 304 without a body, from the region."""
    token = closed.access.token
    path = f"/items/create-only-{uuid.uuid4().hex[:8]}"
    first = call(closed, "PUT", path, token, json={"v": 1}, headers={"If-None-Match": "*"})
    assert first.status_code == 201, first.text
    # Back to the region that wrote it (the affinity token), as a client that keeps it would.
    pinned = {"x-tandem-affinity": first.headers["x-tandem-affinity"]}
    again = call(closed, "PUT", path, token, json={"v": 2}, headers={"If-None-Match": "*", **pinned})
    assert again.status_code == 412 and error_code(again) == "precondition_failed", again.text
    assert again.headers["x-served-by"] == first.headers["x-served-by"]
    cached = call(closed, "GET", path, token, headers={"If-None-Match": first.headers["etag"], **pinned})
    assert cached.status_code == 304 and cached.content == b"", cached.text
    assert cached.headers["etag"] == first.headers["etag"]
    assert cached.headers["x-served-by"] == first.headers["x-served-by"]
    assert call(closed, "GET", path, token, headers=pinned).json()["v"] == 1


def test_idempotency_keys_are_scoped_to_the_tokens_subject(closed):
    key = f"shared-key-{uuid.uuid4().hex[:6]}"
    alice, bob = hs256(closed, sub="alice"), hs256(closed, sub="bob")
    headers = {"Idempotency-Key": key}
    a = call(closed, "POST", "/items", alice, json={"note": "alice's"}, headers=headers)
    b = call(closed, "POST", "/items", bob, json={"note": "bob's"}, headers=headers)
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert a.json()["item_id"] != b.json()["item_id"]  # bob's key never met alice's
    again = call(closed, "POST", "/items", alice, json={"note": "alice's"}, headers=headers)
    assert again.status_code == 201 and again.headers.get("idempotency-replayed") == "true"
    assert again.json()["item_id"] == a.json()["item_id"]


def test_any_subject_scopes_its_own_keys_and_reaches_the_regions(closed):
    """A token's `sub` is any JSON string. Non-ASCII or control characters in it must not break
    the signed request (a 403 from every region, counted as their failure) or the edge (a bare
    500), and long subjects must not fall back to one shared scope."""
    tag = uuid.uuid4().hex[:6]
    subjects = [f"josé-{tag}", f"用户-{tag}", f"line\r\nbreak\u0000-{tag}",
                "x" * 300 + f"-a-{tag}", "x" * 300 + f"-b-{tag}"]
    headers = {"Idempotency-Key": f"odd-subjects-{tag}"}
    ids = []
    for sub in subjects:
        token = hs256(closed, sub=sub)
        r = call(closed, "POST", "/items", token, json={"note": "same"}, headers=headers)
        assert r.status_code == 201, (sub[-12:], r.status_code, r.text)
        assert r.headers["x-edge-attempts"] == "1" and "idempotency-replayed" not in r.headers
        ids.append(r.json()["item_id"])
        again = call(closed, "POST", "/items", token, json={"note": "same"}, headers=headers)
        assert again.status_code == 201 and again.headers.get("idempotency-replayed") == "true"
        assert again.json()["item_id"] == ids[-1]
    assert len(set(ids)) == len(subjects), "two subjects shared a scope"


def test_keys_rotate_on_an_unknown_kid_and_survive_a_jwks_outage(closed, idp):
    rsa_token = idp.rsa.sign(tokens.claims(sub="rotation"))
    assert call(closed, "GET", "/items?limit=1", rsa_token).status_code == 200
    # Made-up kids fetch the keys at most once per unknown_kid_refresh_s (1 s here).
    time.sleep(1.1)
    before = idp.fetches
    for i in range(5):
        made_up = tokens.EcKey(f"made-up-{i}").sign(tokens.claims())
        assert call(closed, "GET", "/items?limit=1", made_up).status_code == 401
    assert idp.fetches - before <= 2, idp.fetches - before  # one, or two across a second
    time.sleep(1.1)
    rotated = tokens.EcKey("ec-2")
    idp.keys.append(rotated.jwk())
    # A token signed with the new key: its unknown kid makes the edge fetch the keys again.
    r = call(closed, "GET", "/items?limit=1", rotated.sign(tokens.claims(sub="rotated")))
    assert r.status_code == 200, r.text
    time.sleep(1.1)
    idp.failing = True
    try:
        unknown = tokens.EcKey("ec-3").sign(tokens.claims())
        assert call(closed, "GET", "/items?limit=1", unknown).status_code == 401
        # The identity provider is down: the last good keys still verify.
        assert call(closed, "GET", "/items?limit=1", rsa_token).status_code == 200
    finally:
        idp.failing = False


def test_a_client_over_its_rate_limit_gets_429_with_ratelimit_headers(closed):
    flooder = hs256(closed, sub=f"flood-{uuid.uuid4().hex[:6]}")
    statuses = []
    # 100 a minute are allowed; the binding counts in fixed windows, so a flood that straddles
    # two windows may need up to 200 requests before the 429.
    for _ in range(250):
        r = call(closed, "GET", "/items?limit=1", flooder)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429, (len(statuses), statuses[-5:])
    assert all(s == 200 for s in statuses[:100]), statuses[:100]
    assert error_code(r) == "rate_limited"
    assert int(r.headers["retry-after"]) > 0
    assert r.headers["ratelimit-policy"] == '"client";q=100;w=60'
    assert r.headers["ratelimit"].startswith('"client";r=0;')
    # Another client is not limited.
    assert call(closed, "GET", "/items?limit=1", closed.access.token).status_code == 200


def test_a_region_refusing_the_edges_signature_counts_as_failing(moto_server, table):
    """A region whose keys disagree with the edge's (misconfigured) answers 403: the edge
    treats that as the region failing and serves from the other one."""
    access = Stack(closed=True).access  # throwaway secrets only; no processes started
    wrong = {"SIGV4_ACCESS_KEY_ID": access.access_key_id, "SIGV4_SECRET_ACCESS_KEY": "wrong"}
    west = regional.start_regional(moto_server.url, WEST, table, extra_env=wrong)
    central = regional.start_regional(moto_server.url, CENTRAL, table,
                                      extra_env=access.regional_env())
    front = None
    try:
        front = edge.start_edge({WEST: west.url, CENTRAL: central.url},
                                routing={"hedge": False}, weights={WEST: 100.0, CENTRAL: 1.0},
                                access=access.edge_vars())
        headers = {"Authorization": f"Bearer {access.token}"}
        r = requests.get(front.url + "/items?limit=1", headers=headers, timeout=20)
        assert r.status_code == 200 and r.headers["x-served-by"] == CENTRAL, r.text
        assert r.headers["x-edge-attempts"] == "2"
        status = {reg["name"]: reg for reg in edge.status(front)["regions"]}
        assert status[WEST]["consecutive_failures"] >= 1
    finally:
        for proc in (front, central, west):
            if proc:
                proc.stop()


def test_queries_and_paths_signers_could_read_two_ways_never_blame_a_region(closed):
    """A `+`, reserved characters or odd escapes in the query are sent in one spelling (decoded
    as a form, encoded again), so the region reads what the client meant and checks the same
    signature; a tab in a signed header goes out as a space. (`//` in a path is the edge's 404,
    unit-tested: the local runtime folds it before the Worker sees it.)"""
    before = {r["name"]: r["consecutive_failures"] for r in closed.edge_status()["regions"]}
    token = closed.access.token
    item_id = f"q-{uuid.uuid4().hex[:6]}"
    assert call(closed, "PUT", f"/items/{item_id}", token, json={}).status_code == 201
    for query in ["limit=2&x=a+b%2Bc&y=(a)*!'@,;:$", "limit=1&&z=%zz&w=%e9", "limit=%31"]:
        r = requests.get(f"{closed.edge.url}/items?{query}", timeout=20,
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.headers["x-served-by"] != "edge", (query, r.text)
        assert len(r.json()["items"]) <= 2
    r = call(closed, "GET", "/items?limit=+2", token)  # " 2" is not a limit: the region says so
    assert r.status_code == 400 and error_code(r) == "invalid_query"
    r = call(closed, "PUT", f"/items/{item_id}", token, data=b"{}",
             headers={"Content-Type": "application/json;\tcharset=utf-8"})
    assert r.status_code == 200 and r.headers["x-served-by"] != "edge", r.text
    after = {r["name"]: r["consecutive_failures"] for r in closed.edge_status()["regions"]}
    assert after == before


def test_a_header_that_cannot_be_signed_is_a_400_not_a_failing_region(closed):
    """A byte of 0x80 or more in a header the edge signs (HTTP allows it; SigV4 has no form for
    it): the client gets 400 invalid_header from the edge, no region is tried or blamed."""
    before = {r["name"]: r["consecutive_failures"] for r in closed.edge_status()["regions"]}
    r = call(closed, "POST", "/items", closed.access.token, json={"note": "x"},
             headers={"Idempotency-Key": "caf\xe9"})
    assert r.status_code == 400 and error_code(r) == "invalid_header", r.text
    assert r.headers["x-served-by"] == "edge"
    after = {r["name"]: r["consecutive_failures"] for r in closed.edge_status()["regions"]}
    assert after == before


def test_token_keys_are_shared_through_kv_and_kept_while_the_provider_is_down():
    """The JWKS an isolate fetched is kept in KV: a fresh isolate (a deploy, an eviction) starts
    from that copy without fetching, so it verifies RS256 tokens while the identity provider is
    down. An edge with no copy at all while the provider is down answers 503
    `token_keys_unavailable` (retry), not 401, and HS256 tokens still pass."""
    rsa = tokens.RsaKey("rsa-kv")
    idp = JwksServer([rsa.jwk()])
    origin = EchoOrigin()
    access = Access(idp.url)
    state = tempfile.mkdtemp(prefix="wrangler-jwks-kv-", dir=procs.STATE)
    port = procs.free_port()
    token = rsa.sign(tokens.claims(sub="kv-user"))
    procs_started = []

    def start(state_dir):
        proc = edge.start_edge({WEST: origin.url}, port=port, state_dir=state_dir,
                               access=access.edge_vars(), name="edge-jwks")
        procs_started.append(proc)
        return proc

    def get(proc, bearer):
        return requests.get(f"{proc.url}/items?limit=1", timeout=20,
                            headers={"Authorization": f"Bearer {bearer}"})

    try:
        proc = start(state)
        assert get(proc, token).status_code == 200
        fetched = idp.fetches
        assert fetched >= 1
        idp.failing = True
        proc.stop()
        proc = start(state)  # a fresh isolate, the same KV
        r = get(proc, token)
        assert r.status_code == 200, r.text
        assert idp.fetches == fetched, "the fresh isolate fetched instead of reading KV"
        proc.stop()
        proc = start(None)  # a fresh isolate and an empty KV, the provider still down
        r = get(proc, token)
        assert r.status_code == 503 and error_code(r) == "token_keys_unavailable", r.text
        assert r.headers["x-served-by"] == "edge" and r.headers.get("retry-after")
        assert idp.fetches > fetched
        assert get(proc, access.token).status_code == 200, "HS256 needs no provider"
    finally:
        for proc in procs_started:
            proc.stop()
        shutil.rmtree(state, ignore_errors=True)
        origin.stop()
        idp.stop()


def test_no_secret_reaches_any_log(closed, idp):
    """Runs last in this module, after every kind of call above: neither the edge's nor a
    region's log holds a caller's token, the HS256 secret, the SigV4 secret or a signature, or
    the operator token."""
    rsa_token = idp.rsa.sign(tokens.claims(sub="log-check"))
    assert call(closed, "GET", "/items?limit=1", rsa_token).status_code == 200
    assert call(closed, "POST", "/items", closed.access.token, json={"n": 1}).status_code == 201
    closed.edge_status()
    secrets_ = {"caller token": closed.access.token, "RS256 token": rsa_token,
                "HS256 secret": closed.access.jwt_secret,
                "SigV4 secret": closed.access.secret_access_key,
                "operator token": closed.access.operator_token}
    logs = {"edge": closed.edge.log()} | {r: p.log() for r, p in closed.regional.items()}
    assert all(len(text) > 0 for text in logs.values()), "a log is empty: nothing was checked"
    for where, text in logs.items():
        for what, secret in secrets_.items():
            assert secret not in text, f"the {what} is in the {where} log"
        assert "Signature=" not in text, f"a SigV4 signature is in the {where} log"
