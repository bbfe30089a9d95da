"""The router's HTTP server under hostile clients: bounded connections, a deadline per connection,
malformed requests answered 400 without a traceback, acknowledgements answered once."""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from alerts.ackserver import RouterHTTP, sign_link

KEY = b"unit-link-key"
ALERT = "1a2b3c4d5e6f-2"


class Server:
    def __init__(self, **limits: float) -> None:
        self.acks: list[tuple[str, str, str, str]] = []
        self.acked: dict[str, tuple[str, float]] = {}
        self.http = RouterHTTP("127.0.0.1", 0, CollectorRegistry(), lambda: KEY, self._ack, time.time,
                               status=self.acked.get, alerts=lambda rule, state, off, lim: {"total": 0, "alerts": []},
                               **limits)
        self.base = f"http://127.0.0.1:{self.http.port}"

    def _ack(self, alert_id: str, by: str, comment: str, source: str) -> None:
        self.acks.append((alert_id, by, comment, source))
        self.acked.setdefault(alert_id, (by, 1_800_000_000.0))


@pytest.fixture
def server() -> Server:
    s = Server(max_connections=8, io_timeout=2.0, deadline=5.0)
    yield s
    s.http.close()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1e3", b"99999999999999"])
def test_a_bad_content_length_is_answered_400_or_413(server: Server, length: bytes) -> None:
    answer = raw(server.http.port, b"POST /ack?x=1 HTTP/1.0\r\nContent-Length: " + length + b"\r\n\r\n")
    assert answer.split(b" ", 2)[1] in (b"400", b"413"), answer[:200]


def test_a_body_shorter_than_announced_is_answered_400_after_the_io_timeout(server: Server) -> None:
    answer = raw(server.http.port, b"POST /ack HTTP/1.0\r\nContent-Length: 50\r\n\r\nby=x")
    assert answer.startswith(b"HTTP/1.0 400") or answer == b"", answer[:200]


def test_idle_and_dripping_connections_are_cut_off_and_never_starve_the_server(server: Server) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.http.port)) for _ in range(30)]   # 8 slots, 22 refused
    asked = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as busy:   # every slot held: answered at once, not queued
        urllib.request.urlopen(server.base + "/metrics", timeout=10)
    assert busy.value.code == 503 and time.monotonic() - asked < 2
    time.sleep(2.5)   # the idle ones hit their 2 s timeout and free their slots
    drip = socket.create_connection(("127.0.0.1", server.http.port))
    started = time.monotonic()
    try:
        for ch in b"GET /metrics HTTP/1.0\r\n":
            drip.sendall(bytes([ch]))
            time.sleep(0.5)
    except OSError:
        pass   # cut off
    assert time.monotonic() - started < 9   # the 5 s deadline, not the 12 s drip
    assert urllib.request.urlopen(server.base + "/metrics", timeout=5).status == 200
    for s in idle + [drip]:
        s.close()


def test_connections_over_the_bound_get_503_at_once(server: Server) -> None:
    held = [socket.create_connection(("127.0.0.1", server.http.port)) for _ in range(8)]
    time.sleep(0.2)
    answer = raw(server.http.port, b"GET /metrics HTTP/1.0\r\n\r\n", timeout=2)
    assert answer.startswith(b"HTTP/1.0 503"), answer[:100]
    for s in held:
        s.close()


def test_a_malformed_request_line_gets_400_not_a_traceback(server: Server, capfd: pytest.CaptureFixture) -> None:
    assert b"400" in raw(server.http.port, b"\x16\x03\x01garbage\r\n\r\n")
    assert raw(server.http.port, b"GET /metrics HTTP/1.0\r\n" + b"X: y\r\n" * 200 + b"\r\n").split(b" ", 2)[1] == b"431"
    assert "Traceback" not in capfd.readouterr().err


def test_the_first_acknowledgement_wins_and_a_later_one_is_told_who_was_first(server: Server) -> None:
    link = sign_link(server.base, KEY, ALERT, "bureau", exp=int(time.time()) + 600)
    first = urllib.request.urlopen(link, data=b"by=li&comment=on+it", timeout=5).read().decode()
    second = urllib.request.urlopen(link, data=b"by=mallory", timeout=5).read().decode()
    assert "Acknowledged" in first and "Already acknowledged by li (via bureau) at" in second
    assert "UTC+8" in second and [a[1] for a in server.acks] == ["li (via bureau)", "mallory (via bureau)"]
    form = urllib.request.urlopen(link, timeout=5).read().decode()
    assert "Already acknowledged by li (via bureau)" in form


def test_a_link_spelled_otherwise_is_refused(server: Server) -> None:
    link = sign_link(server.base, KEY, ALERT, "bureau", exp=int(time.time()) + 600)
    base, query = link.split("?", 1)
    exp = urllib.parse.parse_qs(query)["exp"][0]
    for bad in (query.replace(f"exp={exp}", f"exp=+{exp}"), query.replace(f"exp={exp}", f"exp=0{exp}"),
                query + "&to=mallory"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}?{bad}", data=b"by=x", timeout=5)
        assert err.value.code == 403
    assert server.acks == []
