"""The canonical reading envelope that enters Kafka, and the dead-letter record for what cannot."""
from __future__ import annotations

import base64
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["native", "senml", "ttn", "chirpstack"]
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"


class Reading(BaseModel):
    """One sensor's values at one instant, validated against its domain (see DESIGN.md, Contracts)."""

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


class DeadLetter(BaseModel):
    """A message that failed decoding or validation, kept with everything needed to replay it."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(description="MQTT topic the message arrived on")
    raw_b64: str = Field(description="the message bytes, base64")
    reason: str = Field(description="why it was rejected, precise enough to fix the device")
    source: Source | None = Field(None, description="the format it was decoded as, when known")
    received_at: int = Field(description="receive time, UTC ns since epoch")

    @classmethod
    def of(cls, topic: str, raw: bytes, reason: str, source: Source | None = None,
           received_at: int | None = None) -> "DeadLetter":
        return cls(topic=topic, raw_b64=base64.b64encode(raw).decode(), reason=reason, source=source,
                   received_at=received_at or time.time_ns())

    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)
