"""The alert lanes of `make chaos`: the router of this checkout against the private stack, with the
scenarios of tests/alertlab.py at the issue's sizes (a poison observation, a 20,000-entity storm, a
receiver that drips, one down for 10 minutes, one that redirects). Each lane is a row of the checks
table: passed, and its figures."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from infra.settings import Settings
from infra.stack import create_topics
from tests import alertlab
from tests.chaos import stack

SECRET_ENV = "SMARTCITY_WEBHOOK_ALERTLANE"
DOWN_S = 600
LANES: dict[str, Callable[[alertlab.Lab], alertlab.Result]] = {
    "alerts-poison": alertlab.poison,
    "alerts-storm-20000": lambda lab: alertlab.storm(lab, entities=20_000, threshold=500, group_window=30),
    "alerts-drip": alertlab.slow_receiver,
    "alerts-redirect": alertlab.redirecting_receiver,
    "alerts-down-10min": lambda lab: alertlab.receiver_down(lab, DOWN_S),
}
LONG = {"alerts-down-10min"}   # runs beside all the other lanes from the start


def lane(name: str, base: Settings, folder: Path) -> tuple[str, bool, str]:
    """One alert lane on topics of its own; (name, passed, figures)."""
    tag = f"al{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"topic_prefix": f"{tag}."})})
    secret = base64.b32encode(os.urandom(15)).decode()
    env = stack.deploy_env({SECRET_ENV: secret, "SMARTCITY_KAFKA__TOPIC_PREFIX": f"{tag}.",
                            "SMARTCITY_ALERTS_LINK_KEY": base64.b32encode(os.urandom(15)).decode()})
    create_topics(settings)   # kept: the private stack is fresh for every run (a deletion races the secrets scan)

    def start_router(config: Path, log: Path, port: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "smartcity.cli", "alerts", "serve", "--config", str(config),
                                 "--group", f"{tag}-r", "--http-port", str(port), "--session-expiry", "120"],
                                env=env, cwd=stack.REPO_ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    mode = alertlab.modes(down_until=time.monotonic() + DOWN_S + 10) if name == "alerts-down-10min" else alertlab.modes()
    lab = alertlab.Lab(settings, folder / name, start_router, SECRET_ENV, secret, mode)
    try:
        result = LANES[name](lab)
    except Exception as exc:  # noqa: BLE001 - a lane the suite could not run is a failed row that says why
        result = alertlab.Result(False, problems=[f"{type(exc).__name__}: {str(exc)[:300]}"])
    finally:
        code = lab.close()
    if code not in (0, None):
        result.check(False, f"the router exited {code} when stopped")
    return f"alert lane {name}", result.passed, result.detail()


def run(base: Settings, folder: Path, names: list[str]) -> list[tuple[str, bool, str]]:
    return [lane(n, base, folder) for n in names if n in LANES]
