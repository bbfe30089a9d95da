"""The chaos suite's private stack: Mosquitto, Kafka and InfluxDB in a network namespace of their own.

The suite stops and starts brokers, so it never uses the shared stack: everything runs inside the
namespace `smartcity-chaos` (its own loopback, so the default ports cannot collide with anything and
`tc netem` on that loopback delays and drops only the suite's packets), with its own state folder
(.stack/chaos). The deploy scripts start the services; the cached InfluxDB binary and Kafka jars are
prepared outside the namespace first (building needs the network, the namespace has none).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra.settings import REPO_ROOT

NETNS = os.environ.get("SMARTCITY_CHAOS_NETNS", "smartcity-chaos")
STATE = Path(os.environ.get("SMARTCITY_CHAOS_DIR", REPO_ROOT / ".stack" / "chaos"))
NATIVE = REPO_ROOT / "deploy" / "native"
INFLUX_PORT = 8086
PROXY_PORT = 18086          # the fault proxy in front of InfluxDB (tests/chaos/proxy.py)
SERVICES = ("mosquitto", "kafka", "influxdb")


def inside() -> bool:
    """True in the process tree that run.py re-executed inside the namespace."""
    return os.environ.get("SMARTCITY_CHAOS_INSIDE") == NETNS


def deploy_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the deploy scripts and the pipeline's processes: the private state folder and
    the default ports (private because of the namespace), then `extra`."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("SMARTCITY_") and k != "SMARTCITY_CHAOS_INSIDE"]:
        env.pop(key)   # nothing of the caller's stack may leak in
    env.update({"SMARTCITY_STACK_DIR": str(STATE), "PYTHONPATH": str(REPO_ROOT),
                "SMARTCITY_KAFKA_HEAP": "512m", "SMARTCITY_TOPICS_FILE": "/dev/null", **(extra or {})})
    return env


def script(service: str, action: str, *args: str, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run deploy/native/<service>.sh <action> [args] against the private state folder (or the one
    `env` names)."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "deploy.log", "ab") as log:
        proc = subprocess.run([str(NATIVE / f"{service}.sh"), action, *args], env=deploy_env(env), stdout=log,
                              stderr=subprocess.STDOUT, timeout=900)
    if check and proc.returncode != 0:
        tail = (STATE / "deploy.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"deploy/native/{service}.sh {action} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc


def prepare_outside() -> None:
    """Outside the namespace: install/build what the scripts would otherwise fetch, create the namespace."""
    for service, action in (("mosquitto", "install"), ("kafka", "resolve"), ("influxdb", "build")):
        script(service, action)
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise RuntimeError("the chaos suite needs root and iproute2 (`ip netns`, `tc`) for its private "
                           "network namespace; run it as root (the deploy scripts need root anyway)")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    if NETNS not in names:
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "netns", "exec", NETNS, "tc", "qdisc", "del", "dev", "lo", "root"],
                   capture_output=True)  # a netem left by an interrupted run


def reexec_inside(argv: list[str]) -> int:
    """Run `python -m tests.chaos.run argv` inside the namespace; returns its exit code."""
    env = deploy_env()
    env["SMARTCITY_CHAOS_INSIDE"] = NETNS
    cmd = ["ip", "netns", "exec", NETNS, sys.executable, "-m", "tests.chaos.run", *argv]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()


def up() -> None:
    """Start (or keep) all three private services."""
    for service in SERVICES:
        script(service, "start")


def stop_orphan_lane_brokers() -> None:
    """Stopped by PID: what an interrupted run left behind in the namespace (lane brokers, whose config lies
    under .stack/chaos/lanes; pipeline processes and fault proxies), and the private services of another
    checkout (the namespace's ports are one set for every clone)."""
    pids = subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True, text=True).stdout.split()
    gone = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        service = cmdline and Path(cmdline[0].decode(errors="replace")).name in ("mosquitto", "java", "influxd")
        lane = any(str(STATE / "lanes").encode() in a for a in cmdline)
        foreign = not any(str(STATE).encode() in a for a in cmdline)
        leftover = any(a in (b"smartcity.cli", b"tests.chaos.proxy") for a in cmdline)   # an interrupted run's
        if (service and (lane or foreign)) or leftover:
            os.kill(int(pid), signal.SIGTERM)
            gone.append(int(pid))
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{p}").exists() for p in gone) and time.monotonic() < deadline:
        time.sleep(0.5)


def down() -> None:
    for service in reversed(SERVICES):
        script(service, "stop", check=False)
    script("kafka", "cluster", "stop", check=False)   # the cluster lanes' nodes, if a run was interrupted


def pid_of(service: str, state: Path = STATE) -> int | None:
    """PID of a private service from its pid file, when it runs."""
    files = {"mosquitto": state / "mosquitto" / "mosquitto.pid", "kafka": state / "kafka" / "kafka.pid",
             "influxdb": state / "influxdb.pid"}
    try:
        pid = int(files[service].read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_service(service: str, env: dict[str, str] | None = None) -> None:
    """Stop a broker through its script and wait until the process has really exited."""
    pid = pid_of(service, Path((env or {}).get("SMARTCITY_STACK_DIR", STATE)))
    script(service, "stop", check=False, env=env)
    deadline = time.monotonic() + 60
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)


def start_service(service: str, env: dict[str, str] | None = None) -> None:
    script(service, "start", env=env)


def cluster(*args: str) -> str:
    """`deploy/native/kafka.sh cluster ARGS` on the private state folder; its output (the three-node
    cluster of the chaos suite's cluster lanes: start, stop, kill N, stop-node N, controller, reassign)."""
    proc = subprocess.run([str(NATIVE / "kafka.sh"), "cluster", *args], env=deploy_env(), capture_output=True,
                          text=True, timeout=900)
    with open(STATE / "deploy.log", "a") as log:
        log.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"deploy/native/kafka.sh cluster {' '.join(args)} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def netem(spec: str | None) -> None:
    """Apply `tc netem <spec>` to the namespace's loopback, or remove it (None)."""
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
    if spec:
        subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", *spec.split()], check=True)


def secrets() -> dict[str, str]:
    """Every secret the private stack and its lanes generated (path -> value)."""
    return {str(p.relative_to(STATE)): p.read_text().strip() for p in sorted(STATE.rglob("secrets/*")) if p.is_file()}
