"""deploy/docker-compose.yml: the same five services as the native stack (Docker is not on these
machines, so `docker compose config` cannot run here; this checks the structure and the shared files)."""
from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"


def load() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_has_the_five_services_and_the_pipeline() -> None:
    services = load()["services"]
    assert {"mosquitto", "kafka", "influxdb", "grafana"} <= set(services)
    assert {"bridge", "processors", "alerts"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["influxdb"]["image"].startswith("influxdb:2.7")


def test_compose_mounts_exist_and_share_the_native_configs() -> None:
    compose = load()
    text = (DEPLOY / "compose" / "mqtt-init.sh").read_text()
    assert "/deploy/config/mosquitto/mosquitto.conf" in text and "/deploy/config/mosquitto/acl" in text
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"{name} mounts missing {host}"


def test_compose_secrets_come_from_the_environment_not_the_file() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert "${MQTT_PASSWORD:?" in text and "${INFLUX_TOKEN:?" in text
    assert "password:" not in text.lower().replace("_password:", "")


def test_the_image_carries_every_package() -> None:
    import tomllib

    include = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for package in (p.rstrip("*") for p in include):
        assert f"COPY {package} {package}" in dockerfile, f"deploy/Dockerfile does not copy {package}/"


def test_no_deploy_file_lists_the_domains_by_hand() -> None:
    from schemas.registry import domains

    for path in [DEPLOY / "docker-compose.yml", *(DEPLOY / "compose").iterdir(), *(DEPLOY / "native").iterdir(),
                 DEPLOY / "config" / "topics.txt"]:
        if path.is_file():
            text = path.read_text()
            named = [d for d in domains() if f" {d} " in text or f"telemetry.{d}" in text or f'"{d}"' in text]
            assert not named, f"{path.relative_to(DEPLOY)} names domains {named}: take them from the registry"
