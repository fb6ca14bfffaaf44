"""The regional function's HTTP API, driven over HTTP against a real DynamoDB API (moto)."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import CENTRAL, WEST, error_code
from harness import moto, regional
from harness.slowlink import SlowLink
from harness.stubserver import StubServer


def uid(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# The seed's three calls, in exactly the seed's shapes.

def test_seed_create_then_get(west):
    item_id = uid("seed")
    r = requests.post(f"{west.url}/create", json={"item_id": item_id, "colour": "blue"})
    assert r.status_code == 200
    assert r.json() == {"item_id": item_id}
    assert r.headers["x-served-by"] == WEST

    r = requests.get(f"{west.url}/get/{item_id}")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"item_id", "retrieved from"}
    assert body["retrieved from"] == WEST
    stored = body["item_id"]
    assert stored["item_id"] == item_id and stored["colour"] == "blue"
    assert stored["region"] == WEST and stored["version"] == 1
    assert stored["created_at"] == stored["updated_at"] and stored["created_at"].endswith("Z")


def test_seed_get_missing_is_404_json(west):
    r = requests.get(f"{west.url}/get/{uid('nope')}")
    assert r.status_code == 404
    assert error_code(r) == "item_not_found"


def test_seed_health_names_region(west):
    r = requests.get(f"{west.url}/health")
    assert r.status_code == 200
    assert r.json()["region"] == WEST
    r = requests.get(f"{west.url}/health?deep=true")
    assert r.status_code == 200 and r.json()["deep"] is True


def test_seed_create_requires_item_id(west):
    r = requests.post(f"{west.url}/create", json={"colour": "red"})
    assert r.status_code == 400
    assert error_code(r) == "invalid_item_id"


# The REST API.

def test_rest_create_generates_id_and_location(west):
    r = requests.post(f"{west.url}/items", json={"name": "widget", "n": 3, "tags": ["a"], "m": {"k": None}})
    assert r.status_code == 201
    item = r.json()
    assert r.headers["location"] == f"/items/{item['item_id']}"
    assert r.headers["etag"].startswith('"1-') and r.headers["etag"].endswith('"')
    assert item["name"] == "widget" and item["n"] == 3 and item["tags"] == ["a"] and item["m"] == {"k": None}
    got = requests.get(f"{west.url}{r.headers['location']}")
    assert got.status_code == 200 and got.json() == item


def test_rest_put_replace_and_if_match(west):
    item_id = uid("put")
    r = requests.put(f"{west.url}/items/{item_id}", json={"v": 1})
    assert r.status_code == 201 and r.json()["version"] == 1
    created_at = r.json()["created_at"]
    first_tag = r.headers["etag"]
    assert requests.get(f"{west.url}/items/{item_id}").headers["etag"] == first_tag

    # The version number alone is not a tag: the whole ETag is compared.
    bare = requests.put(f"{west.url}/items/{item_id}", json={"v": 2}, headers={"If-Match": '"1"'})
    assert bare.status_code == 412

    r = requests.put(f"{west.url}/items/{item_id}", json={"v": 2}, headers={"If-Match": first_tag})
    assert r.status_code == 200
    assert r.json()["version"] == 2 and r.json()["v"] == 2 and r.json()["created_at"] == created_at
    assert r.headers["etag"].startswith('"2-') and r.headers["etag"] != first_tag

    stale = requests.put(f"{west.url}/items/{item_id}", json={"v": 3}, headers={"If-Match": first_tag})
    assert stale.status_code == 412 and error_code(stale) == "precondition_failed"
    assert requests.get(f"{west.url}/items/{item_id}").json()["v"] == 2
    weak = requests.put(f"{west.url}/items/{item_id}", json={"v": 3},
                        headers={"If-Match": "W/" + r.headers["etag"]})
    assert weak.status_code == 412, "a weak tag never matches"
    listed = requests.put(f"{west.url}/items/{item_id}", json={"v": 3},
                          headers={"If-Match": f'"nope", {r.headers["etag"]}'})
    assert listed.status_code == 200, "any tag of a list may match"
    star = requests.put(f"{west.url}/items/{item_id}", json={"v": 3.5}, headers={"If-Match": "*"})
    assert star.status_code == 200 and star.json()["version"] == 4

    r = requests.put(f"{west.url}/items/{item_id}", json={"v": 4})
    assert r.status_code == 200 and r.json()["version"] == 5

    for tag in ('"1-000000000000"', "*"):
        missing = requests.put(f"{west.url}/items/{uid('none')}", json={}, headers={"If-Match": tag})
        assert missing.status_code == 412


def test_rest_delete(west):
    item_id = uid("del")
    tag = requests.put(f"{west.url}/items/{item_id}", json={"x": 1}).headers["etag"]
    stale = requests.delete(f"{west.url}/items/{item_id}", headers={"If-Match": '"9-000000000000"'})
    assert stale.status_code == 412
    assert requests.put(f"{west.url}/items/{item_id}", json={"x": 2},
                        headers={"If-Match": tag}).status_code == 200
    old = requests.delete(f"{west.url}/items/{item_id}", headers={"If-Match": tag})
    assert old.status_code == 412, "the tag of an overwritten write"
    r = requests.delete(f"{west.url}/items/{item_id}")
    assert r.status_code == 204 and r.content == b""
    assert requests.get(f"{west.url}/items/{item_id}").status_code == 404
    again = requests.delete(f"{west.url}/items/{item_id}")
    assert again.status_code == 404 and error_code(again) == "item_not_found"


def test_rest_list_paginates_every_item_once(central):
    """Keyed creates leave key records in the table, which listings leave out; a page can end on
    one (limit 1 makes every record end a page), and its cursor must still work."""
    prefix = uid("list")
    ids = {f"{prefix}-{i}" for i in range(7)}
    for n, item_id in enumerate(sorted(ids)):
        if n % 2:
            r = requests.post(f"{central.url}/items", json={"item_id": item_id},
                              headers={"Idempotency-Key": f"{item_id}-key"})
        else:
            r = requests.put(f"{central.url}/items/{item_id}", json={})
        assert r.status_code == 201, r.text
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        r = requests.get(f"{central.url}/items", params=params)
        assert r.status_code == 200, (pages, r.text)
        body = r.json()
        assert len(body["items"]) <= 1
        seen += [i["item_id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
        assert pages < 500
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))
    assert not [i for i in seen if not i.isprintable()], "a key record was listed"
    assert pages >= len(ids) + 3, "the key records were not in the table"


def test_concurrent_writers_with_one_tag_get_one_success(west):
    """If-Match is kept by a DynamoDB condition, not only by the read before the write: of
    writers that all read the same tag at once, exactly one succeeds and the rest get 412; a
    delete racing them is one of those writers."""
    item_id = uid("race")
    tag = requests.put(f"{west.url}/items/{item_id}", json={"writer": -1}).headers["ETag"]

    def write(n):
        if n == 8:
            return n, requests.delete(f"{west.url}/items/{item_id}", headers={"If-Match": tag})
        return n, requests.put(f"{west.url}/items/{item_id}", json={"writer": n},
                               headers={"If-Match": tag})

    with ThreadPoolExecutor(9) as pool:
        results = list(pool.map(write, range(9)))
    won = [(n, r) for n, r in results if r.status_code in (200, 204)]
    lost = [(n, r.status_code, r.text) for n, r in results if r.status_code not in (200, 204)]
    assert len(won) == 1, [(n, r.status_code) for n, r in results]
    assert all(status == 412 for _, status, _ in lost), lost
    winner, answer = won[0]
    now = requests.get(f"{west.url}/items/{item_id}")
    if winner == 8:
        assert now.status_code == 404
    else:
        assert now.json()["writer"] == winner and now.headers["ETag"] == answer.headers["ETag"]


def test_a_page_is_cut_at_its_byte_limit_and_the_listing_goes_on(moto_server, table):
    """A page's JSON stays within LIST_PAGE_MAX_BYTES (Lambda passes back 6 MB; a DynamoDB page
    of 1 MB can print as several times that): the page is cut with a cursor at the cut, and the
    listing still returns every item once."""
    proc = regional.start_regional(moto_server.url, WEST, table,
                                   extra_env={"LIST_PAGE_MAX_BYTES": "4096"})
    try:
        ids = {uid("wide") for _ in range(6)}
        for item_id in ids:
            assert requests.put(f"{proc.url}/items/{item_id}", json={"pad": "x" * 1500}).status_code == 201
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            r = requests.get(f"{proc.url}/items", params=params)
            assert r.status_code == 200, r.text
            assert len(r.content) <= 4096 + 200 or len(r.json()["items"]) == 1, len(r.content)
            seen += [i["item_id"] for i in r.json()["items"]]
            pages += 1
            cursor = r.json()["next_cursor"]
            if not cursor:
                break
            assert pages < 500
        assert ids <= set(seen) and len(seen) == len(set(seen))
        assert pages >= 3, "the 6 wide items alone need three pages"
    finally:
        proc.stop()


def test_concurrent_creates_of_one_id_get_one_201(west):
    """Creates racing for one id (direct, without keys): one 201, the rest 409 `item_exists`,
    and the stored item is the 201's, even when two land in the same millisecond, with the
    same body too (then only the write's id tells them apart)."""
    for same_body in (False, False) + (True,) * 12:
        item_id = uid("race-create")

        def create(n):
            body = {"item_id": item_id} | ({"locked": True} if same_body else {"writer": n})
            return n, requests.post(f"{west.url}/items", json=body)

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(create, range(12)))
        won = [n for n, r in results if r.status_code == 201]
        assert len(won) == 1, (same_body, [(n, r.status_code) for n, r in results])
        assert all(r.status_code == 409 and error_code(r) == "item_exists"
                   for n, r in results if n not in won)
        if not same_body:
            assert requests.get(f"{west.url}/items/{item_id}").json()["writer"] == won[0]


