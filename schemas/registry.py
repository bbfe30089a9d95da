"""Finds the domain plug-ins: every module of this package that defines a `DOMAIN`."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from schemas.plugin import Domain


@lru_cache(maxsize=1)
def domains() -> dict[str, Domain]:
    """All domains by name, discovered from `schemas/*.py` modules that define `DOMAIN`."""
    found: dict[str, Domain] = {}
    for info in pkgutil.iter_modules(importlib.import_module("schemas").__path__):
        module = importlib.import_module(f"schemas.{info.name}")
        spec = getattr(module, "DOMAIN", None)
        if isinstance(spec, Domain):
            found[spec.name] = spec
    return dict(sorted(found.items()))


def domain_names() -> list[str]:
    return list(domains())


def domain(name: str) -> Domain:
    """The domain called `name`, or a KeyError that lists the known ones."""
    try:
        return domains()[name]
    except KeyError:
        raise KeyError(f"unknown domain {name!r}; known domains: {', '.join(domains())}") from None
