"""The soak's harness, in a tiny version (about 25 s): the stack under steady mixed load through
the edge, then the pass-through control, and the figures soak.json must hold."""

from __future__ import annotations

import json

from harness import soak

KEYS = {"minutes", "requests", "client_errors", "expected_404", "conflicts_412", "p50_ms",
        "p99_ms", "wasm_memory_bytes", "workerd_rss_mb", "control_workerd_rss_mb",
        "wasm_flat_after_warmup"}


def test_short_soak_has_no_client_visible_error(tmp_path):
    settings = soak.SoakSettings(minutes=0.2, rate=6.0, clients=3, sample_s=3.0, warm_up_s=3.0,
                                 control_minutes=0.05, out=tmp_path, seed=7)
    result = soak.run(settings, log=lambda *_: None)
    written = json.loads((tmp_path / "soak.json").read_text())
    assert KEYS <= set(written), KEYS - set(written)
    assert written["client_errors"] == 0, (written["error_kinds"], written["errors"])
    assert result["client_errors"] == 0
    assert written["requests"] >= 50 and written["ops"].get("create", 0) > 0
    assert written["p50_ms"] is not None and written["p99_ms"] >= written["p50_ms"]
    # A sample at the start, every 3 s and at the end, for the edge's Wasm and both workerds.
    assert len(written["wasm_memory_bytes"]) >= 4
    assert all(isinstance(v, int) and v > 0 for v in written["wasm_memory_bytes"])
    assert all(isinstance(v, float) and v > 0 for v in written["workerd_rss_mb"])
    assert written["control_workerd_rss_mb"] and all(written["control_workerd_rss_mb"])
    assert written["control"]["requests"] > 0 and written["control"]["client_errors"] == 0
    assert isinstance(written["wasm_flat_after_warmup"], bool)
    assert (tmp_path / "requests.csv").read_text().count("\n") == \
        written["requests"] + written["control"]["requests"] + 1