def test_if_none_match_star_puts_only_create_and_racers_get_one_201(west):
    """`If-None-Match: *` is a PUT that only creates (RFC 9110): 201 when there was no item,
    412 `precondition_failed` with the first item unchanged when there is one. Racing creators
    of one id get one 201, kept by the write's DynamoDB condition; the stored item is its."""
    item_id = uid("create-only")
    first = requests.put(f"{west.url}/items/{item_id}", json={"v": 1}, headers={"If-None-Match": "*"})
    assert first.status_code == 201, first.text
    again = requests.put(f"{west.url}/items/{item_id}", json={"v": 2}, headers={"If-None-Match": "*"})
    assert again.status_code == 412 and error_code(again) == "precondition_failed", again.text
    kept = requests.get(f"{west.url}/items/{item_id}")
    assert kept.json()["v"] == 1 and kept.headers["ETag"] == first.headers["ETag"]
    # A tag: the write goes ahead unless the stored item is that write (compared weakly).
    stale = requests.put(f"{west.url}/items/{item_id}", json={"v": 3},
                         headers={"If-None-Match": '"9-000000000000"'})
    assert stale.status_code == 200 and stale.json()["v"] == 3, stale.text
    same = requests.delete(f"{west.url}/items/{item_id}",
                           headers={"If-None-Match": "W/" + stale.headers["ETag"]})
    assert same.status_code == 412 and requests.get(f"{west.url}/items/{item_id}").status_code == 200
    # Racers with bodies of their own, then with one body (a lock: `{"locked": true}`), which
    # in one millisecond make the same item but for the write's id: still one 201.
    for same_body in (False, False) + (True,) * 12:
        racing_id = uid("race-create-only")

        def create(n):
            body = {"locked": True} if same_body else {"writer": n}
            return n, requests.put(f"{west.url}/items/{racing_id}", json=body,
                                   headers={"If-None-Match": "*"})

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(create, range(12)))
        won = [n for n, r in results if r.status_code == 201]
        assert len(won) == 1, (same_body, [(n, r.status_code) for n, r in results])
        assert all(r.status_code == 412 for n, r in results if n not in won), \
            [(n, r.status_code, r.text) for n, r in results]
        if not same_body:
            assert requests.get(f"{west.url}/items/{racing_id}").json()["writer"] == won[0]


