"""`scripts/up.sh`'s command end to end: the whole system comes up closed, like production, prints
its throwaway token and signing key before the edge URL, serves the seed API to a caller with the
token (and to no one else), replicates, and stops every process it started on Ctrl-C."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

import requests
from harness import procs, sigv4, stack

WEST, CENTRAL, EAST = "eu-west-1", "eu-central-1", "us-east-1"


def _read_lines(stream, lines: "queue.Queue[str]") -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def _wait_for_lines(proc, lines, want: int, timeout_s: float = 90) -> list[str]:
    """Lines printed until `want` URL lines (edge and regions) came, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while sum(l.startswith(("edge: ", "region ")) for l in seen) < want:
        assert time.monotonic() < deadline, seen
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            assert proc.poll() is None, f"stack up exited early: {seen}"
    return seen


def _start_up(state_file, *args: str):
    """`stack up` with these arguments, as `up.sh` runs it; its printed lines arrive in a queue."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.stack", "up", *args, "--tick-s", "1",
         "--state-file", str(state_file)],
        cwd=procs.ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines


def _interrupt(proc) -> int | str:
    """Sends what Ctrl-C sends to the foreground process; the exit code (or "killed")."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return "killed"


def test_up_runs_closed_prints_its_keys_serves_the_seed_api_and_stops_cleanly(tmp_path):
    state_file = tmp_path / "up.json"
    proc, lines = _start_up(state_file, "--regions", f"{WEST},{CENTRAL},{EAST}")
    pids: list[int] = []
    try:
        printed = _wait_for_lines(proc, lines, want=4)
        pids = next([int(p) for p in l.split()[1:]] for l in printed if l.startswith("pids: "))
        keys = {l.split(": ", 1)[0]: l.split(": ", 1)[1] for l in printed
                if l.startswith(("token: ", "signing-key: ", "edge: ", "region "))}
        order = [l.split(": ", 1)[0] for l in printed]
        # The token and signing key come before the edge line, as tools reading it expect.
        assert order.index("token") < order.index("edge") and order.index("signing-key") < order.index("edge")
        assert set(keys) == {"token", "signing-key", "edge", f"region {WEST}", f"region {CENTRAL}",
                             f"region {EAST}"}, keys
        state = json.loads(state_file.read_text())
        assert pids and state["pids"] == pids and state["closed"] is True
        # The operator token is written to the state file, never printed.
        assert state["operator_token"] and not any(state["operator_token"] in l for l in printed)
        edge = keys["edge"]
        auth = {"Authorization": f"Bearer {keys['token']}"}

        assert requests.get(edge + "/health", timeout=10).status_code == 200
        # The README's status call: the operator token from the state file, and only it.
        operator = {"Authorization": f"Bearer {state['operator_token']}"}
        status = requests.get(edge + "/_edge/status", headers=operator, timeout=10)
        assert status.status_code == 200, status.text
        assert {r["name"] for r in status.json()["regions"]} == {WEST, CENTRAL, EAST}
        for other in (auth, {}):
            assert requests.get(edge + "/_edge/status", headers=other, timeout=10).status_code == 401
        item_id = f"up-{uuid.uuid4().hex[:8]}"
        refused = requests.post(edge + "/create", json={"item_id": item_id}, timeout=10)
        assert refused.status_code == 401, refused.text
        r = requests.post(edge + "/create", json={"item_id": item_id}, headers=auth, timeout=10)
        assert r.status_code == 200 and r.json() == {"item_id": item_id}, r.text
        r = requests.get(f"{edge}/get/{item_id}", headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        written_in = r.json()["item_id"]["region"]
        key_id, secret = keys["signing-key"].split(":", 1)
        # Replicated: every other region's own URL serves it to a caller signing as the edge
        # does, with the printed key (moto has no global tables; the replicator copies it), and
        # refuses the unsigned call.
        for region in (WEST, CENTRAL, EAST):
            url = f"{keys['region ' + region]}/get/{item_id}"
            assert requests.get(url, timeout=10).status_code == 403
            if region == written_in:
                continue
            until = time.monotonic() + 10
            while True:
                r = requests.get(url, headers=sigv4.sign("GET", url, region, key_id, secret),
                                 timeout=10)
                if r.status_code == 200 or time.monotonic() > until:
                    break
                time.sleep(0.1)
            assert r.status_code == 200, (region, r.text)
            assert r.json()["retrieved from"] == region
            assert r.json()["item_id"]["region"] == written_in
    finally:
        rc = _interrupt(proc)
    assert rc == 0
    assert stack.remaining(pids + [proc.pid]) == []
    assert not state_file.exists()


def test_up_open_prints_no_keys_and_serves_without_a_token_or_a_signature(tmp_path):
    """`up.sh --open`, the seed's flow: no `token:` or `signing-key:` line, the edge and the
    regions answer anyone, and the edge's status needs no token (names only)."""
    state_file = tmp_path / "up.json"
    proc, lines = _start_up(state_file, "--open")
    pids: list[int] = []
    try:
        printed = _wait_for_lines(proc, lines, want=3)
        pids = next([int(p) for p in l.split()[1:]] for l in printed if l.startswith("pids: "))
        assert not [l for l in printed if l.startswith(("token: ", "signing-key: "))], printed
        urls = {l.split(": ", 1)[0]: l.split(": ", 1)[1] for l in printed
                if l.startswith(("edge: ", "region "))}
        edge = urls["edge"]
        item_id = f"open-{uuid.uuid4().hex[:8]}"
        r = requests.post(edge + "/create", json={"item_id": item_id}, timeout=10)
        assert r.status_code == 200 and r.json() == {"item_id": item_id}, r.text
        status = requests.get(edge + "/_edge/status", timeout=10)
        assert status.status_code == 200 and "origin" not in status.text, status.text
        written_in = requests.get(f"{edge}/get/{item_id}", timeout=10).json()["item_id"]["region"]
        r = requests.get(f"{urls['region ' + written_in]}/get/{item_id}", timeout=10)
        assert r.status_code == 200, r.text
    finally:
        rc = _interrupt(proc)
    assert rc == 0
    assert stack.remaining(pids + [proc.pid]) == []
