"""Generate every dashboard's JSON into dashboards/json/ (`smartcity dashboards generate [--check]`): the
JSON carries the plan file's targets in force today, so regenerate after a plan change or an override."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dashboards import alertloop, pipeline, wall
from dashboards.panels import Dashboard
from dashboards.registry import domain_modules

OUT = Path(__file__).with_name("json")


def all_dashboards() -> list[Dashboard]:
    """The city wall, one dashboard per domain, pipeline health and the alert loop."""
    return [wall.dashboard(), *(m.dashboard() for m in domain_modules()), pipeline.dashboard(),
            alertloop.dashboard()]


def render(d: Dashboard) -> str:
    return json.dumps(d.to_json(), ensure_ascii=False, indent=2) + "\n"


def main(argv: list[str]) -> int:
    """Write the JSON files; with --check, only report (exit 1) when the committed files differ."""
    check = "--check" in argv
    OUT.mkdir(exist_ok=True)
    stale = []
    for d in all_dashboards():
        path = OUT / f"{d.uid}.json"
        text = render(d)
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run smartcity dashboards generate (the Python or the plan file changed)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
