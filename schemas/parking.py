"""Parking: lot-level counts (capacity, occupied or free) and spot-level occupancy.

The plan (l.163, l.192) asks for every commercial lot networked and 20,000 new public spaces.
A lot reports `capacity` with `occupied` or `free`; a spot sensor reports `occupied` as 0/1.
"""
import numpy as np
from pydantic import model_validator

from schemas.plugin import Domain, DomainValues, flag, measure


class ParkingValues(DomainValues):
    capacity: float | None = measure("spaces", 1, 100_000, "spaces in the lot")
    occupied: float | None = measure("spaces", 0, 100_000, "occupied spaces (lot), or 0/1 (spot)")
    free: float | None = measure("spaces", 0, 100_000, "free spaces")
    spot: float | None = flag("1 when the reading is from a single-spot sensor")

    @classmethod
    def check_columns(cls, columns: dict[str, np.ndarray]) -> np.ndarray:
        cap = columns["capacity"]
        with np.errstate(invalid="ignore"):
            over = (columns["occupied"] > cap) | (columns["free"] > cap)
            spot = (columns["spot"] == 1) & ~np.isin(columns["occupied"], (0, 1)) & ~np.isnan(columns["occupied"])
        return over | spot

    @model_validator(mode="after")
    def _within_capacity(self) -> "ParkingValues":
        if self.capacity is not None:
            for name in ("occupied", "free"):
                value = getattr(self, name)
                if value is not None and value > self.capacity:
                    raise ValueError(f"{name}={value:g} exceeds capacity={self.capacity:g}")
        if self.spot and self.occupied not in (None, 0, 1):
            raise ValueError(f"a spot sensor's occupied must be 0 or 1, got {self.occupied:g}")
        return self


DOMAIN = Domain(
    name="parking", title="Parking occupancy", title_zh="停车泊位", values=ParkingValues,
    standard="plan l.163/l.192; occupancy bands from SFpark/Shoup practice", partitions=6,
)
