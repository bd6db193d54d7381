"""`locker cloud site|cabinet|courier add`: what they write, what they print, what they refuse."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from cabinet.config import load_config
from cloud.db import repo
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Cabinet, CommandOutbox, Compartment, Courier
from cloud.services.registry import (
    mosquitto_cloud_acl_lines,
    mosquitto_password_hash,
    verify_mosquitto_password,
)
from locker.cli import app
from locker.cloud_registry_command import ACL_HEADER, PASSWORD_HEADER, daemon_config, to_toml
from protocol.hashing import verify_pin
from tests.cloud.db.builders import SEAL_KEY
from tests.services import MqttProbe

ENV = {"COLUMNS": "200", "LOCKER_CLOUD_SECRET_KEY": SEAL_KEY.decode()}
LAYOUT = Path(__file__).parents[3] / "deploy" / "cabinet-rs485-24.toml"


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A migrated SQLite database with site `estate`."""
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    result = cli("site", "add", "estate", "--name", "Estate", "--database-url", url)
    assert result.exit_code == 0, result.output
    return url


def cli(*args: str, input: str | None = None):
    return CliRunner().invoke(app, ["cloud", *args], env=ENV, input=input)


def add_cabinet(url: str, cab: str, *extra: str):
    return cli(
        "cabinet", "add", cab, "--site", "estate", "--layout", str(LAYOUT), "--database-url", url,
        "--broker-host", "127.0.0.1", *extra,
    )  # fmt: skip


def printed_parts(output: str) -> tuple[str, str, str]:
    """Split `cabinet add`'s output into (config TOML, password line, ACL lines)."""
    config, rest = output.split(PASSWORD_HEADER + "\n")
    password_line, acl = rest.split(ACL_HEADER + "\n")
    return config, password_line.strip(), acl


def count(url: str, model: type, *where: object) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return session.exec(select(func.count()).select_from(model).where(*where)).one()
    finally:
        engine.dispose()


def test_cabinet_add_prints_a_config_the_daemon_loads(url: str, tmp_path: Path) -> None:
    result = add_cabinet(url, "cab-7", "--address", "1 Road")
    assert result.exit_code == 0, result.output

    config_text, password_line, acl = printed_parts(result.output)
    config = tomllib.loads(config_text)
    assert config["cabinet_id"] == "cab-7"
    assert config["mqtt"]["username"] == "cab-7"
    assert config["mqtt"]["host"] == "127.0.0.1"
    assert "code_key_file" not in config
    engine = make_engine(url)
    with Session(engine) as session:
        cabinet = session.get(Cabinet, "cab-7")
        assert cabinet is not None and cabinet.address == "1 Road"
        # The cabinet hashes codes with the key's text as bytes; the cloud keeps those bytes,
        # sealed under its secret key.
        assert config["code_key"] not in cabinet.code_key
        assert repo.cabinet_code_key(cabinet, seal_key=SEAL_KEY) == config["code_key"].encode()
        assert cabinet.mqtt_password_hash == password_line.split(":", 1)[1]
        assert config["mqtt"]["password"] not in (cabinet.mqtt_password_hash or "")
    engine.dispose()
    assert verify_mosquitto_password(config["mqtt"]["password"], password_line.split(":", 1)[1])
    assert count(url, Compartment, Compartment.cabinet_id == "cab-7") == 24
    assert count(url, Compartment, Compartment.low_door) == 6
    assert acl.splitlines()[0] == "user cab-7"

    (tmp_path / "cab.toml").write_text(config_text)
    daemon = load_config(tmp_path / "cab.toml", env={})
    assert daemon.secret_code_key() == config["code_key"].encode()
    assert len(daemon.layout.compartments) == 24


@pytest.mark.parametrize(
    ("args", "layout", "message"),
    [
        (("--site", "nowhere"), None, "no site 'nowhere'"),
        ((), '[[layout.compartments]]\nid = "A01"\nsize = "M"\ncolour = "red"\n', "colour"),
        ((), '[[layout.compartments]]\nid = "A01"\nsize = "XXL"\n', "size must be one of"),
        ((), '[[layout.compartments]]\nid = "A01"\nsize = "M"\n' * 2, "listed twice"),
        ((), "cabinet_id = 'x'\n", "no [[layout.compartments]]"),
        ((), "[[layout.compartments\n", "cannot read the layout"),
    ],
)
def test_bad_input_is_refused_with_exit_2_and_nothing_written(
    url: str, tmp_path: Path, args: tuple[str, ...], layout: str | None, message: str
) -> None:
    path = LAYOUT
    if layout is not None:
        path = tmp_path / "layout.toml"
        path.write_text(layout)
    result = cli(
        "cabinet", "add", "cab-8", "--site", "estate", "--layout", str(path), "--database-url",
        url, *args,
    )  # fmt: skip

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert count(url, Cabinet) == 0
    assert count(url, Compartment) == 0


