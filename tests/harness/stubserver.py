"""A small HTTP server on 127.0.0.1 in a thread, for the stand-ins tests need where no real
process can be made to answer that way (an identity provider's key set, a region answering with
every internal header, a table that throttles every call).

`answer(method, path, headers, body)` returns `(status, headers, body)`; header names arrive in
lower case. Connections are kept (HTTP/1.1): a connection closed after every answer raced with
the edge's pooled reuse under load and looked like a failing region. Once `stop()` has shut the
server down (once; calling it again does nothing) no new request is answered: a kept connection
is closed unanswered, as a dead server's would be (one already being answered may finish)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Answer = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


class StubServer:
    def __init__(self, answer: Answer):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                if stub._server is None:  # stopped: close the kept connection unanswered
                    self.close_connection = True
                    return
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, out_body = answer(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(out_body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out_body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 (http.server's names)

            def log_message(self, *args) -> None:
                pass

        self._server: ThreadingHTTPServer | None = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
