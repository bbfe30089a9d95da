"""Finds the processor plug-ins: every module of this package that defines a `PROCESSOR` class."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from processors.plugin import DomainProcessor


@lru_cache(maxsize=1)
def processors() -> dict[str, type[DomainProcessor]]:
    """Plug-in classes by domain name."""
    found: dict[str, type[DomainProcessor]] = {}
    for info in pkgutil.iter_modules(importlib.import_module("processors").__path__):
        module = importlib.import_module(f"processors.{info.name}")
        cls = getattr(module, "PROCESSOR", None)
        if isinstance(cls, type) and issubclass(cls, DomainProcessor):
            found[cls.domain] = cls
    return dict(sorted(found.items()))
