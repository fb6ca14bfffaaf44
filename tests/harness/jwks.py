"""A stand-in identity provider's JWKS endpoint on 127.0.0.1: serves the keys it is given, can
be switched to failing (503) to test that the edge keeps its last good keys, and counts fetches.
Runs in a thread of the test process; `stop()` closes it."""

from __future__ import annotations

import json

from .stubserver import StubServer


class JwksServer:
    def __init__(self, keys: list[dict]):
        self.keys = list(keys)
        self.failing = False
        self.fetches = 0
        self._server = StubServer(self._answer)
        self.url = f"{self._server.url}/jwks.json"

    def _answer(self, method, path, headers, body):
        self.fetches += 1
        if self.failing or path != "/jwks.json":
            return (503 if self.failing else 404), {}, b""
        return 200, {"content-type": "application/json"}, json.dumps({"keys": self.keys}).encode()

    def stop(self) -> None:
        self._server.stop()
