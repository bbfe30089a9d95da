"""The demo's alert loop: supervised children, receivers of its own, the loop closed, and its report.

`Supervisor` runs the demo's services; one that exits is reported and restarted with backoff, one that
keeps dying or is down at the end fails the demo. `Receivers` are a webhook server (checking the
HMAC signature), an SMTP sink (aiosmtpd) and an MQTT subscriber on city/alerts/+/+, so a newcomer sees
deliveries without any outside service. `close_the_loop` lets the simulated sensors fall silent (the
processors' stale timers raise real `offline` alerts), acknowledges every alert through the signed link
the webhook message carries, brings the sensors back (the alerts resolve), and `report_loop` prints
deliveries per channel and MTTA / MTTR per domain from InfluxDB.
"""
from __future__ import annotations

import email.policy
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from rich.console import Console
from rich.table import Table

from alerts.router import AlertConfig, send_ack
from alerts.state import Notification
from dashboards.alertloop import loop_stats
from infra.clients import kafka_producer, mqtt_client, mqtt_connect
from infra.flow import group_lag
from infra.settings import REPO_ROOT, Settings
from simulators.engine import SimOptions, Simulation
from simulators.publisher import Publisher
from smartcity.democheck import Seen, Verdict, when

CHANNELS = ("MQTT", "webhook", "e-mail")
CHANNEL_OF = {"mqtt": "MQTT", "webhook": "webhook", "email": "e-mail"}
DEMO_BY = "值班员 duty officer (demo)"
DEPLOYED_RULES = REPO_ROOT / "deploy" / "config" / "alerts.toml"
REMINDER_S = 5.0   # the demo's clock runs a day in seconds: reminders every 5 s instead of hourly
ALERT_ID = re.compile(r"Alert ([0-9a-f]{12}-[0-9]+)\.")


