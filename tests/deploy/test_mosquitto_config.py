"""`locker cloud mosquitto-config`: a real Mosquitto loads what it writes for a whole registry.

Three cabinets are registered with `cabinet add`; the command writes the password file and the
ACL; a real mosquitto runs with deploy/compose/mosquitto.conf's settings and those two files.
Each cabinet's credentials then work for its own topics and not another's, and the cloud's user
gets every cabinet's events over the workers' shared subscription.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.db.migrate import upgrade
from cloud.services.registry import verify_mosquitto_password
from locker.cli import app
from locker.cloud_registry_command import PASSWORD_HEADER
from protocol.topics import SHARED_EVENT_SUBSCRIPTION
from tests.deploy.tools import DEPLOY, SHIPPED_CONF, shipped_settings
from tests.services import Mosquitto, MqttProbe, wait_for

LAYOUT = DEPLOY / "cabinet-rs485-24.toml"
CLOUD_PASSWORD = "cloud-broker-pw"
SECRET_KEY = secrets.token_hex(32)


def cli(*args: str, password: str | None = CLOUD_PASSWORD):
    env = {
        "COLUMNS": "200",
        "LOCKER_CLOUD_MQTT_PASSWORD": password,
        "LOCKER_CLOUD_MQTT_USERNAME": None,
        "LOCKER_CLOUD_SECRET_KEY": SECRET_KEY,  # `cabinet add` seals the code key with it
    }
    return CliRunner().invoke(app, ["cloud", *args], env=env)


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A migrated SQLite registry with site `estate` and cabinets cab-1..3; their passwords."""
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    assert cli("site", "add", "estate", "--name", "Estate", "--database-url", url).exit_code == 0
    passwords = {}
    for cab in ("cab-1", "cab-2", "cab-3"):
        passwords[cab] = add_cabinet(url, cab)
    return url, passwords


def add_cabinet(url: str, cab: str) -> str:
    result = cli(
        "cabinet", "add", cab, "--site", "estate", "--layout", str(LAYOUT), "--database-url", url
    )
    assert result.exit_code == 0, result.output
    config = result.output.split(PASSWORD_HEADER)[0]
    return tomllib.loads(config)["mqtt"]["password"]


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def test_a_real_mosquitto_loads_the_generated_files_and_keeps_cabinets_apart(
    registry: tuple[str, dict[str, str]], tmp_path: Path, mosquitto_factory, probes
) -> None:
    url, passwords = registry
    out = tmp_path / "auth"
    result = cli("mosquitto-config", "--out", str(out), "--database-url", url)
    assert result.exit_code == 0, result.output
    assert "the workers' users 'locker-cloud-1', 'locker-cloud-2' and 3 cabinet(s)" in result.output
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
    users = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert sorted(users) == ["cab-1", "cab-2", "cab-3", "locker-cloud-1", "locker-cloud-2"]
    assert verify_mosquitto_password(CLOUD_PASSWORD, users["locker-cloud-1"])
    assert verify_mosquitto_password(CLOUD_PASSWORD, users["locker-cloud-2"])

    broker = mosquitto_factory(allow_anonymous=False, extra_config=shipped_settings(out))
    config = broker.config_path.read_text()
    assert "acl_file" in config  # the shipped settings are in force
    assert "use_username_as_clientid true" in SHIPPED_CONF.read_text()

    def probe(client_id: str, user: str, password: str) -> MqttProbe:
        opened = MqttProbe(broker, client_id, username=user, password=password)
        probes.append(opened)
        return opened

    assert probe("guess", "cab-1", passwords["cab-2"]).connack().is_failure
    assert probe("anonymous-ish", "nobody", "x").connack().is_failure
    cloud = probe("locker-cloud-1", "locker-cloud-1", CLOUD_PASSWORD).connected()
    cab1 = probe("cab-1", "cab-1", passwords["cab-1"]).connected()
    cab2 = probe("cab-2", "cab-2", passwords["cab-2"]).connected()
    cloud.subscribe(SHARED_EVENT_SUBSCRIPTION)  # as the workers do: $share/cloud/...
    cab1.subscribe("lockers/v1/cab-1/cmd")
    cab2.subscribe("lockers/v1/+/cmd")  # it asks for every cabinet's commands

    cab1.publish("lockers/v1/cab-2/event", b"forged by cab-1")
    cab1.publish("lockers/v1/cab-1/event", b"cab-1's own")
    cab2.publish("lockers/v1/cab-2/event", b"cab-2's own")
    cloud.publish("lockers/v1/cab-1/cmd", b"for cab-1")
    cloud.publish("lockers/v1/cab-2/cmd", b"for cab-2")

    # One broker keeps each publisher's order: had the forged event or cab-1's command gone
    # through, it would have arrived before the allowed message that follows it.
    events = [cloud.next_message() for _ in range(2)]
    assert sorted((m.topic, m.payload) for m in events) == [
        ("lockers/v1/cab-1/event", b"cab-1's own"),
        ("lockers/v1/cab-2/event", b"cab-2's own"),
    ]
    assert (cab1.next_message().payload, cab2.next_message().payload) == (
        b"for cab-1",
        b"for cab-2",
    )
    assert cab2.messages.empty() and cab1.messages.empty()

    # A cabinet added later: regenerate, SIGHUP, and it logs in without a broker restart.
    passwords["cab-4"] = add_cabinet(url, "cab-4")
    assert probe("cab-4-early", "cab-4", passwords["cab-4"]).connack().is_failure
    assert cli("mosquitto-config", "--out", str(out), "--database-url", url).exit_code == 0
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGHUP)
    # The reload happens on the broker's next loop: try until cab-4 is let in.
    wait_for(
        lambda: not probe("cab-4", "cab-4", passwords["cab-4"]).connack().is_failure,
        5,
        "mosquitto to reload the password file",
        interval_s=0.05,
    )
    assert isinstance(broker, Mosquitto) and broker.running


def test_without_the_cloud_password_nothing_is_written(
    registry: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, _ = registry
    result = cli(
        "mosquitto-config", "--out", str(tmp_path / "auth"), "--database-url", url, password=None
    )
    assert result.exit_code == 2
    assert "LOCKER_CLOUD_MQTT_PASSWORD" in result.output
    assert not (tmp_path / "auth").exists()


def test_a_cloud_user_named_like_a_cabinet_is_refused(
    registry: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, _ = registry
    out = tmp_path / "auth"
    # Worker users are the stem and a number: `cab` would make cab-1, a cabinet's user.
    result = cli(
        "mosquitto-config", "--out", str(out), "--cloud-user", "cab", "--database-url", url
    )
    assert result.exit_code == 2 and "'cab-1' is also a cabinet id" in result.output
    assert not out.exists()
