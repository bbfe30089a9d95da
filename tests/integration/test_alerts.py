"""The alert router on the real services, with real receivers: an MQTT subscriber, an HTTP webhook
server that checks signatures and can fail on purpose, and an SMTP server (aiosmtpd)."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from infra.clients import kafka_producer, mqtt_client, mqtt_connect
from infra.settings import Settings
from tests.helpers import REPO, read_topic, settings_env, start, stop, values

pytestmark = pytest.mark.integration
SECRET = "test-webhook-key"
DAY = (int(time.time()) // 86400 - 2) * 86400 * 10**9


class Webhooks:
    """HTTP receiver: /ok always 200, /flaky fails its first `flaky` requests, /down always 500."""

    def __init__(self, flaky: int = 2) -> None:
        self.requests: list[tuple[str, dict, bytes, int]] = []
        self.flaky_left = flaky
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 200
                if self.path == "/down":
                    status = 500
                elif self.path == "/flaky" and hooks.flaky_left > 0:
                    hooks.flaky_left -= 1
                    status = 503
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if self.headers.get("X-Smartcity-Signature") != expected:
                    status = 401
                hooks.requests.append((self.path, dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, path: str) -> list[dict]:
        return [json.loads(b) for p, _, b, status in self.requests if p == path and status == 200]


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


@pytest.fixture
def receivers(settings: Settings):
    hooks = Webhooks()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    mqtt_got: list[tuple[str, dict]] = []
    sub = mqtt_client(settings, username="subscriber")
    # city/alerts/ack/<id> (field apps' acknowledgements) shares the level of <domain>: skip it
    sub.on_message = lambda c, u, m: None if m.topic.startswith("city/alerts/ack/") else mqtt_got.append(
        (m.topic, json.loads(m.payload)))
    mqtt_connect(sub, settings)
    sub.loop_start()
    sub.subscribe("city/alerts/+/+", qos=1)
    yield hooks, mailbox, smtp.port, mqtt_got
    sub.disconnect()
    sub.loop_stop()
    smtp.stop()
    hooks.server.shutdown()


def write_config(path: Path, hooks: Webhooks, smtp_port: int, *, repeat: float) -> Path:
    base = f"http://127.0.0.1:{hooks.port}"
    path.write_text(f"""