class Supervisor:
    """Runs `smartcity <args>` children; restarts one that exits (backoff 1 s doubling to 30 s), gives
    up on it after `max_restarts`."""

    def __init__(self, console: Console, logs: Path, env: dict[str, str] | None = None, max_restarts: int = 5) -> None:
        self.console, self.logs, self.env, self.max_restarts = console, logs, env, max_restarts
        self.children: dict[str, dict[str, Any]] = {}
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self.thread.start()

    def start(self, name: str, args: list[str]) -> None:
        log = self.logs / f"{name}.log"
        with self.lock:
            self.children[name] = {"args": args, "log_from": log.stat().st_size if log.exists() else 0,
                                   "proc": self._spawn(name, args), "restarts": 0, "delay": 1.0,
                                   "restart_at": None, "gave_up": False}

    def wait_ready(self, markers: dict[str, str], timeout: float = 120) -> None:
        """Wait until each named child has logged its marker since it started (e.g. the bridge's MQTT
        subscription: what is published before it would not reach it)."""
        deadline = time.monotonic() + timeout
        for name, marker in markers.items():
            log, start = self.logs / f"{name}.log", self.children[name]["log_from"]
            while marker not in log.read_bytes()[start:].decode(errors="replace"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not log {marker!r} within {timeout:g} s; see {log}")
                time.sleep(0.3)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        env = {**os.environ, **(self.env or {})}
        return subprocess.Popen([sys.executable, "-m", "smartcity.cli", *args], cwd=REPO_ROOT, env=env,
                                stdout=open(self.logs / f"{name}.log", "ab"), stderr=subprocess.STDOUT)

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            with self.lock:
                for name, child in self.children.items():
                    self._check(name, child)

    def _check(self, name: str, child: dict[str, Any]) -> None:
        proc = child["proc"]
        if child["gave_up"] or proc.poll() is None:
            return
        now = time.monotonic()
        if child["restart_at"] is None:
            if child["restarts"] >= self.max_restarts:
                child["gave_up"] = True
                self.console.print(f"[red]{name} exited (code {proc.returncode}) {child['restarts'] + 1} times: it stays "
                                   f"down; see {self.logs / (name + '.log')}[/red]")
                return
            child["restart_at"] = now + child["delay"]
            self.console.print(f"[yellow]{name} exited with code {proc.returncode}; restarting in "
                               f"{child['delay']:g} s[/yellow]")
        elif now >= child["restart_at"]:
            child["restarts"] += 1
            child["delay"] = min(child["delay"] * 2, 30.0)
            child["restart_at"] = None
            child["proc"] = self._spawn(name, child["args"])

    def stop(self) -> list[str]:
        """Stop every child (SIGTERM, then wait); returns the names of those that were down."""
        self.stopping.set()
        self.thread.join()
        down = [n for n, c in self.children.items() if c["proc"].poll() is not None]
        for child in self.children.values():
            if child["proc"].poll() is None:
                child["proc"].terminate()
        for child in self.children.values():
            try:
                child["proc"].wait(60)
            except subprocess.TimeoutExpired:
                child["proc"].kill()
        return down

    def restarts(self) -> dict[str, int]:
        return {n: c["restarts"] for n, c in self.children.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Mailbox:
    def __init__(self, sink: "Receivers") -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = message_from_bytes(envelope.content, policy=email.policy.default)
        kind = str(msg["Subject"] or "[?/").removeprefix("[").split("/")[0].lower()
        text = msg.get_content() if not msg.is_multipart() else ""
        self.sink.got("e-mail", msg["X-Smartcity-Idempotency-Key"] or "", None)
        self.sink.mailed(kind, ALERT_ID.findall(text))   # a person's message: the alert ids are in its text
        return "250 OK"


@dataclass
class Receivers:
    """The demo's own subscribers; counts messages and distinct notifications (idempotency keys) per channel."""

    settings: Settings
    webhook_key: bytes = field(default_factory=lambda: secrets.token_urlsafe(24).encode())
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    keys: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in CHANNELS})
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)    # id -> latest alert seen
    kinds: dict[str, set[str]] = field(default_factory=dict)           # id -> kinds seen
    links: dict[str, str] = field(default_factory=dict)                # id -> signed acknowledge link
    seen: dict[str, Seen] = field(default_factory=dict)                # id -> what arrived on which channel
    mail: dict[str, set[str]] = field(default_factory=dict)            # id -> kinds that arrived by e-mail
    on_mqtt: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # not yet known as ours
    webhook_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        receivers = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(receivers.webhook_key, body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(self.headers.get("X-Smartcity-Signature", ""), expected)
                if ok:
                    receivers.got("webhook", self.headers.get("X-Smartcity-Idempotency-Key", ""), json.loads(body))
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.http.serve_forever, name="demo-webhook", daemon=True).start()
        self.smtp = Controller(_Mailbox(self), hostname="127.0.0.1", port=free_port())
        self.smtp.start()
        self.mqtt = mqtt_client(self.settings, username="subscriber")
        self.mqtt.on_message = lambda c, u, m: self.got("MQTT", dict(m.properties.UserProperty).get(
            "idempotency-key", ""), json.loads(m.payload))
        self.mqtt.on_connect = lambda c, u, f, rc, p: c.subscribe("city/alerts/+/+", qos=1)
        mqtt_connect(self.mqtt, self.settings)
        self.mqtt.loop_start()

    def got(self, channel: str, key: str, body: dict[str, Any] | None) -> None:
        """One message. The MQTT topics are shared by every router on the broker (tests, other demos): an
        MQTT notification counts once the demo's private webhook had the same idempotency key."""
        with self.lock:
            self.messages[channel] += 1
            self.keys[channel].add(key)
            for a in (body or {}).get("alerts", []):
                if channel == "MQTT":
                    self.on_mqtt[a["idempotency_key"]] = (body["kind"], a)  # type: ignore[index]
                else:
                    self._note(channel, body["kind"], a)  # type: ignore[index]
            for k in [k for k in self.on_mqtt if k in self.webhook_keys]:
                self._note("MQTT", *self.on_mqtt.pop(k))

    def _note(self, channel: str, kind: str, a: dict[str, Any]) -> None:
        if channel == "webhook":
            self.webhook_keys.add(a["idempotency_key"])
        self.alerts[a["id"]] = a
        self.kinds.setdefault(a["id"], set()).add(kind)
        self.seen.setdefault(a["id"], Seen(a["id"], a["rule"], a["entity"], a["domain"])).note(kind, channel, a)
        if a.get("ack_url"):
            self.links[a["id"]] = a["ack_url"]

    def mailed(self, kind: str, ids: list[str]) -> None:
        with self.lock:
            for i in ids:
                self.mail.setdefault(i, set()).add(kind)

    def episodes(self) -> list[Seen]:
        """Every alert episode seen, with the kinds that arrived by e-mail merged in."""
        with self.lock:
            for i, kinds in self.mail.items():
                if i in self.seen:
                    for kind in kinds:
                        self.seen[i].kinds.setdefault(kind, set()).add("e-mail")
            return list(self.seen.values())

    def fired(self, rule: str, entity: str) -> list[str]:
        """Ids of the episodes of (rule, entity) whose firing arrived."""
        with self.lock:
            return [i for i, s in self.seen.items() if (s.rule, s.entity) == (rule, entity) and "firing" in s.kinds]

    def with_kind(self, kind: str) -> set[str]:
        with self.lock:
            return {i for i, kinds in self.kinds.items() if kind in kinds}

    def config(self, path: Path, http_port: int, rules: Path = DEPLOYED_RULES) -> Path:
        """The demo router's config: the rule policies of `rules` (the deployed ones: `for`, hysteresis; the
        reminders every REMINDER_S), one subscriber per channel for every domain and severity, a short
        grouping window."""
        path.write_text(f"""# written by smartcity demo: the rules of {rules}, the demo's own receivers
group_window = 2
link_base = "http://127.0.0.1:{http_port}"
{_rules_toml(rules)}
[[subscriber]]
name = "demo-wall"
channel = "mqtt"
[[subscriber]]
name = "demo-webhook"
channel = "webhook"
url = "http://127.0.0.1:{self.http.server_address[1]}/alerts"
secret_env = "SMARTCITY_DEMO_WEBHOOK_KEY"
[[subscriber]]
name = "demo-duty-mail"
channel = "email"
to = ["duty@laoshan.example"]
smtp_port = {self.smtp.port}
""")
        return path

    def wanted(self, path: Path) -> Any:
        """seen -> the channels whose subscribers in the config at `path` chose that alert's firing."""
        subscribers = AlertConfig.load(path).subscriber

        def channels(seen: Seen) -> set[str]:
            alert = self.alerts.get(seen.id)
            note = Notification("firing", alert or {}, "")
            return {CHANNEL_OF[s.channel] for s in subscribers if alert and s.wants(note)}
        return channels

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()
        self.smtp.stop()
        self.http.shutdown()


