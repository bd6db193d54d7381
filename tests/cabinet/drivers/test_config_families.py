"""Config for cabinets with KR-CU16 boards: a family per bus, board 1 on two buses, sensors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cabinet.config import load_config
from cabinet.drivers import MixedDriver, Rs485Driver, build_driver
from cabinet.errors import ConfigError

ENV = {"LOCKER_CODE_KEY": "test-key"}

MIXED = """
cabinet_id = "cab-m"

[buses.main]
port = "/dev/ttyUSB0"

[buses.kr]
port = "/dev/ttyUSB1"
family = "krcu"

[[boards]]
bus = "main"
address = 1
channels = 24

[[boards]]
bus = "kr"
address = 1
channels = 16

[[boards]]
bus = "kr"
address = 2
sensors = false
channels = 16

[[layout.compartments]]
id = "A1"
size = "S"
driver = "rs485"
bus = "main"
board = 1
channel = 1

[[layout.compartments]]
id = "K1"
size = "L"
driver = "rs485"
bus = "kr"
board = 1
channel = 1

[[layout.compartments]]
id = "K2"
size = "L"
driver = "rs485"
board = 2
channel = 1
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "cabinet.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=ENV)


def test_a_mixed_cabinet_loads_with_a_family_per_bus(tmp_path: Path) -> None:
    config = load(tmp_path, MIXED)
    assert config.buses["main"].family == "8a" and config.buses["kr"].family == "krcu"
    assert config.sensed_compartments() == {"K1"}  # board 2 was bought without sensors
    driver = build_driver(config)
    assert isinstance(driver, MixedDriver)
    families = sorted(part["family"] for part in driver.health()["drivers"])
    assert families == ["8a", "krcu"]
    kr = next(d for d in driver._drivers if isinstance(d, Rs485Driver) and "kr" in d.name)
    assert kr._baud == 19200  # the family's rate when the bus names none


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (('bus = "main"\nboard = 1', "board = 1"), "layout.compartments[0].bus", "name this"),
        (("address = 2\nsensors", "address = 16\nsensors"), "boards[2].address", "1-15"),
        (("channels = 16\n\n[[layout", "channels = 24\n\n[[layout"), "boards[2].channels", "16"),
        (('port = "/dev/ttyUSB1"', 'port = "/dev/ttyUSB0"'), "buses.kr.port", "one bus"),
        (('family = "krcu"', 'family = "kerong"'), "buses.kr.family", ""),
    ],
)
def test_bad_family_configs_name_their_key(
    tmp_path: Path, change: tuple[str, str], key: str, words: str
) -> None:
    old, new = change
    assert old in MIXED
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, MIXED.replace(old, new, 1))
    assert caught.value.key == key, caught.value
    assert words in str(caught.value)
