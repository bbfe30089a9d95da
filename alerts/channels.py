"""Notification channels: MQTT topic, HMAC-signed webhook, e-mail (SMTP), each with its own worker.

A delivery counts only when its channel confirmed it: the broker's PUBACK with a success reason code,
a 2xx answer, an SMTP 250 for every recipient. Each channel kind (a registered Transport) says what is
worth retrying: failures a later try may not meet are retried with exponential backoff and jitter
(Retry-After honoured) for `retry_for` (hours by default), the others (a 4xx, a redirect, a message
too large) are dead-lettered at once; the dead letter is confirmed by Kafka before the delivery counts
as done, and only then does the router drop it from the outbox. Every attempt has a deadline for the
whole exchange, not a socket timeout, so a receiver that drips bytes cannot hold its channel; a
delivery waiting for its next try never holds the ones behind it. Every message carries its
idempotency key (MQTT user property `idempotency-key`, header `X-Smartcity-Idempotency-Key`, e-mail
`Message-ID`), lists at most the rule's bound of alerts (the rest summarised with counts and a link)
and fits its channel's size limit. Each subscriber has its own worker thread and queue, so a slow or
failing receiver never delays the others. What a message says is alerts/messages.py's.
"""
from __future__ import annotations

import collections
import email.utils
import fnmatch
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import os
import queue
import random
import re
import smtplib
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
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
    tries: int | None = Field(None, ge=1, description="attempts before the dead letter (none: until retry_for)")
    retry_for: float = Field(4 * 3600.0, gt=0, description="seconds a notification is retried before the dead letter")
    backoff: float = Field(0.5, gt=0, description="seconds before the 2nd try; doubles each time, with jitter")
    max_backoff: float = Field(300.0, gt=0, description="longest wait between two tries (seconds)")
    timeout: float = Field(5.0, gt=0, description="seconds one whole attempt may take (connect, send, answer)")
    max_bytes: int | None = Field(None, ge=4096, description="largest message in bytes (default: mqtt the "
                                  "broker's CONNACK max_packet_size else 256 KiB, webhook 1 MiB, email 512 KiB)")
    redirects: Literal["never", "same-host"] = Field("never", description="webhook: follow a 307/308 to the same "
                                                     "host and port (never: a redirect is dead-lettered)")
    to: list[str] = Field(default_factory=list, description="e-mail recipients")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    sender: str = "alerts@laoshan.example"

    def wants(self, n: Notification) -> bool:
        a = n.alert
        sites = a.get("sites") or [a["site"]]   # a storm alert names the sites it covers
        return (n.kind in self.kinds and (not self.domains or a["domain"] in self.domains)
                and SEVERITIES.index(a["severity"]) >= SEVERITIES.index(self.min_severity)
                and any(fnmatch.fnmatchcase(site, p) for p in self.sites for site in sites)
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


def summarise(body: dict[str, Any], delivery: Delivery, listed: int, more_url: str | None) -> dict[str, Any]:
    """A body that lists only the first `listed` alerts of a large delivery: counts of all of them (by
    kind, severity, site) and where to see the full list; the idempotency key stays the delivery's."""
    rest = delivery.notes[listed:]
    if not rest:
        return body
    by_site = collections.Counter(n.alert.get("site", "") for n in delivery.notes)
    body["idempotency_key"] = delivery.key
    body["summary"] = {"total": len(delivery.notes), "listed": listed,
                       "by_severity": dict(collections.Counter(n.alert.get("severity", "") for n in delivery.notes)),
                       "by_site": dict(by_site.most_common(20)), "sites": len(by_site), "full_list": more_url}
    where = f" {more_url}" if more_url else ""
    body["text_en"] += f"\n... and {len(rest):,} more alerts of this rule ({len(delivery.notes):,} in all, " \
                       f"{len(by_site):,} sites).{where}"
    body["text_zh"] += f"\n……另有 {len(rest):,} 条同类告警（共 {len(delivery.notes):,} 条，{len(by_site):,} 个站点）。{where}"
    return body


class Retry(Exception):
    """A failure that a later try may not meet: 5xx, 429, a timeout, a lost connection."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """A failure no later try can fix (a 4xx, a redirect, a message too large): dead-lettered at once."""


@dataclass
class Transport:
    """How one channel kind sends a body: `deliver(body, attempt, deadline)` returns once the receiver
    confirmed it and raises Retry or Refused otherwise (deadline: time.monotonic() the whole attempt
    must end by); `size(body)` is the bytes the message takes, `limit()` the most it may take."""

    deliver: Callable[[dict[str, Any], int, float], None]
    size: Callable[[dict[str, Any]], int]
    limit: Callable[[], int]


TRANSPORTS: dict[str, Callable[[Subscriber, Any], Transport]] = {}


def transport(kind: str) -> Callable[[Callable[[Subscriber, Any], Transport]], Callable[[Subscriber, Any], Transport]]:
    """Register the transport factory of a channel kind: factory(subscriber, router context)."""
    def register(factory: Callable[[Subscriber, Any], Transport]) -> Callable[[Subscriber, Any], Transport]:
        TRANSPORTS[kind] = factory
        return factory
    return register


@dataclass
class Shape:
    """What a message of one delivery looks like: acknowledge links, at most how many alerts are listed
    (the rest summarised), and the address of the full list."""

    links: dict[str, str]
    listed: int
    more_url: str | None


@dataclass(order=True)
class _Try:
    due: float
    seq: int
    delivery: Delivery = field(compare=False)
    first: float = field(compare=False, default=0.0)
    attempt: int = field(compare=False, default=0)
    body: dict[str, Any] | None = field(compare=False, default=None)


class Channel:
    """A subscriber's delivery worker: `send(delivery)` queues; the thread delivers, keeping failed
    deliveries in a retry schedule (exponential backoff with jitter, Retry-After honoured) for up to
    `retry_for`, so that one notification's trouble never holds the ones behind it. It calls
    `done(delivery, outcome)` ("delivered" or "deadlettered") so the outbox can let it go, or "moved"
    when a partition it came from now belongs to another router (whose outbox delivers it)."""

    def __init__(self, sub: Subscriber, transport_: Transport, *, done: Callable[[Delivery, str], None],
                 dead_letter: Callable[[Subscriber, bytes, str], bool], live: Callable[[Delivery], bool],
                 shape: Callable[[Delivery], Shape], stopping: threading.Event, metrics: Any) -> None:
        self.sub, self.transport, self._done, self._dead, self._live = sub, transport_, done, dead_letter, live
        self._shape, self._stopping, self.metrics = shape, stopping, metrics
        self.queue: queue.Queue[Delivery | None] = queue.Queue()
        self._retries: list[_Try] = []
        self._seq = itertools.count()
        self.thread = threading.Thread(target=self._run, name=f"channel-{sub.name}", daemon=True)
        self.thread.start()

    def send(self, delivery: Delivery) -> None:
        self.queue.put(delivery)

    def close(self, timeout: float = 15.0) -> None:
        """Stop after the attempt under way; what is still to deliver stays in the outbox."""
        self.queue.put(None)
        self.thread.join(timeout)

    @property
    def waiting(self) -> int:
        return self.queue.qsize() + len(self._retries)

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = None if not self._retries else self._retries[0].due - time.monotonic()
            if wait is not None and wait <= 0:   # a retry that is due, then whatever arrived meanwhile
                self._try(heapq.heappop(self._retries))
                continue
            try:
                delivery = self.queue.get(timeout=wait)
            except queue.Empty:
                continue
            if delivery is None:
                return
            now = time.monotonic()
            self._try(_Try(now, next(self._seq), delivery, now))

    def _try(self, t: _Try) -> None:
        """One attempt; whatever goes wrong around it is logged, and the worker goes on with the next."""
        try:
            self._attempt(t)
        except Exception as exc:  # noqa: BLE001 - the worker outlives any one delivery (it stays in the outbox)
            event(log, "delivery_error", logging.ERROR, subscriber=self.sub.name, key=t.delivery.key,
                  error=f"{type(exc).__name__}: {exc}"[:300])

    def _attempt(self, t: _Try) -> None:
        if not self._live(t.delivery):
            self._done(t.delivery, "moved")
            return
        labels = (self.sub.name, self.sub.channel)
        try:
            if t.body is None:
                t.body = self._render(t.delivery)
            t.attempt += 1
            t.body["sent_at"] = time.time()   # signed with the body: receivers reject stale copies
            self.transport.deliver(t.body, t.attempt, time.monotonic() + self.sub.timeout)
        except Refused as exc:
            self._give_up(t, f"refused, not retried: {exc}"[:500])
            return
        except Exception as exc:  # noqa: BLE001 - any other failure of a receiver is retried until retry_for
            error = f"{type(exc).__name__}: {exc}"[:300]
            elapsed = time.monotonic() - t.first
            delay = self._delay(t.attempt, getattr(exc, "retry_after", None))
            if (self.sub.tries is not None and t.attempt >= self.sub.tries) or elapsed + delay > self.sub.retry_for:
                self._give_up(t, f"failed {t.attempt} times in {elapsed:.0f} s, last: {error}")
                return
            self.metrics.retries.labels(*labels).inc()
            event(log, "delivery_retry", logging.WARNING, subscriber=self.sub.name, key=t.delivery.key,
                  attempt=t.attempt, error=error, retry_in=round(delay, 2))
            t.due, t.seq = time.monotonic() + delay, next(self._seq)
            heapq.heappush(self._retries, t)
            return
        self.metrics.delivered.labels(*labels).inc()
        self.metrics.latency.labels(*labels).observe(time.monotonic() - t.first)
        self._done(t.delivery, "delivered")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half to all of the step), or the receiver's longer Retry-After."""
        step = min(self.sub.backoff * 2 ** (attempt - 1), self.sub.max_backoff) * random.uniform(0.5, 1.0)
        if retry_after is not None:   # at least the backoff: "Retry-After: 0" (or a past date) is no licence to hammer
            return min(max(retry_after, step), self.sub.retry_for)
        return step

    def _render(self, delivery: Delivery) -> dict[str, Any]:
        """The body, listing as many alerts as the rule's bound and the channel's size limit allow."""
        shape, limit = self._shape(delivery), self.transport.limit()
        listed = max(1, min(shape.listed, len(delivery.notes)))
        while True:
            part = Delivery(delivery.subscriber, delivery.notes[:listed], delivery.origins[:listed])
            body = summarise(render(part, shape.links), delivery, listed, shape.more_url)
            size = self.transport.size(body)
            if size <= limit:
                return body
            if listed == 1:
                raise Refused(f"one alert takes {size:,} bytes, more than the channel's {limit:,}")
            listed = max(1, min(listed - 1, int(listed * limit / size * 0.9)))

    def _give_up(self, t: _Try, reason: str) -> None:
        event(log, "delivery_failed", logging.ERROR, subscriber=self.sub.name, key=t.delivery.key, error=reason)
        body = t.body or {"idempotency_key": t.delivery.key, "notes": [n.key for n in t.delivery.notes][:1000]}
        if not self._dead(self.sub, json.dumps(body, ensure_ascii=False).encode(),
                          f"{self.sub.channel} {self.sub.name}: {reason}"):
            return  # stopping before Kafka took the dead letter: stays in the outbox
        self.metrics.deadlettered.labels(self.sub.name, self.sub.channel).inc()
        self._done(t.delivery, "deadlettered")


class _Watchdog:
    """Closes a connection when an attempt's deadline passes, whatever the receiver is doing (a
    receiver that drips a byte every few seconds never trips a socket timeout)."""

    def __init__(self, deadline: float, close: Callable[[], None]) -> None:
        self.fired = False

        def fire() -> None:
            self.fired = True
            close()
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Retry("the attempt's deadline passed")
    return left


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


MQTT_RETRIABLE = {0x80, 0x83, 0x89, 0x97}   # unspecified, implementation error, server busy, quota exceeded


@transport("mqtt")
def mqtt_transport(sub: Subscriber, ctx: Any) -> Transport:
    """Publish on city/alerts/<domain>/<severity> (QoS 1); confirmed by a PUBACK whose reason code is a
    success. The limit is the broker's max_packet_size from CONNACK (`ctx.broker_max_packet`): a
    larger packet would make the broker drop the connection, again after every reconnect."""
    client, pubacks = ctx.mqtt, ctx.pubacks

    def topic(body: dict[str, Any]) -> str:
        first = body["alerts"][0]
        return f"city/alerts/{first['domain']}/{first['severity']}"

    def limit() -> int:
        return min(filter(None, [sub.max_bytes, ctx.broker_max_packet, 256 * 1024])) - 1024   # headers, properties

    def deliver(body: dict[str, Any], attempt: int, deadline: float) -> None:
        if not client.is_connected():   # paho would queue it and send every queued copy on reconnect
            raise Retry("not connected to the MQTT broker (reconnecting)")
        payload = _json(body)
        if len(payload) > limit():
            raise Refused(f"{len(payload):,} bytes, more than the broker's limit {limit():,}")
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("idempotency-key", body["idempotency_key"])]
        info = client.publish(topic(body), payload, qos=1, properties=props)
        info.wait_for_publish(_remaining(deadline))
        if not info.is_published():
            raise Retry(f"no PUBACK within {sub.timeout:g} s (is the broker up?)")
        reason = pubacks.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            text = f"the broker refused the publish: {reason.getName()}"
            if reason.value in MQTT_RETRIABLE:
                raise Retry(text)
            raise Refused(text + " (check the router's ACL)")
    return Transport(deliver, lambda body: len(_json(body)) + len(topic(body)) + 100, limit)


