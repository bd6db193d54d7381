"""The daemon's config file as the cloud manages it: written at enrolment, replaced by a pushed
config, rolled back if a pushed config cannot bring the doors up (docs/enrolment.md).

Three files side by side: `cabinet.toml` (what the daemon runs), `cabinet.toml.good` (the last
config that brought the doors up) and `cabinet.toml.pending` (present while a pushed config has
not yet proven itself). Every write is a whole file, mode 0600, through a temporary file and a
rename (protocol.private_files.write_private): a power cut at any instant leaves a config that
is one version or the other, never a mix.

A pushed body never carries the identity (cabinet id, code key, MQTT user and password): the
store keeps those from the file it replaces.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from cabinet.config import CabinetConfig, config_from_mapping
from cabinet.errors import ConfigError
from protocol.config_push import IDENTITY_KEYS, MQTT_IDENTITY_KEYS, config_sha256, with_identity
from protocol.messages import PutConfigData
from protocol.private_files import write_private

log = logging.getLogger(__name__)


class ConfigStore:
    """The config file at `path` and its `.good` and `.pending` companions."""

    def __init__(self, path: Path, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.good = path.with_name(path.name + ".good")
        self.pending = path.with_name(path.name + ".pending")
        self.env = env

    # --- enrolment ------------------------------------------------------------------------------

    def write_enrolled(self, answer: Mapping[str, Any]) -> CabinetConfig:
        """Write the config `POST /api/v1/enrol` answered with (checked first); return it.

        ConfigError if the body does not make a valid config here (nothing is written), or if
        its hash is not the one the cloud named.
        """
        config = answer["config"]
        body = config["body"]
        if config_sha256(body) != config["sha256"]:
            raise ConfigError("config", "the enrolment's config does not match its sha256")
        whole = with_identity(
            body,
            cabinet_id=answer["cabinet_id"],
            code_key=answer["code_key"],
            mqtt_password=answer["mqtt"]["password"],
            version=int(config["version"]),
        )
        checked = config_from_mapping(whole, self.env)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.path, tomli_w.dumps(whole).encode())
        write_private(self.good, tomli_w.dumps(whole).encode())
        self.pending.unlink(missing_ok=True)
        return checked

    # --- config push ----------------------------------------------------------------------------

    def apply_push(self, data: PutConfigData) -> bool:
        """Make a pushed config the one to run next; return whether the daemon must restart.

        The same hash as the file's: nothing to do (a resent command). Otherwise the new whole
        config (the body plus this cabinet's identity) is checked as `load_config` would; a bad
        one raises ConfigError and changes nothing. Then the running file becomes `.good`, the
        new one replaces it and `.pending` marks it unproven until its doors come up.
        """
        assert data.config is not None and data.version is not None
        current = self._read(self.path)
        if current.get("config_sha256") == data.sha256:
            return False
        identity = {key: current[key] for key in IDENTITY_KEYS if key in current}
        mqtt = current.get("mqtt", {})
        whole = with_identity(
            data.config,
            cabinet_id=identity["cabinet_id"],
            code_key=identity.get("code_key", ""),
            mqtt_password=mqtt.get("password", ""),
            version=data.version,
        )
        if "code_key" not in identity:  # the key is in a file (or the environment): keep it so
            whole.pop("code_key")
            if "code_key_file" in identity:
                whole["code_key_file"] = identity["code_key_file"]
        for key in MQTT_IDENTITY_KEYS:
            if key not in mqtt:
                whole["mqtt"].pop(key, None)
        config_from_mapping(whole, self.env)  # raises ConfigError naming the key
        write_private(self.good, self.path.read_bytes())
        write_private(self.path, tomli_w.dumps(whole).encode())
        write_private(self.pending, f"{data.sha256}\n".encode())
        log.info("config v%d (%s) written; restarting on it", data.version, data.sha256[:12])
        return True

    def is_pending(self) -> bool:
        """Whether the config in `path` is a pushed one that has not yet brought its doors up."""
        return self.pending.exists()

    def confirm(self) -> None:
        """The running config brought its doors up: it is the last good one now."""
        if self.pending.exists():
            write_private(self.good, self.path.read_bytes())
            self.pending.unlink()
            log.info("the pushed config brought its doors up: kept")

    def roll_back(self) -> bool:
        """Put the last good config back (after a pushed one failed); False if there is none."""
        if not self.good.exists():
            self.pending.unlink(missing_ok=True)
            return False
        write_private(self.path, self.good.read_bytes())
        self.pending.unlink(missing_ok=True)
        log.error("the pushed config did not bring the doors up: rolled back to the last good one")
        return True

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            return tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError("", f"cannot read config file {path}: {err}") from err
