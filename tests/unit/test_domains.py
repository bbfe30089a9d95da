"""Domain plug-ins: discovered by the registry, every field with a unit and physical range."""
from __future__ import annotations

import numpy as np
import pytest

from schemas import domain, domains


def test_the_five_domains_are_discovered() -> None:
    assert set(domains()) == {"air", "seawater", "parking", "fire", "garbage"}


@pytest.mark.parametrize("name", ["air", "seawater", "parking", "fire", "garbage"])
def test_every_field_has_a_unit_a_description_and_finite_bounds(name: str) -> None:
    d = domain(name)
    lo, hi = d.bounds()
    assert np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()
    for f, info in d.values.model_fields.items():
        assert d.unit(f) and info.description, f


def test_unknown_domain_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known domains: air, fire, garbage, parking, seawater"):
        domain("traffic")