def _retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (delta seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max((email.utils.parsedate_to_datetime(value).timestamp() - time.time()), 0.0)
    except (TypeError, ValueError, IndexError):
        return None


def webhook_signature(secret: bytes, data: bytes) -> str:
    """The X-Smartcity-Signature of a webhook body (which carries its `sent_at` time)."""
    return "sha256=" + hmac.new(secret, data, hashlib.sha256).hexdigest()


@transport("webhook")
def webhook_transport(sub: Subscriber, ctx: Any) -> Transport:
    """POST the JSON body signed with HMAC-SHA256 (X-Smartcity-Signature: sha256=<hex>); the body's
    `sent_at` (unix s, set at every attempt) is covered by the signature: receivers reject a body
    whose sent_at is more than a few minutes old (a replay) and drop repeated idempotency keys.
    5xx, 408, 429 (Retry-After honoured), timeouts and lost connections are retried; other 4xx and
    redirects are refused (a 307/308 to the same host and port is followed when redirects = "same-host")."""
    secret = sub.secret()
    limit = sub.max_bytes or 1024 * 1024

    def post(url: str, data: bytes, key: str, attempt: int, deadline: float) -> tuple[int, Any]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"not an http(s) URL: {url!r}")
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=_remaining(deadline))
        dog = _Watchdog(deadline, lambda: _shut(conn.sock))
        try:
            conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=data, headers={
                "Content-Type": "application/json; charset=utf-8", "X-Smartcity-Signature": webhook_signature(secret, data),
                "X-Smartcity-Attempt": str(attempt), "X-Smartcity-Idempotency-Key": key})
            response = conn.getresponse()
            response.read(64 * 1024)
            if dog.fired:   # cut off mid-answer: what was read is no confirmation
                raise OSError("cut off at the deadline")
            return response.status, response.headers
        except (OSError, http.client.HTTPException) as exc:
            if dog.fired:
                raise Retry(f"no complete answer from {url} within {sub.timeout:g} s (the whole attempt)") from None
            raise Retry(f"{type(exc).__name__} talking to {url}: {exc}") from None
        finally:
            dog.cancel()
            conn.close()

    def deliver(body: dict[str, Any], attempt: int, deadline: float) -> None:
        data, url = _json(body), sub.url or ""
        for _ in range(3):
            status, headers = post(url, data, body["idempotency_key"], attempt, deadline)
            if 200 <= status < 300:
                return
            if status in (307, 308) and sub.redirects == "same-host":
                target = urllib.parse.urljoin(url, headers.get("Location", ""))
                a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(target)
                if (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port):
                    url = target
                    continue
            if 300 <= status < 400:
                raise Refused(f"HTTP {status} from {url} to {headers.get('Location', '')[:200]!r}: redirects are not "
                              "followed; set url to the final address (or redirects = \"same-host\" for 307/308)")
            if status >= 500 or status in (408, 425, 429):
                raise Retry(f"HTTP {status} from {url}", _retry_after(headers.get("Retry-After")))
            raise Refused(f"HTTP {status} from {url}")
        raise Refused(f"more than 2 redirects from {sub.url}")
    return Transport(deliver, lambda body: len(_json(body)), lambda: limit)


CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _email(sub: Subscriber, body: dict[str, Any]) -> EmailMessage:
    first = body["alerts"][0]
    msg = EmailMessage()
    msg["From"], msg["To"] = sub.sender, ", ".join(sub.to)
    msg["Message-ID"] = f"<{body['idempotency_key'].replace(':', '.')}@smartcity.laoshan>"
    msg["X-Smartcity-Idempotency-Key"] = body["idempotency_key"]
    total = body.get("summary", {}).get("total", len(body["alerts"]))
    subject = (f"[{body['kind'].upper()}/{KIND_ZH.get(body['kind'], '')}] {first['title_en']} / "
               f"{first['title_zh']}" + (f" (+{total - 1})" if total > 1 else ""))
    msg["Subject"] = CONTROL.sub(" ", subject)   # a title may hold a line break: a header may not (nor inject one)
    msg.set_content(body["text_zh"] + "\n\n" + body["text_en"] + "\n")
    return msg


@transport("email")
def email_transport(sub: Subscriber, ctx: Any) -> Transport:
    """Send a plain-text bilingual e-mail; confirmed when the server accepted it for every recipient.
    4xx answers, timeouts and lost connections are retried; 5xx refusals are dead-lettered."""
    limit = sub.max_bytes or 512 * 1024

    def deliver(body: dict[str, Any], attempt: int, deadline: float) -> None:
        msg = _email(sub, body)
        holder: dict[str, smtplib.SMTP] = {}
        dog = _Watchdog(deadline, lambda: _shut(getattr(holder.get("smtp"), "sock", None)))
        try:
            smtp = holder["smtp"] = smtplib.SMTP(timeout=_remaining(deadline))
            try:   # connect after the watchdog can see the socket: a greeting dripped line by line is cut off too
                smtp.connect(sub.smtp_host, sub.smtp_port)
                refused = smtp.send_message(msg)   # returns only after the server's whole 250 answer
            finally:   # accepted is delivered: a failed QUIT afterwards must not make us send it again
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(c >= 500 for c in codes):
                raise Refused(f"SMTP server refused every recipient: {exc.recipients}") from None
            raise Retry(f"SMTP server deferred recipients: {exc.recipients}") from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise Refused(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
            raise Retry(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
        except (OSError, smtplib.SMTPException) as exc:
            if dog.fired:
                raise Retry(f"the SMTP server did not finish within {sub.timeout:g} s (the whole attempt)") from None
            raise Retry(f"{type(exc).__name__}: {exc}") from None
        finally:
            dog.cancel()
        if refused:   # some accepted it: a retry would send it to them again
            raise Refused(f"SMTP server refused {sorted(refused)} (the others accepted it)")
    return Transport(deliver, lambda body: len(_email(sub, body).as_bytes()), lambda: limit)
