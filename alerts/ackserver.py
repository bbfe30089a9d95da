"""Signed acknowledge links and the router's small HTTP server (/ack for people, /metrics for Prometheus).

A link says which alert, on whose behalf (the subscriber it was sent to) and until when, signed with
HMAC-SHA256 under the router's link key: `/ack?id=<id>&to=<subscriber>&exp=<unix s>&sig=<hex>`.
GET shows a small form (so that mail scanners that follow links acknowledge nothing); POST with the
person's name and a comment sends the acknowledgement to alerts.events, to the owning partition.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from infra.logs import event

log = logging.getLogger("smartcity.alerts")


def _signature(key: bytes, alert_id: str, to: str, exp: int) -> str:
    return hmac.new(key, f"{alert_id}|{to}|{exp}".encode(), hashlib.sha256).hexdigest()


def sign_link(base: str, key: bytes, alert_id: str, to: str, exp: int) -> str:
    """The acknowledge link of `alert_id` for subscriber `to`, valid until `exp` (unix seconds)."""
    query = urllib.parse.urlencode({"id": alert_id, "to": to, "exp": exp, "sig": _signature(key, alert_id, to, exp)})
    return f"{base.rstrip('/')}/ack?{query}"


def verify_link(key: bytes, query: dict[str, str], now: float) -> tuple[str, str]:
    """(alert id, subscriber) of a valid link; raises PermissionError (bad signature) or TimeoutError (expired)."""
    try:
        alert_id, to, exp, sig = query["id"], query["to"], int(query["exp"]), query["sig"]
    except (KeyError, ValueError):
        raise PermissionError("the link is incomplete: open the whole link from the notification") from None
    if not hmac.compare_digest(_signature(key, alert_id, to, exp), sig):
        raise PermissionError("the link's signature does not match: open the link exactly as it was sent")
    if now > exp:
        raise TimeoutError("the link has expired: acknowledge with `smartcity alerts ack` or the field app")
    return alert_id, to


FORM = """<!doctype html><meta charset="utf-8"><title>Acknowledge {id}</title>
<h1>确认告警 Acknowledge alert {id}</h1><form method="post">
<p><label>姓名 Your name <input name="by" required></label></p>
<p><label>说明 Comment <input name="comment" size="60"></label></p>
<p><button type="submit">确认 Acknowledge</button></p></form>"""


class RouterHTTP:
    """Serves /ack (signed links) and /metrics on one port, in a daemon thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, key: Callable[[], bytes | None],
                 acknowledge: Callable[[str, str, str, str], None], clock: Callable[[], float]) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif url.path == "/ack":
                    server._ack(self, url.query, None)
                else:
                    self._reply(404, b"not found: /ack or /metrics\n")

            def do_POST(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))
                if url.path == "/ack":
                    server._ack(self, url.query, form)
                else:
                    self._reply(404, b"not found: POST /ack\n")

            def _reply(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self._key, self._acknowledge, self._clock = key, acknowledge, clock
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, name="router-http", daemon=True).start()

    def _ack(self, handler: Any, query: str, form: dict[str, str] | None) -> None:
        key = self._key()
        if key is None:
            handler._reply(503, b"acknowledge links are off: the router has no link key\n")
            return
        try:
            alert_id, to = verify_link(key, dict(urllib.parse.parse_qsl(query)), self._clock())
        except PermissionError as exc:
            handler._reply(403, f"{exc}\n".encode())
            return
        except TimeoutError as exc:
            handler._reply(410, f"{exc}\n".encode())
            return
        if form is None:
            handler._reply(200, FORM.format(id=html.escape(alert_id)).encode(), "text/html; charset=utf-8")
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
        handler._reply(200, f"已确认 Acknowledged {alert_id} by {by}. Thank you.\n".encode())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
