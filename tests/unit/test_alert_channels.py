"""Channels against receivers that misbehave the way real ones do (local sockets, no Kafka): what is
retried and what is dead-lettered at once, the whole-attempt deadline, redirects, size limits, and
that one notification's trouble never holds the ones behind it."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alerts.channels import TRANSPORTS, Channel, Delivery, Refused, Shape, Subscriber, Transport, webhook_signature
from alerts.state import Notification

KEY = "unit-webhook-key"


def note(entity: str, kind: str = "firing", title: str = "") -> Notification:
    alert = {"rule": "air.pm25_daily", "entity": entity, "domain": "air", "site": entity, "severity": "major",
             "value": 92.0, "threshold": 75.0, "since": 1_700_000_000 * 10**9, "last_ts": 1_700_003_600 * 10**9, "title_en": title or f"PM2.5 at {entity}",
             "title_zh": f"{entity} PM2.5", "target": "GB 3095-2012", "id": "1a2b3c4d5e6f-1"}
    return Notification(kind, alert, f"{entity}:{kind}:1")  # type: ignore[arg-type]


class Receiver:
    """An HTTP receiver whose behaviour per path is a function of the request number there."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, bytes, float]] = []   # method, path, headers, body, time
        self.behaviour: dict[str, Any] = {}
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rx.requests.append((self.command, self.path, dict(self.headers), body, time.monotonic()))
                n = sum(1 for r in rx.requests if r[1] == self.path)
                action = rx.behaviour.get(self.path, lambda h, n: h.answer(200))
                try:
                    action(self, n)
                except OSError:
                    pass

            do_POST = do_GET = _serve  # noqa: N815

            def answer(self, status: int, **headers: str) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k.replace("_", "-"), v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def drip(self) -> None:   # a byte every 0.4 s, never done: no socket timeout ever trips
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(100):
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.4)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[tuple[str, str, dict, bytes, float]]:
        return [r for r in self.requests if r[1] == path]


