"""The alert router on the real services, with real receivers: an MQTT subscriber, an HTTP webhook
server that checks signatures and can fail on purpose, and an SMTP server (aiosmtpd). Routers run as
real processes (SIGKILLed where the test says so), except where wall time must be injected."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from alerts.router import AlertConfig, AlertRouter, read_state
from infra.clients import kafka_producer, mqtt_client, mqtt_connect
from infra.settings import Settings
from tests import alertlab
from tests.helpers import REPO, flux_rows, read_topic, settings_env, start, stop, values

pytestmark = pytest.mark.integration
SECRET = "test-webhook-key"
LINK_KEY = "test-link-key"
DAY = (int(time.time()) // 86400 - 2) * 86400 * 10**9
TAG = f"[run {uuid.uuid4().hex[:8]}]"   # in every observation's target: the MQTT broker is shared by every run


class Webhooks:
    """HTTP receiver: /ok 200; /flaky fails its first `flaky` requests; /down always 500; /gate 503 while
    `gate_open` is False; /slow answers its first request after `slow_s` seconds (the router times out)."""

    def __init__(self, flaky: int = 2, slow_s: float = 2.5) -> None:
        self.requests: list[tuple[str, dict, bytes, int]] = []
        self.flaky_left, self.gate_open, self.slow_left = flaky, False, 1
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 200
                if self.path == "/down" or (self.path == "/gate" and not hooks.gate_open):
                    status = 503 if self.path == "/gate" else 500
                elif self.path == "/flaky" and hooks.flaky_left > 0:
                    hooks.flaky_left -= 1
                    status = 503
                elif self.path == "/slow" and hooks.slow_left > 0:
                    hooks.slow_left -= 1
                    time.sleep(slow_s)
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if self.headers.get("X-Smartcity-Signature") != expected:
                    status = 401
                hooks.requests.append((self.path, dict(self.headers), body, status))
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass  # the router gave up waiting

            def log_message(self, *args) -> None:  # noqa: ANN002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, path: str) -> list[dict]:
        """Bodies that reached `path` and were answered 200 (or would have been: /slow)."""
        return [json.loads(b) for p, _, b, status in self.requests if p == path and status == 200]

    def keys(self, path: str) -> list[str]:
        return [h["X-Smartcity-Idempotency-Key"] for p, h, _, status in self.requests if p == path and status == 200]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802, ANN201
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receivers:
    """The three kinds of subscriber: MQTT (city/alerts/+/+), webhook, SMTP (started on demand)."""

    def __init__(self, settings: Settings) -> None:
        self.hooks, self.mailbox, self.smtp_port = Webhooks(), Mailbox(), free_port()
        self.smtp: Controller | None = None
        self.mqtt: list[tuple[str, dict, str]] = []   # topic, body, idempotency-key user property
        self.sub = mqtt_client(settings, username="subscriber")
        def keep(c, u, m) -> None:  # noqa: ANN001 - what other runs' routers publish is not ours
            body = json.loads(m.payload)
            if any(str(a.get("target", "")).endswith(TAG) for a in body.get("alerts", [])):
                self.mqtt.append((m.topic, body, dict(m.properties.UserProperty)["idempotency-key"]))
        self.sub.on_message = keep
        mqtt_connect(self.sub, settings)
        self.sub.loop_start()
        self.sub.subscribe("city/alerts/+/+", qos=1)

    def start_smtp(self) -> None:
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()

    def mqtt_bodies(self) -> list[dict]:
        return [b for _, b, _ in self.mqtt]

    def close(self) -> None:
        self.sub.disconnect()
        self.sub.loop_stop()
        if self.smtp:
            self.smtp.stop()
        self.hooks.server.shutdown()


@pytest.fixture
def receivers(settings: Settings):
    r = Receivers(settings)
    r.start_smtp()
    yield r
    r.close()


@pytest.fixture
def keys_env(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("SMARTCITY_WEBHOOK_TEST", SECRET)
    monkeypatch.setenv("SMARTCITY_ALERTS_LINK_KEY", LINK_KEY)


def write_config(path: Path, r: Receivers, *, repeat: float, group_window: float = 0, extra: str = "",
                 http_port: int = 0) -> Path:
    base = f"http://127.0.0.1:{r.hooks.port}"
    path.write_text(f"""
