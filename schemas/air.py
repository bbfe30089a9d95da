"""Air quality: the six criteria pollutants of HJ 633-2012 / GB 3095-2012, plus weather.

The plan (l.267) judges the district by its PM2.5 annual mean: better than 35 µg/m³, striving for 33.5.
Concentrations are µg/m³ except CO in mg/m³, as in the standards.
"""
from schemas.plugin import Domain, DomainValues, measure


class AirValues(DomainValues):
    pm25: float | None = measure("µg/m³", 0, 2000, "PM2.5 mass concentration")
    pm10: float | None = measure("µg/m³", 0, 3000, "PM10 mass concentration")
    so2: float | None = measure("µg/m³", 0, 5000, "sulphur dioxide")
    no2: float | None = measure("µg/m³", 0, 5000, "nitrogen dioxide")
    co: float | None = measure("mg/m³", 0, 200, "carbon monoxide")
    o3: float | None = measure("µg/m³", 0, 2000, "ozone")
    temperature: float | None = measure("°C", -50, 60, "air temperature")
    humidity: float | None = measure("%", 0, 100, "relative humidity")


DOMAIN = Domain(
    name="air", title="Air quality", title_zh="空气质量", values=AirValues,
    standard="HJ 633-2012 (AQI), GB 3095-2012 (limits)", partitions=6,
)