def test_a_get_naming_the_stored_write_is_304(west):
    """A client that has the item sends its ETag back in `If-None-Match`: 304 with the ETag and
    no body while the item is that write, the item again once it changed; an `If-Match` that
    names another write is a 412, and a malformed header a 400 with its code."""
    item_id = uid("cached")
    tag = requests.put(f"{west.url}/items/{item_id}", json={"v": 1}).headers["ETag"]
    for sent in (tag, f'"other", W/{tag}', "*"):
        r = requests.get(f"{west.url}/items/{item_id}", headers={"If-None-Match": sent})
        assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == tag, (sent, r.text)
        assert r.headers["x-served-by"] == WEST
    head = requests.head(f"{west.url}/items/{item_id}", headers={"If-None-Match": tag})
    assert head.status_code == 304
    changed = requests.put(f"{west.url}/items/{item_id}", json={"v": 2}).headers["ETag"]
    r = requests.get(f"{west.url}/items/{item_id}", headers={"If-None-Match": tag})
    assert r.status_code == 200 and r.json()["v"] == 2 and r.headers["ETag"] == changed
    r = requests.get(f"{west.url}/items/{item_id}", headers={"If-Match": tag})
    assert r.status_code == 412 and error_code(r) == "precondition_failed"
    missing = requests.get(f"{west.url}/items/{uid('none')}", headers={"If-None-Match": "*"})
    assert missing.status_code == 404
    # Header lines are one list (RFC 9110): `"other"` then the stored tag names the item (412),
    # and `"other"` then `*` is malformed (400, as `*` stands alone); reading the first line
    # alone would let either PUT overwrite the item.
    for lines, status in (('"other"', changed), 412), (('"other"', "*"), 400):
        conn = http.client.HTTPConnection("127.0.0.1", west.port, timeout=10)
        try:
            conn.putrequest("PUT", f"/items/{item_id}")
            for line in lines:
                conn.putheader("If-None-Match", line)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", "8")
            conn.endheaders(b'{"v": 9}')
            answer = conn.getresponse()
            assert answer.status == status, (lines, answer.status, answer.read())
        finally:
            conn.close()
    for bad in ("nope", '"a", nope', "*, \"a\""):
        r = requests.get(f"{west.url}/items/{item_id}", headers={"If-None-Match": bad})
        assert r.status_code == 400 and error_code(r) == "invalid_if_none_match", (bad, r.text)
        r = requests.put(f"{west.url}/items/{item_id}", json={"v": 9}, headers={"If-None-Match": bad})
        assert r.status_code == 400 and error_code(r) == "invalid_if_none_match", (bad, r.text)
    assert requests.get(f"{west.url}/items/{item_id}").json()["v"] == 2