def _rules_toml(path: Path) -> str:
    """The [rules.*] tables of an alert config, reminders every REMINDER_S seconds."""
    rules = tomllib.loads(path.read_text()).get("rules", {})
    rules.setdefault("*", {})
    lines = []
    for name, policy in rules.items():
        lines.append(f'[rules."{name}"]')
        lines += [f"{k} = {v!r}" for k, v in policy.items() if k != "repeat"]
        lines.append(f"repeat = {REMINDER_S!r}")
    return "\n".join(lines)


class DutyOfficer:
    """Acknowledges the scenario's alerts while the day is published: after each tick whose time passed
    an expected alert's `due`, the publisher is flushed, the processors catch up, and the alert, once its
    firing has arrived, is acknowledged through the signed link of its message (as a person would). A
    pause stays well inside the processors' stale timer. `sweep` acknowledges whatever fired unacknowledged."""

    def __init__(self, settings: Settings, receivers: Receivers, publisher: Publisher, expected: list[dict[str, Any]],
                 start_ns: int, interval_s: float, telemetry: list[str], group: str, pause_s: float = 15.0) -> None:
        self.settings, self.receivers, self.publisher = settings, receivers, publisher
        self.expected = expected
        self.pending = sorted((x for x in expected if x.get("due") is not None), key=lambda x: x["due"])
        self.start_ns, self.interval_ns = start_ns, int(interval_s * 1e9)
        self.telemetry, self.group, self.pause_s = telemetry, group, pause_s
        self.acked: set[str] = set()
        self.late: list[str] = []
        self.producer = kafka_producer(settings)

    def __call__(self, done: int, stats: Any) -> None:
        t = self.start_ns + (done - 1) * self.interval_ns
        for x in self.expected:   # what has fired already is acknowledged at once, without a pause
            for alert_id in self.receivers.fired(x["rule"], x["entity"]):
                self.acknowledge(alert_id, "demo: crew dispatched")
        due = [x for x in self.pending if x["due"] <= t]
        if not due:
            return
        self.pending = [x for x in self.pending if x["due"] > t]
        self.publisher.wait()
        deadline = time.monotonic() + self.pause_s
        while time.monotonic() < deadline and group_lag(self.settings, self.group, self.telemetry):
            time.sleep(0.3)
        for x in due:
            while time.monotonic() < deadline and not self.receivers.fired(x["rule"], x["entity"]):
                time.sleep(0.2)
            ids = self.receivers.fired(x["rule"], x["entity"])
            if not ids:
                self.late.append(f"{x['rule']} {x['entity']}: no firing by {when(x['due'])}")
            for alert_id in ids:
                self.acknowledge(alert_id, "demo: crew dispatched")

    def acknowledge(self, alert_id: str, comment: str) -> None:
        if alert_id in self.acked:
            return
        if not _ack_by_link(self.receivers.links.get(alert_id), comment):
            send_ack(self.producer, self.settings, alert_id, DEMO_BY, comment, "cli")
        self.acked.add(alert_id)

    def sweep(self) -> None:
        """Acknowledge every alert that fired and was not acknowledged yet (arrived after its pause)."""
        for seen in self.receivers.episodes():
            if "firing" in seen.kinds:
                self.acknowledge(seen.id, "demo: acknowledged after the day")

    def close(self) -> None:
        self.producer.close()


