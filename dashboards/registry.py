"""Finds the domains' dashboard modules: dashboards/<domain>.py with a `dashboard()` (and its plan
`TARGETS`), for every domain of the schemas registry, so a new domain's dashboard and wall tiles need
no core change."""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def domain_modules() -> list[ModuleType]:
    """Dashboard modules of the domains, in the schemas registry's order."""
    from schemas import domain_names

    names = {info.name for info in pkgutil.iter_modules(importlib.import_module("dashboards").__path__)}
    modules = [importlib.import_module(f"dashboards.{n}") for n in domain_names() if n in names]
    return [m for m in modules if hasattr(m, "dashboard")]