group_window = {group_window}
link_base = "http://127.0.0.1:{http_port}"
[rules."*"]
repeat = {repeat}
[rules."air.pm25_daily"]
repeat = {repeat}
clear_below = 70
[[subscriber]]
name = "wall"
channel = "mqtt"
[[subscriber]]
name = "bureau"
channel = "webhook"
url = "{base}/ok"
secret_env = "SMARTCITY_WEBHOOK_TEST"
[[subscriber]]
name = "duty"
channel = "email"
to = ["duty@laoshan.example"]
smtp_host = "127.0.0.1"
smtp_port = {r.smtp_port}
tries = 40
backoff = 0.2
timeout = 2
{extra}
""")
    return path


def webhook(name: str, path: str, **options: object) -> str:
    lines = [f'[[subscriber]]\nname = "{name}"\nchannel = "webhook"\nurl = "http://127.0.0.1:{{port}}{path}"',
             'secret_env = "SMARTCITY_WEBHOOK_TEST"'] + [f"{k} = {v}" for k, v in options.items()]
    return "\n".join(lines) + "\n"


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leaked_routers():
    """A failing test must not leave its router running (it would hold the consumer group)."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def group_of(settings: Settings) -> str:
    return f"router-{settings.kafka.topic_prefix.strip('.')}"


def router(settings: Settings, config: Path, log: Path, *, instance: str = "1", http_port: int = 0,
           owns: int | None = 3) -> subprocess.Popen:
    """Start `alerts serve`; wait until it owns `owns` partitions (None: any assignment at all) and has
    kept them for 2 s (kafka-python may rebalance again right after the first join; a stalled rejoin is
    replaced after 12 s, see infra.clients.RebalanceWatch)."""
    start_at = len(log.read_text(errors="replace")) if log.exists() else 0
    proc = start(settings, "alerts", "serve", "--config", str(config), "--group", group_of(settings),
                 "--instance", instance, "--http-port", str(http_port), "--session-expiry", "120", log=log)
    STARTED.append(proc)
    deadline, stable_since = time.monotonic() + 90, None
    while True:
        text = log.read_text(errors="replace")
        changes = re.findall(r"event=partitions_(assigned|revoked) partitions=(\S*)", text[start_at:])
        kind, parts = changes[-1] if changes else ("", "")
        if kind == "assigned" and (owns is None or len(parts.split(",")) == owns):
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 2:
                return proc
        else:
            stable_since = None
        assert time.monotonic() < deadline and proc.poll() is None, text[-3000:]
        time.sleep(0.2)


def observation_bytes(site: str, value: float, ts: int, rule: str = "air.pm25_daily") -> bytes:
    """The processors' observation of `rule` for one site, as it is on alerts.events."""
    return json.dumps({
        "rule": rule, "entity": site, "domain": "air", "site": site, "severity": "major", "value": value,
        "threshold": 75.0, "breach": value > 75, "ts": ts, "title_en": f"Daily PM2.5 at {site}",
        "title_zh": f"{site} PM2.5日均值", "target": f"GB 3095-2012 24-h limit 75 µg/m³; plan annual 35 (33.5) {TAG}"}).encode()


def observe(settings: Settings, site: str | list[str], value: float, ts: int, rule: str = "air.pm25_daily") -> None:
    """The processors' observation of `rule` for one site (or several, produced together)."""
    producer = kafka_producer(settings)
    futures = [producer.send(settings.kafka.alerts_topic, key=f"{rule}/{s}".encode(),
                             value=observation_bytes(s, value, ts, rule))
               for s in ([site] if isinstance(site, str) else site)]
    for f in futures:
        f.get(30)
    producer.close()


def kinds_by_site(bodies: list[dict]) -> Counter:
    return Counter((a["entity"], b["kind"]) for b in bodies for a in b["alerts"])


def wait_until(check, timeout: float = 30, what: str = "") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.1)


def mail_sites(m) -> set[str]:  # noqa: ANN001
    return set(re.findall(r"PM2.5 at (st\d+)", m.get_payload(decode=True).decode()))


def one_key_per_notification(pairs: list[tuple[tuple[str, str], str]]) -> dict[tuple[str, str], str]:
    """{(entity, kind): key}; fails when one notification arrived under two keys or two under one key."""
    seen: dict[tuple[str, str], set[str]] = {}
    for what, key in pairs:
        seen.setdefault(what, set()).add(key)
    assert all(len(k) == 1 for k in seen.values()), seen
    keys = {what: next(iter(k)) for what, k in seen.items()}
    assert len(set(keys.values())) == len(keys), keys
    return keys


def mqtt_pairs(r: Receivers) -> list[tuple[tuple[str, str], str]]:
    return [((a["entity"], b["kind"]), key) for _, b, key in r.mqtt for a in b["alerts"]]


def hook_pairs(r: Receivers, path: str) -> list[tuple[tuple[str, str], str]]:
    return [((b["alerts"][0]["entity"], b["kind"]), key) for b, key in zip(r.hooks.received(path), r.hooks.keys(path))]


def mail_pairs(r: Receivers) -> list[tuple[tuple[str, str], str]]:
    out = []
    for m in r.mailbox.messages:
        kind = str(make_header(decode_header(m["Subject"])))[1:].split("/")[0].lower()
        out += [((site, kind), m["X-Smartcity-Idempotency-Key"]) for site in mail_sites(m)]
        assert m["Message-ID"] == f"<{m['X-Smartcity-Idempotency-Key'].replace(':', '.')}@smartcity.laoshan>"
    return out