# Bad input: clear error, right status, nothing stored.

def assert_not_stored(proc, item_id):
    assert requests.get(f"{proc.url}/items/{item_id}").status_code == 404


def test_malformed_json_is_400(west):
    r = requests.post(f"{west.url}/items", data=b'{"item_id": "x",', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_json"


def test_non_object_body_is_400(west):
    for body in (b"[1,2]", b'"text"', b"42", b"null"):
        r = requests.post(f"{west.url}/items", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and error_code(r) == "body_not_object", body


def test_wrong_types_and_bad_ids_are_400(west):
    cases = [
        ({"item_id": 12}, "invalid_item_id"),
        ({"item_id": ""}, "invalid_item_id"),
        ({"item_id": "a" * 1025}, "invalid_item_id"),
        ({"item_id": "tab\there"}, "invalid_item_id"),
        # URL parsers resolve these segments: no path could read or delete such an item.
        ({"item_id": "."}, "invalid_item_id"),
        ({"item_id": ".."}, "invalid_item_id"),
        ({"item_id": uid(), "version": 5}, "reserved_attribute"),
        ({"item_id": uid(), "region": "us-east-1"}, "reserved_attribute"),
    ]
    for body, code in cases:
        r = requests.post(f"{west.url}/items", json=body)
        assert r.status_code == 400 and error_code(r) == code, (body, r.text)
        if isinstance(body.get("item_id"), str) and body["item_id"] and len(body["item_id"]) < 1025 \
                and "\t" not in body["item_id"]:
            assert_not_stored(west, body["item_id"])


def test_huge_number_is_400_and_not_stored(west):
    item_id = uid("num")
    r = requests.post(f"{west.url}/items", data=f'{{"item_id": "{item_id}", "n": 1e300}}',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_attribute"
    assert_not_stored(west, item_id)


def test_numbers_are_kept_exactly_or_refused(west):
    """DynamoDB keeps 38 digits; numbers the service cannot carry exactly are a 400, never
    rounded silently."""
    item_id = uid("digits")
    exact = (f'{{"item_id": "{item_id}", "big": 18446744073709551615, "neg": -9223372036854775808, '
             f'"f": 0.123456789012345}}')
    r = requests.post(f"{west.url}/items", data=exact, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    got = requests.get(f"{west.url}/items/{item_id}").text
    for literal in ("18446744073709551615", "-9223372036854775808", "0.123456789012345"):
        assert literal in got, (literal, got)
    # Numbers with exponents that a fast float parser gets one unit wrong: stored as sent.
    for literal in ("3.42482894932798e-98", "9.17083422352367e110", "2.62026266243128e72"):
        other = uid("digits")
        r = requests.post(f"{west.url}/items", data=f'{{"item_id": "{other}", "n": {literal}}}',
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        got = requests.get(f"{west.url}/items/{other}").json()["n"]
        assert got == float(literal), (literal, got)
    # (1e400 is valid JSON beyond a double's range: refused as that number, not as bad JSON)
    for number in ("12345678901234567890123", "0.12345678901234567", "1e-400", "1e400", "-2E+999"):
        other = uid("digits")
        r = requests.post(f"{west.url}/items", data=f'{{"item_id": "{other}", "n": {number}}}',
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and error_code(r) == "invalid_attribute", (number, r.text)
        assert number in r.json()["error"]["message"]
        assert_not_stored(west, other)


def nested(wraps, leaf="leaf"):
    value = leaf
    for i in range(wraps):
        value = {"m": value} if i % 2 else [value]
    return value


def test_items_dynamodb_would_refuse_are_400_and_change_nothing(west):
    """DynamoDB refuses a name of 64 KB or more and a value nested deeper than 32 levels with a
    ValidationException (moto stores both), which would reach the client as a 500 and count
    against the region at the edge. The service refuses them first, and keeps what was stored."""
    item_id = uid("limits")
    longest = "n" * (64 * 1024 - 1)
    r = requests.put(f"{west.url}/items/{item_id}", json={"deep": nested(31), longest: 1})
    assert r.status_code == 201, r.text[:300]
    etag = r.headers["ETag"]
    refused = [{"deep": nested(32)}, {"deep": nested(31, leaf={})},
               {"n" * (64 * 1024): 1}, {"m": {"n" * (64 * 1024): 1}}]
    for body in refused:
        r = requests.put(f"{west.url}/items/{item_id}", json=body)
        assert r.status_code == 400 and error_code(r) == "invalid_attribute", r.text[:300]
        assert len(r.content) < 1024, "the message must not echo a 64 KB name"
        other = uid("limits")
        r = requests.post(f"{west.url}/items", json={"item_id": other, **body})
        assert r.status_code == 400 and error_code(r) == "invalid_attribute", r.text[:300]
        assert_not_stored(west, other)
    r = requests.get(f"{west.url}/items/{item_id}")
    assert r.status_code == 200 and r.headers["ETag"] == etag
    assert r.json()["deep"] == nested(31)


def test_unknown_route_is_404_json(west):
    r = requests.get(f"{west.url}/nowhere")
    assert r.status_code == 404 and error_code(r) == "route_not_found"
    assert r.headers["x-served-by"] == WEST


def test_wrong_method_is_405_with_allow(west):
    r = requests.delete(f"{west.url}/create")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    assert "POST" in r.headers["allow"]
    r = requests.patch(f"{west.url}/items/x", json={})
    assert r.status_code == 405
    assert {"GET", "PUT", "DELETE"} <= {m.strip() for m in r.headers["allow"].split(",")}


def test_existing_id_on_create_is_409(west):
    item_id = uid("dup")
    assert requests.post(f"{west.url}/items", json={"item_id": item_id, "v": 1}).status_code == 201
    r = requests.post(f"{west.url}/items", json={"item_id": item_id, "v": 2})
    assert r.status_code == 409 and error_code(r) == "item_exists"
    r = requests.post(f"{west.url}/create", json={"item_id": item_id, "v": 3})
    assert r.status_code == 409
    assert requests.get(f"{west.url}/items/{item_id}").json()["v"] == 1


def test_oversized_body_is_413_before_any_write(west):
    item_id = uid("big")
    r = requests.post(f"{west.url}/items", json={"item_id": item_id, "blob": "x" * (410 * 1024)})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    # Under the body limit but over the item limit once stamped and counted the DynamoDB way.
    body = json.dumps({"item_id": item_id, "blob": "x" * (400 * 1024 - 60)})
    assert len(body) <= 400 * 1024
    r = requests.post(f"{west.url}/items", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert_not_stored(west, item_id)
    ok = requests.post(f"{west.url}/items", json={"item_id": item_id, "blob": "x" * (300 * 1024)})
    assert ok.status_code == 201


def test_non_json_content_type_is_415(west):
    item_id = uid("form")
    r = requests.post(f"{west.url}/items", data=f"item_id={item_id}",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and error_code(r) == "unsupported_media_type"
    assert_not_stored(west, item_id)
    # No Content-Type at all is taken as JSON; a JSON type with a suffix is JSON.
    for content_type in (None, "application/merge-patch+json", "Application/JSON; charset=utf-8"):
        other = uid("typed")
        headers = {"Content-Type": content_type} if content_type else {}
        r = requests.post(f"{west.url}/items", data=json.dumps({"item_id": other}).encode(),
                          headers=headers)
        assert r.status_code == 201, (content_type, r.text)
    r = requests.post(f"{west.url}/items", data=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and error_code(r) == "unsupported_media_type"


def test_a_put_whose_body_names_another_id_is_400_and_writes_nothing(west):
    item_id, other = uid("path"), uid("body")
    r = requests.put(f"{west.url}/items/{item_id}", json={"item_id": other, "n": 1})
    assert r.status_code == 400 and error_code(r) == "invalid_item_id", r.text
    assert other in r.json()["error"]["message"]
    assert_not_stored(west, item_id)
    assert_not_stored(west, other)
    assert requests.put(f"{west.url}/items/{item_id}", json={"item_id": item_id}).status_code == 201


def test_bad_query_and_headers_are_400(west):
    for params in ({"limit": "0"}, {"limit": "abc"}, {"limit": "101"}, {"cursor": "!!notacursor"}):
        r = requests.get(f"{west.url}/items", params=params)
        assert r.status_code == 400 and error_code(r) == "invalid_query", params
    twice = requests.get(f"{west.url}/items?limit=1&limit=2")
    assert twice.status_code == 400 and error_code(twice) == "invalid_query"
    assert twice.json()["error"]["message"] == \
        "query parameter limit or cursor is invalid: each may be given once", twice.text
    for bad in ("banana", "3", '"unterminated'):
        r = requests.put(f"{west.url}/items/{uid()}", json={}, headers={"If-Match": bad})
        assert r.status_code == 400 and error_code(r) == "invalid_if_match", bad
    r = requests.post(f"{west.url}/items", json={}, headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 400 and error_code(r) == "invalid_idempotency_key"


# An Idempotency-Key's life: released after a failed write, in flight, abandoned, expired.

def key_record(moto_server, table, key):
    """The key's record, as the README names it (scope `anonymous`: these calls carry no
    subject), and a function that changes it in the table."""
    record_id = "\x01idem:" + hashlib.sha256(f"anonymous\n{key}".encode()).hexdigest()
    db = moto.client(moto_server.url, WEST)

    def update(expression, values):
        db.update_item(TableName=table, Key={"item_id": {"S": record_id}},
                       UpdateExpression=expression, ExpressionAttributeValues=values,
                       ConditionExpression="attribute_exists(item_id)")
    return update


def keyed_post(proc, key, body):
    return requests.post(f"{proc.url}/items", json=body, headers={"Idempotency-Key": key})


def test_a_failed_create_releases_its_key(west):
    taken = uid("taken")
    assert requests.put(f"{west.url}/items/{taken}", json={}).status_code == 201
    key = uid("released")
    r = keyed_post(west, key, {"item_id": taken})
    assert r.status_code == 409 and error_code(r) == "item_exists"
    # Released: another request may use the key at once (a kept claim would be a 422).
    other = uid("free")
    r = keyed_post(west, key, {"item_id": other})
    assert r.status_code == 201 and "idempotency-replayed" not in r.headers, r.text
    assert r.json()["item_id"] == other


def test_a_create_in_flight_is_409_until_its_lease_ends(west, moto_server, table):
    """A key held by another attempt of the same request (its claim in flight, no result yet):
    if that attempt's item is here it answers (the item was written, only the result record is
    missing); if not, a request without a deadline gets 409 at once, and one with time left
    waits for the holder's lease to end and then creates the item itself, or gives up with a
    409 before its own deadline."""
    def in_flight(key, lease_ms):
        key_record(moto_server, table, key)(
            "SET key_state = :s, lease_until_ms = :l REMOVE result_body, result_item_id",
            {":s": {"S": "in_flight"}, ":l": {"N": str(int(time.time() * 1000) + lease_ms)}})

    key, item_id = uid("inflight"), uid("inflight")
    first = keyed_post(west, key, {"item_id": item_id})
    assert first.status_code == 201
    in_flight(key, 60_000)
    r = keyed_post(west, key, {"item_id": item_id})
    assert r.status_code == 201 and r.headers["idempotency-replayed"] == "true", r.text
    assert r.headers["ETag"] == first.headers["ETag"]

    # The holder's item is not here.
    requests.delete(f"{west.url}/items/{item_id}").raise_for_status()
    in_flight(key, 60_000)
    r = keyed_post(west, key, {"item_id": item_id})
    assert r.status_code == 409 and error_code(r) == "idempotency_request_in_flight"
    assert r.headers["Retry-After"] == "1"
    started = time.monotonic()
    r = requests.post(f"{west.url}/items", json={"item_id": item_id}, timeout=10,
                      headers={"Idempotency-Key": key, "x-tandem-deadline-ms": "1000"})
    took = time.monotonic() - started
    assert r.status_code == 409 and error_code(r) == "idempotency_request_in_flight", r.text
    assert 0.5 < took < 1.0, f"waited {took:.2f} s with 1 s of deadline"
    assert_not_stored(west, item_id)
    # The holder's lease ends within this request's deadline: it takes the key and creates.
    in_flight(key, 400)
    started = time.monotonic()
    r = requests.post(f"{west.url}/items", json={"item_id": item_id}, timeout=10,
                      headers={"Idempotency-Key": key, "x-tandem-deadline-ms": "1500"})
    took = time.monotonic() - started
    assert r.status_code == 201 and "idempotency-replayed" not in r.headers, r.text
    assert 0.3 < took < 1.5, took
    assert requests.get(f"{west.url}/items/{item_id}").headers["ETag"] == r.headers["ETag"]
    again = keyed_post(west, key, {"item_id": item_id})
    assert again.status_code == 201 and again.headers["idempotency-replayed"] == "true"


def test_an_expired_key_is_free_but_the_item_it_made_still_answers_for_it(west, moto_server, table):
    def create_then_expire(key):
        first = keyed_post(west, key, {"n": 1})
        assert first.status_code == 201 and first.json()["item_id"].startswith("idem-")
        # Past its 24 hours (TTL has not deleted the record yet, so the service must ignore it).
        key_record(moto_server, table, key)(
            "SET expires_at = :e", {":e": {"N": str(int(time.time()) - 10)}})
        return first

    # The same request again: the item it made answers (it carries the key), nothing written.
    key = uid("expired")
    first = create_then_expire(key)
    r = keyed_post(west, key, {"n": 1})
    assert r.status_code == 201 and r.headers["idempotency-replayed"] == "true"
    assert r.json()["item_id"] == first.json()["item_id"]
    assert r.headers["ETag"] == first.headers["ETag"]

    # Another request: with no item_id it would land on that item, so it is refused and
    # changes nothing; one naming another item is a new create, and the key is now its.
    key = uid("expired")
    first = create_then_expire(key)
    made = first.json()["item_id"]
    r = keyed_post(west, key, {"n": 2})
    assert r.status_code == 422 and error_code(r) == "idempotency_key_reused"
    assert requests.get(f"{west.url}/items/{made}").headers["ETag"] == first.headers["ETag"]
    other = uid("after-expiry")
    r = keyed_post(west, key, {"item_id": other, "n": 3})
    assert r.status_code == 201 and "idempotency-replayed" not in r.headers, r.text
    assert r.json()["item_id"] == other
    r = keyed_post(west, key, {"n": 1})
    assert r.status_code == 422 and error_code(r) == "idempotency_key_reused"


def test_a_slow_table_is_a_quick_503_and_deep_health_reports_it(moto_server, table):
    """The table stops answering in time (every request held 3 s on its way to moto): the
    region answers 503 `table_unavailable` before the edge's 2 s per-try timeout (its own SDK
    timeouts: 800 ms an attempt, 1.5 s a call), deep health says 503 within its 1 s, the
    shallow check stays 200, and all of it recovers when the table does."""
    host, port = moto_server.url.removeprefix("http://").split(":")
    link = SlowLink(host, int(port))
    proc = regional.start_regional(link.url, WEST, table)
    try:
        item_id = uid("slow")
        assert requests.put(f"{proc.url}/items/{item_id}", json={}).status_code == 201
        assert requests.get(f"{proc.url}/health?deep=true").status_code == 200
        link.delay_s = 3.0
        started = time.monotonic()
        r = requests.get(f"{proc.url}/health?deep=true", timeout=10)
        assert r.status_code == 503 and error_code(r) == "table_unavailable"
        assert time.monotonic() - started < 1.5
        assert requests.get(f"{proc.url}/health", timeout=10).status_code == 200
        started = time.monotonic()
        r = requests.get(f"{proc.url}/items/{item_id}", timeout=10)
        took = time.monotonic() - started
        assert r.status_code == 503 and error_code(r) == "table_unavailable", r.text
        assert r.headers["Retry-After"] and r.headers["x-region-status"] == "200"
        assert took < 2.0, f"answered after {took:.2f} s: past the edge's per-try timeout"
        link.delay_s = 0.0
        assert requests.get(f"{proc.url}/items/{item_id}", timeout=10).status_code == 200
        assert requests.get(f"{proc.url}/health?deep=true", timeout=10).status_code == 200
    finally:
        proc.stop()
        link.stop()


def test_a_write_whose_answer_was_late_is_answered_as_done_and_made_once(moto_server, table):
    """DynamoDB applies a PutItem but its answer comes after the SDK's 800 ms attempt timeout;
    the SDK sends it again, and that resend fails its condition because the write it carries is
    already there. The client must get its 200 (not a 412 for a write that happened), and the
    write must be made once (not again as version + 1 over the first)."""
    host, port = moto_server.url.removeprefix("http://").split(":")
    link = SlowLink(host, int(port))
    proc = regional.start_regional(link.url, WEST, table)
    try:
        item_id = uid("late-answer")
        first = requests.put(f"{proc.url}/items/{item_id}", json={"v": 1})
        assert first.status_code == 201
        for if_match, v in [(first.headers["ETag"], 2), (None, 3)]:
            link.hold_answer(b"PutItem", 1.2)
            puts = link.requests_with[b"PutItem"]
            headers = {"If-Match": if_match} if if_match else {}
            r = requests.put(f"{proc.url}/items/{item_id}", json={"v": v}, headers=headers, timeout=10)
            assert link.answers_held == v - 1, "the PutItem's answer was not held"
            assert link.requests_with[b"PutItem"] - puts == 2, "the SDK did not send it again"
            assert r.status_code == 200, (if_match, r.text)
            stored = requests.get(f"{proc.url}/items/{item_id}")
            assert stored.json()["v"] == v and stored.json()["version"] == v, stored.text
            assert stored.headers["ETag"] == r.headers["ETag"]
    finally:
        proc.stop()
        link.stop()



def test_creates_and_deletes_whose_answers_were_late_are_answered_as_done(moto_server, table):
    """As above for the other writes: the SDK resends a create or a delete DynamoDB applied but
    answered after the attempt timeout. A create (with or without a key, whether the key's claim
    or the item's write was late) is the client's 201, made once, and no replay; a delete
    finds the item gone and answers 404, as documented, the item deleted once."""
    host, port = moto_server.url.removeprefix("http://").split(":")
    link = SlowLink(host, int(port))
    proc = regional.start_regional(link.url, WEST, table)

    def late(marker, sends, send):
        link.requests_with.pop(marker, None)
        link.hold_answer(marker, 1.2)
        held = link.answers_held
        r = send()
        assert link.answers_held == held + 1, f"no answer to {marker!r} was held"
        assert link.requests_with[marker] == sends, f"the SDK did not send {marker!r} again"
        return r

    try:
        # (what the held request carries, how many requests carry it with the SDK's resend)
        cases = {
            "unkeyed": (b"PutItem", 2, {}),
            # the claim twice, the item, the key's result
            "claim late": (b"PutItem", 4, {"Idempotency-Key": uid("k")}),
            # the item twice, the key's result (which keeps the item)
            "item late": (None, 3, {"Idempotency-Key": uid("k")}),
        }
        for name, (marker, sends, headers) in cases.items():
            item_id, mark = uid("late-create"), uid("mark")
            send = lambda: requests.post(f"{proc.url}/items", json={"item_id": item_id, "m": mark},
                                         headers=headers, timeout=10)
            # The item's own write is the one request that carries the body's attributes.
            r = late(marker or mark.encode(), sends, send)
            assert r.status_code == 201, (name, r.text)
            assert "idempotency-replayed" not in r.headers, name
            stored = requests.get(f"{proc.url}/items/{item_id}")
            assert stored.json()["m"] == mark and stored.json()["version"] == 1, stored.text
            assert stored.headers["ETag"] == r.headers["ETag"], name
            if headers:  # a real retry of the keyed create is then a replay of that one item
                again = requests.post(f"{proc.url}/items", json={"item_id": item_id, "m": mark},
                                      headers=headers)
                assert again.status_code == 201 and again.headers["idempotency-replayed"] == "true"
                assert again.headers["ETag"] == r.headers["ETag"], name

        for headers in [{}, "if-match"]:
            item_id = uid("late-delete")
            put = requests.put(f"{proc.url}/items/{item_id}", json={"v": 1})
            assert put.status_code == 201
            if headers == "if-match":
                headers = {"If-Match": put.headers["ETag"]}
            r = late(b"DeleteItem", 2, lambda: requests.delete(f"{proc.url}/items/{item_id}",
                                                          headers=headers, timeout=10))
            assert r.status_code == 404 and error_code(r) == "item_not_found", (headers, r.text)
            assert requests.get(f"{proc.url}/items/{item_id}").status_code == 404
    finally:
        proc.stop()
        link.stop()


class ThrottlingTable:
    """Stands in for a DynamoDB table that throttles every call (no local server can be made
    to): each request is answered 400 `ProvisionedThroughputExceededException`, as DynamoDB
    answers, and counted."""

    def __init__(self):
        self.calls = 0
        self._server = StubServer(self._answer)
        self.url = self._server.url

    def _answer(self, method, path, headers, body):
        self.calls += 1
        error = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                 "message": "The level of configured provisioned throughput for the table was exceeded."}
        return 400, {"content-type": "application/x-amz-json-1.0"}, json.dumps(error).encode()

    def stop(self):
        self._server.stop()


def test_a_throttling_table_is_a_marked_503_throttled_not_a_timeout(table):
    """The SDK retries a throttled call with short backoffs and gives up with DynamoDB's own
    answer inside its 1.5 s, so the region says `throttled` and marks it as its limit (the edge
    then sends the request elsewhere without blaming the region), rather than timing out into
    `table_unavailable`, which the edge counts as the region failing."""
    throttling = ThrottlingTable()
    proc = regional.start_regional(throttling.url, WEST, table)
    try:
        for _ in range(3):
            before, started = throttling.calls, time.monotonic()
            r = requests.get(f"{proc.url}/items/{uid('hot')}", timeout=10)
            took = time.monotonic() - started
            assert r.status_code == 503 and error_code(r) == "throttled", (r.text, took)
            assert r.headers["x-region-limit"] == "dynamodb" and r.headers["Retry-After"]
            assert throttling.calls - before == 3, "the SDK's three attempts"
            assert took < 1.0, took
    finally:
        proc.stop()
        throttling.stop()


def test_request_id_is_echoed_or_generated(west):
    r = requests.get(f"{west.url}/health", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = requests.get(f"{west.url}/nowhere")
    generated = r.headers["x-request-id"]
    assert len(generated) >= 16 and r.json()["error"]["request_id"] == generated


def test_one_json_log_line_per_request_without_bodies(west):
    secret = uid("secret-value")
    rid = uid("rid")
    requests.post(f"{west.url}/items", json={"payload": secret}, headers={"x-request-id": rid})
    import json
    lines = [json.loads(line) for line in west.log().splitlines() if rid in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["request_id"] == rid and line["region"] == WEST and line["status"] == 201
    assert line["route"] == "/items" and line["method"] == "POST" and line["latency_ms"] >= 0
    assert secret not in west.log()
