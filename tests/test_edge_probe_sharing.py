"""Probe results must reach every isolate through KV, not only the one the cron ran in.

Found while writing the drill: after wrangler reloaded the Worker mid-drill, the new isolate sent
a create to the region drained by STATUS=404. The cron's report is written with
`kv.put(PROBES_KEY, &report)`; worker 0.8.7 turns a `Serialize` value into a JS value with
`serde_wasm_bindgen::to_value`, which makes the `BTreeMap` of regions a JS `Map`, and
`JSON.stringify(Map)` is `{}`. So KV always holds `{"regions":{}}`: isolates other than the cron's
(in production, nearly all of them) never see a probe, and a region drained by live traffic is
never readmitted by a 2xx probe. Fixed: the report is written to KV as JSON text.
"""

from __future__ import annotations

import glob
import json

import requests
from harness.stack import Stack

WEST, CENTRAL = "eu-west-1", "eu-central-1"


def _kv_probes(stack: Stack) -> list[dict]:
    pattern = str(stack._state_dir / "wrangler" / "v3" / "kv" / "*" / "blobs" / "*")
    return [json.loads(open(path).read()) for path in glob.glob(pattern)]


def test_a_fresh_isolate_learns_a_drain_from_the_shared_probe_results():
    stack = Stack(tick_s=0, weights={WEST: 100.0, CENTRAL: 1.0}, name="probe-kv").start()
    try:
        stack.set_faults(WEST, status=404)
        for _ in range(3):  # the cron: probes both regions, shares the report in KV; three
            stack.probe()   # failed probes in a row drain a region
        stack.restart_edge()  # a new isolate, same KV
        r = requests.post(stack.edge.url + "/items", json={"x": 1}, timeout=10)
        assert r.status_code == 201
        # What KV holds, for the failure message (miniflare's storage layout).
        assert r.headers["x-served-by"] == CENTRAL, _kv_probes(stack)
    finally:
        stack.stop()
