"""Config: the deploy examples load, the environment overrides, and each bad case names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cabinet.config import load_config
from cabinet.drivers import GpioDriver, MixedDriver, Rs485Driver, build_driver
from cabinet.errors import ConfigError
from protocol.hashing import pin_hash, verify_pin

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
ENV = {"LOCKER_CODE_KEY": "test-key"}

BASE = """
cabinet_id = "cab-t"
code_key = "k"

[buses.main]
port = "/dev/null"

[[boards]]
address = 1
channels = 24

[[layout.compartments]]
id = "A1"
size = "M"
driver = "rs485"
board = 1
channel = 1

[[layout.compartments]]
id = "A2"
size = "S"
driver = "rs485"
board = 1
channel = 2

[[layout.compartments]]
id = "G1"
size = "L"
low_door = true
driver = "gpio"
relay_pin = 17
sensor_pin = 27

[[layout.compartments]]
id = "A4"
size = "XL"
driver = "rs485"
board = 1
channel = 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cabinet.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "count", "kind"),
    [("cabinet-rs485-24.toml", 24, Rs485Driver), ("cabinet-gpio-small.toml", 6, GpioDriver)],
)
def test_the_deploy_examples_load(name, count, kind):
    config = load_config(DEPLOY / name, env=ENV)
    assert len(config.layout.compartments) == count
    assert config.secret_code_key() == b"test-key"
    assert isinstance(build_driver(config), kind)


def test_the_environment_overrides_the_file(tmp_path):
    env = {
        **ENV,
        "LOCKER_MQTT__PASSWORD": "s3cret",
        "LOCKER_BUSES__MAIN__PORT": "/dev/ttyUSB7",
        "LOCKER_BUSES__MAIN__POLL_INTERVAL_S": "2.5",
        "LOCKER_KIOSK_PORT": "9001",
        "UNRELATED": "x",
    }
    config = load_config(write(tmp_path, BASE), env=env)
    assert config.code_key.get_secret_value() == "test-key"
    assert config.mqtt.password.get_secret_value() == "s3cret"
    assert config.buses["main"].port == "/dev/ttyUSB7"
    assert config.buses["main"].poll_interval_s == 2.5
    assert config.kiosk_port == 9001
    assert "s3cret" not in repr(config) and "test-key" not in repr(config)


def test_the_kiosk_settings_have_defaults_and_load_from_file_and_environment(tmp_path):
    config = load_config(write(tmp_path, BASE), env={})
    assert (config.kiosk_host, config.kiosk_port) == ("127.0.0.1", 8080)
    assert config.kiosk_language == "zh-CN" and config.kiosk_idle_s == 60
    assert config.cloud_api_url is None and config.technician_pin_hash is None
    assert config.scan_qr_refresh_s == 60  # a new scan QR a minute; its nonce lives five
    assert config.scanner_port is None
    hashed = pin_hash("2468", b"0123456789abcdef")
    text = BASE.replace(
        'code_key = "k"\n',
        f'code_key = "k"\nkiosk_language = "en"\ntechnician_pin_hash = "{hashed}"\n',
        1,
    )
    env = {
        "LOCKER_KIOSK_IDLE_S": "90",
        "LOCKER_CLOUD_API_URL": "https://lockers.example.com",
        "LOCKER_SCANNER_PORT": "/dev/ttyACM0",
    }
    config = load_config(write(tmp_path, text), env=env)
    assert config.kiosk_language == "en" and config.kiosk_idle_s == 90
    assert config.cloud_api_url == "https://lockers.example.com"
    assert config.scanner_port == "/dev/ttyACM0"
    assert verify_pin("2468", config.technician_pin_hash.get_secret_value())
    assert hashed not in repr(config)


def test_a_key_file_is_read_when_no_key_is_given(tmp_path):
    key_file = tmp_path / "code.key"
    key_file.write_text("from-file\n")
    text = BASE.replace('code_key = "k"', f'code_key_file = "{key_file}"')
    assert load_config(write(tmp_path, text), env={}).secret_code_key() == b"from-file"