group_window = 0
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
name = "flaky"
channel = "webhook"
url = "{base}/flaky"
secret_env = "SMARTCITY_WEBHOOK_TEST"
tries = 4
backoff = 0.2
[[subscriber]]
name = "down"
channel = "webhook"
url = "{base}/down"
secret_env = "SMARTCITY_WEBHOOK_TEST"
tries = 3
backoff = 0.1
[[subscriber]]
name = "duty"
channel = "email"
to = ["duty@laoshan.example"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
""")
    return path


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


def router(settings: Settings, config: Path, tmp_path: Path) -> subprocess.Popen:
    proc = start(settings, "alerts", "serve", "--config", str(config), "--group",
                 f"router-{settings.kafka.topic_prefix.strip('.')}", log=tmp_path / "router.log")
    STARTED.append(proc)
    deadline = time.monotonic() + 60
    while (tmp_path / "router.log").read_text(errors="replace").count("event=partitions_assigned") < len(STARTED):
        assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "router.log").read_text()[-2000:]
        time.sleep(0.2)
    return proc


def observe(settings: Settings, site: str, value: float, ts: int, rule: str = "air.pm25_daily") -> None:
    producer = kafka_producer(settings)
    producer.send(settings.kafka.alerts_topic, key=f"{rule}/{site}".encode(), value=json.dumps({
        "rule": rule, "entity": site, "domain": "air", "site": site, "severity": "major", "value": value,
        "threshold": 75.0, "breach": value > 75, "ts": ts, "title_en": f"Daily PM2.5 at {site}",
        "title_zh": f"{site} PM2.5日均值", "target": "GB 3095-2012 24-h limit 75 µg/m³; plan annual 35 (33.5)"}).encode()).get(30)
    producer.close()


def kinds_by_site(bodies: list[dict]) -> Counter:
    return Counter((a["entity"], b["kind"]) for b in bodies for a in b["alerts"])


def wait_until(check, timeout: float = 30) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def mail_kinds(mailbox: Mailbox) -> Counter:
    out = Counter()
    for m in mailbox.messages:
        subject = str(make_header(decode_header(m["Subject"])))
        kind = subject[1:subject.index("/")].lower()
        site = "st1" if "st1" in subject else "st2"
        out[(site, kind)] += 1
    return out


@pytest.fixture
def webhook_env(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("SMARTCITY_WEBHOOK_TEST", SECRET)


def test_pm25_episode_fires_once_reminds_until_ack_and_resolves_below_hysteresis(
        settings: Settings, receivers, tmp_path: Path, webhook_env) -> None:  # noqa: ANN001
    hooks, mailbox, smtp_port, mqtt_got = receivers
    proc = router(settings, write_config(tmp_path / "alerts.toml", hooks, smtp_port, repeat=4.0), tmp_path)
    for site in ("st1", "st2"):
        observe(settings, site, 92.0, DAY)
    wait_until(lambda: sum(1 for _, b in mqtt_got if b["kind"] == "firing") == 2)
    fired = time.monotonic()
    body = next(b for _, b in mqtt_got if b["kind"] == "firing" and b["alerts"][0]["entity"] == "st1")
    assert "PM2.5" in body["text_en"] and "阈值 75" in body["text_zh"] and "92" in body["text_en"]
    assert "GB 3095-2012" in body["text_en"] and "UTC+8" in body["text_en"]
    time.sleep(max(0.0, fired + 8.5 - time.monotonic()))  # reminders due at +4 s and +8 s; the next at +12 s
    ids = {b["alerts"][0]["entity"]: b["alerts"][0]["id"] for _, b in mqtt_got if b["kind"] == "firing"}
    subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "ack", ids["st1"], "--by", "wang.fang",
                    "--comment", "sprinkler trucks out"], cwd=REPO, env=settings_env(settings), check=True,
                   capture_output=True)
    field = mqtt_client(settings, username="field")
    mqtt_connect(field, settings)
    field.loop_start()
    field.publish(f"city/alerts/ack/{ids['st2']}", json.dumps({"by": "field-app/li", "comment": "checked"}), qos=1).wait_for_publish(10)
    wait_until(lambda: sum(1 for _, b in mqtt_got if b["kind"] == "acknowledged") == 2)
    field.disconnect()
    field.loop_stop()
    time.sleep(max(0.0, fired + 17.0 - time.monotonic()))  # without the acks, reminders at +12 s and +16 s
    observe(settings, "st1", 72.0, DAY + 86400 * 10**9)   # below the limit, above the 70 hysteresis level
    observe(settings, "st2", 72.0, DAY + 86400 * 10**9)
    time.sleep(2)
    assert not [b for _, b in mqtt_got if b["kind"] == "resolved"]
    observe(settings, "st1", 60.0, DAY + 2 * 86400 * 10**9)
    observe(settings, "st2", 60.0, DAY + 2 * 86400 * 10**9)
    wait_until(lambda: sum(1 for _, b in mqtt_got if b["kind"] == "resolved") == 2)
    wait_until(lambda: len(mailbox.messages) >= 10 and len(hooks.delivered("/ok")) >= 10)  # 5 per station
    time.sleep(1)
    assert stop(proc) == 0
    expected = Counter({(s, k): n for s in ("st1", "st2") for k, n in
                        (("firing", 1), ("reminder", 2), ("acknowledged", 1), ("resolved", 1))})
    assert kinds_by_site([b for _, b in mqtt_got]) == expected, "MQTT subscriber"
    assert kinds_by_site(hooks.delivered("/ok")) == expected, "webhook receiver"
    assert mail_kinds(mailbox) == expected, "SMTP server"
    assert {t for t, _ in mqtt_got} == {"city/alerts/air/major"}
    acked = next(b for _, b in mqtt_got if b["kind"] == "acknowledged" and b["alerts"][0]["entity"] == "st1")
    assert acked["alerts"][0]["acked_by"] == "wang.fang" and acked["alerts"][0]["ack_comment"] == "sprinkler trucks out"


def test_flaky_webhook_gets_each_alert_once_and_a_dead_one_ends_in_the_deadletter(
        settings: Settings, receivers, tmp_path: Path, webhook_env) -> None:  # noqa: ANN001
    hooks, mailbox, smtp_port, mqtt_got = receivers
    proc = router(settings, write_config(tmp_path / "alerts.toml", hooks, smtp_port, repeat=600), tmp_path)
    observe(settings, "st1", 95.0, DAY)
    wait_until(lambda: len(hooks.delivered("/flaky")) == 1 and len([r for r in hooks.requests if r[0] == "/down"]) == 3)
    dead = values(read_topic(settings, settings.kafka.deadletter_topic, expect=1, idle=1, timeout=30))
    wait_until(lambda: len(mailbox.messages) == 1 and len(hooks.delivered("/ok")) == 1)
    assert stop(proc) == 0
    flaky = [r for r in hooks.requests if r[0] == "/flaky"]
    assert [r[3] for r in flaky] == [503, 503, 200]                 # two failures, then delivered once
    assert [r[1]["X-Smartcity-Attempt"] for r in flaky] == ["1", "2", "3"]
    assert len(dead) == 1 and dead[0]["topic"] == "alerts/webhook/down" and "failed 3 times" in dead[0]["reason"]
    assert json.loads(__import__("base64").b64decode(dead[0]["raw_b64"]))["alerts"][0]["entity"] == "st1"
    assert len([b for _, b in mqtt_got if b["kind"] == "firing"]) == 1   # the others still got theirs


def test_restarting_the_router_while_firing_neither_repeats_firing_nor_loses_the_resolve(
        settings: Settings, receivers, tmp_path: Path, webhook_env) -> None:  # noqa: ANN001
    hooks, mailbox, smtp_port, mqtt_got = receivers
    config = write_config(tmp_path / "alerts.toml", hooks, smtp_port, repeat=600)
    proc = router(settings, config, tmp_path)
    for site in ("st1", "st2"):
        observe(settings, site, 92.0, DAY)
    wait_until(lambda: sum(1 for _, b in mqtt_got if b["kind"] == "firing") == 2)
    time.sleep(1)
    proc.kill()  # SIGKILL while both alerts are firing
    proc.wait()
    observe(settings, "st1", 60.0, DAY + 86400 * 10**9)   # resolves while the router is down
    proc = router(settings, config, tmp_path)
    observe(settings, "st2", 93.0, DAY + 86400 * 10**9)   # still breaching: no new firing
    observe(settings, "st2", 50.0, DAY + 2 * 86400 * 10**9)
    wait_until(lambda: sum(1 for _, b in mqtt_got if b["kind"] == "resolved") == 2)
    time.sleep(2)
    assert stop(proc) == 0
    assert kinds_by_site([b for _, b in mqtt_got]) == Counter({("st1", "firing"): 1, ("st2", "firing"): 1,
                                                              ("st1", "resolved"): 1, ("st2", "resolved"): 1})


def test_a_silence_mutes_matching_notifications_and_nothing_else(
        settings: Settings, receivers, tmp_path: Path, webhook_env) -> None:  # noqa: ANN001
    hooks, mailbox, smtp_port, mqtt_got = receivers
    proc = router(settings, write_config(tmp_path / "alerts.toml", hooks, smtp_port, repeat=600), tmp_path)
    subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "silence", "--match", "site=st1",
                    "--match", "rule=air.*", "--duration", "10m", "--by", "ops", "--comment", "sensor maintenance"],
                   cwd=REPO, env=settings_env(settings), check=True, capture_output=True)
    time.sleep(1)
    observe(settings, "st1", 99.0, DAY)
    observe(settings, "st2", 99.0, DAY)
    wait_until(lambda: sum(1 for _, b in mqtt_got if b["kind"] == "firing") >= 1)
    time.sleep(3)
    listed = subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "list", "--json"], cwd=REPO,
                            env=settings_env(settings), check=True, capture_output=True, text=True).stdout
    assert stop(proc) == 0
    assert kinds_by_site([b for _, b in mqtt_got]) == Counter({("st2", "firing"): 1})
    assert kinds_by_site(hooks.delivered("/ok")) == Counter({("st2", "firing"): 1})
    states = {a["entity"]: a["state"] for a in map(json.loads, listed.splitlines())}
    assert states == {"st1": "firing", "st2": "firing"}  # muted, not forgotten


def test_grouping_sends_one_notification_for_many_entities_of_one_rule(
        settings: Settings, receivers, tmp_path: Path, webhook_env) -> None:  # noqa: ANN001
    hooks, mailbox, smtp_port, mqtt_got = receivers
    config = write_config(tmp_path / "alerts.toml", hooks, smtp_port, repeat=600)
    config.write_text(config.read_text().replace("group_window = 0", "group_window = 2"))
    proc = router(settings, config, tmp_path)
    for site in ("st1", "st2", "st3"):
        observe(settings, site, 90.0, DAY)
    wait_until(lambda: len(mqtt_got) >= 1)
    time.sleep(3)
    assert stop(proc) == 0
    assert len(mqtt_got) == 1
    assert sorted(a["entity"] for a in mqtt_got[0][1]["alerts"]) == ["st1", "st2", "st3"]
    assert mqtt_got[0][1]["text_en"].count("[FIRING]") == 3