def router_env(receivers: Receivers) -> dict[str, str]:
    """The keys the demo router needs: the receiver's webhook key, and a link key (the stack's, else fresh)."""
    env = {"SMARTCITY_DEMO_WEBHOOK_KEY": receivers.webhook_key.decode()}
    if not os.environ.get("SMARTCITY_ALERTS_LINK_KEY"):
        from infra.settings import read_secret

        stack_key = read_secret("alerts-link-key")
        env["SMARTCITY_ALERTS_LINK_KEY"] = stack_key.get_secret_value() if stack_key else secrets.token_urlsafe(24)
    return env


@dataclass
class LoopResult:
    fired: set[str] = field(default_factory=set)
    open: set[str] = field(default_factory=set)      # still firing when the acknowledgement round began
    offline: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    resolved: set[str] = field(default_factory=set)
    acked_by_link: int = 0
    started: float = field(default_factory=time.time)


def _wait(check: Any, seconds: float, status: Any, text: str) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        status.update(f"{text} ({int(deadline - time.monotonic())} s left)")
        time.sleep(1)
    return check()


def close_the_loop(settings: Settings, console: Console, receivers: Receivers, domains: list[str], sensors: int,
                   stale_after: float) -> LoopResult:
    """Sensors fall silent -> offline alerts fire -> acknowledged by link -> sensors back -> resolved."""
    result = LoopResult()
    expected = len(domains) * sensors

    def offline() -> set[str]:
        return {i for i in receivers.with_kind("firing") if receivers.alerts[i]["rule"].endswith(".offline")}
    with console.status("the sensors fall silent: waiting for the processors' stale timers") as status:
        _wait(lambda: len(offline()) >= expected, stale_after * 4 + 60, status, f"offline alerts: waiting for {expected}")
        time.sleep(3)   # the grouping window: let the last messages through
        result.fired, result.offline = receivers.with_kind("firing"), offline()
        result.open = result.fired - receivers.with_kind("resolved")   # an episode over already has nothing to ack
        console.print(f"alerts fired: {len(result.fired)} ({len(result.offline)} sensors offline, "
                      f"{len(result.fired) - len(result.open)} resolved on their own during the day)")
        producer = kafka_producer(settings)
        try:
            for alert_id in sorted(result.open):
                if _ack_by_link(receivers.links.get(alert_id)):
                    result.acked_by_link += 1
                else:
                    send_ack(producer, settings, alert_id, DEMO_BY, "demo: acknowledged from the CLI", "cli")
        finally:
            producer.close()
        _wait(lambda: result.open <= receivers.with_kind("acknowledged"), 60, status, "acknowledgements")
        result.acked = receivers.with_kind("acknowledged") & result.open
        publisher = Publisher(settings, client_prefix="demo-back")
        Simulation(SimOptions(domains=domains, sensors=sensors, ticks=1, interval=60, rate=0, seed=2027,
                              start_ns=time.time_ns(), scenario="calm")).run(publisher)   # the crews bring the sensors back
        # (into the calm city: a free-running reading now could breach, a lot at noon, and no episode explains it)
        publisher.wait()
        publisher.close()
        _wait(lambda: result.offline <= receivers.with_kind("resolved"), 90, status, "the offline alerts to resolve")
        time.sleep(3)
        result.resolved = receivers.with_kind("resolved") & result.fired
    return result


