"""The canonical reading envelope that enters Kafka, and the dead-letter record for what cannot."""
from __future__ import annotations

import base64
import hashlib
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["native", "senml", "ttn", "chirpstack"]
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"


class Reading(BaseModel):
    """One sensor's values at one instant, validated against its domain (see docs/architecture.md, Contracts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sensor_id: str = Field(pattern=IDENT, description="unique sensor id; the Kafka key")
    domain: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="domain name, e.g. air")
    site: str = Field(pattern=IDENT, description="monitoring site / station / lot / zone id")
    ts: int = Field(gt=0, description="event time, UTC, nanoseconds since the Unix epoch")
    seq: int | None = Field(None, ge=0, description="per-sensor sequence number (LoRaWAN f_cnt)")
    lat: float | None = Field(None, ge=-90, le=90, description="latitude, WGS 84 degrees")
    lon: float | None = Field(None, ge=-180, le=180, description="longitude, WGS 84 degrees")
    values: dict[str, float] = Field(min_length=1, description="field name -> value in the schema's unit")
    source: Source = Field(description="payload format the reading arrived in")
    received_at: int = Field(gt=0, description="bridge receive time, UTC ns since epoch")

    def kafka_key(self) -> bytes:
        return self.sensor_id.encode()


DEADLETTER_RAW_MAX = 64 * 1024      # bytes of the message kept in a dead letter (the bridge's setting overrides)
DEADLETTER_REASON_MAX = 4096        # characters of the reason kept


class DeadLetter(BaseModel):
    """A message that failed decoding or validation, kept with everything needed to replay or trace it.

    Bounded in size whatever arrived: at most `raw_max` bytes of the message are kept (`raw_truncated`
    says when less than all), with the full message's size and SHA-256, and the reason is cut too, so
    that a 10 MB payload gives a dead letter of tens of KiB that Kafka accepts."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(description="MQTT topic the message arrived on")
    raw_b64: str = Field(description="the message bytes (at most raw_max of them), base64")
    raw_size: int = Field(0, ge=0, description="size of the whole message in bytes")
    raw_sha256: str = Field("", description="SHA-256 of the whole message, hex")
    raw_truncated: bool = Field(False, description="raw_b64 holds only the first bytes of the message")
    reason: str = Field(description="why it was rejected, precise enough to fix the device")
    source: Source | None = Field(None, description="the format it was decoded as, when known")
    received_at: int = Field(description="receive time, UTC ns since epoch")

    @classmethod
    def of(cls, topic: str, raw: bytes, reason: str, source: Source | None = None,
           received_at: int | None = None, *, raw_max: int = DEADLETTER_RAW_MAX,
           reason_max: int = DEADLETTER_REASON_MAX) -> "DeadLetter":
        kept = raw[:raw_max]
        topic, reason = _printable(topic), _printable(reason)
        if len(reason) > reason_max:
            reason = reason[:reason_max - 40] + f"... ({len(reason) - reason_max + 40} more characters)"
        return cls(topic=topic[:reason_max], raw_b64=base64.b64encode(kept).decode(), raw_size=len(raw),
                   raw_sha256=hashlib.sha256(raw).hexdigest(), raw_truncated=len(kept) < len(raw),
                   reason=reason, source=source, received_at=received_at or time.time_ns())

    def raw(self) -> bytes:
        """The bytes kept (the whole message unless raw_truncated)."""
        return base64.b64decode(self.raw_b64)


def _printable(text: str) -> str:
    """Text that encodes as UTF-8 whatever it holds (a lone surrogate from a JSON escape becomes \\udxxx)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
