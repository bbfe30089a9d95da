"""Run benchmarks: `python -m bench` (all) or `python -m bench decode kernels ...`.

Each prints its figures and writes bench/results/<name>.json. `publish` and `bridge` need the stack.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench import cases

RESULTS = Path(__file__).with_name("results")


def main(argv: list[str]) -> int:
    names = argv or list(cases.ALL)
    unknown = [n for n in names if n not in cases.ALL]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(cases.ALL)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        result = cases.ALL[name]()
        result["wall_s"] = round(time.perf_counter() - started, 2)
        for key, value in result.items():
            print(f"  {key}: {value:,.1f}" if isinstance(value, float) else f"  {key}: {value}")
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
