"""The page at the edge URL in a real browser: Debian's Chromium driven by playwright-core
(`tests/browser/page_flow.js`) against a closed local stack. It loads the page, enters the token
and the operator token, creates an item and sees its region, has this test flip that region's
STATUS to 404 through the admin route, waits for the live panel to mark it out of service, creates
another served by the other region, and checks a 375 px phone viewport. Screenshots of each step
go to the test's tmp_path and to `.state/browser/` for a person to look at."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from harness import procs
from harness.stack import Stack

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCRIPT = procs.ROOT / "tests" / "browser" / "page_flow.js"
SHOTS = procs.STATE / "browser"
TIMEOUT_S = 120


def test_the_page_shows_items_regions_and_a_failover(tmp_path):
    # Never skipped: a missing browser is a failure that says how to get one.
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `scripts/install-tools.sh system` installs "
                    "Debian's chromium (apt-get); playwright's own browser download is never used")
    if not (procs.ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed: run `scripts/install-tools.sh node` (npm ci)")

    stack = Stack(closed=True, name="browser", tick_s=1,
                  routing={"probe_refresh_ms": 1000}).start()
    out = tmp_path / "screenshots"
    out.mkdir()
    stderr_path = tmp_path / "page_flow.stderr"
    lines: list[str] = []
    flipped: list[str] = []
    try:
        env = {**os.environ, "EDGE_URL": stack.edge.url, "TOKEN": stack.access.token,
               "OPERATOR_TOKEN": stack.access.operator_token, "OUT_DIR": str(out),
               "CHROMIUM": str(CHROMIUM)}
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen(["node", str(SCRIPT)], cwd=procs.ROOT, env=env, text=True,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    start_new_session=True)
            # The script and its Chromium form one process group, ended together if too slow.
            watchdog = threading.Timer(TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
            watchdog.start()
            try:
                for line in proc.stdout:
                    lines.append(line.rstrip("\n"))
                    if line.startswith("flip "):
                        region = line.split()[1]
                        assert region in stack.regions, line
                        stack.set_faults(region, status=404)
                        flipped.append(region)
                        proc.stdin.write("flipped\n")
                        proc.stdin.flush()
                code = proc.wait()
            finally:
                watchdog.cancel()
        log = "\n".join(lines) + "\n--- stderr ---\n" + stderr_path.read_text()
        assert code == 0, f"the browser flow failed (exit {code}):\n{log}"
        assert len(flipped) == 1, log
    finally:
        stack.stop()
        shutil.rmtree(SHOTS, ignore_errors=True)
        if any(out.glob("*.png")):
            shutil.copytree(out, SHOTS)

    shots = sorted(p.name for p in out.glob("*.png"))
    assert shots == ["01-loaded-no-token.png", "02-tokens-panel.png", "03-created.png",
                     "04-region-drained.png", "05-served-by-other-region.png", "06-fetched.png",
                     "07-phone-375x667.png", "08-phone-full.png"], shots
    # A PNG each, with something in it.
    for name in shots:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
