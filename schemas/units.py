"""Unit names devices send (SenML registries, RFC 8428 §12.1 and RFC 8798, and common spellings) -> the schema's unit.

Each name is a quantity and its factor (and offset) to that quantity's coherent unit, so that any two
names of one quantity convert exactly (fractions, not floats: mg/m3 into µg/m³ is 1000, not
999.9999999999999). RFC 8798 §2 adds the primary unit `kg/m3` for mass concentrations, and its
registry of secondary units (§3) the everyday ones: `ug/m3`, `mm`, `km/h`, `hPa`, `ppm`, `/100`...

SenML symbols mean what the registry says: `C` is the coulomb (never °C: that is `Cel`), `/` is a
ratio (it feeds ratio and 0/1 flag fields), and so is `%`: "NOT a percentage but the absolute ratio"
(RFC 8428 §12.1, Note 1), while `%RH` and RFC 8798's `/100` are percentages. The schema's own `%` (a
field's unit, never a device's) is a percentage.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from schemas.bounds import show

_MASS_CONCENTRATION, _RATIO = "mass concentration", "ratio"
# name a device writes -> (quantity, factor to the coherent unit, offset to it)
SOURCE: dict[str, tuple[str, Fraction, Fraction]] = {}


def _add(quantity: str, offset: str = "0", **names: str) -> None:
    for name, factor in names.items():
        SOURCE[name] = (quantity, Fraction(factor), Fraction(offset))


for _quantity, _names in {
    _MASS_CONCENTRATION: {"kg/m3": "1", "g/m3": "1e-3", "mg/m3": "1e-6", "mg/m³": "1e-6", "mg/m^3": "1e-6",
                          "ug/m3": "1e-9", "µg/m3": "1e-9", "µg/m³": "1e-9", "ug/m^3": "1e-9",
                          "mg/L": "1e-3", "mg/l": "1e-3", "ug/L": "1e-6", "ug/l": "1e-6", "µg/L": "1e-6"},
    _RATIO: {"/": "1", "%": "1", "1": "1", "ratio": "1", "%RH": "1/100", "/100": "1/100", "/1000": "1/1000",
             "ppm": "1e-6"},
    "speed": {"m/s": "1", "km/h": "1000/3600", "m/h": "1/3600"},
    "length": {"m": "1", "mm": "1e-3", "cm": "1e-2", "km": "1e3"},
    "mass": {"kg": "1", "g": "1e-3", "t": "1e3"},
    "count": {"count": "1", "spaces": "1"},
    "pressure": {"Pa": "1", "hPa": "100"},
    "pH": {"pH": "1"}, "turbidity": {"NTU": "1"}, "salinity": {"PSU": "1", "psu": "1"},
}.items():
    _add(_quantity, **_names)
_add("temperature", K="1")
_add("temperature", "273.15", Cel="1", degC="1", **{"°C": "1"})

# a schema's unit (a field's declared unit) -> (quantity, factor, offset), where it differs from SOURCE
TARGET = {**SOURCE, "%": (_RATIO, Fraction(1, 100), Fraction(0)), "bool": (_RATIO, Fraction(1), Fraction(0))}


@lru_cache(maxsize=1024)
def conversion(unit: str, target: str) -> tuple[float, float]:
    """(scale, offset) turning `unit` into `target`: value_target = value * scale + offset; ValueError
    when they are not convertible (another quantity, or a name no registry knows)."""
    source, goal = SOURCE.get(unit), TARGET.get(target)
    if source is None:
        hint = ("; SenML writes degrees Celsius as 'Cel' ('C' is the coulomb)" if unit == "C" else
                ": no unit of that quantity by that name (SenML units: RFC 8428 §12.1, RFC 8798)")
        raise ValueError(f"unit {show(unit)} cannot be converted to {target!r}{hint}")
    if goal is None or source[0] != goal[0] or target == "bool" and source[1:] != goal[1:]:
        raise ValueError(f"unit {show(unit)} cannot be converted to {target!r}: it measures {source[0]}")
    scale = source[1] / goal[1]
    return float(scale), float((source[2] - goal[2]) / goal[1])
