"""The layers point one way (docs/architecture.md, Layers): a walk over every import of our packages finds no
package cycle and no import of a package from one below it."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

# Each package may import only the packages listed for it (and itself); `smartcity` is the top.
ALLOWED = {
    "schemas": set(),
    "infra": {"schemas"},
    "simulators": {"schemas", "infra"},
    "ingest": {"schemas", "infra"},
    "processors": {"schemas", "infra"},
    "alerts": {"schemas", "infra"},
    "dashboards": {"schemas", "infra"},
    "smartcity": {"schemas", "infra", "simulators", "ingest", "processors", "alerts", "dashboards"},
}


def package_imports() -> dict[str, dict[str, set[str]]]:
    """{package: {imported package: {files that import it}}} for every module of our packages,
    counting imports inside functions too (a lazy import is still a dependency)."""
    found: dict[str, dict[str, set[str]]] = {p: {} for p in ALLOWED}
    for package in ALLOWED:
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in ALLOWED and top != package:
                        found[package].setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_import_points_down() -> None:
    wrong = [f"{pkg} imports {dep} ({', '.join(sorted(files))})"
             for pkg, deps in package_imports().items() for dep, files in deps.items() if dep not in ALLOWED[pkg]]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_package_cycle() -> None:
    graph = {pkg: set(deps) for pkg, deps in package_imports().items()}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph[node]:
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            else:
                visit(nxt, path + [nxt])

    for start in graph:
        visit(start, [start])
    assert not cycles, "package cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_walk_sees_real_imports() -> None:
    # guards the test itself: a walk that found nothing would pass vacuously
    imports = package_imports()
    assert "infra" in imports["ingest"] and "schemas" in imports["processors"]
    assert Path(REPO / "smartcity" / "cli.py").is_file()
