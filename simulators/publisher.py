"""MQTT publisher: QoS 1 over one connection per broker account, with an optional rate limit.

Device accounts are named after their domain (the ACL lets `air` publish only under city/air/...);
LoRaWAN network-server topics use the `lorawan` account.
"""
from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt

from infra.clients import mqtt_client, mqtt_connect
from infra.settings import Settings


def account_for(topic: str) -> str:
    """The broker account allowed to publish on `topic`."""
    if topic.startswith("city/"):
        return topic.split("/", 2)[1]
    return "lorawan"


class Publisher:
    """Publishes payloads; counts what the broker acknowledged and what it refused."""

    def __init__(self, settings: Settings, *, qos: int = 1, max_inflight: int = 2000,
                 client_prefix: str = "sim") -> None:
        self.settings = settings
        self.qos = qos
        self.max_inflight = max_inflight
        self.client_prefix = client_prefix
        self.clients: dict[str, mqtt.Client] = {}
        self.sent = 0
        self.acked = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._infos: list[mqtt.MQTTMessageInfo] = []

    def _client(self, account: str) -> mqtt.Client:
        client = self.clients.get(account)
        if client is None:
            client = mqtt_client(self.settings, f"{self.client_prefix}-{account}-{id(self):x}", username=account)
            client.max_inflight_messages_set(self.max_inflight)
            client.max_queued_messages_set(0)
            client.on_publish = self._on_publish
            connected = threading.Event()
            failure: list[str] = []

            def on_connect(c, u, flags, reason, props) -> None:  # noqa: ANN001
                if reason.is_failure:
                    failure.append(reason.getName())
                connected.set()

            client.on_connect = on_connect
            mqtt_connect(client, self.settings)
            client.loop_start()
            if not connected.wait(15) or failure:
                client.loop_stop()
                raise ConnectionError(f"MQTT account {account!r} could not connect: {failure or 'timeout'}")
            self.clients[account] = client
        return client

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: mqtt.ReasonCode,
                    properties: object) -> None:
        with self._lock:
            if reason.is_failure:
                self.refused += 1
            else:
                self.acked += 1

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Queue one message; paho keeps at most `max_inflight` unacknowledged per connection. While the
        connection is down paho keeps a QoS>0 message and sends it on reconnect (rc NO_CONN): queued,
        and wait() covers its PUBACK; anything else is an error."""
        info = self._client(account_for(topic)).publish(topic, payload, qos=self.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and not (info.rc == mqtt.MQTT_ERR_NO_CONN and self.qos > 0):
            raise ConnectionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        self.sent += 1
        return info

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the broker acknowledged (or refused) everything published so far."""
        deadline = time.monotonic() + timeout
        while self.acked + self.refused < self.sent * (self.qos > 0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker acknowledged {self.acked + self.refused} of {self.sent} messages")
            time.sleep(0.01)

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
        self.clients.clear()
