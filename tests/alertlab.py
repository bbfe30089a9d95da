"""The alert router against receivers that misbehave, as scenarios shared by the integration tests
(small sizes) and the chaos lanes (the issue's sizes): a poison observation, an N-entity storm, a
dripping receiver, a receiver down for a while, a redirecting receiver.

A scenario starts a real router process (through the `start` callable it is given, so each suite
runs it with its own settings), produces observations to the settings' alerts.events, and returns a
Result: passed, and the figures that say why (sizes, latencies, RSS, dead letters).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import socket
from typing import Any

from aiosmtpd.controller import Controller
from kafka import TopicPartition

from infra.clients import kafka_consumer, kafka_producer, mqtt_client, mqtt_connect
from infra.settings import Settings

StartRouter = Callable[[Path, Path, int], subprocess.Popen]   # (config, log, http port) -> the router
DAY = (int(time.time()) // 86400 - 2) * 86400 * 10**9
MQTT_LIMIT, WEBHOOK_LIMIT, EMAIL_LIMIT = 256 * 1024, 1024 * 1024, 512 * 1024


def free_port() -> int:
    with socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Result:
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)
            self.passed = False

    def detail(self) -> str:
        figures = ", ".join(f"{k} {v}" for k, v in self.figures.items())
        return figures + (f"; PROBLEMS: {'; '.join(self.problems)}" if self.problems else "")


class Webhook:
    """An HTTP receiver: `mode(path, n, now)` says what request n on a path gets: "ok", "drip"
    (a byte every 4 s, never done), "down" (503), "redirect" (301 to /internal). Records what it got
    and checks signatures."""

    def __init__(self, secret: str, mode: Callable[[str, int], str] = lambda path, n: "ok") -> None:
        self.requests: list[tuple[str, str, int, float, dict]] = []   # method, path, size, monotonic, body
        self.bad_signatures = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = 1 + sum(1 for r in hook.requests if r[1] == self.path)
                try:
                    body = json.loads(data) if data else {}
                except ValueError:
                    body = {}
                expected = "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
                if self.command == "POST" and not hmac.compare_digest(self.headers.get("X-Smartcity-Signature", ""), expected):
                    hook.bad_signatures += 1
                what = mode(self.path, n)
                hook.requests.append((self.command, self.path, len(data), time.monotonic(), body if what == "ok" else {}))
                try:
                    if what == "drip":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        for _ in range(300):
                            self.wfile.write(b"X")
                            self.wfile.flush()
                            time.sleep(4)
                        return
                    status = {"ok": 200, "down": 503, "redirect": 301}[what]
                    self.send_response(status)
                    if what == "redirect":
                        self.send_header("Location", f"http://127.0.0.1:{hook.port}/internal")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            do_POST = do_GET = _serve  # noqa: N815

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict]:
        return [r[4] for r in self.requests if r[1] == path and r[4]]

    def close(self) -> None:
        self.server.shutdown()


class Mailbox:
    """An SMTP server that keeps every message (size and body)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, Any, float]] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((len(envelope.content), message_from_bytes(envelope.content), time.monotonic()))
        return "250 OK"

    def texts(self) -> list[str]:
        return [m.get_payload(decode=True).decode("utf-8", "replace") for _, m, _ in self.messages]

    def close(self) -> None:
        self.controller.stop()


