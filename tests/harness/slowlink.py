"""A TCP link on 127.0.0.1 that forwards to a real server and can hold each request for a while:
a slow table, as a region meets one, in front of the real moto (its answers untouched).

`delay_s` holds every chunk a client sends for that long before passing it on (a small request
is one chunk), as a slow network or an overloaded table would; a test can change it between
calls. `hold_answer(marker, seconds)` lets the next request whose bytes hold `marker` (e.g.
`b"PutItem"`) reach the table at once but holds its answer: a write that lands while its caller
times out. `requests_with[marker]` counts the requests that carried a marker ever held.
Threads only; `stop()` closes the listener and every open connection."""

from __future__ import annotations

import socket
import threading
import time


class SlowLink:
    def __init__(self, target_host: str, target_port: int, delay_s: float = 0.0):
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._hold: tuple[bytes, float] | None = None
        self.answers_held = 0
        self.requests_with: dict[bytes, int] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def hold_answer(self, marker: bytes, seconds: float) -> None:
        """Holds the answer to the next request carrying `marker` for `seconds` (once)."""
        with self._lock:
            self._hold = (marker, seconds)
            self.requests_with.setdefault(marker, 0)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._stopped.is_set():
                client.close()
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._track(client)
            self._track(server)
            held = {"seconds": 0.0}  # set by the request side, spent by the answer side
            threading.Thread(target=self._pipe, args=(client, server, True, held), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False, held), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, request_side: bool,
              held: dict) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if request_side:
                    with self._lock:
                        for marker in self.requests_with:
                            self.requests_with[marker] += data.count(marker)
                        if self._hold is not None and self._hold[0] in data:
                            held["seconds"], self._hold = self._hold[1], None
                    if self.delay_s > 0:
                        time.sleep(self.delay_s)
                elif held["seconds"] > 0:
                    seconds, held["seconds"] = held["seconds"], 0.0
                    self.answers_held += 1
                    time.sleep(seconds)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if request_side:  # the other side's loop ends too: close both once
                for sock in (source, sink):
                    sock.close()
                    with self._lock:
                        self._open.discard(sock)

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.close()
                except OSError:
                    pass
            self._open.clear()