def _ack_by_link(link: str | None, comment: str = "demo: crew dispatched") -> bool:
    """Acknowledge as a person would: open the signed link from the message and send the form."""
    if not link:
        return False
    form = urllib.parse.urlencode({"by": DEMO_BY, "comment": comment}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(link, data=form, method="POST"), timeout=10) as reply:
            return reply.status == 200
    except OSError:
        return False


def report_loop(console: Console, settings: Settings, receivers: Receivers, result: LoopResult,
                supervisor: Supervisor, down: list[str]) -> bool:
    """Deliveries per channel, the loop's counts, MTTA / MTTR per domain; True when the loop closed."""
    deliveries = Table(title="alert deliveries per channel (the demo's own receivers)")
    for col in ("channel", "messages", "notifications (distinct idempotency keys)"):
        deliveries.add_column(col, justify="right")
    for channel in CHANNELS:
        deliveries.add_row(channel, f"{receivers.messages[channel]:,}", f"{len(receivers.keys[channel]):,}")
    console.print(deliveries)
    console.print(f"closed loop: fired {len(result.fired)}, acknowledged {len(result.acked)} of the "
                  f"{len(result.open)} still open "
                  f"({result.acked_by_link} through the signed link), resolved {len(result.resolved)} "
                  f"(of {len(result.offline)} offline sensors brought back)")
    loop = Table(title="MTTA / MTTR per domain (InfluxDB alert_times, last 30 days)")
    for col in ("domain", "alerts", "MTTA", "MTTR"):
        loop.add_column(col, justify="right")
    for domain, (n, mtta, mttr) in sorted(loop_stats(settings).domains.items()):
        loop.add_row(domain, str(n), "-" if mtta is None else f"{mtta:.1f} s", "-" if mttr is None else f"{mttr:.1f} s")
    console.print(loop)
    restarts = {n: r for n, r in supervisor.restarts().items() if r}
    console.print(f"children: {'none down' if not down else 'DOWN: ' + ', '.join(down)}"
                  f"{'; restarts ' + str(restarts) if restarts else ', no restarts'}")
    ok = (all(receivers.messages[c] > 0 for c in CHANNELS) and not down and bool(result.fired)
          and result.open <= result.acked and result.offline <= result.resolved)
    console.print("[green]alerts fired, delivered on every channel, acknowledged and resolved[/green]" if ok else
                  "[red]the alert loop did not close: see the counts above and the logs[/red]")
    return ok


def report_breaches(console: Console, verdict: Verdict) -> bool:
    """The scenario's proof per domain: expected / fired / delivered on every chosen channel /
    acknowledged / resolved, MTTA and MTTR; every discrepancy in red. True when there is none."""
    table = Table(title="breaches per domain: the scenario's manifest against what the router did",
                  caption="deliv(ered) / acked / resolv(ed): on every channel its subscribers chose; breach: a "
                  "plan threshold, offline: a sensor fallen silent")
    for col in ("domain", "kind", "expect", "fired", "deliv", "acked", "resolv", "MTTA s", "MTTR s"):
        table.add_column(col, justify="right", no_wrap=True)
    for (domain, group), r in sorted(verdict.rows.items()):
        table.add_row(domain, group, *(str(v) for v in (r.expected, r.fired, r.delivered, r.acknowledged, r.resolved)),
                      *("-" if v is None else f"{v:.1f}" for v in (r.mtta(), r.mttr())))
    console.print(table)
    for problem in verdict.problems:
        console.print(f"[red]{problem}[/red]")
    console.print("[green]every expected breach fired, was delivered on every channel its subscribers chose, "
                  "acknowledged and resolved; nothing else fired[/green]" if verdict.ok else
                  f"[red]the manifest check failed: {len(verdict.problems)} problem(s) above[/red]")
    return verdict.ok
