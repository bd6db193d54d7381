"""The pushed config's hash, what `config.put` may carry, and the private file it lands in."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from protocol.codec import decode_state, encode
from protocol.config_push import config_body, config_sha256, with_identity
from protocol.messages import PutConfigData, State
from protocol.private_files import write_private

BODY = {"layout": {"compartments": [{"id": "A01", "size": "M"}]}, "kiosk_language": "en"}


def test_the_hash_is_of_the_canonical_json_whatever_the_key_order() -> None:
    canonical = b'{"kiosk_language":"en","layout":{"compartments":[{"id":"A01","size":"M"}]}}'
    assert config_sha256(BODY) == hashlib.sha256(canonical).hexdigest()
    assert config_sha256(dict(reversed(list(BODY.items())))) == config_sha256(BODY)
    assert config_sha256({"name": "滨江"}) == hashlib.sha256('{"name":"滨江"}'.encode()).hexdigest()


def test_identity_goes_in_and_out_of_a_body_and_never_travels() -> None:
    whole = with_identity(BODY, cabinet_id="cab1", code_key="k" * 64, mqtt_password="pw", version=3)
    assert whole["mqtt"] == {"username": "cab1", "password": "pw"}
    assert (whole["config_version"], whole["config_sha256"]) == (3, config_sha256(BODY))
    assert config_body(whole) == {**BODY, "mqtt": {}}
    for bad in (whole, {**BODY, "mqtt": {"password": "pw"}}, {**BODY, "code_key_file": "/k"}):
        with pytest.raises(ValidationError, match="no identity or secret"):
            PutConfigData(version=1, sha256=config_sha256(bad), config=bad)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"version": 1, "sha256": "0" * 64, "config": BODY}, "not the hash of config"),
        ({"version": 1, "config": BODY}, "version, sha256 and config together"),
        ({"settings": {"a": 1}, "version": 1, "sha256": config_sha256(BODY), "config": BODY},
         "not both"),
        ({}, "needs settings"),
    ],
)  # fmt: skip
def test_config_put_carries_settings_or_a_whole_matching_body(fields: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        PutConfigData(**fields)


def test_the_birth_may_name_the_config_hash_and_older_births_still_decode() -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    birth = State(cab="c", online=True, boot=1, firmware="f", ts=now, compartments=[])
    assert b"config_sha256" not in encode(birth)
    named = birth.model_copy(update={"config_sha256": config_sha256(BODY)})
    assert decode_state(encode(named)).config_sha256 == config_sha256(BODY)


def test_write_private_is_0600_whatever_the_umask_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "cabinet.toml"
    path.write_text("old")
    old_umask = os.umask(0)
    try:
        write_private(path, b"new")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cabinet.toml"]
