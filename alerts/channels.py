"""Notification channels: MQTT topic, HMAC-signed webhook, e-mail (SMTP), each with its own worker.

A delivery counts only when its channel confirmed it: the broker's PUBACK with a success reason code,
a 2xx answer, an SMTP 250 for every recipient. Every channel retries with backoff and, after the last
try, dead-letters the message (the dead letter itself confirmed by Kafka) before reporting it done;
only then does the router drop it from the outbox. Every message carries its idempotency key (MQTT
user property `idempotency-key`, header `X-Smartcity-Idempotency-Key`, e-mail `Message-ID`).
Each subscriber has its own worker thread and queue, so a slow or failing receiver never delays the
others. What a message says is alerts/messages.py's.
"""
from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import os
import queue
import smtplib
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable, Literal

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, Field

from alerts.messages import ACK_TOPIC, KIND_ZH, render  # noqa: F401 - ACK_TOPIC: the router imports it here
from alerts.state import SEVERITIES, Notification
from infra.logs import event
from infra.settings import stack_dir

log = logging.getLogger("smartcity.alerts")
MAX_BACKOFF = 60.0


def secret_path(path: Path) -> Path:
    """A secret file: absolute as given, relative to the stack's secrets folder (.stack/secrets/)."""
    return path if path.is_absolute() else stack_dir() / "secrets" / path


class Subscriber(BaseModel):
    """Who gets which alerts, and how (deploy/config/alerts.toml, [[subscriber]])."""

    name: str
    channel: Literal["mqtt", "webhook", "email"]
    domains: list[str] = Field(default_factory=list, description="empty: every domain")
    min_severity: Literal["info", "minor", "major", "critical"] = "info"
    sites: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns")
    rules: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns")
    kinds: list[str] = Field(default_factory=lambda: ["firing", "reminder", "escalated", "resolved", "acknowledged"])
    url: str | None = Field(None, description="webhook: where to POST")
    secret_env: str | None = Field(None, description="webhook HMAC key: environment variable name ...")
    secret_file: Path | None = Field(None, description="... or a file (relative: in .stack/secrets/)")
    tries: int = Field(5, ge=1, description="attempts before the dead letter")
    backoff: float = Field(0.5, gt=0, description="seconds before the 2nd try; doubles each time (max 60)")
    timeout: float = Field(5.0, gt=0, description="seconds to wait for the receiver's confirmation")
    to: list[str] = Field(default_factory=list, description="e-mail recipients")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    sender: str = "alerts@laoshan.example"

    def wants(self, n: Notification) -> bool:
        a = n.alert
        return (n.kind in self.kinds and (not self.domains or a["domain"] in self.domains)
                and SEVERITIES.index(a["severity"]) >= SEVERITIES.index(self.min_severity)
                and any(fnmatch.fnmatchcase(a["site"], p) for p in self.sites)
                and any(fnmatch.fnmatchcase(a["rule"], p) for p in self.rules))

    def secret(self) -> bytes:
        """The webhook's HMAC key, from the environment variable or else the file."""
        if self.secret_env and os.environ.get(self.secret_env):
            return os.environ[self.secret_env].encode()
        if self.secret_file and secret_path(self.secret_file).is_file():
            return secret_path(self.secret_file).read_bytes().strip()
        raise ValueError(f"webhook subscriber {self.name!r} has no secret: "
                         + " or ".join(filter(None, [self.secret_env and f"set ${self.secret_env}",
                                                     self.secret_file and f"create {secret_path(self.secret_file)}"
                                                     " (deploy/native/up generates it)"]))
                         if self.secret_env or self.secret_file else
                         f"webhook subscriber {self.name!r} has no secret: give it secret_env or secret_file")

    def problems(self) -> list[str]:
        """What stops this subscriber from being served, each with what to do (empty: all good)."""
        if self.channel == "webhook":
            out = [] if self.url and self.url.startswith(("http://", "https://")) else [
                f"subscriber {self.name!r}: webhook url {self.url!r} is not an http(s) URL; set url = \"https://...\""]
            try:
                self.secret()
            except ValueError as exc:
                out.append(str(exc))
            return out
        if self.channel == "email" and not self.to:
            return [f"subscriber {self.name!r}: e-mail without recipients; set to = [\"someone@example.org\"]"]
        return []


@dataclass
class Delivery:
    """One message to one subscriber: one notification, or several of one rule gathered by the grouping
    window. `origins[i]` = (alerts.events partition, ownership generation) that made `notes[i]`."""

    subscriber: str
    notes: list[Notification]
    origins: list[tuple[int, int]]

    @property
    def kind(self) -> str:
        return self.notes[0].kind

    @property
    def key(self) -> str:
        """The message's idempotency key: the notification's, or a digest of a group's (each alert in the
        body also carries its own)."""
        if len(self.notes) == 1:
            return self.notes[0].key
        return "group-" + hashlib.sha1("|".join(sorted(n.key for n in self.notes)).encode()).hexdigest()[:20]


Deliver = Callable[[dict[str, Any], int], None]   # (body, attempt): returns when confirmed, raises otherwise


