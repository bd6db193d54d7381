"""The cabinet daemon's settings: a TOML file plus `LOCKER_` environment overrides, checked whole.

`load_config(path, env=os.environ)` reads the file, lets the environment override any field
(`LOCKER_MQTT__PASSWORD`, `LOCKER_CODE_KEY`, `LOCKER_BUSES__MAIN__PORT`: prefix `LOCKER_`, nested
keys joined by `__`), validates the result and checks the layout against the hardware it names.
Anything wrong raises one `ConfigError` naming the key (`layout.compartments[3].channel: channel
30 is beyond board 1's 24 channels`), before any driver opens a port or drives a pin.

Buses are a table keyed by bus name (`[buses.main]`) so the environment can reach them; boards
and compartments are arrays of tables. The pickup-code key is a secret: give it in
`LOCKER_CODE_KEY` or in a file named by `code_key_file`, never in the TOML itself if it is shared.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from cabinet.errors import ConfigError
from protocol.hashing import PIN_HASH_SCHEME
from protocol.lockboard.family_8a import MAX_CHANNELS
from protocol.lockboard.family_krcu import CHANNELS as KRCU_CHANNELS
from protocol.lockboard.family_krcu import MAX_BOARD as KRCU_MAX_BOARD
from protocol.lockboard.family_krcu import MIN_BOARD as KRCU_MIN_BOARD

ENV_PREFIX = "LOCKER_"
_ENV: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("_ENV")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsConfig(_Strict):
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


class MqttConfig(_Strict):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(60, ge=5, le=3600)
    # Unacked events are sent again when no event-ack came for this long: the recovery from a
    # broker that lost them (a crash before its snapshot) or a worker whose session was dropped
    # with them in flight. Shorter costs duplicates the cloud ignores; longer, a late parcel.
    resend_unacked_after_s: float = Field(60, ge=1, le=3600)
    tls: TlsConfig | None = None


class BusConfig(_Strict):
    """One RS485 bus: the serial port, its board family, its adapter, and the bus's clocks."""

    port: str  # a device path or a pyserial URL
    # The boards' family (docs/lockboard.md): "8a" (the 8A/80 boards) or "krcu" (Kerong KR-CU16,
    # with occupancy sensors). One family per bus: they talk at different rates.
    family: Literal["8a", "krcu"] = "8a"
    baud: int | None = None  # None: the family's rate (9600 for 8a, 19200 for krcu)
    echo: bool = False  # the USB-RS485 adapter hears its own transmission
    query_timeout_s: float = Field(0.1, gt=0, le=10)
    unlock_timeout_s: float = Field(1.5, gt=0, le=30)
    quiet_gap_s: float = Field(0.025, gt=0, le=1)
    inter_request_gap_s: float = Field(0.005, ge=0, le=1)
    poll_interval_s: float = Field(0.5, ge=0, le=3600)  # 0: no periodic polls
    query_retries: int = Field(2, ge=0, le=10)


class BoardConfig(_Strict):
    """One lock-control board: which bus, which DIP address, which variant."""

    bus: str = "main"
    address: int = Field(ge=1, le=0x40)
    # Any size the wire allows (docs/lockboard.md: 1-255, the channel byte), not a fixed cap.
    channels: int = Field(24, ge=1, le=MAX_CHANNELS)
    polarity: Literal["normal", "inverted"] = "normal"
    unlock_reply_heads: list[Literal[0x8A, 0x80]] = Field(default_factory=lambda: [0x8A, 0x80])
    # KR-CU boards: whether the compartments have occupancy sensors fitted, and what a set
    # sensor bit means ("normal": something inside; the spec is unsure, so it is a setting).
    sensors: bool = True
    sensor_polarity: Literal["normal", "inverted"] = "normal"
    # KR-CU boards: whether the board answers an unlock with its status (some send nothing; the
    # driver confirms by a status read either way, and then counts no timeout).
    answers_unlock: bool = True