class MqttWall:
    """A subscriber of city/alerts/+/+ that keeps every message of this lab (size, body, arrival): the
    broker is shared, so messages whose alerts do not carry the lab's tag as target are not ours."""

    def __init__(self, settings: Settings, tag: str) -> None:
        self.messages: list[tuple[int, dict, float]] = []
        self.client = mqtt_client(settings, username="subscriber")

        def keep(c: Any, u: Any, m: Any) -> None:
            body = json.loads(m.payload)
            if any(a.get("target") == tag for a in body.get("alerts", [])):
                self.messages.append((len(m.payload), body, time.monotonic()))
        self.client.on_message = keep
        mqtt_connect(self.client, settings)
        self.client.loop_start()
        self.client.subscribe("city/alerts/+/+", qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Lab:
    """Receivers of the three kinds, a config for them, and the router under test."""

    def __init__(self, settings: Settings, folder: Path, start: StartRouter, secret_env: str, secret: str,
                 mode: Callable[[str, int], str] = lambda path, n: "ok") -> None:
        self.settings, self.folder, self.start = settings, folder, start
        self.secret_env = secret_env
        folder.mkdir(parents=True, exist_ok=True)
        self.tag = f"lab-{uuid.uuid4().hex[:8]}"   # every observation's target: what is ours on the shared broker
        self.hook, self.mail, self.wall = Webhook(secret, mode), Mailbox(), MqttWall(settings, self.tag)
        self.http_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.rss_peak_kb = 0
        self._sampling = threading.Event()

    def config(self, *, paths: tuple[str, ...] = ("/ok",), group_window: float = 0, extra: str = "",
               webhook_options: str = "") -> Path:
        hooks = "".join(f'[[subscriber]]\nname = "hook{path.replace("/", "-")}"\nchannel = "webhook"\n'
                        f'url = "http://127.0.0.1:{self.hook.port}{path}"\nsecret_env = "{self.secret_env}"\n'
                        f"{webhook_options}\n" for path in paths)
        path = self.folder / "alerts.toml"
        path.write_text(f"""group_window = {group_window}
link_base = "http://127.0.0.1:{self.http_port}"
{extra}
[[subscriber]]
name = "wall"
channel = "mqtt"
[[subscriber]]
name = "duty"
channel = "email"
to = ["duty@laoshan.example"]
smtp_host = "127.0.0.1"
smtp_port = {self.mail.port}
{hooks}""")
        return path

    def run_router(self, config: Path) -> subprocess.Popen:
        self.proc = self.start(config, self.folder / "router.log", self.http_port)
        self._sampling.set()
        threading.Thread(target=self._sample_rss, daemon=True).start()
        deadline = time.monotonic() + 90
        while "event=partitions_assigned partitions=0" not in self.log():
            assert time.monotonic() < deadline and self.proc.poll() is None, self.log()[-3000:]
            time.sleep(0.2)
        time.sleep(2)
        return self.proc

    def _sample_rss(self) -> None:
        while self._sampling.is_set() and self.proc is not None and self.proc.poll() is None:
            try:
                text = Path(f"/proc/{self.proc.pid}/status").read_text()
                kb = int(next(line.split()[1] for line in text.splitlines() if line.startswith("VmRSS")))
                self.rss_peak_kb = max(self.rss_peak_kb, kb)
            except (OSError, StopIteration, ValueError):
                pass
            time.sleep(0.25)

    def log(self) -> str:
        path = self.folder / "router.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def observe(self, rule: str, domain: str, entities: list[str], value: float, ts: int,
                severity: str = "major", site_of: Callable[[str], str] = lambda e: e) -> None:
        producer = kafka_producer(self.settings, linger_ms=20)
        futures = [producer.send(self.settings.kafka.alerts_topic, key=f"{rule}/{e}".encode(), value=json.dumps({
            "rule": rule, "entity": e, "domain": domain, "site": site_of(e), "severity": severity, "value": value,
            "threshold": 75.0, "breach": value > 75, "ts": ts, "title_en": f"{rule} at {e}", "title_zh": f"{e} {rule}",
            "target": self.tag}).encode()) for e in entities]
        for f in futures:
            f.get(60)
        producer.close()

    def produce_raw(self, values: list[bytes | None]) -> None:
        producer = kafka_producer(self.settings)
        for v in values:
            producer.send(self.settings.kafka.alerts_topic, key=b"poison", value=v).get(30)
        producer.close()

    def dead_letters(self) -> list[dict]:
        consumer = kafka_consumer(self.settings, None)
        topic = self.settings.kafka.deadletter_topic
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            out = []
            while any(consumer.position(tp) < ends[tp] for tp in parts):
                for records in consumer.poll(timeout_ms=1000).values():
                    out += [json.loads(r.value) for r in records]
            return out
        finally:
            consumer.close()

    def arrived(self, entity: str) -> dict[str, float | None]:
        """Per channel, when a firing message naming `entity` first arrived (monotonic), or None."""
        def first(times: list[float]) -> float | None:
            return min(times) if times else None
        return {
            "mqtt": first([t for _, b, t in self.wall.messages if b.get("kind") == "firing"
                           and any(a.get("entity") == entity for a in b.get("alerts", []))]),
            "webhook": first([t for _, _, _, t, b in self.hook.requests if b.get("kind") == "firing"
                              and any(a.get("entity") == entity for a in b.get("alerts", []))]),
            "email": first([t for _, m, t in self.mail.messages
                            if entity in m.get_payload(decode=True).decode("utf-8", "replace")])}

    def wait(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                return False
            time.sleep(0.2)
        return True

    def close(self) -> int | None:
        """Stop the router (SIGTERM), the receivers; the router's exit code."""
        self._sampling.clear()
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                code = self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(10)
        self.hook.close()
        self.mail.close()
        self.wall.close()
        return code


def sizes(lab: Lab) -> dict[str, int]:
    """The largest message each channel received, in bytes."""
    return {"mqtt": max((s for s, _, _ in lab.wall.messages), default=0),
            "webhook": max((r[2] for r in lab.hook.requests), default=0),
            "email": max((s for s, _, _ in lab.mail.messages), default=0)}


# -- scenarios --------------------------------------------------------------------------------------

def poison(lab: Lab) -> Result:
    """Records of every bad shape, then a good observation: delivered on every channel, the router
    alive, each bad record dead-lettered with its reason."""
    good = {"rule": "air.pm25_daily", "entity": "good1", "domain": "air", "site": "good1", "severity": "major",
            "value": 92.0, "threshold": 75.0, "breach": True, "ts": DAY, "target": lab.tag}
    bad: list[bytes | None] = [json.dumps({**good, **change}).encode() for change in (
        {"severity": "catastrophic"}, {"value": "92"}, {"value": None}, {"ts": -1}, {"breach": "yes"},
        {"entity": "x" * 500}, {"domain": "AIR!"}, {"type": "ack", "id": "not-an-id"}, {"type": "silence"},
        {"title_en": "x" * 50_000})] + [b"not json", b"[1,2]", b"\xff\xfe", b"{" * 30_000, None, b'"str"']
    lab.run_router(lab.config())
    lab.produce_raw(bad)
    lab.observe("air.pm25_daily", "air", ["good1"], 92.0, DAY)
    r = Result(True)
    delivered = lab.wait(lambda: all(lab.arrived("good1").values()), 60)
    dead = [d for d in lab.dead_letters() if d["topic"].startswith("kafka/")]
    r.figures.update(poison=len(bad), dead_lettered=len(dead), good_delivered_on=sorted(
        k for k, v in lab.arrived("good1").items() if v))
    r.check(delivered, "the good observation after the poison did not reach every channel")
    r.check(len(dead) == len(bad), f"{len(dead)} dead letters for {len(bad)} poison records")
    r.check(all(d["reason"] for d in dead), "a dead letter without a reason")
    r.check(lab.proc is not None and lab.proc.poll() is None, "the router exited")
    return r


def storm(lab: Lab, entities: int, threshold: int, group_window: float = 30, rss_limit_mb: float = 300) -> Result:
    """`entities` sensors of one rule go offline within a minute; an ordinary alert of another rule is
    raised in the middle. Every channel gets messages under its limit, the ordinary alert reaches every
    channel within a minute, the storm is one alert, the router stays under `rss_limit_mb`."""
    lab.run_router(lab.config(group_window=group_window, extra=f"""[rules."*"]
storm_threshold = {threshold}
storm_window = 300
"""))
    ids = [f"pk{i:05d}" for i in range(entities)]
    half = entities // 2
    started = time.monotonic()
    lab.observe("parking.offline", "parking", ids[:half], 100.0, DAY, site_of=lambda e: f"lot{int(e[2:]) % 400}")
    ordinary_at = time.monotonic()
    lab.observe("air.pm25_daily", "air", ["ordinary1"], 92.0, DAY)
    lab.observe("parking.offline", "parking", ids[half:], 100.0, DAY, site_of=lambda e: f"lot{int(e[2:]) % 400}")
    produced = time.monotonic() - started
    r = Result(True)
    reached = lab.wait(lambda: all(lab.arrived("ordinary1").values()), 90)
    latency = {k: (round(v - ordinary_at, 1) if v else None) for k, v in lab.arrived("ordinary1").items()}
    storm_seen = lab.wait(lambda: any(a.get("storm") for _, b, _ in lab.wall.messages for a in b.get("alerts", [])), 60)
    time.sleep(group_window + 5)   # the grouped per-entity notes made before the storm started
    largest = sizes(lab)
    limits = {"mqtt": MQTT_LIMIT, "webhook": WEBHOOK_LIMIT, "email": EMAIL_LIMIT}
    counts = {"mqtt": len(lab.wall.messages), "webhook": len(lab.hook.requests), "email": len(lab.mail.messages)}
    r.figures.update(entities=f"{entities:,}", produced_s=round(produced, 1), ordinary_latency_s=latency,
                     largest_bytes=largest, messages=counts, rss_peak_mb=round(lab.rss_peak_kb / 1024, 1))
    r.check(reached and all(v is not None and v <= 60 for v in latency.values()),
            f"the ordinary alert did not reach every channel within a minute: {latency}")
    r.check(storm_seen, "no storm alert on MQTT")
    r.check(all(largest[k] <= limits[k] for k in limits), f"a message over its channel's limit: {largest}")
    r.check(all(0 < c <= 60 for c in counts.values()), f"a flood or nothing: {counts}")
    r.check(lab.rss_peak_kb / 1024 < rss_limit_mb, f"router RSS {lab.rss_peak_kb / 1024:.0f} MB >= {rss_limit_mb}")
    r.check(lab.proc is not None and lab.proc.poll() is None, "the router exited")
    r.check(lab.hook.bad_signatures == 0, f"{lab.hook.bad_signatures} webhook bodies with a bad signature")
    return r


def slow_receiver(lab: Lab) -> Result:
    """A webhook that drips one byte every 4 s on its first request: cut off at the 2 s attempt
    deadline, retried and delivered; the next alert is not held behind it; other channels at once."""
    lab.run_router(lab.config(paths=("/drip",), webhook_options="timeout = 2\nbackoff = 3\nmax_backoff = 3"))
    t0 = time.monotonic()
    lab.observe("air.pm25_daily", "air", ["slow1"], 92.0, DAY)
    time.sleep(0.5)
    lab.observe("air.pm25_daily", "air", ["slow2"], 92.0, DAY)
    r = Result(True)
    done = lab.wait(lambda: {"slow1", "slow2"} <= {a["entity"] for b in lab.hook.bodies("/drip") for a in b["alerts"]}, 60)
    got = {a["entity"]: round(t - t0, 1) for _, p, _, t, b in lab.hook.requests if p == "/drip" and b
           for a in b.get("alerts", [])}
    others = {k: (round(v - t0, 1) if v else None) for k, v in lab.arrived("slow1").items() if k != "webhook"}
    r.figures.update(webhook_delivered_s=got, other_channels_s=others, attempts=len(lab.hook.requests))
    r.check(done, "the dripping receiver never got both alerts")
    r.check(got.get("slow2", 99) < 6, f"the second alert waited behind the dripping one: {got}")
    r.check(all(v is not None and v < 10 for v in others.values()), f"other channels delayed: {others}")
    r.check(lab.proc is not None and lab.proc.poll() is None, "the router exited")
    return r


def receiver_down(lab: Lab, seconds: float) -> Result:
    """A webhook answering 503 for `seconds`; alerts raised during the outage are all delivered once it
    is back, none dead-lettered."""
    lab.run_router(lab.config(paths=("/down",), webhook_options="backoff = 1\nmax_backoff = 30"))
    t0 = time.monotonic()
    entities = [f"out{i}" for i in range(5)]
    for i, e in enumerate(entities):
        lab.observe("air.pm25_daily", "air", [e], 92.0, DAY)
        time.sleep(seconds / len(entities) / 2 if i < len(entities) - 1 else 0)
    r = Result(True)
    ok = lab.wait(lambda: set(entities) <= {a["entity"] for b in lab.hook.bodies("/down") for a in b["alerts"]},
                  seconds + 120)
    dead = [d for d in lab.dead_letters() if d["topic"].startswith("alerts/")]
    r.figures.update(outage_s=seconds, attempts=len(lab.hook.requests), delivered_after_s=round(time.monotonic() - t0),
                     dead_lettered=len(dead))
    r.check(ok, "alerts raised during the outage were not all delivered after it")
    r.check(not dead, f"dead letters: {[d['reason'][:100] for d in dead]}")
    r.check(lab.proc is not None and lab.proc.poll() is None, "the router exited")
    return r


def redirecting_receiver(lab: Lab) -> Result:
    """A webhook answering 301 to an internal address: never followed (nothing reaches /internal),
    dead-lettered at once with the reason; the other channels deliver."""
    lab.run_router(lab.config(paths=("/moved",)))
    lab.observe("air.pm25_daily", "air", ["moved1"], 92.0, DAY)
    r = Result(True)
    lab.wait(lambda: any(d["topic"].startswith("alerts/webhook") for d in lab.dead_letters()), 30)
    dead = [d for d in lab.dead_letters() if d["topic"].startswith("alerts/webhook")]
    internal = [q for q in lab.hook.requests if q[1] == "/internal"]
    r.figures.update(requests=len(lab.hook.requests), internal_requests=len(internal), dead_lettered=len(dead))
    r.check(not internal, "the redirect was followed")
    r.check(len(dead) == 1 and "redirects are not followed" in dead[0]["reason"], f"dead letters: {dead}")
    r.check(len([q for q in lab.hook.requests if q[1] == "/moved"]) == 1, "the redirect was retried")
    r.check(lab.wait(lambda: bool(lab.arrived("moved1")["mqtt"] and lab.arrived("moved1")["email"]), 30),
            "MQTT or e-mail did not deliver")
    body = json.loads(base64.b64decode(dead[0]["raw_b64"])) if dead else {}
    r.check(body.get("alerts", [{}])[0].get("entity") == "moved1", "the dead letter does not hold the message")
    return r


def modes(down_until: float = 0.0) -> Callable[[str, int], str]:
    """The receiver's behaviour by path: /drip drips on its first request, /down is 503 until
    `down_until` (monotonic), /moved redirects; everything else is 200."""
    def mode(path: str, n: int) -> str:
        if path == "/drip" and n == 1:
            return "drip"
        if path == "/down" and time.monotonic() < down_until:
            return "down"
        if path == "/moved":
            return "redirect"
        return "ok"
    return mode