# -- the loop as before: fire, remind, acknowledge (CLI and field app), resolve below hysteresis -------------

def test_pm25_episode_fires_once_reminds_until_ack_and_resolves_below_hysteresis(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    proc = router(settings, write_config(tmp_path / "alerts.toml", r, repeat=4.0), tmp_path / "router.log")
    for site in ("st1", "st2"):
        observe(settings, site, 92.0, DAY)
    wait_until(lambda: sum(1 for b in r.mqtt_bodies() if b["kind"] == "firing") == 2)
    fired = time.monotonic()
    body = next(b for b in r.mqtt_bodies() if b["kind"] == "firing" and b["alerts"][0]["entity"] == "st1")
    assert "PM2.5" in body["text_en"] and "阈值 75" in body["text_zh"] and "92" in body["text_en"]
    assert "GB 3095-2012" in body["text_en"] and "UTC+8" in body["text_en"] and "ack/alerts/" in body["text_en"]
    time.sleep(max(0.0, fired + 8.5 - time.monotonic()))  # reminders due at +4 s and +8 s; the next at +12 s
    ids = {b["alerts"][0]["entity"]: b["alerts"][0]["id"] for b in r.mqtt_bodies() if b["kind"] == "firing"}
    subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "ack", ids["st1"], "--by", "wang.fang",
                    "--comment", "sprinkler trucks out"], cwd=REPO, env=settings_env(settings), check=True,
                   capture_output=True)
    field_ack(settings, ids["st2"], {"by": "field-app/li", "comment": "checked"})
    wait_until(lambda: sum(1 for b in r.mqtt_bodies() if b["kind"] == "acknowledged") == 2)
    time.sleep(max(0.0, fired + 17.0 - time.monotonic()))  # without the acks, reminders at +12 s and +16 s
    observe(settings, "st1", 72.0, DAY + 86400 * 10**9)   # below the limit, above the 70 hysteresis level
    observe(settings, "st2", 72.0, DAY + 86400 * 10**9)
    time.sleep(2)
    assert not [b for b in r.mqtt_bodies() if b["kind"] == "resolved"]
    observe(settings, "st1", 60.0, DAY + 2 * 86400 * 10**9)
    observe(settings, "st2", 60.0, DAY + 2 * 86400 * 10**9)
    wait_until(lambda: sum(1 for b in r.mqtt_bodies() if b["kind"] == "resolved") == 2)
    wait_until(lambda: len(r.mailbox.messages) >= 10 and len(r.hooks.received("/ok")) >= 10)  # 5 per station
    time.sleep(1)
    assert stop(proc) == 0
    for site in ("st1", "st2"):   # reminders every 4 s until the acknowledgement, none after it
        kinds = [b["kind"] for b in r.mqtt_bodies() if b["alerts"][0]["entity"] == site]
        reminders = kinds.count("reminder")
        assert reminders >= 2 and kinds == ["firing"] + ["reminder"] * reminders + ["acknowledged", "resolved"], kinds
    expected = kinds_by_site(r.mqtt_bodies())
    assert kinds_by_site(r.hooks.received("/ok")) == expected, "webhook receiver"
    assert Counter(w for w, _ in mail_pairs(r)) == expected, "SMTP server"
    assert {t for t, _, _ in r.mqtt} == {"city/alerts/air/major"}   # no acknowledgement reached city/alerts/+/+
    acked = next(b for b in r.mqtt_bodies() if b["kind"] == "acknowledged" and b["alerts"][0]["entity"] == "st1")
    assert acked["alerts"][0]["acked_by"] == "wang.fang" and acked["alerts"][0]["ack_comment"] == "sprinkler trucks out"
    times = flux_rows(settings, settings.influx.bucket_compliance, 'r._measurement == "alert_times"')
    tta = {row["entity"]: row["_value"] for row in times if row["_field"] == "tta_s"}
    ttr = {row["entity"]: row["_value"] for row in times if row["_field"] == "ttr_s"}
    assert set(tta) == set(ttr) == {"st1", "st2"} and all(8 <= tta[s] < ttr[s] < 60 for s in tta), (tta, ttr)


def field_ack(settings: Settings, alert_id: str, body: dict) -> None:
    """A field app's acknowledgement: QoS 1 on ack/alerts/<id>, confirmed by the broker."""
    field = mqtt_client(settings, username="field")
    reasons: list = []
    field.on_publish = lambda c, u, mid, reason, props: reasons.append(reason)
    mqtt_connect(field, settings)
    field.loop_start()
    field.publish(f"ack/alerts/{alert_id}", json.dumps(body), qos=1).wait_for_publish(10)
    field.disconnect()
    field.loop_stop()
    assert reasons and not reasons[0].is_failure, f"the broker refused the ack: {reasons} (ACL not reloaded?)"


