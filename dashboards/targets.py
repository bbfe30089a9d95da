"""Every plan target shown on the wall, read from the plan file (schemas/plan.toml + the operator's
SMARTCITY_PLAN_OVERRIDES): which indicator measures it, in which direction, and how to say where it
stands and what the rest of the year must deliver ("Will we make it?"), in English and Chinese.

Dashboards are generated files: their colour steps are the entries in force on the day they are
generated (`smartcity dashboards generate` after a plan change). The wall picture and the demo report
judge each figure by the `target` stored with it, i.e. the entry in force on the figure's own local day.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dashboards.panels import RANGE, Panel, table
from schemas.thresholds import PlanThresholds, load_plan, today

GREEN, AMBER, RED = "green", "orange", "red"


@dataclass(frozen=True)
class Target:
    """One plan target and the indicator that measures it (indicator "": not measured by the pipeline)."""

    key: str
    domain: str
    indicator: str
    title_en: str
    title_zh: str
    unit: str                     # "%", "µg/m³", "spaces"
    lower_is_better: bool = False
    strict: bool = True           # lower is better: "better than" (<, the plan's 优于); False: at most (≤)
    outlook: bool = False         # the indicator carries a year-end outlook (projection, required_rest)
    decimals: int = 1             # shown for plain units (0 for counts: "0 bodies")
    not_measured: str = ""        # why the pipeline cannot measure it
    not_measured_zh: str = ""

    def value(self, plan: PlanThresholds | None = None) -> float:
        """The target in force today (for generated dashboards)."""
        return (plan or load_plan()).value(self.key, today())

    def steps(self, plan: PlanThresholds | None = None) -> list[tuple[float | None, str]]:
        """Grafana colour steps: green where the target is met, red where it is missed (for PM2.5, amber
        between the stretch and the binding target)."""
        plan = plan or load_plan()
        v = self.value(plan)
        if self.key == "plan.air.pm25_annual":
            return [(None, GREEN), (plan.value("plan.air.pm25_annual_stretch", today()), AMBER), (v, RED)]
        if self.lower_is_better:
            return [(None, GREEN), (v if self.strict else v + 1e-9, RED)]
        return [(None, RED), (v, GREEN)]


def all_targets() -> tuple[Target, ...]:
    """Every plan target, as the domains' dashboard modules declare them (`TARGETS` in
    dashboards/<domain>.py), in the domain registry's order: a new domain brings its own."""
    from dashboards.registry import domain_modules

    return tuple(t for m in domain_modules() for t in getattr(m, "TARGETS", ()))


def __getattr__(name: str) -> Any:
    """`TARGETS`: all_targets(), resolved on use so the domain modules can import this one."""
    if name == "TARGETS":
        return all_targets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PM25_STRETCH = "plan.air.pm25_annual_stretch"  # shown with the binding PM2.5 target, not as a tile of its own
OUTLOOK_FIELDS = ("value", "target", "projection", "required_rest", "remaining_days", "feasible")


def target(key: str) -> Target:
    """The Target of a plan key."""
    return next(t for t in all_targets() if t.key == key)