class Metrics:
    """Counters with .labels(...).inc()/.observe(): what the channel reports, counted."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        metrics = self

        class _M:
            def labels(self, *a: str) -> "_M":
                return self

            def inc(self, n: int = 1) -> None:
                metrics.counts[name] = metrics.counts.get(name, 0) + n

            def observe(self, v: float) -> None:
                pass
        return _M()


class Harness:
    """A Channel with its outcomes and dead letters recorded."""

    def __init__(self, sub: Subscriber, transport: Transport | None = None, listed: int = 20) -> None:
        self.outcomes: list[tuple[str, str, float]] = []
        self.dead: list[tuple[bytes, str]] = []
        self.stopping = threading.Event()
        self.channel = Channel(sub, transport or TRANSPORTS[sub.channel](sub, None),
                               done=lambda d, o: self.outcomes.append((d.key, o, time.monotonic())),
                               dead_letter=lambda s, b, r: self.dead.append((b, r)) or True,
                               live=lambda d: True, shape=lambda d: Shape({}, listed, "http://router/alerts?rule=x"),
                               stopping=self.stopping, metrics=Metrics())

    def send(self, *notes: Notification) -> None:
        self.channel.send(Delivery(self.channel.sub.name, list(notes), [(0, 1)] * len(notes)))

    def wait(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < n:
            assert time.monotonic() < deadline, f"only {self.outcomes} after {timeout} s"
            time.sleep(0.02)

    def close(self) -> None:
        self.stopping.set()
        self.channel.close(2)


@pytest.fixture
def rx() -> Receiver:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCITY_WEBHOOK_UNIT", KEY)


def hook(rx: Receiver, path: str, **options: Any) -> Subscriber:
    return Subscriber(name=path.strip("/"), channel="webhook", url=rx.url + path, secret_env="SMARTCITY_WEBHOOK_UNIT",
                      **{"backoff": 0.05, "max_backoff": 0.2, **options})


def test_5xx_and_429_are_retried_honouring_retry_after_and_a_4xx_is_dead_lettered_at_once(rx: Receiver, key_env) -> None:  # noqa: ANN001
    rx.behaviour["/busy"] = lambda h, n: h.answer(500 if n < 3 else 200)
    rx.behaviour["/limited"] = lambda h, n: h.answer(429, Retry_After="1") if n == 1 else h.answer(200)
    rx.behaviour["/gone"] = lambda h, n: h.answer(404)
    harnesses = [Harness(hook(rx, p)) for p in ("/busy", "/limited", "/gone")]
    for h in harnesses:
        h.send(note("st1"))
    for h in harnesses:
        h.wait(1)
    assert [o for _, o, _ in harnesses[0].outcomes] == ["delivered"] and len(rx.on("/busy")) == 3
    limited = rx.on("/limited")
    assert len(limited) == 2 and limited[1][4] - limited[0][4] >= 0.95   # waited the Retry-After second
    assert [o for _, o, _ in harnesses[2].outcomes] == ["deadlettered"] and len(rx.on("/gone")) == 1
    assert "HTTP 404" in harnesses[2].dead[0][1] and "not retried" in harnesses[2].dead[0][1]
    for h in harnesses:
        h.close()


def test_a_dripping_receiver_is_cut_off_at_the_attempt_deadline_and_holds_nothing_behind_it(
        rx: Receiver, key_env) -> None:  # noqa: ANN001
    rx.behaviour["/drip"] = lambda h, n: h.drip() if n == 1 else h.answer(200)
    h = Harness(hook(rx, "/drip", timeout=1.0, backoff=5, max_backoff=5))
    started = time.monotonic()
    h.send(note("st1"))
    time.sleep(0.2)
    h.send(note("st2"))
    h.wait(2)
    (k2, o2, t2), (k1, o1, t1) = h.outcomes
    assert (k2, o2) == ("st2:firing:1", "delivered") and t2 - started < 2.5   # not behind st1's retry
    assert (k1, o1) == ("st1:firing:1", "delivered") and t1 - started >= 3.5   # cut at 1 s, retried ~2.5-5 s later
    h.close()


def test_redirects_are_never_followed_unless_same_host_307_is_allowed(rx: Receiver, key_env) -> None:  # noqa: ANN001
    rx.behaviour["/moved"] = lambda h, n: h.answer(301, Location="http://10.0.0.1/internal")
    rx.behaviour["/temp"] = lambda h, n: h.answer(307, Location="/final")
    rx.behaviour["/away"] = lambda h, n: h.answer(307, Location="http://localhost:1/x")
    moved, temp, away = Harness(hook(rx, "/moved")), Harness(hook(rx, "/temp", redirects="same-host")), \
        Harness(hook(rx, "/away", redirects="same-host"))
    for h in (moved, temp, away):
        h.send(note("st1"))
        h.wait(1)
    assert moved.outcomes[0][1] == "deadlettered" and "redirects are not followed" in moved.dead[0][1]
    assert temp.outcomes[0][1] == "delivered" and [r[0] for r in rx.on("/final")] == ["POST"]
    assert away.outcomes[0][1] == "deadlettered"
    assert all(r[0] == "POST" for r in rx.requests) and not rx.on("/internal")
    for h in (moved, temp, away):
        h.close()


def test_a_receiver_that_refuses_connections_is_retried_until_retry_for_then_dead_lettered(key_env) -> None:  # noqa: ANN001
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sub = Subscriber(name="nobody", channel="webhook", url=f"http://127.0.0.1:{port}/x",
                     secret_env="SMARTCITY_WEBHOOK_UNIT", backoff=0.05, max_backoff=0.1, retry_for=1.0)
    h = Harness(sub)
    h.send(note("st1"))
    h.wait(1)
    assert h.outcomes[0][1] == "deadlettered" and "ConnectionRefusedError" in h.dead[0][1]
    assert h.channel.metrics.counts["retries"] >= 5
    h.close()


def test_the_body_is_signed_with_its_send_time_so_receivers_can_refuse_replays(rx: Receiver, key_env) -> None:  # noqa: ANN001
    h = Harness(hook(rx, "/ok"))
    h.send(note("st1"))
    h.wait(1)
    _, _, headers, body, _ = rx.on("/ok")[0]
    assert headers["X-Smartcity-Signature"] == webhook_signature(KEY.encode(), body)
    assert headers["X-Smartcity-Signature"] == "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    assert abs(json.loads(body)["sent_at"] - time.time()) < 5
    h.close()


def test_a_storm_delivery_lists_the_rules_bound_and_counts_the_rest_within_the_size_limit(rx: Receiver, key_env) -> None:  # noqa: ANN001
    h = Harness(hook(rx, "/ok", max_bytes=8192), listed=20)
    h.send(*[note(f"s{i:05d}", title="x" * 200) for i in range(20_000)])
    h.wait(1)
    body = json.loads(rx.on("/ok")[0][3])
    assert len(rx.on("/ok")[0][3]) <= 8192 and 1 <= len(body["alerts"]) < 20
    assert body["summary"]["total"] == 20_000 and body["summary"]["sites"] == 20_000
    assert body["summary"]["full_list"] == "http://router/alerts?rule=x" and "19," in body["text_en"]
    assert body["idempotency_key"].startswith("group-")
    h.close()


def test_a_message_that_cannot_fit_is_dead_lettered_not_sent(key_env) -> None:  # noqa: ANN001
    sent: list[dict] = []
    t = Transport(lambda body, attempt, deadline: sent.append(body), lambda body: len(json.dumps(body)), lambda: 100)
    h = Harness(Subscriber(name="tiny", channel="mqtt"), t)
    h.send(note("st1"))
    h.wait(1)
    assert h.outcomes[0][1] == "deadlettered" and not sent and "more than the channel's 100" in h.dead[0][1]
    h.close()


def test_a_refused_mqtt_publish_is_not_retried() -> None:
    def deliver(body: dict, attempt: int, deadline: float) -> None:
        raise Refused("the broker refused the publish: Not authorized")
    h = Harness(Subscriber(name="ops", channel="mqtt"), Transport(deliver, lambda b: 10, lambda: 10_000))
    h.send(note("st1"))
    h.wait(1)
    assert h.outcomes[0][1] == "deadlettered" and h.channel.metrics.counts.get("retries", 0) == 0
    h.close()


def test_an_smtp_server_that_accepts_and_never_answers_is_cut_off_at_each_deadline_then_dead_lettered() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)   # accepts (the kernel does), never says a word
    sub = Subscriber(name="duty", channel="email", to=["duty@laoshan.example"], smtp_port=silent.getsockname()[1],
                     timeout=0.5, backoff=0.05, max_backoff=0.1, retry_for=2.0)
    h = Harness(sub)
    started = time.monotonic()
    h.send(note("st1"))
    h.wait(1)
    assert h.outcomes[0][1] == "deadlettered" and time.monotonic() - started < 4
    assert "did not finish within 0.5 s" in h.dead[0][1] or "timed out" in h.dead[0][1]
    h.close()
    silent.close()


def test_an_smtp_server_that_drips_its_greeting_is_cut_off_at_the_deadline() -> None:
    """The greeting is read inside smtplib.SMTP(host) before the watchdog could see the socket: a server
    sending "220-" continuation lines forever held the e-mail channel for good (found by attack27)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def greet() -> None:
        conn, _ = server.accept()
        try:
            for _ in range(200):   # a line every 0.1 s: no socket timeout ever trips
                conn.sendall(b"220-still greeting\r\n")
                time.sleep(0.1)
        except OSError:
            pass
        conn.close()
    threading.Thread(target=greet, daemon=True).start()
    sub = Subscriber(name="duty", channel="email", to=["duty@laoshan.example"], smtp_port=server.getsockname()[1],
                     timeout=0.5)
    body = {"kind": "firing", "idempotency_key": "k1", "alerts": [note("st1").alert], "text_en": "e", "text_zh": "z"}
    started = time.monotonic()
    with pytest.raises(Exception, match="did not finish within 0.5 s"):
        TRANSPORTS["email"](sub, None).deliver(body, 1, time.monotonic() + sub.timeout)
    assert time.monotonic() - started < 2
    server.close()


