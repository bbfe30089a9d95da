"""The Laoshan site registry (sites.toml): where the sensors stand, which sites must report, and the
operator's facts the indicators are measured against (the parking baseline). An operator registry
(SMARTCITY_SITES, same format) replaces the shipped file."""
from __future__ import annotations

import datetime as dt
import os
import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

REGISTRY = Path(__file__).with_name("sites.toml")


class Site(BaseModel):
    """A monitoring site: an air station, a buoy, a parking lot, a forest zone or a community."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    name: str
    name_zh: str
    domain: str
    lat: float = Field(ge=36.05, le=36.35, description="inside Laoshan district")
    lon: float = Field(ge=120.40, le=120.75, description="inside Laoshan district")
    kind: str | None = None
    capacity: int | None = Field(None, gt=0, description="parking spaces (lots only)")
    reports: bool = Field(True, description="expected to report every day: a silent one lowers coverage indicators")


class ParkingFacts(BaseModel):
    """The operator's parking facts; spaces added = networked public spaces - baseline."""

    model_config = ConfigDict(extra="forbid")

    baseline_public_spaces: int | None = Field(
        None, ge=0, description="public spaces networked at the plan's baseline (end of 2020); None: not set, "
                                "so 'spaces added' is reported as 'baseline not set' instead of a made-up 0")
    baseline_source: str = Field("", description="where the baseline comes from (survey, bureau report)")
    baseline_date: dt.date | None = None


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: list[Site]
    parking: ParkingFacts = ParkingFacts()


def registry_path(path: Path | None = None) -> Path:
    """The registry in use: the argument, else SMARTCITY_SITES, else the shipped sites.toml."""
    return path or (Path(os.environ["SMARTCITY_SITES"]) if os.environ.get("SMARTCITY_SITES") else REGISTRY)


@lru_cache(maxsize=4)
def load_registry(path: Path | None = None) -> Registry:
    """The whole registry, validated; errors name the file."""
    path = registry_path(path)
    try:
        with open(path, "rb") as fh:
            return Registry.model_validate(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ValueError(f"site registry {path}: {exc}") from exc


def load_sites(path: Path | None = None) -> tuple[Site, ...]:
    """All sites of the registry, validated."""
    return tuple(load_registry(path).site)


def sites_for(domain: str, path: Path | None = None) -> list[Site]:
    """The sites of one domain; a ValueError names the domain when it has none."""
    found = [s for s in load_sites(path) if s.domain == domain]
    if not found:
        raise ValueError(f"no sites for domain {domain!r} in {registry_path(path)}")
    return found


def expected_sites(domain: str, path: Path | None = None) -> list[str]:
    """Ids of the sites of `domain` that must report (the denominator of coverage indicators)."""
    return sorted(s.id for s in sites_for(domain, path) if s.reports)
