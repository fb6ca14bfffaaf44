"""Fixtures: one moto server per test session, a fresh table per test module, regional processes
started and stopped by PID."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import moto, procs, regional  # noqa: E402

WEST, CENTRAL = "eu-west-1", "eu-central-1"


@pytest.fixture(scope="session")
def moto_server():
    proc = moto.start_moto()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def table(moto_server):
    """A new table, present in both default regions of the shared moto server."""
    name = f"items-{uuid.uuid4().hex[:8]}"
    for region in (WEST, CENTRAL):
        moto.create_table(moto_server.url, region, name)
    return name


@pytest.fixture(scope="module")
def west(moto_server, table):
    proc = regional.start_regional(moto_server.url, WEST, table)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def central(moto_server, table):
    proc = regional.start_regional(moto_server.url, CENTRAL, table)
    yield proc
    proc.stop()


@pytest.fixture
def admin():
    """Changes a running regional's faults through its admin route."""
    return regional.set_faults


def error_code(response) -> str:
    """The stable error code of a JSON error response (asserting its shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "request_id"} <= set(body["error"]), body
    return body["error"]["code"]