def test_a_title_with_a_line_break_makes_a_one_line_subject_not_a_retried_error() -> None:
    """title_en may hold CR/LF (the contract bounds only its length): the Subject header raised
    ValueError, which the channel retried for hours; it could also carry a forged header."""
    body = {"kind": "firing", "idempotency_key": "k1", "alerts": [note("st1", title="fire\r\nBcc: x@evil.example").alert],
            "text_en": "e", "text_zh": "z"}
    transport = TRANSPORTS["email"](Subscriber(name="duty", channel="email", to=["duty@laoshan.example"]), None)
    assert transport.size(body) > 0
    from alerts.channels import _email
    msg = _email(Subscriber(name="duty", channel="email", to=["duty@laoshan.example"]), body)
    assert "\n" not in msg["Subject"] and msg["Bcc"] is None and "Bcc: x@evil.example" in msg["Subject"]


@pytest.mark.parametrize("value", ["0", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_retry_after_of_zero_or_in_the_past_still_backs_off(rx: Receiver, key_env, value: str) -> None:  # noqa: ANN001
    """429 with Retry-After 0 (or a past HTTP date) gave a delay of 0: the channel retried in a tight
    loop, hammering the receiver for the whole retry_for; the backoff is the floor."""
    rx.behaviour["/zero"] = lambda h, n: h.answer(429, Retry_After=value)
    h = Harness(hook(rx, "/zero", backoff=0.2, max_backoff=0.2, retry_for=30))
    h.send(note("st1"))
    time.sleep(1.0)
    assert 2 <= len(rx.on("/zero")) <= 8   # 0.1-0.2 s apart, not hundreds
    h.close()
