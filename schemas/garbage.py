"""Garbage sorting: bin fill levels, mass per GB/T 19095-2019 category, collection and treatment.

The plan (l.273) targets collection and harmless treatment at 100% and resource utilisation at 35%.
Bins report fill (0-1) and, where weighed, kg per category; trucks and plants report what they
collected, treated harmlessly and recovered.
"""
from schemas.plugin import Domain, DomainValues, flag, measure


class GarbageValues(DomainValues):
    fill_level: float | None = measure("1", 0, 1, "bin fill level, 0 empty .. 1 full")
    recyclable_kg: float | None = measure("kg", 0, 1e6, "可回收物 recyclables")
    hazardous_kg: float | None = measure("kg", 0, 1e6, "有害垃圾 hazardous waste")
    kitchen_kg: float | None = measure("kg", 0, 1e6, "厨余垃圾 food/kitchen waste")
    residual_kg: float | None = measure("kg", 0, 1e6, "其他垃圾 residual waste")
    contamination: float | None = measure("1", 0, 1, "share of wrongly sorted waste")
    collected: float | None = flag("1 when this reading records a collection (bin emptied)")
    harmless_kg: float | None = measure("kg", 0, 1e7, "mass treated harmlessly (plant)")
    recovered_kg: float | None = measure("kg", 0, 1e7, "recyclables recovered (plant)")
    kitchen_resource_kg: float | None = measure("kg", 0, 1e7, "kitchen waste sent to resource treatment")
    incinerated_kg: float | None = measure("kg", 0, 1e7, "mass incinerated with energy recovery")
    landfilled_kg: float | None = measure("kg", 0, 1e7, "mass landfilled")


DOMAIN = Domain(
    name="garbage", title="Garbage sorting", title_zh="垃圾分类", values=GarbageValues,
    standard="GB/T 19095-2019 (categories); plan l.273 (rates)", partitions=6,
)
