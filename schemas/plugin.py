"""What every domain plug-in declares: its value model (fields, units, physical ranges) and metadata.

A domain module (`schemas/<domain>.py`) defines a `DomainValues` subclass and a module-level
`DOMAIN = Domain(...)`; the registry finds it, so adding a domain touches no core code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


def measure(unit: str, lo: float, hi: float, description: str) -> Any:
    """A value field: optional, physically bounded to [lo, hi], with its unit recorded in the schema."""
    return Field(None, ge=lo, le=hi, description=description, json_schema_extra={"unit": unit})


def flag(description: str) -> Any:
    """A 0/1 field (a boolean carried as a number, so all values fit one float array)."""
    return Field(None, ge=0, le=1, description=description, json_schema_extra={"unit": "bool"})


class DomainValues(BaseModel):
    """Base of the per-domain value models: unknown fields are errors, at least one value is needed."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def check_columns(cls, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Rows breaking cross-field rules, computed on whole columns (override with the rules)."""
        return np.zeros(len(next(iter(columns.values()))), bool)

    @model_validator(mode="after")
    def _some_value(self) -> "DomainValues":
        if all(v is None for v in self.__dict__.values()):
            raise ValueError("no values: a reading needs at least one field")
        return self


@dataclass(frozen=True)
class Domain:
    """A domain plug-in: its name, its value model and the standard that defines its indicators."""

    name: str
    title: str
    title_zh: str
    values: type[DomainValues]
    standard: str
    partitions: int = 3   # of its Kafka topic telemetry.<name>: the parallelism of its processors

    @property
    def fields(self) -> list[str]:
        return list(self.values.model_fields)

    def unit(self, field: str) -> str:
        extra = self.values.model_fields[field].json_schema_extra
        return str(extra["unit"]) if isinstance(extra, dict) else ""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) physical limits per field, in `fields` order, for vectorised range checks."""
        lo, hi = [], []
        for info in self.values.model_fields.values():
            lo.append(next((m.ge for m in info.metadata if hasattr(m, "ge")), -np.inf))
            hi.append(next((m.le for m in info.metadata if hasattr(m, "le")), np.inf))
        return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)

    def validate_values(self, values: dict[str, Any]) -> dict[str, float]:
        """Validate one reading's values (full pydantic checks); raises pydantic.ValidationError."""
        model = self.values.model_validate(values)
        return {k: float(v) for k, v in model.model_dump(exclude_none=True).items()}