def test_flaky_webhook_gets_each_alert_once_and_a_dead_one_ends_in_the_deadletter(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    extra = (webhook("flaky", "/flaky", tries=4, backoff=0.2) + webhook("down", "/down", tries=3, backoff=0.1)
             ).replace("{port}", str(r.hooks.port))
    proc = router(settings, write_config(tmp_path / "alerts.toml", r, repeat=600, extra=extra), tmp_path / "router.log")
    observe(settings, "st1", 95.0, DAY)
    wait_until(lambda: len(r.hooks.received("/flaky")) == 1 and len([q for q in r.hooks.requests if q[0] == "/down"]) == 3)
    dead = values(read_topic(settings, settings.kafka.deadletter_topic, expect=1, idle=1, timeout=30))
    wait_until(lambda: len(r.mailbox.messages) == 1 and len(r.hooks.received("/ok")) == 1)
    time.sleep(1)
    outbox = [k for recs in read_state(settings).values() for k in recs if k.startswith("outbox/")]
    assert stop(proc) == 0
    flaky = [q for q in r.hooks.requests if q[0] == "/flaky"]
    assert [q[3] for q in flaky] == [503, 503, 200]                 # two failures, then delivered once
    assert [q[1]["X-Smartcity-Attempt"] for q in flaky] == ["1", "2", "3"]
    assert len({q[1]["X-Smartcity-Idempotency-Key"] for q in flaky}) == 1
    assert len(dead) == 1 and dead[0]["topic"] == "alerts/webhook/down" and "failed 3 times" in dead[0]["reason"]
    assert json.loads(__import__("base64").b64decode(dead[0]["raw_b64"]))["alerts"][0]["entity"] == "st1"
    assert len([b for b in r.mqtt_bodies() if b["kind"] == "firing"]) == 1   # the others still got theirs
    assert outbox == []   # delivered or dead-lettered: nothing left to send


# -- crashes: the outbox gives at-least-once, and duplicates carry the same key ------------------------------

def test_router_killed_after_the_state_write_and_before_delivery_delivers_everything_after_restart(
        settings: Settings, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = Receivers(settings)   # SMTP sink not started yet: e-mail cannot be delivered
    try:
        extra = (webhook("gated", "/gate", tries=100, backoff=0.2) + webhook("slow", "/slow", timeout=1)
                 ).replace("{port}", str(r.hooks.port))
        config = write_config(tmp_path / "alerts.toml", r, repeat=600, extra=extra)
        proc = router(settings, config, tmp_path / "router.log")
        for site in ("st1", "st2"):
            observe(settings, site, 92.0, DAY)
        wait_until(lambda: len(r.hooks.received("/ok")) == 2 and len([q for q in r.hooks.requests if q[0] == "/gate"]) >= 2)
        proc.kill()   # the state is written (MQTT, /ok got theirs); /gate and e-mail are not confirmed
        proc.wait()
        pending = {k.split("/")[1] for recs in read_state(settings).values() for k in recs if k.startswith("outbox/")}
        assert {"gated", "duty"} <= pending, pending
        r.hooks.gate_open = True
        r.start_smtp()
        router(settings, config, tmp_path / "router.log")
        wait_until(lambda: len(r.hooks.received("/gate")) >= 2 and len(r.mailbox.messages) >= 2, 60, "redelivery")
        time.sleep(2)
    finally:
        r.close()
    expected = {("st1", "firing"), ("st2", "firing")}
    for name, pairs in (("mqtt", mqtt_pairs(r)), ("ok", hook_pairs(r, "/ok")), ("gate", hook_pairs(r, "/gate")),
                        ("slow", hook_pairs(r, "/slow")), ("mail", mail_pairs(r))):
        assert set(one_key_per_notification(pairs)) == expected, name
    keys = one_key_per_notification(mqtt_pairs(r))
    assert one_key_per_notification(mail_pairs(r)) == keys == one_key_per_notification(hook_pairs(r, "/gate"))
    slow = hook_pairs(r, "/slow")
    assert len(slow) >= 3, slow   # the first answer came too late: that message arrived twice, same key


def test_router_killed_inside_a_grouping_window_loses_no_notification(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    config = write_config(tmp_path / "alerts.toml", r, repeat=600, group_window=600)
    proc = router(settings, config, tmp_path / "router.log")
    for site in ("st1", "st2", "st3"):
        observe(settings, site, 90.0, DAY)

    def outboxed() -> int:
        return sum(1 for recs in read_state(settings).values() for k in recs if k.startswith("outbox/"))
    wait_until(lambda: outboxed() == 9, 60, "3 notifications x 3 subscribers in the outbox")
    assert r.mqtt == [] and r.mailbox.messages == [] and r.hooks.requests == []   # held by the 10-min window
    proc.kill()
    proc.wait()
    proc = router(settings, config, tmp_path / "router.log")
    wait_until(lambda: len(mqtt_pairs(r)) >= 3 and len(r.mailbox.messages) >= 1 and len(r.hooks.received("/ok")) >= 1,
               30, "the held notifications after the restart")
    time.sleep(1)
    assert stop(proc) == 0
    assert sorted(w for w, _ in mqtt_pairs(r)) == [(s, "firing") for s in ("st1", "st2", "st3")]
    assert sorted(a["entity"] for b in r.hooks.received("/ok") for a in b["alerts"]) == ["st1", "st2", "st3"]
    assert sorted(w for w, _ in mail_pairs(r)) == [(s, "firing") for s in ("st1", "st2", "st3")]
    one_key_per_notification([((a["entity"], b["kind"]), a["idempotency_key"]) for b in r.mqtt_bodies() for a in b["alerts"]])
    assert outboxed() == 0


# -- scale-out: two routers in one group ----------------------------------------------------------------------

def owned(log: Path) -> set[int]:
    last = re.findall(r"event=partitions_assigned partitions=(\S+)", log.read_text(errors="replace"))[-1]
    return set() if last == "none" else {int(p) for p in last.split(",")}


def test_two_routers_in_one_group_deliver_each_notification_once_and_take_over_a_dead_ones_alerts(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    config = write_config(tmp_path / "alerts.toml", r, repeat=600)
    a = router(settings, config, tmp_path / "a.log", instance="a")
    b = router(settings, config, tmp_path / "b.log", instance="b", owns=None)
    wait_until(lambda: len(owned(tmp_path / "a.log")) + len(owned(tmp_path / "b.log")) == 3, 30, "a split")
    assert owned(tmp_path / "a.log") and owned(tmp_path / "b.log")
    assert owned(tmp_path / "a.log").isdisjoint(owned(tmp_path / "b.log"))
    sites = [f"st{i}" for i in range(1, 13)]
    for site in sites:
        observe(settings, site, 95.0, DAY)
    wait_until(lambda: len(r.mqtt) >= 12 and len(r.mailbox.messages) >= 12 and len(r.hooks.received("/ok")) >= 12, 60)
    time.sleep(3)
    firing = {(s, "firing") for s in sites}
    for name, pairs in (("mqtt", mqtt_pairs(r)), ("webhook", hook_pairs(r, "/ok")), ("mail", mail_pairs(r))):
        assert sorted(w for w, _ in pairs) == sorted(firing), name   # each exactly once
    b.kill()   # b dies for good: a takes its partitions over and resolves its alerts
    b.wait()
    wait_until(lambda: owned(tmp_path / "a.log") == {0, 1, 2}, 40, "a owning every partition")
    for site in sites:
        observe(settings, site, 50.0, DAY + 86400 * 10**9)
    wait_until(lambda: sum(1 for _, body, _ in r.mqtt if body["kind"] == "resolved") >= 12, 60)
    time.sleep(2)
    assert stop(a) == 0
    assert sorted(w for w, _ in mqtt_pairs(r)) == sorted(firing | {(s, "resolved") for s in sites})


# -- acknowledgements: while the router is down, and through a signed link ----------------------------------

def two_firing(settings: Settings, r: Receivers, tmp_path: Path) -> tuple[Path, subprocess.Popen]:
    """A router (no reminders for 10 min) with PM2.5 alerts firing at st1 and st2, both delivered over MQTT."""
    config = write_config(tmp_path / "alerts.toml", r, repeat=600)
    proc = router(settings, config, tmp_path / "router.log")
    for site in ("st1", "st2"):
        observe(settings, site, 92.0, DAY)
    wait_until(lambda: sum(1 for b in r.mqtt_bodies() if b["kind"] == "firing") == 2)
    return config, proc


def test_acks_sent_while_the_router_is_down_are_applied_after_the_restart(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    config, proc = two_firing(settings, r, tmp_path)
    ids = {b["alerts"][0]["entity"]: b["alerts"][0]["id"] for b in r.mqtt_bodies()}
    proc.kill()
    proc.wait()
    field_ack(settings, ids["st1"], {"by": "field-app/zhao", "comment": "valve closed"})   # held by the session
    subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "ack", ids["st2"], "--by", "ops/chen"],
                   cwd=REPO, env=settings_env(settings), check=True, capture_output=True)
    proc = router(settings, config, tmp_path / "router.log")
    wait_until(lambda: sum(1 for b in r.mqtt_bodies() if b["kind"] == "acknowledged") == 2, 30, "both acks")
    time.sleep(1)
    assert stop(proc) == 0
    acked = {b["alerts"][0]["entity"]: b["alerts"][0] for b in r.mqtt_bodies() if b["kind"] == "acknowledged"}
    assert acked["st1"]["acked_by"] == "field-app/zhao" and acked["st1"]["ack_comment"] == "valve closed"
    assert acked["st2"]["acked_by"] == "ops/chen"
    assert {t for t, _, _ in r.mqtt} == {"city/alerts/air/major"}


def test_a_signed_link_in_the_webhook_message_acknowledges_and_a_forged_one_does_not(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    port = free_port()
    config = write_config(tmp_path / "alerts.toml", r, repeat=600, http_port=port)
    proc = router(settings, config, tmp_path / "router.log", http_port=port)
    observe(settings, "st1", 92.0, DAY)
    wait_until(lambda: len(r.hooks.received("/ok")) == 1 and len(r.mailbox.messages) == 1)
    link = r.hooks.received("/ok")[0]["alerts"][0]["ack_url"]
    assert link.startswith(f"http://127.0.0.1:{port}/ack?")
    mail = r.mailbox.messages[0].get_payload(decode=True).decode()
    assert link.split("&to=")[0] + "&to=duty&" in mail   # each subscriber gets a link in its own name
    assert "<form" in urllib.request.urlopen(link, timeout=10).read().decode()   # GET acknowledges nothing
    forged = link.replace("to=bureau", "to=mallory")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(forged, data=b"by=x", method="POST"), timeout=10)
    assert refused.value.code == 403
    time.sleep(1)
    assert not [b for b in r.mqtt_bodies() if b["kind"] == "acknowledged"]
    form = urllib.parse.urlencode({"by": "Liu Yang", "comment": "crew on site"}).encode()
    assert urllib.request.urlopen(urllib.request.Request(link, data=form, method="POST"), timeout=10).status == 200
    wait_until(lambda: any(b["kind"] == "acknowledged" for b in r.mqtt_bodies()))
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert stop(proc) == 0
    ack = next(b for b in r.mqtt_bodies() if b["kind"] == "acknowledged")["alerts"][0]
    assert ack["acked_by"] == "Liu Yang (via bureau)" and ack["ack_comment"] == "crew on site"
    assert 'alerts_acks_total{source="link"} 1.0' in metrics
    assert 'alerts_delivered_total{channel="webhook",subscriber="bureau"}' in metrics


# -- wall time: a 10-hour outage, with the router's clock injected --------------------------------------------

def test_a_ten_hour_outage_gives_one_reminder_saying_how_many_were_missed(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    config = AlertConfig.load(write_config(tmp_path / "alerts.toml", r, repeat=3600))
    away = [0.0]

    def run_router() -> tuple[AlertRouter, threading.Thread]:
        rt = AlertRouter(settings, config, group=group_of(settings), instance="clock", http_port=0,
                         session_expiry=120, clock=lambda: time.time() + away[0])
        thread = threading.Thread(target=rt.run, daemon=True)
        thread.start()
        return rt, thread

    first, thread = run_router()
    wait_until(lambda: len(first.books) == 3)
    observe(settings, "st1", 92.0, DAY)
    wait_until(lambda: len(r.mqtt) == 1)
    first.stop()
    thread.join(30)
    away[0] = 10 * 3600 + 30   # the router comes back ten hours later
    second, thread = run_router()
    wait_until(lambda: any(b["kind"] == "reminder" for b in r.mqtt_bodies()), 30, "the catch-up reminder")
    time.sleep(3)
    second.stop()
    thread.join(30)
    reminders = [b for b in r.mqtt_bodies() if b["kind"] == "reminder"]
    assert len(reminders) == 1 and reminders[0]["alerts"][0]["missed_reminders"] == 9
    assert "9 earlier reminders missed" in reminders[0]["text_en"]
    # firing + one reminder on each channel (at-least-once: a delivery under way at the stop may come twice,
    # with the same idempotency key)
    assert len({b["idempotency_key"] for b in r.hooks.received("/ok")}) == 2
    assert len({m["Message-ID"] for m in r.mailbox.messages}) == 2, [m["Message-ID"] for m in r.mailbox.messages]


# -- out of the box -------------------------------------------------------------------------------------------

def test_the_shipped_config_on_a_bare_machine_stays_up_and_reports_what_it_cannot_serve(
        settings: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in settings_env(settings).items() if not k.startswith(("SMARTCITY_WEBHOOK",
                                                                                   "SMARTCITY_ALERTS"))}
    env["SMARTCITY_STACK_DIR"] = str(tmp_path / "empty-stack")   # no secrets at all: no MQTT password, no token
    log = tmp_path / "bare.log"
    proc = subprocess.Popen([sys.executable, "-m", "smartcity.cli", "alerts", "serve", "--group", group_of(settings),
                             "--http-port", "0", "--session-expiry", "60"], cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    STARTED.append(proc)
    wait_until(lambda: "event=partitions_assigned" in log.read_text(), 60, "the router to join its group")
    observe(settings, "st9", 99.0, DAY)   # it keeps working: the alert fires though nobody can be reached
    time.sleep(8)
    assert proc.poll() is None, log.read_text()[-3000:]
    text = log.read_text()
    assert "event=subscriber_unavailable subscriber=ecology-bureau" in text
    assert stop(proc) == 0
    states = [a["state"] for recs in read_state(settings).values() for k, a in recs.items() if k.endswith("/st9")]
    assert states == ["firing"]


def test_a_router_without_kafka_waits_for_it_and_stops_cleanly(settings: Settings, tmp_path: Path) -> None:
    env = settings_env(settings)
    env["SMARTCITY_KAFKA__BOOTSTRAP"] = f"127.0.0.1:{free_port()}"   # nothing listens there
    log = tmp_path / "nokafka.log"
    proc = subprocess.Popen([sys.executable, "-m", "smartcity.cli", "alerts", "serve", "--config",
                             str(REPO / "deploy" / "config" / "alerts.toml"), "--http-port", "0",
                             "--session-expiry", "60"], cwd=REPO, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    STARTED.append(proc)
    wait_until(lambda: "event=kafka_unavailable" in log.read_text(), 90, "a retry")   # bootstrap times out after 30 s
    assert proc.poll() is None
    assert stop(proc, 30) == 0


def test_hostile_records_and_acks_are_dead_lettered_and_the_router_keeps_working(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r, port = receivers, free_port()
    proc = router(settings, write_config(tmp_path / "alerts.toml", r, repeat=600), tmp_path / "router.log",
                  http_port=port)
    good = json.loads(observation_bytes("st9", 92.0, DAY))
    poison = [b"not json", b'{"rule": "air.x"}', b'{"type": "ack"}', b"[1, 2]", b'{"type": "silence", "id": 1}',
              json.dumps({**good, "severity": "catastrophic"}).encode(),      # the record that stopped main
              json.dumps({**good, "value": "92"}).encode(), json.dumps({**good, "value": float("nan")}).encode(),
              json.dumps({**good, "ts": -5}).encode(), json.dumps({**good, "breach": "yes"}).encode(),
              json.dumps({k: v for k, v in good.items() if k != "domain"}).encode(),
              json.dumps({**good, "title_en": "x" * 40_000}).encode(), b"\xff\xfe", b"[" * 100_000, None,
              json.dumps({"type": "ack", "id": "1a2b3c4d5e6f-1", "by": "x", "at": "inf"}).encode(),
              json.dumps({"type": "silence", "id": "s1", "matchers": {"site": "*"}, "start": 10, "end": 5}).encode()]
    producer = kafka_producer(settings)
    for raw in poison:
        producer.send(settings.kafka.alerts_topic, key=b"junk", value=raw).get(30)
    producer.close()
    for topic, payload in (("ack/alerts/not-an-id", b'{"by": "x"}'), ("ack/alerts/1a2b3c4d5e6f-1", b"\xff\xfe")):
        field = mqtt_client(settings, username="field")
        mqtt_connect(field, settings)
        field.loop_start()
        field.publish(topic, payload, qos=1).wait_for_publish(10)
        field.disconnect()
        field.loop_stop()
    observe(settings, "st1", 92.0, DAY)
    wait_until(lambda: len(r.mqtt) == 1, 30, "the real alert after the junk")
    dead = values(read_topic(settings, settings.kafka.deadletter_topic, expect=len(poison) + 2, idle=2, timeout=30))
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert proc.poll() is None
    assert stop(proc) == 0
    sources = sorted(d["topic"].split("/")[0] for d in dead)
    assert sources == ["kafka"] * len(poison) + ["mqtt"] * 2, [(d["topic"], d["reason"][:80]) for d in dead]
    assert any("is not an alert id" in d["reason"] for d in dead)
    reasons = [d["reason"] for d in dead]
    assert any("severity" in r and "catastrophic" in r for r in reasons), reasons
    assert any("more than 16,384" in r for r in reasons) and any("tombstone" in r for r in reasons)
    assert all(len(json.dumps(d)) < 100_000 for d in dead)   # bounded, whatever arrived
    assert f"alerts_records_rejected_total{{reason=\"invalid\"}} {len(poison) + 2}.0" in metrics


def test_restarting_the_router_while_firing_neither_repeats_firing_nor_loses_the_resolve(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    config, proc = two_firing(settings, r, tmp_path)
    time.sleep(1)
    proc.kill()  # SIGKILL while both alerts are firing
    proc.wait()
    observe(settings, "st1", 60.0, DAY + 86400 * 10**9)   # resolves while the router is down
    proc = router(settings, config, tmp_path / "router.log")
    observe(settings, "st2", 93.0, DAY + 86400 * 10**9)   # still breaching: no new firing
    observe(settings, "st2", 50.0, DAY + 2 * 86400 * 10**9)
    wait_until(lambda: sum(1 for b in r.mqtt_bodies() if b["kind"] == "resolved") == 2)
    time.sleep(2)
    assert stop(proc) == 0
    assert sorted(w for w, _ in mqtt_pairs(r)) == [("st1", "firing"), ("st1", "resolved"), ("st2", "firing"),
                                                    ("st2", "resolved")]


def test_a_silence_reaches_every_partition_and_mutes_matching_notifications_only(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    proc = router(settings, write_config(tmp_path / "alerts.toml", r, repeat=600), tmp_path / "router.log")
    subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "silence", "--match", "site=st[1-6]",
                    "--match", "rule=air.*", "--duration", "10m", "--by", "ops", "--comment", "sensor maintenance"],
                   cwd=REPO, env=settings_env(settings), check=True, capture_output=True)
    time.sleep(1)
    sites = [f"st{i}" for i in range(1, 9)]   # st1..st6 muted (spread over the partitions), st7, st8 not
    for site in sites:
        observe(settings, site, 99.0, DAY)
    wait_until(lambda: len(r.mqtt) >= 2)
    time.sleep(3)
    listed = subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "list", "--json"], cwd=REPO,
                            env=settings_env(settings), check=True, capture_output=True, text=True).stdout
    assert stop(proc) == 0
    assert sorted(w for w, _ in mqtt_pairs(r)) == [("st7", "firing"), ("st8", "firing")]
    assert sorted(w for w, _ in hook_pairs(r, "/ok")) == [("st7", "firing"), ("st8", "firing")]
    states = {a["entity"]: a["state"] for a in map(json.loads, listed.splitlines())}
    assert states == dict.fromkeys(sites, "firing")   # muted, not forgotten


def test_grouping_sends_one_notification_for_many_entities_of_one_rule(
        settings: Settings, receivers: Receivers, tmp_path: Path, keys_env) -> None:  # noqa: ANN001
    r = receivers
    proc = router(settings, write_config(tmp_path / "alerts.toml", r, repeat=600, group_window=2),
                  tmp_path / "router.log")
    observe(settings, ["st1", "st2", "st3"], 90.0, DAY)
    wait_until(lambda: len(r.mqtt) >= 1)
    time.sleep(3)
    assert stop(proc) == 0
    assert len(r.mqtt) == 1
    body = r.mqtt_bodies()[0]
    assert sorted(a["entity"] for a in body["alerts"]) == ["st1", "st2", "st3"]
    assert body["text_en"].count("[FIRING]") == 3 and body["idempotency_key"].startswith("group-")
    assert len({a["idempotency_key"] for a in body["alerts"]}) == 3


# -- misbehaving receivers, poison and storms (the scenarios of tests/alertlab.py, small sizes) ----------

@pytest.fixture
def lab(settings: Settings, tmp_path: Path, keys_env):  # noqa: ANN001, ANN201
    labs: list[alertlab.Lab] = []

    def make(mode=alertlab.modes()) -> alertlab.Lab:  # noqa: ANN001
        def start_router(config: Path, log: Path, port: int) -> subprocess.Popen:
            proc = start(settings, "alerts", "serve", "--config", str(config), "--group", group_of(settings),
                         "--http-port", str(port), "--session-expiry", "120", log=log)
            STARTED.append(proc)
            return proc
        labs.append(alertlab.Lab(settings, tmp_path / "lab", start_router, "SMARTCITY_WEBHOOK_TEST", SECRET, mode))
        return labs[-1]
    yield make
    for each in labs:
        each.close()


def test_a_poison_observation_of_any_shape_is_dead_lettered_and_the_next_good_one_delivered(lab) -> None:  # noqa: ANN001
    result = alertlab.poison(lab())
    assert result.passed, result.detail()


def test_a_storm_of_2000_entities_is_one_storm_alert_and_an_ordinary_alert_still_arrives_everywhere(lab) -> None:  # noqa: ANN001
    result = alertlab.storm(lab(), entities=2000, threshold=300, group_window=3)
    assert result.passed, result.detail()


def test_a_dripping_receiver_holds_neither_its_channel_nor_the_others(lab) -> None:  # noqa: ANN001
    result = alertlab.slow_receiver(lab())
    assert result.passed, result.detail()


def test_a_receiver_down_for_half_a_minute_gets_every_alert_when_it_is_back(lab) -> None:  # noqa: ANN001
    result = alertlab.receiver_down(lab(alertlab.modes(down_until=time.monotonic() + 30)), 30)
    assert result.passed, result.detail()


def test_a_redirecting_receiver_is_never_followed_and_its_message_is_dead_lettered(lab) -> None:  # noqa: ANN001
    result = alertlab.redirecting_receiver(lab())
    assert result.passed, result.detail()
