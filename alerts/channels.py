"""Notification channels: MQTT topic, HMAC-signed webhook (retried, dead-lettered), e-mail (SMTP).

Each subscriber has its own worker thread and queue, so a slow or failing receiver never delays the
others. Messages are bilingual (Chinese and English): what, where, value vs threshold, since when,
and the plan target behind the rule.
"""
from __future__ import annotations

import datetime as dt
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
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field

from alerts.state import SEVERITIES, Notification
from infra.logs import event

log = logging.getLogger("smartcity.alerts")
LOCAL = dt.timezone(dt.timedelta(hours=8))
KIND_ZH = {"firing": "告警", "reminder": "提醒", "escalated": "升级", "resolved": "解除", "acknowledged": "已确认"}


class Subscriber(BaseModel):
    """Who gets which alerts, and how (deploy/config/alerts.toml, [[subscriber]])."""

    name: str
    channel: Literal["mqtt", "webhook", "email"]
    domains: list[str] = Field(default_factory=list, description="empty: every domain")
    min_severity: Literal["info", "minor", "major", "critical"] = "info"
    sites: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns")
    rules: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns")
    kinds: list[str] = Field(default_factory=lambda: ["firing", "reminder", "escalated", "resolved", "acknowledged"])
    url: str | None = None                      # webhook
    secret_env: str | None = None               # webhook HMAC key: environment variable name ...
    secret_file: Path | None = None             # ... or a file
    tries: int = Field(5, ge=1)                 # webhook attempts before the dead letter
    backoff: float = Field(0.5, gt=0)           # seconds before the 2nd try; doubles each time
    timeout: float = Field(5.0, gt=0)
    to: list[str] = Field(default_factory=list)  # e-mail recipients
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
        if self.secret_env and os.environ.get(self.secret_env):
            return os.environ[self.secret_env].encode()
        if self.secret_file and self.secret_file.is_file():
            return self.secret_file.read_bytes().strip()
        raise ValueError(f"webhook subscriber {self.name!r} has no secret: set ${self.secret_env or '...'} "
                         "or secret_file")


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, LOCAL).strftime("%Y-%m-%d %H:%M UTC+8")


def render(kind: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The message body: the alerts plus one English and one Chinese text."""
    en, zh = [], []
    for a in alerts:
        en.append(f"[{kind.upper()}] {a['title_en']}: {a['value']:g} (threshold {a['threshold']:g}), "
                  f"severity {a['severity']}, since {_when(a['since'])}. Plan: {a['target']}. "
                  f"Alert {a['id']}: smartcity alerts ack {a['id']} --by NAME")
        zh.append(f"【{KIND_ZH.get(kind, kind)}】{a['title_zh']}：{a['value']:g}（阈值 {a['threshold']:g}），"
                  f"级别 {a['severity']}，自 {_when(a['since'])} 起。依据：{a['target']}。告警编号 {a['id']}")
    return {"kind": kind, "alerts": alerts, "text_en": "\n".join(en), "text_zh": "\n".join(zh),
            "sent_at": time.time()}


class Channel:
    """A subscriber's delivery worker: `send(kind, alerts)` queues, the thread delivers."""

    def __init__(self, sub: Subscriber, deliver: Callable[[dict[str, Any]], None],
                 dead_letter: Callable[[Subscriber, bytes, str], None]) -> None:
        self.sub, self._deliver, self._dead = sub, deliver, dead_letter
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"channel-{sub.name}", daemon=True)
        self.thread.start()

    def send(self, kind: str, alerts: list[dict[str, Any]]) -> None:
        self.queue.put(render(kind, alerts))

    def close(self, timeout: float = 30.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        while (body := self.queue.get()) is not None:
            try:
                self._deliver(body)
            except Exception as exc:  # noqa: BLE001 - a channel's failure must not stop its thread
                event(log, "delivery_failed", logging.ERROR, subscriber=self.sub.name, error=str(exc)[:200])
                self._dead(self.sub, json.dumps(body, ensure_ascii=False).encode(), str(exc))


def mqtt_delivery(sub: Subscriber, client: Any) -> Callable[[dict[str, Any]], None]:
    """Publish on city/alerts/<domain>/<severity> (QoS 1), one message per (domain, severity)."""
    def deliver(body: dict[str, Any]) -> None:
        first = body["alerts"][0]
        info = client.publish(f"city/alerts/{first['domain']}/{first['severity']}",
                              json.dumps(body, ensure_ascii=False).encode(), qos=1)
        info.wait_for_publish(30)
    return deliver


def webhook_delivery(sub: Subscriber) -> Callable[[dict[str, Any]], None]:
    """POST the JSON body signed with HMAC-SHA256 (header X-Smartcity-Signature: sha256=<hex>);
    retried with exponential backoff; the last failure raises (the channel dead-letters it)."""
    secret = sub.secret()

    def deliver(body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        signature = "sha256=" + hmac.new(secret, data, hashlib.sha256).hexdigest()
        delay = sub.backoff
        for attempt in range(1, sub.tries + 1):
            request = urllib.request.Request(sub.url or "", data=data, method="POST", headers={
                "Content-Type": "application/json; charset=utf-8", "X-Smartcity-Signature": signature,
                "X-Smartcity-Attempt": str(attempt)})
            try:
                with urllib.request.urlopen(request, timeout=sub.timeout) as response:
                    if 200 <= response.status < 300:
                        return
                    error = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                error = str(exc)
            if attempt < sub.tries:
                event(log, "webhook_retry", logging.WARNING, subscriber=sub.name, attempt=attempt, error=error,
                      retry_in=delay)
                time.sleep(delay)
                delay *= 2
        raise RuntimeError(f"webhook {sub.url} failed {sub.tries} times, last: {error}")
    return deliver


def email_delivery(sub: Subscriber) -> Callable[[dict[str, Any]], None]:
    """Send a plain-text bilingual e-mail over SMTP."""
    def deliver(body: dict[str, Any]) -> None:
        first = body["alerts"][0]
        msg = EmailMessage()
        msg["From"], msg["To"] = sub.sender, ", ".join(sub.to)
        msg["Subject"] = (f"[{body['kind'].upper()}/{KIND_ZH.get(body['kind'], '')}] {first['title_en']} / "
                          f"{first['title_zh']}" + (f" (+{len(body['alerts']) - 1})" if len(body["alerts"]) > 1 else ""))
        msg.set_content(body["text_zh"] + "\n\n" + body["text_en"] + "\n")
        with smtplib.SMTP(sub.smtp_host, sub.smtp_port, timeout=sub.timeout) as smtp:
            smtp.send_message(msg)
    return deliver
