"""The cabinet's pushed config: its body, its canonical hash, and the identity kept out of it.

A cabinet's daemon config is two things: its identity and secrets (`cabinet_id`, `code_key`, the
MQTT user and password), which it receives once, at enrolment, and never again over MQTT; and
its body (layout, buses, boards, screen and broker settings), which the cloud may replace later
with `config.put` (docs/mqtt.md#config-push). The cloud and the cabinet name a body by
`config_sha256`: SHA-256 of its canonical JSON (keys sorted, no spaces, UTF-8), so both sides
get the same hash from the same body whatever order its keys were written in.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Top-level keys that are the cabinet's identity and secrets, never part of a pushed body.
IDENTITY_KEYS = ("cabinet_id", "code_key", "code_key_file", "config_version", "config_sha256")
# Keys of the `[mqtt]` table that are identity: the user is the cabinet id, the password secret.
MQTT_IDENTITY_KEYS = ("username", "password")
MAX_BODY_BYTES = 128 * 1024  # a 200-door layout is ~20 kB; the MQTT payload cap is 256 KiB


class ConfigBodyError(ValueError):
    """A config body that carries identity or secrets, or is not a table of tables."""


def config_body(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return `config` without its identity and secrets: what may travel in `config.put`."""
    body = copy.deepcopy(dict(config))
    for key in IDENTITY_KEYS:
        body.pop(key, None)
    mqtt = body.get("mqtt")
    if isinstance(mqtt, dict):
        for key in MQTT_IDENTITY_KEYS:
            mqtt.pop(key, None)
    return body


def check_body(body: Mapping[str, Any]) -> None:
    """Raise ConfigBodyError if `body` carries an identity key or a secret, or is too large."""
    found = [key for key in IDENTITY_KEYS if key in body]
    mqtt = body.get("mqtt")
    if isinstance(mqtt, Mapping):
        found += [f"mqtt.{key}" for key in MQTT_IDENTITY_KEYS if key in mqtt]
    if found:
        raise ConfigBodyError(
            f"a pushed config carries no identity or secret; remove {', '.join(found)}"
        )
    if len(canonical_json(body)) > MAX_BODY_BYTES:
        raise ConfigBodyError(f"a pushed config is at most {MAX_BODY_BYTES} bytes of JSON")


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The bytes a body's hash is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_sha256(body: Mapping[str, Any]) -> str:
    """The body's name: SHA-256 (hex) of its canonical JSON."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def with_identity(
    body: Mapping[str, Any],
    *,
    cabinet_id: str,
    code_key: str,
    mqtt_password: str,
    version: int,
) -> dict[str, Any]:
    """Return the whole daemon config: `body` plus the cabinet's identity and secrets."""
    config = copy.deepcopy(dict(body))
    config["cabinet_id"] = cabinet_id
    config["code_key"] = code_key
    config["config_version"] = version
    config["config_sha256"] = config_sha256(body)
    mqtt = config.setdefault("mqtt", {})
    mqtt["username"] = cabinet_id
    mqtt["password"] = mqtt_password
    return config
