"""docs/clients.md's examples, run as written: every ```sh block is run by bash (with `-e` and
`pipefail`, in an empty directory) against a closed local stack, with `EDGE` and `TOKEN` set as
`scripts/up.sh` prints them, and every `# -> TEXT` comment is checked: the output printed since
the previous checked line, stripped, must be TEXT, where `…` stands for any text. A `# ->`
comment belongs at the end of a whole command (not inside a function or a continued line).

The doc also names every error code the contract (docs/openapi.yaml) lists."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from harness import procs
from harness.stack import Stack

DOC = procs.ROOT / "docs" / "clients.md"
SPEC = procs.ROOT / "docs" / "openapi.yaml"
EXPECT = re.compile(r"\s#\s->\s(.*)$")
#: Separates the output of the checked lines; printed by the test, never by the doc.
MARK = f"<<clients-doc-{uuid.uuid4().hex}>>"


def sh_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, body) of every ```sh block."""
    blocks = []
    for m in re.finditer(r"^```sh\n(.*?)^```$", text, re.S | re.M):
        blocks.append((text[:m.start()].count("\n") + 1, m.group(1)))
    return blocks


def instrument(block: str) -> tuple[str, list[str]]:
    """The block with a marker echoed after each checked line, and the expected texts."""
    lines, expected = [], []
    for line in block.splitlines():
        lines.append(line)
        m = EXPECT.search(line)
        if m:
            assert not line.rstrip().endswith("\\"), f"a `# ->` line must end its command: {line}"
            expected.append(m.group(1).strip())
            lines.append(f"echo '{MARK}'")
    return "\n".join(lines) + "\n", expected


def matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual, re.S) is not None


def run_block(block: str, env: dict[str, str], cwd: Path) -> list[tuple[str, str]]:
    """Runs one block; returns (expected, actual) for each checked line."""
    script, expected = instrument(block)
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (f"block failed (exit {done.returncode}):\n{block}\n"
                                  f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    outputs = done.stdout.split(MARK + "\n")
    assert len(outputs) == len(expected) + 1, (block, done.stdout)
    return [(e, o.strip()) for e, o in zip(expected, outputs)]


BLOCKS = sh_blocks(DOC.read_text())


def test_the_doc_has_checked_examples_for_each_topic():
    assert len(BLOCKS) >= 8, BLOCKS
    for line, body in BLOCKS:
        assert instrument(body)[1], f"the sh block at docs/clients.md:{line} checks no output"
    text = DOC.read_text()
    for topic in ("Retry-After", "full jitter", "Idempotency-Key", "24 hours", "x-tandem-affinity",
                  "tandem_affinity", "If-Match", "ETag", "401", "403", "refresh"):
        assert topic in text, topic


def test_the_doc_names_every_error_code_of_the_contract():
    spec_text = SPEC.read_text()
    codes = set()
    for m in re.finditer(r"enum:\s*\[([^\]]*)\]", spec_text):
        codes |= {c.strip() for c in m.group(1).replace("\n", " ").split(",")}
    codes = {c for c in codes if re.fullmatch(r"[a-z]+(_[a-z]+)+", c)}
    assert "idempotency_key_reused" in codes and "rate_limited" in codes, codes
    spec = yaml.safe_load(spec_text)
    assert "method_not_allowed" in spec["info"]["description"]
    doc = DOC.read_text()
    missing = sorted(c for c in codes | {"method_not_allowed"} if f"`{c}`" not in doc)
    assert not missing, f"docs/clients.md does not explain: {missing}"


def test_the_matcher():
    assert matches('"1-…"', '"1-0123456789ab"') and not matches('"1-…"', '"2-0123"')
    assert matches("201", "201") and not matches("201", "201 true")
    script, expected = instrument("a   # -> 1\nb\nc # -> x … y\n")
    assert expected == ["1", "x … y"] and script.count(MARK) == 2


@pytest.fixture(scope="module")
def closed():
    stack = Stack(closed=True, tick_s=0, name="clients-doc").start()
    yield stack
    stack.stop()


@pytest.mark.parametrize("line,block", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_the_example_runs_as_written(closed, line, block, tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LC_ALL": "C.UTF-8",
           "EDGE": closed.edge.url, "TOKEN": closed.access.token}
    for expected, actual in run_block(block, env, tmp_path):
        assert matches(expected, actual), (
            f"docs/clients.md:{line}: expected {expected!r}, got {actual!r}\n{block}")
    assert not any(tmp_path.iterdir()), f"the example left files behind: {list(tmp_path.iterdir())}"
