"""A hedged read must not answer from a replica that has not caught up yet.

Found while writing the drill: the writer's read goes to the writing region first (affinity), but
when that region is slow the hedge goes to the other region, whose 404 (the item has not been
replicated yet) is a "good" answer, wins the race and reaches the client; the writing region is
even counted as having lost. Read-your-writes is broken exactly inside the affinity window.
Fixed: a hedge's answer ends the race only when it is a success (core::outcome::hedge_may_win).
"""

from __future__ import annotations

import requests
from harness.stack import Stack


def test_hedged_read_within_the_affinity_window_never_returns_a_stale_404():
    stack = Stack(replication_lag_ms=3000, tick_s=0, name="hedge").start()
    try:
        session = requests.Session()
        for i in range(5):  # latency estimates for both regions
            session.post(stack.edge.url + "/items", json={"warm": i}, timeout=10)
        created = session.post(stack.edge.url + "/items", json={"x": 1}, timeout=10)
        assert created.status_code == 201
        writer = created.headers["x-served-by"]
        token = created.headers["x-tandem-affinity"]
        stack.set_faults(writer, latency_ms=1000)  # slow, well within the per-try timeout
        r = session.get(f"{stack.edge.url}/items/{created.json()['item_id']}",
                        headers={"x-tandem-affinity": token}, timeout=10)
        assert r.status_code == 200, (r.status_code, r.headers.get("x-served-by"),
                                      r.headers.get("x-edge-attempts"))
        assert r.headers["x-served-by"] == writer
        # The read was not hedged: a hedge to the lagging replica is what returned stale data.
        assert r.headers["x-edge-attempts"] == "1"
    finally:
        stack.stop()
