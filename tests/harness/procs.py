"""Child processes: free ports, start, wait until ready, stop by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".state"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    """A child process we started, with its log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int | None = None
    extra: dict = field(default_factory=dict)
    #: Directories removed once the process has stopped (its private state).
    cleanup: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"{self.extra.get('scheme', 'http')}://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the process group we created (SIGTERM, then SIGKILL), by its PID, and removes
        its private state."""
        self._end(timeout)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def _end(self, timeout: float) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout)

    def kill(self) -> None:
        """Ends the process at once (a crash, for drills)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)


def start(name: str, argv: list[str], env: dict | None = None, port: int | None = None,
          cwd: Path | None = None) -> Proc:
    """Starts `argv` in its own process group, output to .state/logs/<name>.log."""
    logs = STATE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(log_path, "wb")
    popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                             cwd=cwd or ROOT, start_new_session=True, stdin=subprocess.DEVNULL)
    out.close()
    return Proc(name=name, popen=popen, log_path=log_path, port=port)


def wait_http(proc: Proc, path: str = "/", timeout: float = 30.0, ok=lambda r: True,
              headers: dict | None = None, verify: bool = True) -> None:
    """Waits until `proc` answers HTTP on `path` (any status accepted by `ok`)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log()[-3000:]}")
        try:
            r = requests.get(proc.url + path, timeout=1, headers=headers, verify=verify)
            if ok(r):
                return
            last = f"status {r.status_code}"
        except requests.RequestException as e:  # not up yet
            last = str(e)
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready after {timeout}s ({last}):\n{proc.log()[-3000:]}")


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("" when it names none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), "")
