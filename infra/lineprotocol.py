"""InfluxDB line protocol: points, escaping and field syntax, shared by every service that writes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Point:
    """One InfluxDB point; identity = measurement + tags + time, so rewriting it overwrites."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, Any]
    ts: int

    def line(self) -> str:
        tags = "".join(f",{k}={escape(str(v))}" for k, v in sorted(self.tags.items()) if v != "")
        fields = ",".join(f"{escape(k)}={_field(v)}" for k, v in self.fields.items() if _keep(v))
        return f"{self.measurement}{tags} {fields} {int(self.ts)}" if fields else ""


def _keep(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v))


def escape(s: str) -> str:
    """Line-protocol escaping for tag keys, tag values and field keys."""
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}i"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
