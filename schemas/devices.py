"""Device profiles for LoRaWAN sources: which domain a device feeds and how its fields map to ours.

A profile is chosen by The Things Stack application id or ChirpStack device-profile name. Mapping is
data, not code: rename, scale/offset, or derive a bin's fill level from an ultrasonic distance.
"""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_FILE = Path(__file__).with_name("devices.toml")


class FieldMap(BaseModel):
    """How one decoded device field becomes one domain field: value * scale + offset."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the domain field it becomes")
    scale: float = 1.0
    offset: float = 0.0
    depth: float | None = Field(None, gt=0, description="bin depth; fill = 1 - distance/depth")

    def apply(self, raw: float) -> float:
        value = raw * self.scale + self.offset
        return 1.0 - value / self.depth if self.depth else value


class DeviceProfile(BaseModel):
    """A device profile: its domain, a default site, and its field mapping."""

    model_config = ConfigDict(extra="forbid")

    domain: str
    site: str | None = Field(None, description="site when the device does not carry one (ChirpStack tag `site`)")
    fields: dict[str, FieldMap | str] = Field(description="device field -> domain field (or a FieldMap)")

    def map_values(self, decoded: dict[str, Any]) -> dict[str, Any]:
        """The domain values from a decoded payload; device fields not in the profile are ignored."""
        out: dict[str, Any] = {}
        for name, rule in self.fields.items():
            if name not in decoded:
                continue
            raw = decoded[name]
            if isinstance(rule, str):
                out[rule] = raw
            elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
                out[rule.field] = rule.apply(raw)
            else:
                out[rule.field] = raw  # left to validation, which names the field and the bad value
        return out


class DeviceProfiles(BaseModel):
    """The profile file: `[profiles.<name>]` tables."""

    profiles: dict[str, DeviceProfile] = {}


@lru_cache(maxsize=8)
def load_profiles(path: Path = DEFAULT_FILE) -> DeviceProfiles:
    """Read and validate a device-profile TOML file."""
    with open(path, "rb") as fh:
        return DeviceProfiles.model_validate(tomllib.load(fh))
