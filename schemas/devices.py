"""Device profiles for LoRaWAN sources: which domain a device feeds and how its fields map to ours.

A profile is chosen by The Things Stack application id or ChirpStack device-profile name. Mapping is
data, not code: rename, scale/offset, or derive a bin's fill level from an ultrasonic distance.
The shipped `devices.toml` is read first; an operator's file named by `SMARTCITY_DEVICES` adds
profiles and replaces those of the same name. Both are validated when a service starts: a mistake
stops it with the file, the line and the fix (`DeviceProfileError`), instead of dead-lettering every
LoRaWAN message later.
"""
from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.bounds import show
from schemas.registry import domain as get_domain
from schemas.registry import domains

DEFAULT_FILE = Path(__file__).with_name("devices.toml")
ENV = "SMARTCITY_DEVICES"
# A decimal as a formatter writes it: one way to match each string (no nested or adjacent `\d`
# repetitions), so a string of 256 KiB of digits is refused in linear time, not by backtracking.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)


class DeviceProfileError(ValueError):
    """A device-profile file that cannot be used; the message names the file, the line and the fix."""


class FieldMap(BaseModel):
    """How one decoded device field becomes one domain field: value * scale + offset."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the domain field it becomes")
    scale: float = Field(1.0, allow_inf_nan=False)
    offset: float = Field(0.0, allow_inf_nan=False)
    depth: float | None = Field(None, gt=0, allow_inf_nan=False, description="bin depth; fill = 1 - distance/depth")
    flag: bool = Field(False, description="the device writes this field as a boolean (a parking-spot sensor's "
                                          "occupied: true): true/false become 1/0, numbers pass unchanged")

    @model_validator(mode="after")
    def _flag_alone(self) -> "FieldMap":
        if self.flag and (self.scale != 1.0 or self.offset != 0.0 or self.depth is not None):
            raise ValueError("a flag rule (flag = true) takes no scale, offset or depth: true/false become 1/0")
        return self

    def apply(self, raw: float) -> float:
        value = raw * self.scale + self.offset
        return 1.0 - value / self.depth if self.depth else value


class DeviceProfile(BaseModel):
    """A device profile: its domain, a default site, its field mapping and how its formatter writes numbers."""

    model_config = ConfigDict(extra="forbid")

    domain: str
    site: str | None = Field(None, description="site when the device does not carry one (ChirpStack tag `site`)")
    fields: dict[str, FieldMap | str] = Field(description="device field -> domain field (or a FieldMap)")
    numbers_as_strings: bool = Field(False, description="the payload formatter writes numbers as strings ('35.5')")
    latitude: str = Field("latitude", description="decoded field carrying the device's GPS latitude, if any")
    longitude: str = Field("longitude", description="decoded field carrying the device's GPS longitude, if any")

    @model_validator(mode="after")
    def _known_domain_and_fields(self) -> "DeviceProfile":
        if self.domain not in domains():
            raise ValueError(f"domain {self.domain!r} is unknown; use one of: {', '.join(domains())}")
        known = get_domain(self.domain).fields
        for name, rule in self.fields.items():
            target = rule if isinstance(rule, str) else rule.field
            if target not in known:
                raise ValueError(f"device field {name!r} maps to {target!r}, which is not a field of domain "
                                 f"{self.domain}; use one of: {', '.join(known)}")
        return self

    def number(self, raw: Any) -> Any:
        """A decoded value as a number when the formatter wrote it as a decimal string and the profile
        says so; anything else unchanged (validation names it)."""
        if self.numbers_as_strings and isinstance(raw, str) and _DECIMAL.fullmatch(raw.strip()):
            return float(raw)
        return raw

    def map_values(self, decoded: dict[str, Any]) -> dict[str, Any]:
        """The domain values from a decoded payload; device fields not in the profile are ignored.
        ValueError names a device field whose string or boolean this profile cannot turn into its
        domain field (what is left, validation checks like every other format's)."""
        out: dict[str, Any] = {}
        for name, rule in self.fields.items():
            if name not in decoded:
                continue
            raw = self.number(decoded[name])
            if isinstance(raw, str):
                raise ValueError(self._string_problem(name, raw))
            if isinstance(rule, str):
                out[rule] = raw
            elif isinstance(raw, bool) and rule.flag:
                out[rule.field] = float(raw)
            elif isinstance(raw, bool):
                raise ValueError(f"device field {name!r} is the boolean {str(raw).lower()}; its rule into "
                                 f"{rule.field!r} (scale, offset, depth) needs a number")
            elif isinstance(raw, (int, float)) and abs(raw) < 1e300:
                out[rule.field] = rule.apply(raw)
            else:
                out[rule.field] = raw  # left to validation, which names the field and the bad value
        return out

    def _string_problem(self, name: str, raw: str) -> str:
        """Why a string in a device field is not one of its numbers, and what to change."""
        if self.numbers_as_strings:
            return (f"device field {name!r} is the string {show(raw)}, not a decimal number (this profile reads "
                    "numbers written as strings, like '35.5' or '-1.5e3')")
        if _DECIMAL.fullmatch(raw.strip()):
            return (f"device field {name!r} is the string {show(raw)}: a payload formatter that writes numbers as "
                    "strings needs numbers_as_strings = true in its device profile")
        return f"device field {name!r} must be a number, got the string {show(raw)}"


class DeviceProfiles(BaseModel):
    """The profile file: `[profiles.<name>]` tables."""

    model_config = ConfigDict(extra="forbid")

    profiles: dict[str, DeviceProfile] = {}


def read_profiles(path: Path) -> DeviceProfiles:
    """Read and validate one profile file; DeviceProfileError names the file, the line and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceProfileError(f"device profiles {path}: cannot be read ({exc}); check {ENV} and the file") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeviceProfileError(f"device profiles {path}: not valid TOML: {exc}; fix the syntax there") from None
    try:
        return DeviceProfiles.model_validate(doc)
    except ValidationError as exc:
        errors = [(tuple(str(p) for p in e["loc"] if not str(p).startswith(("FieldMap", "str"))), e)
                  for e in exc.errors(include_url=False)]
        problems = []
        for loc, err in errors:
            if err["type"] == "string_type" and any(o[:len(loc)] == loc and o != loc for o, _ in errors):
                continue  # `field = {..}` with a bad key also fails the plain-string alternative: say it once
            named = re.search(r"device field '([^']+)'", err["msg"])
            line = _line_of(text, [*loc, named.group(1)] if named else list(loc))
            problems.append(f"{path}, line {line}: {'.'.join(loc)}: {err['msg']}{_hint(err['type'])}")
        raise DeviceProfileError("device profiles are invalid:\n  " + "\n  ".join(dict.fromkeys(problems))) from None


def _line_of(text: str, loc: list[str]) -> int:
    """The line of the key a validation error points at, else of its profile's table, else 1."""
    if len(loc) < 2 or loc[0] != "profiles":
        return 1
    lines = text.splitlines()
    header = re.compile(rf"^\s*\[\s*profiles\.\"?{re.escape(loc[1])}\"?\s*[\].]")
    start = next((n for n, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return 1
    for key in reversed(loc[2:]):  # the deepest key that can be found below the profile's header
        pattern = re.compile(rf"(^|[{{,]\s*)\"?{re.escape(key)}\"?\s*=")
        for n in range(start, len(lines)):
            if n > start and lines[n].lstrip().startswith("[") and not header.match(lines[n]):
                break
            if pattern.search(lines[n].split("#")[0]):
                return n + 1
    return start + 1


def _hint(kind: str) -> str:
    return {"extra_forbidden": " (remove it, or check its spelling: domain, site, fields, numbers_as_strings, "
                               "latitude, longitude; field maps take field, scale, offset, depth, flag)",
            "missing": " (add it)"}.get(kind, "")


@lru_cache(maxsize=8)
def _load(path: Path, operator: str | None) -> DeviceProfiles:
    shipped = read_profiles(path)
    if not operator:
        return shipped
    extra = read_profiles(Path(operator))
    return DeviceProfiles(profiles={**shipped.profiles, **extra.profiles})


def load_profiles(path: Path = DEFAULT_FILE) -> DeviceProfiles:
    """The shipped profiles with the operator's file (`SMARTCITY_DEVICES`) on top, validated and cached."""
    return _load(path, os.environ.get(ENV) or None)
