"""Unit names devices send (SenML registry and common spellings) -> the schema's unit, with conversion."""
from __future__ import annotations

# spelling -> canonical unit
ALIASES = {
    "ug/m3": "µg/m³", "µg/m3": "µg/m³", "ug/m^3": "µg/m³", "mg/m3": "mg/m³", "mg/m^3": "mg/m³",
    "Cel": "°C", "degC": "°C", "C": "°C", "%RH": "%", "mg/l": "mg/L", "ug/L": "µg/L", "ug/l": "µg/L",
    "/": "1", "ratio": "1", "count": "spaces", "Pa": "Pa", "PSU": "PSU", "psu": "PSU",
}
# (from, to) -> (scale, offset): value_to = value_from * scale + offset
CONVERSIONS = {
    ("K", "°C"): (1.0, -273.15),
    ("m/s", "km/h"): (3.6, 0.0),
    ("%", "1"): (0.01, 0.0),
    ("g", "kg"): (0.001, 0.0),
    ("t", "kg"): (1000.0, 0.0),
    ("µg/m³", "mg/m³"): (0.001, 0.0),
    ("mg/m³", "µg/m³"): (1000.0, 0.0),
    ("m", "mm"): (1000.0, 0.0),
}


def conversion(unit: str, target: str) -> tuple[float, float]:
    """(scale, offset) turning `unit` into `target`; ValueError when they are not convertible."""
    unit = ALIASES.get(unit, unit)
    if unit == target:
        return 1.0, 0.0
    try:
        return CONVERSIONS[(unit, target)]
    except KeyError:
        raise ValueError(f"unit {unit!r} cannot be converted to {target!r}") from None
