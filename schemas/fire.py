"""Forest fire: noon fire-weather observations for the Canadian FWI system, and smoke/flame detections.

The plan (l.202) asks for fire-danger monitoring of the forest estate; danger levels per QX/T 77-2007.
"""
from schemas.plugin import Domain, DomainValues, flag, measure


class FireValues(DomainValues):
    temperature: float | None = measure("°C", -50, 60, "air temperature (noon observation)")
    humidity: float | None = measure("%", 0, 100, "relative humidity (noon observation)")
    wind_speed: float | None = measure("km/h", 0, 250, "10 m wind speed (noon observation)")
    rain_24h: float | None = measure("mm", 0, 1000, "precipitation over the previous 24 h")
    smoke: float | None = flag("camera smoke detection")
    flame: float | None = flag("camera flame detection")
    confidence: float | None = measure("1", 0, 1, "detector confidence")


DOMAIN = Domain(
    name="fire", title="Forest fire danger", title_zh="森林防火", values=FireValues,
    standard="Van Wagner & Pickett 1985 (FWI); QX/T 77-2007 (levels)",
)
