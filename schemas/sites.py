"""The Laoshan site registry (sites.toml): where the simulated sensors stand, for maps and generators."""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

REGISTRY = Path(__file__).with_name("sites.toml")


class Site(BaseModel):
    """A monitoring site: an air station, a buoy, a parking lot, a forest zone or a community."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    name: str
    name_zh: str
    domain: str
    lat: float = Field(ge=36.05, le=36.35, description="inside Laoshan district")
    lon: float = Field(ge=120.40, le=120.75, description="inside Laoshan district")
    kind: str | None = None
    capacity: int | None = Field(None, gt=0, description="parking spaces (lots only)")


class Registry(BaseModel):
    site: list[Site]


@lru_cache(maxsize=2)
def load_sites(path: Path = REGISTRY) -> tuple[Site, ...]:
    """All sites of the registry, validated."""
    with open(path, "rb") as fh:
        return tuple(Registry.model_validate(tomllib.load(fh)).site)


def sites_for(domain: str, path: Path = REGISTRY) -> list[Site]:
    """The sites of one domain; a ValueError names the domain when it has none."""
    found = [s for s in load_sites(path) if s.domain == domain]
    if not found:
        raise ValueError(f"no sites for domain {domain!r} in {path}")
    return found