def test_a_taken_cabinet_id_is_refused(url: str) -> None:
    assert add_cabinet(url, "cab-7").exit_code == 0
    again = add_cabinet(url, "cab-7")
    assert again.exit_code == 2
    assert "exists already" in again.output
    assert count(url, Compartment) == 24


def test_courier_add_hashes_the_pin_and_pushes_to_the_site_cabinets(url: str) -> None:
    for cab in ("cab-1", "cab-2"):
        assert add_cabinet(url, cab).exit_code == 0

    result = cli(
        "courier", "add", "sf-42", "--carrier", "SF", "--site", "estate", "--database-url", url,
        input="2468\n2468\n",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "2468" not in result.output.replace("PIN", "")  # the hidden prompt echoes nothing
    engine = make_engine(url)
    with Session(engine) as session:
        courier = session.get(Courier, "sf-42")
        assert courier is not None and verify_pin("2468", courier.pin_hash)
        pushed = session.exec(select(CommandOutbox).where(CommandOutbox.type == "couriers.put"))
        rows = list(pushed)
    engine.dispose()
    assert sorted(row.cabinet_id for row in rows) == ["cab-1", "cab-2"]
    assert {row.data["couriers"][0]["pin_hash"] for row in rows} == {courier.pin_hash}

    bad_pin = cli(
        "courier", "add", "sf-43", "--carrier", "SF", "--site", "estate", "--pin", "12",
        "--database-url", url,
    )  # fmt: skip
    assert bad_pin.exit_code == 2 and "4 to 12 digits" in bad_pin.output
    assert count(url, Courier) == 1

    # Ids ignore case (the kiosk's keyboard has capitals only): SF-42 is sf-42, taken.
    same = cli(
        "courier", "add", "SF-42", "--carrier", "SF", "--site", "estate", "--pin", "2468",
        "--database-url", url,
    )  # fmt: skip
    assert same.exit_code == 2 and "exists already (as 'sf-42': ids ignore case)" in same.output
    assert count(url, Courier) == 1


def test_courier_add_keeps_the_phone_in_e164_and_shows_it_masked(url: str) -> None:
    result = cli(
        "courier", "add", "sf-44", "--carrier", "SF", "--site", "estate", "--pin", "2468",
        "--phone", "139 1234 5678", "--database-url", url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "+86 139****5678" in result.output and "12345678" not in result.output
    engine = make_engine(url)
    with Session(engine) as session:
        assert session.get(Courier, "sf-44").phone == "+8613912345678"
    engine.dispose()

    bad = cli(
        "courier", "add", "sf-45", "--carrier", "SF", "--site", "estate", "--pin", "2468",
        "--phone", "12345", "--database-url", url,
    )  # fmt: skip
    assert bad.exit_code == 2 and "the courier's phone" in bad.output
    assert count(url, Courier) == 1


def test_site_add_refuses_a_taken_id_and_a_bad_policy(url: str) -> None:
    again = cli("site", "add", "estate", "--name", "X", "--database-url", url)
    assert again.exit_code == 2 and "exists already" in again.output
    bad = cli("site", "add", "s2", "--name", "X", "--timezone", "Mars/Base", "--database-url", url)
    assert bad.exit_code == 2 and "error:" in bad.output


# --- a real Mosquitto loads what `cabinet add` printed --------------------------------------------


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def test_printed_credentials_and_acl_work_in_a_real_mosquitto(
    url: str, tmp_path: Path, mosquitto_factory, probes: list[MqttProbe]
) -> None:
    parts = {}
    for cab in ("cab-1", "cab-2"):
        result = add_cabinet(url, cab)
        assert result.exit_code == 0, result.output
        config, password_line, acl = printed_parts(result.output)
        parts[cab] = (tomllib.loads(config)["mqtt"]["password"], password_line, acl)
    passwd = tmp_path / "passwd"
    lines = [line for _, line, _ in parts.values()]
    passwd.write_text("\n".join([*lines, f"cloud:{mosquitto_password_hash('cloud-pw')}"]) + "\n")
    passwd.chmod(0o600)
    acl_text = "\n\n".join(
        [*(acl for _, _, acl in parts.values()), mosquitto_cloud_acl_lines("cloud")]
    )
    broker = mosquitto_factory(
        acl=acl_text, allow_anonymous=False, extra_config=f"password_file {passwd}\n"
    )

    def probe(client_id: str, username: str, password: str) -> MqttProbe:
        opened = MqttProbe(broker, client_id, username=username, password=password)
        probes.append(opened)
        return opened

    assert probe("intruder", "cab-1", "wrong").connack().is_failure
    cloud = probe("cloud", "cloud", "cloud-pw").connected()
    cab1 = probe("cab-1", "cab-1", parts["cab-1"][0]).connected()
    cloud.subscribe("lockers/v1/#")
    cab1.subscribe("lockers/v1/cab-1/cmd")

    cab1.publish("lockers/v1/cab-2/event", b"forbidden")
    cab1.publish("lockers/v1/cab-1/event", b"allowed")
    cloud.publish("lockers/v1/cab-1/cmd", b"command")

    # One publisher, one subscriber, one QoS: the broker keeps order, so had the forbidden message
    # been relayed it would have arrived before the allowed one.
    first = cloud.next_message()
    assert (first.topic, first.payload) == ("lockers/v1/cab-1/event", b"allowed")
    command = cab1.next_message()
    assert (command.topic, command.payload) == ("lockers/v1/cab-1/cmd", b"command")
    assert cab1.messages.empty()


def test_an_empty_database_is_a_clear_error(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    result = cli("site", "add", "s1", "--name", "X", "--database-url", empty)
    assert result.exit_code == 1
    assert "locker cloud db upgrade" in result.output


def test_cloud_acl_prints_the_workers_block() -> None:
    result = cli("cabinet", "cloud-acl", "--user", "workers", "--workers", "2")
    assert result.exit_code == 0, result.output
    # One user per worker: the broker pins the client id to the user name.
    assert result.output.splitlines() == [
        "user workers-1",
        "topic readwrite lockers/v1/#",
        "",
        "user workers-2",
        "topic readwrite lockers/v1/#",
    ]


def test_a_cabinet_reaches_a_remote_broker_over_tls_by_default(tmp_path: Path) -> None:
    """The printed config of a cabinet whose broker is another host says TLS on 8883 (the port
    deploy/compose publishes; 1883 stays on the broker's host), and the daemon loads it."""
    secrets = {"cabinet_id": "cab-1", "code_key": "k" * 64, "mqtt_password": "pw"}
    layout = {"layout": {"compartments": [{"id": "A01", "size": "M", "driver": "gpio"}]}}
    layout["layout"]["compartments"][0] |= {"relay_pin": 17, "sensor_pin": 27}
    remote = daemon_config(layout, **secrets, broker_host="mqtt.example.com")
    assert (remote["mqtt"]["port"], remote["mqtt"]["tls"]) == (8883, {})
    path = tmp_path / "cabinet.toml"
    path.write_text(to_toml(remote))
    loaded = load_config(path, env={})
    assert loaded.mqtt.tls is not None and loaded.mqtt.port == 8883
    local = daemon_config(layout, **secrets, broker_host="127.0.0.1")
    assert (local["mqtt"]["port"], "tls" in local["mqtt"]) == (1883, False)
    explicit = daemon_config(layout, **secrets, broker_host="mqtt.example.com", broker_port=1884)
    assert (explicit["mqtt"]["port"], "tls" in explicit["mqtt"]) == (1884, False)


def test_site_add_takes_the_sms_signatures_and_site_show_prints_them(url: str) -> None:
    added = cli(
        "site", "add", "s3", "--name", "X", "--sms-signature", "滨江快递柜",
        "--sms-signature-en", "Riverside Lockers", "--database-url", url,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = cli("site", "show", "s3", "--database-url", url)
    assert "【滨江快递柜】" in shown.output and "[Riverside Lockers]" in shown.output
    bad = cli(
        "site", "add", "s4", "--name", "X", "--sms-signature", "【柜】", "--database-url", url
    )  # fmt: skip
    assert bad.exit_code == 2 and "sms_signature" in bad.output
