"""A small HTTP proxy in front of the real InfluxDB that tests can turn hostile: answer a chosen
status (429, 500, 422, ...) instead of forwarding, or stop listening (connection refused)."""
from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultProxy:
    """Forwards to `upstream` unless `fail_with` is set (then answers that status, with Retry-After
    for 429); `down()` closes the listening socket, `up()` opens it again on the same port."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.host, self.upstream_port = target.hostname or "127.0.0.1", target.port or 80
        self.port = free_port()
        self.fail_with: int | None = None
        self.fail_only: str = ""          # a path prefix, e.g. "/api/v2/write": fail only those requests
        self.answers: Counter[int] = Counter()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = proxy.fail_with if self.path.startswith(proxy.fail_only) else None
                if status is not None:
                    message = b'{"code":"injected","message":"fault injected by the test proxy"}'
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    proxy.answers[status] += 1
                    return
                conn = http.client.HTTPConnection(proxy.host, proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()
                proxy.answers[response.status] += 1

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
