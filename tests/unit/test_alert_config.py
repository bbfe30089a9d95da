"""The router's configuration and acknowledge links, without services: what --check-config says, where
the default config is looked up, and what a signed link accepts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alerts.ackserver import sign_link, verify_link
from alerts.router import AlertConfig, default_config_path

REPO = Path(__file__).parents[2]
SHIPPED = REPO / "deploy" / "config" / "alerts.toml"


def check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartcity.cli", "alerts", "serve", "--check-config", "--config",
                           str(config)], cwd=REPO, env=env, capture_output=True, text=True)


def bare_env(tmp_path: Path) -> dict[str, str]:
    """A machine where no operator has set anything: an empty stack folder, no keys in the environment."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
    env.update(SMARTCITY_STACK_DIR=str(tmp_path / "stack"), PYTHONPATH=str(REPO))
    return env


def test_check_config_names_the_unservable_subscriber_and_the_fix(tmp_path: Path) -> None:
    result = check(SHIPPED, bare_env(tmp_path))
    assert result.returncode == 1
    assert "ecology-bureau" in result.stdout and "webhook-key" in result.stdout and "SMARTCITY_WEBHOOK_ECOLOGY" in result.stdout
    assert "alerts-link-key" in result.stdout
    assert "3 subscribers, 2 can be served (operations-centre, forest-duty-officer)" in result.stdout


def test_check_config_passes_once_the_deploy_secrets_exist(tmp_path: Path) -> None:
    secrets = tmp_path / "stack" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "webhook-key").write_text("k1\n")
    (secrets / "alerts-link-key").write_text("k2\n")
    result = check(SHIPPED, bare_env(tmp_path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("OK")


def test_a_broken_config_is_reported_with_the_file_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "alerts.toml"
    bad.write_text('[[subscriber]]\nname = "x"\nchannel = "pager"\n')
    result = check(bad, bare_env(tmp_path))
    assert result.returncode == 2 and str(bad) in result.stderr and "channel" in result.stderr
    result = check(tmp_path / "missing.toml", bare_env(tmp_path))
    assert result.returncode == 2 and "SMARTCITY_ALERTS_CONFIG" in result.stderr


def test_the_default_config_path_follows_the_working_directory_not_the_installed_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMARTCITY_ALERTS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_config_path() == tmp_path / "deploy" / "config" / "alerts.toml"
    monkeypatch.setenv("SMARTCITY_ALERTS_CONFIG", "/etc/smartcity/alerts.toml")
    assert default_config_path() == Path("/etc/smartcity/alerts.toml")


def test_the_shipped_config_loads() -> None:
    config = AlertConfig.load(SHIPPED)
    assert {s.channel for s in config.subscriber} == {"mqtt", "webhook", "email"}


def test_a_signed_link_is_accepted_until_it_expires_and_only_as_signed() -> None:
    link = sign_link("http://h:9311/", b"key", "1a2b3c4d5e6f-2", "bureau", exp=1000)
    query = link.split("?", 1)[1]
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert link.startswith("http://h:9311/ack?")
    assert verify_link(b"key", query, now=999) == ("1a2b3c4d5e6f-2", "bureau")
    with pytest.raises(TimeoutError):
        verify_link(b"key", query, now=1001)
    for tampered in ({**params, "id": "1a2b3c4d5e6f-3"}, {**params, "to": "mallory"}, {**params, "exp": "99999"}):
        with pytest.raises(PermissionError):
            verify_link(b"key", "&".join(f"{k}={v}" for k, v in tampered.items()), now=0)
    with pytest.raises(PermissionError):
        verify_link(b"other key", query, now=0)
    with pytest.raises(PermissionError):
        verify_link(b"key", "id=x", now=0)


@pytest.mark.parametrize("exp", ["+1000", "01000", "1000.0", "1_000", "%201000", "1000%20", "1e3", "１０００"])
def test_a_link_has_one_canonical_form_exp_in_plain_digits(exp: str) -> None:
    link = sign_link("http://h", b"key", "1a2b3c4d5e6f-2", "bureau", exp=1000)
    with pytest.raises(PermissionError):
        verify_link(b"key", link.split("?", 1)[1].replace("exp=1000", f"exp={exp}"), now=0)


def test_a_link_with_a_parameter_twice_or_an_extra_one_is_refused() -> None:
    query = sign_link("http://h", b"key", "1a2b3c4d5e6f-2", "bureau", exp=1000).split("?", 1)[1]
    for bad in (query + "&to=mallory", query + "&x=1", query.upper(), query + "&"):
        with pytest.raises(PermissionError):
            verify_link(b"key", bad, now=0)
