"""Signed acknowledge links and the router's small HTTP server (/ack for people, /alerts for the full
list a summarised notification links, /metrics for Prometheus).

A link says which alert, on whose behalf (the subscriber it was sent to) and until when, signed with
HMAC-SHA256 under the router's link key: `/ack?id=<id>&to=<subscriber>&exp=<unix s>&sig=<hex>`, each
parameter exactly once and in one spelling (exp in plain decimal digits, sig in lower-case hex).
GET shows a small form (so that mail scanners that follow links acknowledge nothing); POST with the
person's name and a comment sends the acknowledgement to alerts.events, to the owning partition. The
first acknowledgement wins: a later one is recorded as history and answered "already acknowledged by
... at ...". The server bounds what clients can hold: a deadline per connection (a client that
drips bytes is cut off), a bound on connections served at once (the next ones get 503), request
bodies of at most 64 KiB; a malformed request is answered 400, never with a traceback.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import json
import logging
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from infra.logs import event
from schemas.alerting import ALERT_ID

log = logging.getLogger("smartcity.alerts")


def _signature(key: bytes, alert_id: str, to: str, exp: int) -> str:
    return hmac.new(key, f"{alert_id}|{to}|{exp}".encode(), hashlib.sha256).hexdigest()


def sign_link(base: str, key: bytes, alert_id: str, to: str, exp: int) -> str:
    """The acknowledge link of `alert_id` for subscriber `to`, valid until `exp` (unix seconds)."""
    query = urllib.parse.urlencode({"id": alert_id, "to": to, "exp": exp, "sig": _signature(key, alert_id, to, exp)})
    return f"{base.rstrip('/')}/ack?{query}"


LINK_PARAMS = {"id": ALERT_ID, "to": r"^[^\x00-\x1f\x7f]{1,100}$", "exp": r"^[1-9][0-9]{0,11}$",
               "sig": r"^[0-9a-f]{64}$"}
MAX_BODY = 64 * 1024


def verify_link(key: bytes, query: str, now: float) -> tuple[str, str]:
    """(alert id, subscriber) of a valid link; raises PermissionError (incomplete, not in its one
    canonical form, or a bad signature) or TimeoutError (expired)."""
    try:
        pairs = urllib.parse.parse_qsl(query, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise PermissionError("the link is malformed: open the whole link from the notification") from None
    names = [k for k, _ in pairs]
    values = dict(pairs)
    if sorted(names) != sorted(LINK_PARAMS) or any(not re.fullmatch(LINK_PARAMS[k], v) for k, v in values.items()):
        raise PermissionError("the link is incomplete or altered: open the whole link exactly as it was sent")
    alert_id, to, exp, sig = values["id"], values["to"], int(values["exp"]), values["sig"]
    if not hmac.compare_digest(_signature(key, alert_id, to, exp), sig):
        raise PermissionError("the link's signature does not match: open the link exactly as it was sent")
    if now > exp:
        raise TimeoutError("the link has expired: acknowledge with `smartcity alerts ack` or the field app")
    return alert_id, to


FORM = """<!doctype html><meta charset="utf-8"><title>Acknowledge {id}</title>
<h1>确认告警 Acknowledge alert {id}</h1>{status}<form method="post">
<p><label>姓名 Your name <input name="by" required></label></p>
<p><label>说明 Comment <input name="comment" size="60"></label></p>
<p><button type="submit">确认 Acknowledge</button></p></form>"""
Status = Callable[[str], "tuple[str, float] | None"]   # alert id -> (acknowledged by, at) when known here
AlertList = Callable[[str | None, str | None, int, int], dict[str, Any]]


def _at(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S UTC+8")


class BadRequest(Exception):
    """A request this server will not serve: answered with its status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `limit` at once (the next are answered 503 and closed), each
    cut off `deadline` seconds after it was accepted, whatever the client is doing."""

    daemon_threads = True
    request_queue_size = 128   # the listen backlog: beyond it clients wait for SYN retries, not for a 503

    def __init__(self, address: tuple[str, int], handler: Any, limit: int, deadline: float) -> None:
        self.slots, self.deadline = threading.BoundedSemaphore(limit), deadline
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        timer = threading.Timer(self.deadline, lambda: _cut(request))
        timer.daemon = True
        timer.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            timer.cancel()
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        event(log, "http_request_failed", logging.WARNING, client=str(client_address[0]))


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class RouterHTTP:
    """Serves /ack (signed links), /alerts and /metrics on one port, in a daemon thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, key: Callable[[], bytes | None],
                 acknowledge: Callable[[str, str, str, str], None], clock: Callable[[], float], *,
                 status: Status = lambda alert_id: None, alerts: AlertList | None = None,
                 max_connections: int = 32, io_timeout: float = 5.0, deadline: float = 15.0) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = io_timeout   # per socket operation; the server's deadline bounds the whole connection

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif url.path == "/ack":
                    server._ack(self, url.query, None)
                elif url.path == "/alerts" and alerts is not None:
                    server._list(self, url.query, alerts)
                else:
                    self._reply(404, b"not found: /ack, /alerts or /metrics\n")

            def do_POST(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                try:
                    form = dict(urllib.parse.parse_qsl(self._body().decode("utf-8", "replace")))
                except BadRequest as exc:
                    self._reply(exc.status, f"{exc}\n".encode())
                    return
                if url.path == "/ack":
                    server._ack(self, url.query, form)
                else:
                    self._reply(404, b"not found: POST /ack\n")

            def _body(self) -> bytes:
                raw = self.headers.get("Content-Length")
                if raw is None or not re.fullmatch(r"[0-9]{1,10}", raw.strip()):
                    raise BadRequest(400, f"Content-Length {raw!r} is not a byte count: send the form as "
                                          "application/x-www-form-urlencoded with its length")
                if int(raw) > MAX_BODY:
                    raise BadRequest(413, f"a body of {int(raw):,} bytes; at most {MAX_BODY:,}")
                body = self.rfile.read(int(raw))
                if len(body) < int(raw):
                    raise BadRequest(400, f"the body ended after {len(body)} of {int(raw)} bytes")
                return body

            def _reply(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True   # the client left or was cut off

            def log_message(self, *args: Any) -> None:
                return

        self._key, self._acknowledge, self._clock, self._status = key, acknowledge, clock, status
        self.httpd = _BoundedServer((host, port), Handler, max_connections, deadline)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, name="router-http", daemon=True).start()

    def _list(self, handler: Any, query: str, alerts: AlertList) -> None:
        q = dict(urllib.parse.parse_qsl(query))
        try:
            offset, limit = int(q.get("offset", "0")), min(int(q.get("limit", "1000")), 1000)
            if offset < 0 or limit < 1:
                raise ValueError
        except ValueError:
            handler._reply(400, b"offset and limit are counts (limit at most 1000)\n")
            return
        page = alerts(q.get("rule"), q.get("state"), offset, limit)
        handler._reply(200, json.dumps(page, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _ack(self, handler: Any, query: str, form: dict[str, str] | None) -> None:
        key = self._key()
        if key is None:
            handler._reply(503, b"acknowledge links are off: the router has no link key\n")
            return
        try:
            alert_id, to = verify_link(key, query, self._clock())
        except PermissionError as exc:
            handler._reply(403, f"{exc}\n".encode())
            return
        except TimeoutError as exc:
            handler._reply(410, f"{exc}\n".encode())
            return
        known = self._status(alert_id)
        already = (f"已由 {known[0]} 于 {_at(known[1])} 确认。Already acknowledged by {known[0]} at {_at(known[1])}."
                   if known else "")
        if form is None:
            status = f"<p>{html.escape(already)}</p>" if already else ""
            handler._reply(200, FORM.format(id=html.escape(alert_id), status=status).encode(), "text/html; charset=utf-8")
            return
        by = form.get("by", "").strip()[:100]
        if not by:
            handler._reply(400, b"say who acknowledges: fill in the name field\n")
            return
        try:
            self._acknowledge(alert_id, f"{by} (via {to})", form.get("comment", "").strip()[:500], "link")
        except Exception as exc:  # noqa: BLE001 - tell the person, keep serving
            event(log, "link_ack_failed", logging.ERROR, id=alert_id, error=str(exc)[:200])
            handler._reply(503, b"could not record the acknowledgement now (Kafka unavailable?); try again\n")
            return
        if already:
            handler._reply(200, f"{already} Your acknowledgement is recorded in its history.\n".encode())
            return
        handler._reply(200, f"已确认 Acknowledged {alert_id} by {by}. Thank you.\n".encode())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
