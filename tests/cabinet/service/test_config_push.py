"""A pushed config as the daemon meets it: checked, written atomically, and rolled back when its
doors do not come up; the birth names the hash it runs."""

from __future__ import annotations

import signal
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cabinet.config_store import ConfigStore
from cabinet.errors import ConfigError
from protocol.config_push import config_body, config_sha256
from protocol.messages import PutConfigData
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.service.harness import CODE_KEY
from tests.cabinet.service.process import run_cli, write_config
from tests.services import Mosquitto, wait_for

Sim = tuple[Any, Any]


def enrolled(tmp_path: Path, broker: Mosquitto, serial_port: str) -> tuple[ConfigStore, dict]:
    """A store holding what an enrolment would have written for cab1 (version 1)."""
    hand = tomllib.loads(
        write_config(tmp_path / "hand.toml", broker=broker, serial_port=serial_port).read_text()
    )
    body = config_body(hand)
    answer = {
        "cabinet_id": "cab1",
        "code_key": CODE_KEY.decode(),
        "mqtt": {"username": "cab1", "password": "pw"},
        "config": {"version": 1, "sha256": config_sha256(body), "body": body},
    }
    store = ConfigStore(tmp_path / "etc" / "cabinet.toml", env={})
    store.write_enrolled(answer)
    return store, body


def push(body: dict, version: int) -> PutConfigData:
    return PutConfigData(version=version, sha256=config_sha256(body), config=body)


def test_a_bad_body_changes_nothing_and_the_same_hash_is_a_no_op(
    tmp_path: Path, mosquitto: Mosquitto, sim: Sim
) -> None:
    store, body = enrolled(tmp_path, mosquitto, str(sim[1].link))
    before = store.path.read_bytes()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    bad = {
        **body,
        "layout": {"compartments": [{**body["layout"]["compartments"][0], "channel": 99}]},
    }
    with pytest.raises(ConfigError, match=r"layout\.compartments\[0\]\.channel"):
        store.apply_push(push(bad, 2))
    assert store.path.read_bytes() == before and not store.is_pending()
    assert store.apply_push(push(body, 1)) is False  # a resent command: already running it
    assert store.path.read_bytes() == before


def test_a_config_whose_doors_do_not_come_up_is_rolled_back(
    tmp_path: Path, mosquitto: Mosquitto, peer: CloudPeer, sim: Sim
) -> None:
    store, body = enrolled(tmp_path, mosquitto, str(sim[1].link))
    good = store.path.read_text()
    # The new config names a bus port that is not there: the daemon cannot open its doors.
    broken = {**body, "buses": {"main": {**body["buses"]["main"], "port": str(tmp_path / "none")}}}
    assert store.apply_push(push(broken, 2)) is True
    assert store.is_pending() and str(tmp_path / "none") in store.path.read_text()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    process = run_cli(store.path)
    try:
        wait_for(
            lambda: any(s["online"] for s in list(peer.states)) or process.poll() is not None,
            30,
            "a birth after the rollback",
        )
        assert process.poll() is None, process.communicate()
        (birth,) = [s for s in peer.states if s["online"]]
        assert birth["config_sha256"] == config_sha256(body)
        assert store.path.read_text() == good and not store.is_pending()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "rolled back" in err
