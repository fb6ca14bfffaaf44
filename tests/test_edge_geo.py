"""Routing by client location, in workerd through Miniflare (which sets `request.cf` per
request), in front of real regionals on moto."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import CENTRAL, WEST
from harness import edge, procs

DISPATCH = procs.ROOT / "tests" / "edge" / "dispatch_with_cf.mjs"

DUBLIN = {"latitude": "53.35", "longitude": "-6.26", "continent": "EU"}
MUNICH = {"latitude": "48.14", "longitude": "11.58", "continent": "EU"}
LONDON = {"latitude": "51.51", "longitude": "-0.13", "continent": "EU"}


def dispatch(regions: dict[str, str], cases: list[dict], weights=None) -> list[dict]:
    env = {
        "PATH": __import__("os").environ["PATH"],
        "EDGE_VARS": json.dumps({"REGIONS": edge.regions_var(regions, weights),
                                 "ROUTING": json.dumps({"hedge": False}), "CORS_ORIGINS": "[]",
                                 "FALLBACK_ORIGIN": "", **edge.OPEN}),
        "CASES": json.dumps(cases),
    }
    out = subprocess.run(["node", str(DISPATCH)], env=env, capture_output=True, text=True, timeout=60,
                         cwd=procs.ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def regions(west, central):
    return {WEST: west.url, CENTRAL: central.url}


def test_nearest_region_by_coordinates(regions):
    results = dispatch(regions, [{"path": "/health", "cf": MUNICH},
                                 {"path": "/health", "cf": DUBLIN}])
    assert [r["served_by"] for r in results] == [CENTRAL, WEST]
    assert all(r["status"] == 200 and r["attempts"] == "1" for r in results)


def test_weights_adjust_distance(regions):
    # Munich is ~300 km from Frankfurt, ~1 500 km from Dublin. Weight 0.1 makes Frankfurt look
    # ten times as far: Munich's clients go to Dublin. (Regions within a few milliseconds of each
    # other are near-equal and split per client instead; these are not.)
    plain = dispatch(regions, [{"path": "/health", "cf": MUNICH}])
    weighted = dispatch(regions, [{"path": "/health", "cf": MUNICH}], weights={CENTRAL: 0.1})
    assert plain[0]["served_by"] == CENTRAL
    assert weighted[0]["served_by"] == WEST


def test_near_equal_regions_keep_each_client_on_one_region(regions):
    """London is about as near Dublin as Frankfurt: each client (its address) keeps one region
    request after request, and different clients are spread over both."""
    cases = [{"path": "/health", "cf": LONDON, "ip": f"198.51.100.{n}"}
             for n in range(24) for _ in range(3)]
    results = dispatch(regions, cases)
    by_client: dict[str, set[str]] = {}
    for case, result in zip(cases, results):
        by_client.setdefault(case["ip"], set()).add(result["served_by"])
    assert all(len(served) == 1 for served in by_client.values()), by_client
    assert {next(iter(s)) for s in by_client.values()} == {WEST, CENTRAL}, by_client
