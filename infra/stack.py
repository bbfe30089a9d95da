"""The local stack from Python: start it through deploy/native, create topics and buckets for a run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from infra.settings import REPO_ROOT, Settings
from schemas.registry import domains

NATIVE = REPO_ROOT / "deploy" / "native"
TOPICS_FILE = REPO_ROOT / "deploy" / "config" / "topics.txt"
# Topics take the broker's default.replication.factor: 1 on the single node, 3 on the cluster
# (deploy/config/kafka/cluster.properties, with min.insync.replicas=2).
BROKER_DEFAULT_REPLICATION = -1


def stack_status() -> tuple[bool, str]:
    """(all services up, the status table) from deploy/native/status."""
    proc = subprocess.run([str(NATIVE / "status")], capture_output=True, text=True)
    return proc.returncode == 0, proc.stdout


def ensure_stack_up() -> str:
    """Start whatever part of the native stack is down; raise with the script's output if it fails."""
    up, table = stack_status()
    if up:
        return table
    proc = subprocess.run([str(NATIVE / "up")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"deploy/native/up failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def topic_specs(path: Path = TOPICS_FILE) -> list[tuple[str, int, dict[str, str]]]:
    """The (name, partitions, configs) rows of deploy/config/topics.txt, with a `{domain}` row expanded
    once per registered domain (`{partitions}`: the domain's own count), so topics follow the registry."""
    specs = []
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        configs = dict(f.split("=", 1) for f in fields[2:])
        if "{domain}" in fields[0]:
            specs += [(fields[0].format(domain=d.name), int(fields[1].format(partitions=d.partitions)), configs)
                      for d in domains().values()]
        else:
            specs.append((fields[0], int(fields[1]), configs))
    return specs


def device_accounts() -> list[str]:
    """MQTT device accounts: one per domain (the ACL's `city/%u/...` patterns give each its own topics)."""
    return list(domains())


def create_topics(settings: Settings, prefix: str | None = None) -> list[str]:
    """Create every contract topic under `prefix` (default: the settings' prefix); existing ones are kept."""
    prefix = settings.kafka.topic_prefix if prefix is None else prefix
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        names = []
        for name, partitions, configs in topic_specs():
            names.append(prefix + name)
            try:
                admin.create_topics(
                    [NewTopic(prefix + name, partitions, BROKER_DEFAULT_REPLICATION, topic_configs=configs)], timeout_ms=30_000
                )
            except TopicAlreadyExistsError:
                pass
        return names
    finally:
        admin.close()


def delete_topics(settings: Settings, names: list[str]) -> None:
    """Delete topics (test clean-up)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        admin.delete_topics(names, timeout_ms=30_000)
    finally:
        admin.close()


def ensure_topics(bootstrap: str, specs: list[tuple[str, int, dict[str, str]]]) -> list[str]:
    """Create the missing topics and set the configs of every existing one (idempotent, one admin
    connection instead of a JVM per topic); returns what it did, a line each."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, parts, BROKER_DEFAULT_REPLICATION, topic_configs=cfg) for name, parts, cfg in specs if name not in existing]
        if new:
            admin.create_topics(new, timeout_ms=30_000)
        kept = [ConfigResource(ConfigResourceType.TOPIC, name, configs=cfg) for name, _, cfg in specs
                if name in existing and cfg]
        if kept:
            admin.alter_configs(kept)
    finally:
        admin.close()
    return [f"created topic {t.name} ({t.num_partitions} partitions)" for t in new] + (
        [f"configs set on {len(kept)} existing topics"] if kept else [])


def main(argv: list[str]) -> int:
    """For the deploy scripts: `python -m infra.stack topics [FILE]` prints `name partitions
    config=value...` per topic of FILE (default deploy/config/topics.txt); `ensure-topics BOOTSTRAP
    [FILE]` creates the missing ones and sets every one's configs; `accounts` prints the device
    accounts, one per line."""
    if argv[:1] == ["ensure-topics"] and len(argv) in (2, 3):
        for line in ensure_topics(argv[1], topic_specs(Path(argv[2]) if len(argv) == 3 else TOPICS_FILE)):
            print(line)
    elif argv[:1] == ["topics"] and len(argv) <= 2:
        print("\n".join(" ".join([name, str(parts), *(f"{k}={v}" for k, v in cfg.items())])
                        for name, parts, cfg in topic_specs(Path(argv[1]) if len(argv) == 2 else TOPICS_FILE)))
    elif argv == ["accounts"]:
        print("\n".join(device_accounts()))
    else:
        print("usage: python -m infra.stack {topics [FILE]|ensure-topics BOOTSTRAP [FILE]|accounts}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