def outlook_table(domain: str | None = None, *, width: int = 24, height: int = 6) -> Panel:
    """'Will we make it?': for each cumulative plan indicator (of `domain`, or all), the latest value, the
    target, the year-end projection and what the remaining days must deliver."""
    names = [t for t in all_targets() if t.outlook and (domain is None or t.domain == domain)]
    which = " or ".join(f'(r.domain == "{t.domain}" and r.indicator == "{t.indicator}")' for t in names)
    fields = " or ".join(f'r._field == "{f}"' for f in OUTLOOK_FIELDS)
    return table("会达标吗 Will we make it? (year-end projection, needed for the rest of the year)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.scope == "district" and ({which}))
  |> filter(fn: (r) => {fields})
  |> last()
  |> pivot(rowKey: ["domain", "indicator"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> keep(columns: ["domain", "indicator", "value", "target", "projection", "required_rest", "remaining_days", "feasible"])''',
                 ("domain", "indicator", "target"), width=width, height=height,
                 description="projection: the year-end value if the rest of the year follows the year so far "
                             "(shaped by past years' seasonal pattern where InfluxDB holds them); required_rest: "
                             "the mean (PM2.5), share, rate or spaces per day the remaining days must deliver; "
                             "feasible 0: out of reach")


def plan_target_keys(plan: PlanThresholds | None = None) -> set[str]:
    """Every `plan.*` key of the plan file in use."""
    return {t.key for t in (plan or load_plan()).threshold if t.key.startswith("plan.")}


def fmt(value: float | None, unit: str, extra: int = 0, decimals: int = 1) -> str:
    """A figure as the wall shows it (`decimals` for plain units, `extra` more where the usual ones would
    mislead)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "%":
        pct = value * 100
        return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 and not extra else f"{pct:.{1 + extra}f}%"
    if unit == "spaces":
        return (f"{value:+,.{extra}f}" if value else "0")
    return f"{value:.{decimals + extra}f} {unit}"


@dataclass
class Standing:
    """Where one target stands, from the latest indicator point (fields as stored in InfluxDB)."""

    target: Target
    fields: dict[str, Any]

    @property
    def value(self) -> float | None:
        return self.fields.get("value")

    @property
    def goal(self) -> float | None:
        """The target stored with the figure (the entry in force on the figure's own local day); without a
        figure, the entry in force today."""
        return self.fields.get("target", self.target.value())

    @property
    def state(self) -> str:
        """met | missed | baseline-not-set | not-measured | no-data."""
        if self.target.not_measured:
            return "not-measured"
        if self.target.indicator == "spaces_added" and self.fields and not self.fields.get("baseline_set", 1):
            return "baseline-not-set"
        if self.value is None or self.goal is None:
            return "no-data"
        t = self.target
        if t.lower_is_better:
            met = self.value < self.goal if t.strict else self.value <= self.goal  # 优于: strictly below
        else:
            met = self.value >= self.goal
        return "met" if met else "missed"

    @property
    def shown(self) -> str:
        """The figure as displayed, with as many more decimals as it takes (up to 4) not to read as the
        target itself when it misses it (34.96% is not shown as "35%" beside "target ≥ 35%")."""
        plain = fmt(self.value, self.target.unit, 0, self.target.decimals)
        if self.state != "missed" or self.goal is None or self.value == self.goal:   # equal to "better than"
            return plain
        for extra in range(5):
            text = fmt(self.value, self.target.unit, extra, self.target.decimals)
            if text != fmt(self.goal, self.target.unit, extra, self.target.decimals):
                return text
        return plain

    def target_text(self) -> tuple[str, str]:
        t = self.target
        goal = self.goal
        sign = ("<" if t.strict else "≤") if t.lower_is_better else "≥"
        en = f"target {sign} {fmt(goal, t.unit, 0, t.decimals)}"
        if t.key == "plan.air.pm25_annual" and "stretch" in self.fields:
            en += f" (stretch {self.fields['stretch']:g})"
        return en, en.replace("target", "目标").replace("stretch", "力争")

    def outlook_text(self) -> tuple[str, str]:
        """'Will we make it?' in one sentence each (empty when the indicator has no outlook)."""
        f, t = self.fields, self.target
        if not t.outlook or "required_rest" not in f or self.goal is None:
            if self.state == "baseline-not-set":
                n = f.get("networked_spaces")
                return (f"baseline not set (networked now: {n:,.0f})" if n is not None else "baseline not set",
                        f"基线未设置(当前联网 {n:,.0f} 个)" if n is not None else "基线未设置")
            return "", ""
        days = int(f.get("remaining_days", 0))
        need, proj, goal = f["required_rest"], f.get("projection"), self.goal
        if days == 0:
            return "period closed", "本期已结束"
        if not f.get("feasible", 1):
            return (f"out of reach: would need {fmt(need, t.unit) if t.unit != 'spaces' else f'{need:,.0f}/day'} "
                    f"for the remaining {days} days", f"剩余{days}天已无法达标")
        if t.unit == "spaces":
            en = f"needs {need:,.0f} spaces/day for {days} days; trend gives {fmt(proj, t.unit)}"
            zh = f"剩余{days}天每天须新增{need:,.0f}个;按趋势年末{fmt(proj, t.unit)}"
        elif t.lower_is_better:
            en = (f"must average ≤ {need:.1f} {t.unit} for the remaining {days} days to finish below {goal:g}; "
                  f"projected {proj:.1f}")
            zh = f"剩余{days}天均值须≤{need:.1f}方能低于{goal:g};预计年末{proj:.1f}"
        else:
            en = f"must reach ≥ {fmt(need, t.unit)} over the remaining {days} days; projected {fmt(proj, t.unit)}"
            zh = f"剩余{days}天须达到≥{fmt(need, t.unit)};预计年末{fmt(proj, t.unit)}"
        return en, zh