class GpioConfig(_Strict):
    """Settings shared by every GPIO door (gpiozero names the pins; GPIOZERO_PIN_FACTORY picks
    the pin library, as gpiozero documents)."""

    pulse_s: float = Field(0.5, gt=0, le=10)
    release_window_s: float = Field(2.0, gt=0, le=60)
    relay_active_high: bool = True
    sensor_pull_up: bool = True
    bounce_time_s: float | None = Field(0.05, ge=0, le=1)


class CompartmentConfig(_Strict):
    """One compartment: its size, and where its lock and door sensor are wired."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    size: Literal["S", "M", "L", "XL"]
    low_door: bool = False
    driver: Literal["rs485", "gpio"]
    board: int | None = None  # rs485
    channel: int | None = None  # rs485
    # rs485: the board's bus, needed only when two buses have a board at that address (an 8A/80
    # board and a KR-CU board are both board 1 out of the box).
    bus: str | None = None
    relay_pin: int | str | None = None  # gpio
    sensor_pin: int | str | None = None  # gpio


class LayoutConfig(_Strict):
    compartments: list[CompartmentConfig] = Field(min_length=1)


class CabinetConfig(BaseSettings):
    """Everything the cabinet daemon is configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    cabinet_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Which pushed config this is (docs/enrolment.md): its version and the SHA-256 of its body
    # (protocol.config_push), written by `locker cabinet enrol` and `config.put`; the birth
    # names the hash. Unset in a config written by hand.
    config_version: int | None = Field(None, ge=1)
    config_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    code_key: SecretStr | None = None
    code_key_file: Path | None = None
    journal_path: Path = Path("/var/lib/locker/journal.sqlite3")
    # The touchscreen kiosk (cabinet/kiosk): served by the daemon, shown by Chromium in kiosk mode.
    kiosk_port: int = Field(8080, ge=1, le=65535)
    kiosk_host: str = "127.0.0.1"  # the screen is on this computer: nobody else should reach it
    kiosk_language: Literal["zh-CN", "en"] = "zh-CN"  # the screen's language until switched
    # The cabinet's name on the screen's header, in each language (unset: the cabinet id).
    cabinet_name: str = Field("", max_length=60)
    cabinet_name_en: str = Field("", max_length=60)
    kiosk_idle_s: int = Field(60, ge=10, le=3600)  # untouched this long: back to the home screen
    # The cloud's HTTP API root (https://lockers.example), for the idle screen's scan-to-open QR;
    # without it the screen says "scan unavailable".
    cloud_api_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # How often the screen fetches a new scan QR (its nonce lives 5 minutes in the cloud).
    scan_qr_refresh_s: float = Field(60.0, ge=1, le=240)
    # The technician's PIN for the maintenance screen, as `locker cabinet pin-hash` prints it
    # (protocol/hashing.py's scrypt string); without it the maintenance screen stays shut.
    technician_pin_hash: SecretStr | None = None
    # A serial QR scanner (a USB scanner that types like a keyboard needs nothing here).
    scanner_port: str | None = None  # a device path or a pyserial URL
    scanner_baud: int = Field(9600, ge=300, le=921600)
    # Prometheus metrics (cabinet/metrics.py) on http://metrics_host:metrics_port/metrics; off
    # unless a port is set. No token guards it, so it stays on 127.0.0.1 unless the site's
    # Prometheus (or a node exporter's proxy) is on the cabinet's own network.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # `json`: one JSON object per log line (time, level, logger, message) for a log pipeline.
    log_format: Literal["text", "json"] = "text"
    alarm_s: int = Field(120, ge=10, le=86400)  # a door left open this long raises door.left_open
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    buses: dict[str, BusConfig] = Field(default_factory=dict)
    boards: list[BoardConfig] = Field(default_factory=list)
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    layout: LayoutConfig

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file; the environment is the one load_config was given.
        return (_MappingEnvSource(settings_cls), init_settings)

    def secret_code_key(self) -> bytes:
        """The pickup-code key's bytes."""
        if self.code_key is not None:
            return self.code_key.get_secret_value().encode()
        assert self.code_key_file is not None  # check_config made sure of one or the other
        return self.code_key_file.read_bytes().strip()

    def board(self, address: int, bus: str | None = None) -> BoardConfig:
        return next(
            board
            for board in self.boards
            if board.address == address and (bus is None or board.bus == bus)
        )

    def bus_of(self, compartment: CompartmentConfig) -> str:
        """The bus an rs485 compartment's board is on (check_config made it unambiguous)."""
        assert compartment.board is not None
        return compartment.bus or self.board(compartment.board).bus

    def sensed_compartments(self) -> frozenset[str]:
        """Compartments whose board has an occupancy sensor for them (KR-CU, sensors fitted)."""
        sensed_boards = {
            (board.bus, board.address)
            for board in self.boards
            if board.sensors and self.buses[board.bus].family == "krcu"
        }
        return frozenset(
            c.id
            for c in self.layout.compartments
            if c.driver == "rs485" and (self.bus_of(c), c.board) in sensed_boards
        )


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source, reading the mapping given to load_config."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENV.get({})
        if self.case_sensitive:
            return dict(env)
        return {key.lower(): value for key, value in env.items()}


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> CabinetConfig:
    """Read, override and check the config; any problem is one ConfigError naming its key."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as err:
        raise ConfigError("", f"cannot read config file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"{path} is not valid TOML: {err}") from err
    return config_from_mapping(data, env)


def config_from_mapping(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> CabinetConfig:
    """Check a parsed config (with the environment's overrides) as `load_config` does."""
    token = _ENV.set(dict(os.environ if env is None else env))
    try:
        config = CabinetConfig(**data)
    except ValidationError as err:
        raise _config_error(err) from None
    finally:
        _ENV.reset(token)
    check_config(config)
    return config


def _config_error(err: ValidationError) -> ConfigError:
    problems = [(_key(error["loc"]), error["msg"]) for error in err.errors()]
    key, message = problems[0]
    if len(problems) > 1:
        message += "; also " + "; ".join(f"{k}: {m}" for k, m in problems[1:])
    return ConfigError(key, message)


def _key(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key


def check_config(config: CabinetConfig) -> None:
    """Check what no single field can: the layout against the boards, buses and pins it names."""
    # The key itself (usually from LOCKER_CODE_KEY) wins over a key file named in the TOML.
    if config.code_key is None:
        if config.code_key_file is None:
            raise ConfigError(
                "code_key", f"give the pickup-code key in {ENV_PREFIX}CODE_KEY or code_key_file"
            )
        if not config.code_key_file.is_file():
            raise ConfigError("code_key_file", f"{config.code_key_file} is not a readable file")
    if config.mqtt.username is not None and config.mqtt.username != config.cabinet_id:
        # The broker pins the client id to the user name and the ACL gives the user name's own
        # topics: a cabinet logs in as itself, and its client id is its id.
        raise ConfigError(
            "mqtt.username",
            f"must be the cabinet id {config.cabinet_id!r} (the broker's user for this cabinet), "
            f"not {config.mqtt.username!r}",
        )
    if config.technician_pin_hash is not None and not _is_pin_hash(
        config.technician_pin_hash.get_secret_value()
    ):
        raise ConfigError(
            "technician_pin_hash",
            "not a PIN hash: make one with `locker cabinet pin-hash` (scrypt$16384$8$1$...)",
        )
    ports: dict[str, str] = {}
    for name, bus in config.buses.items():
        if bus.port in ports:
            raise ConfigError(
                f"buses.{name}.port",
                f"{bus.port} is already bus {ports[bus.port]!r}'s: one bus (one board family) "
                "per port; boards of two families need two adapters",
            )
        ports[bus.port] = name
    boards: dict[tuple[str, int], BoardConfig] = {}
    for index, board in enumerate(config.boards):
        key = f"boards[{index}]"
        if (board.bus, board.address) in boards:
            raise ConfigError(
                f"{key}.address",
                f"board address {board.address} is defined twice on bus {board.bus!r}",
            )
        if board.bus not in config.buses:
            raise ConfigError(f"{key}.bus", f"no bus named {board.bus!r} under [buses]")
        if config.buses[board.bus].family == "krcu":
            if not KRCU_MIN_BOARD <= board.address <= KRCU_MAX_BOARD:
                raise ConfigError(
                    f"{key}.address",
                    f"a KR-CU board address is {KRCU_MIN_BOARD}-{KRCU_MAX_BOARD} "
                    f"(its DIP switches + 1), not {board.address}",
                )
            if board.channels > KRCU_CHANNELS:
                raise ConfigError(
                    f"{key}.channels", f"a KR-CU board has at most {KRCU_CHANNELS} channels"
                )
        boards[(board.bus, board.address)] = board
    ids: set[str] = set()
    locks: dict[tuple[str, int, int], str] = {}
    pins: dict[str, str] = {}
    for index, compartment in enumerate(config.layout.compartments):
        key = f"layout.compartments[{index}]"
        if compartment.id in ids:
            raise ConfigError(f"{key}.id", f"compartment id {compartment.id!r} is used twice")
        ids.add(compartment.id)
        if compartment.driver == "rs485":
            _check_rs485(key, compartment, boards, locks)
        else:
            _check_gpio(key, compartment, pins)


def _is_pin_hash(text: str) -> bool:
    parts = text.split("$")
    return len(parts) == 6 and parts[0] == PIN_HASH_SCHEME and all(parts[1:])


def _check_rs485(
    key: str,
    compartment: CompartmentConfig,
    boards: Mapping[tuple[str, int], BoardConfig],
    locks: dict[tuple[str, int, int], str],
) -> None:
    for field in ("relay_pin", "sensor_pin"):
        if getattr(compartment, field) is not None:
            raise ConfigError(f"{key}.{field}", "an rs485 compartment has no GPIO pins")
    if compartment.board is None:
        raise ConfigError(f"{key}.board", "an rs485 compartment needs its board address")
    if compartment.channel is None:
        raise ConfigError(f"{key}.channel", "an rs485 compartment needs its lock channel")
    candidates = [
        b
        for (bus, address), b in boards.items()
        if address == compartment.board and compartment.bus in (None, bus)
    ]
    if not candidates:
        where = f" on bus {compartment.bus!r}" if compartment.bus else ""
        raise ConfigError(
            f"{key}.board", f"board {compartment.board}{where} is not defined under [[boards]]"
        )
    if len(candidates) > 1:
        buses = " and ".join(repr(b.bus) for b in candidates)
        raise ConfigError(
            f"{key}.bus",
            f"board {compartment.board} is on buses {buses}: name this compartment's bus",
        )
    board = candidates[0]
    if not 1 <= compartment.channel <= board.channels:
        raise ConfigError(
            f"{key}.channel",
            f"channel {compartment.channel} is beyond board {board.address}'s "
            f"{board.channels} channels",
        )
    lock = (board.bus, compartment.board, compartment.channel)
    if lock in locks:
        raise ConfigError(
            f"{key}.channel",
            f"board {lock[1]} channel {lock[2]} is already compartment {locks[lock]!r}'s",
        )
    locks[lock] = compartment.id


def _check_gpio(key: str, compartment: CompartmentConfig, pins: dict[str, str]) -> None:
    for field in ("board", "channel", "bus"):
        if getattr(compartment, field) is not None:
            raise ConfigError(f"{key}.{field}", "a gpio compartment has no board, channel or bus")
    for field in ("relay_pin", "sensor_pin"):
        pin = getattr(compartment, field)
        if pin is None:
            raise ConfigError(f"{key}.{field}", f"a gpio compartment needs its {field}")
        name = _pin_name(pin)
        if name in pins:
            raise ConfigError(f"{key}.{field}", f"pin {pin} is already {pins[name]}")
        pins[name] = f"compartment {compartment.id!r}'s {field}"


def _pin_name(pin: int | str) -> str:
    """One spelling per BCM pin, so 17 and "GPIO17" count as the same pin."""
    if isinstance(pin, int):
        return f"GPIO{pin}"
    text = pin.strip().upper()
    for prefix in ("BCM", "GPIO"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            return f"GPIO{int(text[len(prefix) :])}"
    return text
