"""Structured logging: one event per line as key=value pairs (never pass secrets as values)."""
from __future__ import annotations

import logging
import sys
from typing import Any


def setup(level: str = "INFO") -> None:
    """Log to stderr with a timestamp, level and logger name before the event's key=value pairs."""
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event=<name>` followed by the fields, values quoted when they contain spaces."""
    parts = [f"event={name}"]
    for key, value in fields.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        parts.append(f'{key}="{text}"' if " " in text or not text else f"{key}={text}")
    logger.log(level, " ".join(parts))