def test_a_mixed_layout_builds_a_mixed_driver(tmp_path):
    driver = build_driver(load_config(write(tmp_path, BASE), env={}))
    assert isinstance(driver, MixedDriver)
    assert driver.compartments == {"A1", "A2", "G1", "A4"}


BAD = [
    (
        "channel beyond the board",
        ("channel = 4", "channel = 30"),
        "layout.compartments[3].channel",
        "channel 30 is beyond board 1's 24 channels",
    ),
    ("duplicate id", ('id = "A4"', 'id = "A1"'), "layout.compartments[3].id", "used twice"),
    (
        "two compartments on one channel",
        ("channel = 4", "channel = 2"),
        "layout.compartments[3].channel",
        "already compartment 'A2'",
    ),
    (
        "undefined board",
        ("board = 1\nchannel = 4", "board = 9\nchannel = 4"),
        "layout.compartments[3].board",
        "board 9 is not defined",
    ),
    ("bad size", ('size = "XL"', 'size = "XXL"'), "layout.compartments[3].size", "'S'"),
    # The wire's cap: the channel byte names 1-255 (0xFF) and 32 status bytes hold 8 * 32 = 256.
    ("too many channels", ("channels = 24", "channels = 256"), "boards[0].channels", "255"),
    ("no channels", ("channels = 24", "channels = 0"), "boards[0].channels", "1"),
    ("bad address", ("address = 1", "address = 99"), "boards[0].address", "less than"),
    ("undefined bus", ("address = 1", 'address = 1\nbus = "side"'), "boards[0].bus", "side"),
    ("a typo", ("low_door = true", "low_dor = true"), "layout.compartments[2].low_dor", "Extra"),
    (
        "gpio pin used twice",
        ("sensor_pin = 27", 'sensor_pin = "GPIO17"'),
        "layout.compartments[2].sensor_pin",
        "already compartment 'G1'",
    ),
    (
        "gpio without its sensor",
        ("sensor_pin = 27\n", ""),
        "layout.compartments[2].sensor_pin",
        "needs its sensor_pin",
    ),
    (
        "rs485 without a channel",
        ("board = 1\nchannel = 4", "board = 1"),
        "layout.compartments[3].channel",
        "needs its lock channel",
    ),
    ("no code key", ('code_key = "k"', ""), "code_key", "LOCKER_CODE_KEY"),
    ("bad cabinet id", ('cabinet_id = "cab-t"', 'cabinet_id = "cab t"'), "cabinet_id", "pattern"),
    (
        "kiosk language",
        ('code_key = "k"', 'code_key = "k"\nkiosk_language = "fr"'),
        "kiosk_language",
        "'zh-CN' or 'en'",
    ),
    (
        "kiosk idle too short",
        ('code_key = "k"', 'code_key = "k"\nkiosk_idle_s = 2'),
        "kiosk_idle_s",
        "greater than or equal to 10",
    ),
    (
        "cloud url without a scheme",
        ('code_key = "k"', 'code_key = "k"\ncloud_api_url = "lockers.example.com"'),
        "cloud_api_url",
        "pattern",
    ),
    (
        "technician PIN in clear",
        ('code_key = "k"', 'code_key = "k"\ntechnician_pin_hash = "2468"'),
        "technician_pin_hash",
        "locker cabinet pin-hash",
    ),
]


@pytest.mark.parametrize(("case", "edit", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(tmp_path, case, edit, key, fragment):
    old, new = edit
    assert old in BASE, case
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, BASE.replace(old, new, 1)), env={})
    assert caught.value.key == key
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{key}: ")


def test_a_bad_environment_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, BASE), env={"LOCKER_KIOSK_PORT": "eighty"})
    assert caught.value.key == "kiosk_port"


def test_unreadable_and_invalid_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "cabinet_id = "), env={})


def test_a_board_of_50_channels_loads_and_its_50th_door_may_be_used(tmp_path):
    # Vendors sell 50-channel boards: the size is the board's, not a multiple of 8 or a cap of 48.
    assert "channels = 24" in BASE
    config = load_config(write(tmp_path, BASE.replace("channels = 24", "channels = 50")), env={})
    assert config.boards[0].channels == 50
