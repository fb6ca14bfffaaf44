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
                                 "FALLBACK_ORIGIN": ""}),
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
    # London is nearer Dublin (~460 km) than Frankfurt (~640 km); weight 3 on Frankfurt wins.
    plain = dispatch(regions, [{"path": "/health", "cf": LONDON}])
    weighted = dispatch(regions, [{"path": "/health", "cf": LONDON}], weights={CENTRAL: 3.0})
    assert plain[0]["served_by"] == WEST
    assert weighted[0]["served_by"] == CENTRAL
