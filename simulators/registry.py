"""Finds the domain simulators: every module of this package that defines a `Model` subclass with a
`domain`, so adding a domain's generator touches no core code."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache

from simulators.base import Model


@lru_cache(maxsize=1)
def models() -> dict[str, type[Model]]:
    """Generator classes by domain name, in the order of the domain registry."""
    found: dict[str, type[Model]] = {}
    for info in pkgutil.iter_modules(importlib.import_module("simulators").__path__):
        module = importlib.import_module(f"simulators.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Model) and cls.__module__ == module.__name__ and getattr(cls, "domain", None):
                found[cls.domain] = cls
    return dict(sorted(found.items()))
