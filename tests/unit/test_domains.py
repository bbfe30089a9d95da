"""Domain plug-ins: discovered by the registry, every field with a unit and physical range, and every
domain present in every layer (one registry drives them all)."""
from __future__ import annotations

import numpy as np
import pytest

from processors.registry import processors
from schemas import domain, domains
from simulators.registry import models

PLAN_DOMAINS = {"air", "seawater", "parking", "fire", "garbage"}   # the five the plan names first


def test_the_plan_domains_are_discovered() -> None:
    assert PLAN_DOMAINS <= set(domains())


@pytest.mark.parametrize("name", list(domains()))
def test_every_field_has_a_unit_a_description_and_finite_bounds(name: str) -> None:
    d = domain(name)
    lo, hi = d.bounds()
    assert np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()
    for f, info in d.values.model_fields.items():
        assert d.unit(f) and info.description, f


@pytest.mark.parametrize("name", list(domains()))
def test_every_domain_has_a_simulator_and_a_processor(name: str) -> None:
    assert models()[name].domain == name
    assert processors()[name].domain == name


def test_unknown_domain_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known domains: " + ", ".join(domains())):
        domain("traffic")
