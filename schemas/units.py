"""Unit names devices send (SenML registry, RFC 8428 §12.1, and common spellings) -> the schema's unit.

SenML symbols mean what the registry says: `C` is the coulomb (never °C: that is `Cel`), `/` is a
ratio (it feeds ratio and 0/1 flag fields), and so is `%`: "NOT a percentage but the absolute ratio"
(RFC 8428 §12.1, Note 2), while `%RH` is a percentage."""
from __future__ import annotations

# spelling -> canonical unit
ALIASES = {
    "ug/m3": "µg/m³", "µg/m3": "µg/m³", "ug/m^3": "µg/m³", "mg/m3": "mg/m³", "mg/m^3": "mg/m³",
    "Cel": "°C", "degC": "°C", "%RH": "%", "mg/l": "mg/L", "ug/L": "µg/L", "ug/l": "µg/L",
    "/": "1", "%": "1", "ratio": "1", "count": "spaces", "Pa": "Pa", "PSU": "PSU", "psu": "PSU",
}
# (from, to) -> (scale, offset): value_to = value_from * scale + offset
CONVERSIONS = {
    ("K", "°C"): (1.0, -273.15),
    ("1", "bool"): (1.0, 0.0),  # a SenML ratio "/" can feed a 0/1 flag; the range check keeps it 0..1
    ("m/s", "km/h"): (3.6, 0.0),
    ("%", "1"): (0.01, 0.0),    # a percentage (%RH) into a ratio field
    ("1", "%"): (100.0, 0.0),   # a ratio (/ or %) into a percentage field
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
        hint = "; SenML writes degrees Celsius as 'Cel' ('C' is the coulomb)" if unit == "C" else ""
        raise ValueError(f"unit {unit!r} cannot be converted to {target!r}{hint}") from None