class Channel:
    """A subscriber's delivery worker: `send(delivery)` queues; the thread delivers with retries, then
    calls `done(delivery, outcome)` ("delivered" or "deadlettered") so the outbox can let it go, or
    "moved" when a partition it came from now belongs to another router (whose outbox delivers it)."""

    def __init__(self, sub: Subscriber, deliver: Deliver, *, done: Callable[[Delivery, str], None],
                 dead_letter: Callable[[Subscriber, bytes, str], bool], live: Callable[[Delivery], bool],
                 links: Callable[[Delivery], dict[str, str]], stopping: threading.Event, metrics: Any) -> None:
        self.sub, self._deliver, self._done, self._dead, self._live = sub, deliver, done, dead_letter, live
        self._links, self._stopping, self.metrics = links, stopping, metrics
        self.queue: queue.Queue[Delivery | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"channel-{sub.name}", daemon=True)
        self.thread.start()

    def send(self, delivery: Delivery) -> None:
        self.queue.put(delivery)

    def close(self, timeout: float = 15.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        while (delivery := self.queue.get()) is not None:
            if self._live(delivery):
                self._attempt(delivery)
            else:
                self._done(delivery, "moved")

    def _attempt(self, delivery: Delivery) -> None:
        body = render(delivery, self._links(delivery))
        labels = (self.sub.name, self.sub.channel)
        delay, error, started = self.sub.backoff, "", time.monotonic()
        for attempt in range(1, self.sub.tries + 1):
            try:
                self._deliver(body, attempt)
            except Exception as exc:  # noqa: BLE001 - any failure of a receiver is retried, then dead-lettered
                error = f"{type(exc).__name__}: {exc}"[:300]
            else:
                self.metrics.delivered.labels(*labels).inc()
                self.metrics.latency.labels(*labels).observe(time.monotonic() - started)
                self._done(delivery, "delivered")
                return
            if attempt < self.sub.tries:
                self.metrics.retries.labels(*labels).inc()
                event(log, "delivery_retry", logging.WARNING, subscriber=self.sub.name, key=delivery.key,
                      attempt=attempt, error=error, retry_in=delay)
                if self._stopping.wait(delay):
                    return  # stays in the outbox: delivered after the restart
                delay = min(delay * 2, MAX_BACKOFF)
        event(log, "delivery_failed", logging.ERROR, subscriber=self.sub.name, key=delivery.key, error=error)
        if not self._dead(self.sub, json.dumps(body, ensure_ascii=False).encode(),
                          f"{self.sub.channel} {self.sub.name} failed {self.sub.tries} times, last: {error}"):
            return  # stopping before Kafka took the dead letter: stays in the outbox
        self.metrics.deadlettered.labels(*labels).inc()
        self._done(delivery, "deadlettered")


def mqtt_delivery(sub: Subscriber, client: Any, pubacks: dict[int, Any]) -> Deliver:
    """Publish on city/alerts/<domain>/<severity> (QoS 1); confirmed by a PUBACK whose reason code is a
    success (`pubacks` is filled by the client's on_publish)."""
    def deliver(body: dict[str, Any], attempt: int) -> None:
        if not client.is_connected():   # paho would queue it and send every queued copy on reconnect
            raise ConnectionError("not connected to the MQTT broker (reconnecting)")
        first = body["alerts"][0]
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("idempotency-key", body["idempotency_key"])]
        info = client.publish(f"city/alerts/{first['domain']}/{first['severity']}",
                              json.dumps(body, ensure_ascii=False).encode(), qos=1, properties=props)
        info.wait_for_publish(sub.timeout)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK within {sub.timeout:g} s (is the broker up?)")
        reason = pubacks.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            raise RuntimeError(f"the broker refused the publish: {reason.getName()} (check the router's ACL)")
    return deliver


def webhook_delivery(sub: Subscriber) -> Deliver:
    """POST the JSON body signed with HMAC-SHA256 (header X-Smartcity-Signature: sha256=<hex>)."""
    secret = sub.secret()

    def deliver(body: dict[str, Any], attempt: int) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(sub.url or "", data=data, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-Smartcity-Signature": "sha256=" + hmac.new(secret, data, hashlib.sha256).hexdigest(),
            "X-Smartcity-Idempotency-Key": body["idempotency_key"], "X-Smartcity-Attempt": str(attempt)})
        try:
            with urllib.request.urlopen(request, timeout=sub.timeout) as response:
                if not 200 <= response.status < 300:
                    raise RuntimeError(f"HTTP {response.status} from {sub.url}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"HTTP {exc.code} from {sub.url}") from None
    return deliver


def email_delivery(sub: Subscriber) -> Deliver:
    """Send a plain-text bilingual e-mail; confirmed when the server accepted it for every recipient."""
    def deliver(body: dict[str, Any], attempt: int) -> None:
        first = body["alerts"][0]
        msg = EmailMessage()
        msg["From"], msg["To"] = sub.sender, ", ".join(sub.to)
        msg["Message-ID"] = f"<{body['idempotency_key'].replace(':', '.')}@smartcity.laoshan>"
        msg["X-Smartcity-Idempotency-Key"] = body["idempotency_key"]
        msg["Subject"] = (f"[{body['kind'].upper()}/{KIND_ZH.get(body['kind'], '')}] {first['title_en']} / "
                          f"{first['title_zh']}" + (f" (+{len(body['alerts']) - 1})" if len(body["alerts"]) > 1 else ""))
        msg.set_content(body["text_zh"] + "\n\n" + body["text_en"] + "\n")
        smtp = smtplib.SMTP(sub.smtp_host, sub.smtp_port, timeout=sub.timeout)
        try:
            refused = smtp.send_message(msg)
        finally:   # accepted is delivered: a failed QUIT afterwards must not make us send it again
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        if refused:
            raise RuntimeError(f"SMTP server refused {sorted(refused)}")
    return deliver
