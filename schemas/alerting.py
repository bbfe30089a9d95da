"""The alert loop's contracts: what arrives on `alerts.events` (rule observations, acknowledgements,
silences) and its enums, validated at the router's boundary so that no record can stop it.

A record that does not parse into one of these models is dead-lettered with the validation error as
its reason; the router never touches an unvalidated value.
"""
from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SEVERITIES = ("info", "minor", "major", "critical")
Severity = Literal["info", "minor", "major", "critical"]
Kind = Literal["firing", "reminder", "escalated", "resolved", "acknowledged"]
KINDS: tuple[str, ...] = ("firing", "reminder", "escalated", "resolved", "acknowledged")
ALERT_ID = r"^[0-9a-f]{8}[0-9a-f]{4}-[1-9][0-9]{0,9}$"
MAX_EVENT_BYTES = 16 * 1024      # an observation or command is a few hundred bytes; more is not ours
LABEL = r"^[^\x00-\x1f\x7f]{1,200}$"   # rule, entity, domain, site: printable, bounded
RULE = r"^[^\x00-\x1f\x7f/]{1,200}$"   # and no "/": the alert key <rule>/<entity> must split one way
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Observation(BaseModel):
    """One rule evaluated for one entity and window (processors/plugin.py Observation.to_dict)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    type: Literal["observation"] = "observation"
    rule: str = Field(pattern=RULE, description="rule name, e.g. air.pm25_daily (no \"/\")")
    entity: str = Field(pattern=LABEL, description="what the rule judged: a sensor, site or zone id")
    domain: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="domain name, e.g. air")
    site: str = Field(pattern=LABEL, description="site of the entity")
    severity: Severity = Field(description="severity when firing")
    value: Finite = Field(description="the judged value, in the rule's unit")
    threshold: Finite = Field(description="the limit the value is judged against, same unit")
    breach: bool = Field(description="the value breaches the rule")
    ts: int = Field(gt=0, lt=2**62, description="event time of the window, UTC ns since the epoch")
    title_en: str = Field("", max_length=500)
    title_zh: str = Field("", max_length=500)
    target: str = Field("", max_length=1000, description="the plan target behind the rule")

    @property
    def key(self) -> str:
        return f"{self.rule}/{self.entity}"


class AckCommand(BaseModel):
    """An acknowledgement; `at` is when an intake (router, CLI) received it, never a client's claim."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    type: Literal["ack"]
    id: str = Field(pattern=ALERT_ID, description="alert id, as in notifications")
    by: str = Field(min_length=1, max_length=200, description="who acknowledges")
    comment: str = Field("", max_length=1000)
    source: str = Field("cli", max_length=40, description="intake: cli, mqtt, link")
    at: Finite = Field(gt=0, lt=1e11, description="unix seconds when the intake received it")


class SilenceCommand(BaseModel):
    """Mutes notifications of alerts whose labels match every glob matcher between start and end."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    type: Literal["silence"]
    id: str = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,100}$")
    matchers: dict[Literal["rule", "entity", "domain", "site", "severity"], Annotated[str, Field(max_length=200)]] = Field(
        min_length=1, description="at least one: a silence without matchers would mute every alert")
    start: Finite = Field(ge=0, lt=1e11, description="unix seconds")
    end: Finite = Field(gt=0, lt=1e11, description="unix seconds")
    created_by: str = Field("", max_length=200)
    comment: str = Field("", max_length=1000)

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: float, info: Any) -> float:
        if end <= info.data.get("start", -math.inf):
            raise ValueError("a silence must end after it starts")
        return end


Event = Annotated[Union[Observation, AckCommand, SilenceCommand], Field(discriminator="type")]
_EVENT = TypeAdapter(Event)


class EventRejected(ValueError):
    """An alerts.events record that is not a valid observation or command; says why."""


def parse_event(raw: bytes | None) -> Observation | AckCommand | SilenceCommand:
    """The typed record of one alerts.events value; raises EventRejected with the reason."""
    if raw is None:
        raise EventRejected("empty record (a tombstone) on alerts.events")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventRejected(f"record of {len(raw):,} bytes, more than {MAX_EVENT_BYTES:,}: not an observation")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EventRejected(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EventRejected(f"expected a JSON object, got {type(value).__name__}")
    value.setdefault("type", "observation")
    try:
        return _EVENT.validate_python(value)
    except ValidationError as exc:
        raise EventRejected(f"invalid {str(value.get('type'))[:20]}: " + "; ".join(
            f"{_where(e['loc'])}: {e['msg']} (got {_short(e.get('input'))})"
            for e in exc.errors()[:5])) from None


class FieldAck(BaseModel):
    """What a field app publishes to ack/alerts/<id>; its own `at` is ignored (the router stamps it)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    by: str = Field("field-app", min_length=1, max_length=100)
    comment: str = Field("", max_length=500)


def parse_field_ack(raw: bytes | None) -> FieldAck:
    """The typed body of a field app's acknowledgement; raises EventRejected with the reason."""
    try:
        value = json.loads(raw or b"{}")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EventRejected(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EventRejected(f'expected a JSON object like {{"by": "name"}}, got {type(value).__name__}')
    try:
        return FieldAck.model_validate(value)
    except ValidationError as exc:
        raise EventRejected("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])) from None


def valid_alert_id(text: str) -> bool:
    return re.fullmatch(ALERT_ID, text) is not None


def _where(loc: tuple[Any, ...]) -> str:
    """The field a union's error is about (its first element names the union member)."""
    return ".".join(map(str, loc[1:])) or (str(loc[0]) if loc else "type")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
