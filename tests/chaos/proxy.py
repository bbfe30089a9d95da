"""An HTTP proxy in front of InfluxDB that misbehaves on request: the chaos suite's InfluxDB faults.

Modes (set with `GET /_chaos/mode?mode=M&seconds=S[&victim=SENSOR]`, back to `pass` after S s):
  pass  forward everything
  422   partial write, as InfluxDB answers a field-type conflict: the lines tagged sensor=<victim> are
        dropped, the others written, and the client gets 422 with InfluxDB's message; a line refused
        once stays refused after the mode ends (a type conflict does not go away)
  429   every write answered 429 Too Many Requests (Retry-After: 1)
  500   every API request answered 500
Writes are the v2 /api/v2/write and the v1 /write (the services' write-only v1 users).
`GET /_chaos/stats` gives the counts and the identities (measurement,tags timestamp) of rejected lines.
Run: python -m tests.chaos.proxy --listen 18086 --target 8086
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class FaultState:
    """The current mode, when it ends, and what was refused (shared by the handler threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode, self.until, self.victim = "pass", 0.0, ""
        self.answered: Counter = Counter()
        self.rejected: set[str] = set()

    def current(self) -> tuple[str, str]:
        with self.lock:
            if self.mode != "pass" and time.monotonic() >= self.until:
                self.mode = "pass"
            return self.mode, self.victim

    def set(self, mode: str, seconds: float, victim: str) -> None:
        if mode not in ("pass", "422", "429", "500"):
            raise ValueError(f"unknown mode {mode!r}; use pass, 422, 429 or 500")
        with self.lock:
            self.mode, self.until, self.victim = mode, time.monotonic() + seconds, victim


def line_identity(line: str) -> str:
    """measurement,tags + timestamp of a line-protocol line (its point identity)."""
    series, _, rest = line.partition(" ")
    return f"{series} {rest.rsplit(' ', 1)[-1]}"


def make_handler(target: int, state: FaultState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:  # quiet: the suite reads /_chaos/stats
            return None

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            with state.lock:   # counted before the client can see the answer (a test reads it right after)
                state.answered[status] += 1
            try:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):   # the client gave up (its timeout): its retry
                self.close_connection = True                   # comes on a new connection
                with state.lock:
                    state.answered[status] -= 1

        def _forward(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", target, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            finally:
                conn.close()

        def _handle(self) -> None:
            url = urlparse(self.path)
            if url.path.startswith("/_chaos/"):
                return self._control(url)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if body and self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            mode, victim = state.current()
            is_write = url.path in ("/api/v2/write", "/write")
            if mode == "500" and (url.path.startswith("/api/") or is_write):
                return self._reply(500, b'{"code":"internal error","message":"chaos: injected 500"}',
                                   {"Content-Type": "application/json"})
            if mode == "429" and is_write:
                return self._reply(429, b'{"code":"too many requests","message":"chaos: injected 429"}',
                                   {"Content-Type": "application/json", "Retry-After": "1"})
            refused: list[str] = []
            if is_write and body and (mode == "422" or state.rejected):
                # A field type conflict is for good: a line refused once is refused every time after.
                lines = body.decode("utf-8", "replace").split("\n")
                with state.lock:
                    before = set(state.rejected)
                refused = [ln for ln in lines if line_identity(ln) in before or (mode == "422" and (
                    f",sensor={victim}," in ln or ln.endswith(f",sensor={victim}")))]
                body = "\n".join(ln for ln in lines if ln not in refused).encode()
            try:
                status, headers, data = self._forward(body if body is None or body.strip() else None)
            except OSError:   # InfluxDB is down: the client sees a dropped connection, as without us
                self.close_connection = True
                return None
            if refused and status < 300:
                with state.lock:
                    state.rejected.update(line_identity(ln) for ln in refused)
                msg = ("failure writing points to database: partial write: field type conflict: input field "
                       f"on measurement is type string, already exists as type float dropped={len(refused)}")
                return self._reply(422, json.dumps({"code": "unprocessable entity", "message": msg}).encode(),
                                   {"Content-Type": "application/json"})
            self._reply(status, data, {k: v for k, v in headers if k.lower() not in HOP_HEADERS})

        def _control(self, url) -> None:  # noqa: ANN001
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/_chaos/mode":
                try:
                    state.set(q.get("mode", "pass"), float(q.get("seconds", "0")), q.get("victim", ""))
                except ValueError as exc:
                    return self._reply(400, str(exc).encode())
                return self._reply(200, b"ok")
            with state.lock:
                doc = {"mode": state.mode, "answered": dict(state.answered), "rejected": sorted(state.rejected)}
            self._reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle

    return Handler


def serve(listen: int, target: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", listen), make_handler(target, FaultState()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=18086)
    parser.add_argument("--target", type=int, default=8086)
    args = parser.parse_args()
    serve(args.listen, args.target)
