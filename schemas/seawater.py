"""Nearshore sea water: the GB 3097-1997 class factors, plus green-tide (浒苔) indicators.

The plan (l.261) asks for 100% of nearshore sites in class I or II and green-tide early warning.
Concentrations in mg/L as in GB 3097-1997; chlorophyll-a in µg/L, turbidity in NTU.
"""
from schemas.plugin import Domain, DomainValues, measure


class SeawaterValues(DomainValues):
    ph: float | None = measure("pH", 0, 14, "pH")
    dissolved_oxygen: float | None = measure("mg/L", 0, 25, "dissolved oxygen")
    cod: float | None = measure("mg/L", 0, 100, "chemical oxygen demand (COD_Mn)")
    inorganic_nitrogen: float | None = measure("mg/L", 0, 20, "inorganic nitrogen (NO3+NO2+NH4 as N)")
    phosphate: float | None = measure("mg/L", 0, 5, "active phosphate (as P)")
    petroleum: float | None = measure("mg/L", 0, 50, "petroleum hydrocarbons")
    chlorophyll_a: float | None = measure("µg/L", 0, 500, "chlorophyll-a")
    turbidity: float | None = measure("NTU", 0, 4000, "turbidity")
    water_temperature: float | None = measure("°C", -3, 40, "water temperature")
    salinity: float | None = measure("PSU", 0, 45, "salinity")


DOMAIN = Domain(
    name="seawater", title="Nearshore sea water", title_zh="近岸海域水质", values=SeawaterValues,
    standard="GB 3097-1997",
)
