"""Surface and drinking water: the GB 3838-2002 basic items that decide a water body's class.

The plan (l.269) asks that the Laoshan reservoir (崂山水库) catchment stays up to standard, that every
district-controlled river section (区控断面) meets its designated class, and that no water body falls
back to worse than class V (劣Ⅴ). Concentrations in mg/L as in GB 3838-2002 Table 1; total nitrogen
decides the class of lakes and reservoirs only; water temperature is reported (its GB 3838 limit is a
man-made change against a baseline, which a single reading cannot show) but does not decide a class.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from schemas.plugin import Domain, DomainValues, measure
from schemas.thresholds import PlanThresholds

LAKE_KINDS = ("reservoir", "lake")  # site kinds judged with GB 3838's lake/reservoir (湖、库) limits
Day = dt.date | dt.datetime | int | None


class SurfacewaterValues(DomainValues):
    ph: float | None = measure("pH", 0, 14, "pH (6-9 in every class)")
    dissolved_oxygen: float | None = measure("mg/L", 0, 20, "dissolved oxygen, DO (a lower limit: ≥)")
    permanganate_index: float | None = measure("mg/L", 0, 100, "permanganate index, COD_Mn")
    cod: float | None = measure("mg/L", 0, 500, "chemical oxygen demand (dichromate), COD")
    bod5: float | None = measure("mg/L", 0, 200, "five-day biochemical oxygen demand, BOD5")
    ammonia_nitrogen: float | None = measure("mg/L", 0, 50, "ammonia nitrogen, NH3-N (as N)")
    total_phosphorus: float | None = measure("mg/L", 0, 10, "total phosphorus, TP (as P; stricter limits for lakes and reservoirs)")
    total_nitrogen: float | None = measure("mg/L", 0, 50, "total nitrogen, TN (as N; judged for lakes and reservoirs only)")
    water_temperature: float | None = measure("°C", -2, 40, "water temperature")


DOMAIN = Domain(
    name="surfacewater", title="Surface and drinking water", title_zh="地表水与饮用水源水质",
    values=SurfacewaterValues, standard="GB 3838-2002",
)


def designated_key(site: str) -> str:
    """The plan key of a site's designated class (水质目标); plan keys allow no '-'."""
    return f"surfacewater.designated_class.{site.replace('-', '_')}"


def designated_classes(sites: np.ndarray | list[str], plan: PlanThresholds, at: Day) -> np.ndarray:
    """Designated class per site from the plan (NaN where the plan has none in force at `at`)."""
    out = np.full(len(sites), np.nan)
    for i, site in enumerate(sites):
        try:
            out[i] = plan.value(designated_key(str(site)), at)
        except KeyError:
            continue
    return out
