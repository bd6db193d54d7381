"""Boards as they really answer (docs/lockboard.md#frames, query-all reply): the RS485 driver
against firmware-sim boards that send more status bytes than their channels need, and boards whose
size is no multiple of 8. On the old driver (reply pinned to ceil(channels / 8) status bytes) the
captured 8-channel board failed every poll and was marked faulted.
"""

from __future__ import annotations

import pytest

from cabinet.config import load_config
from cabinet.drivers import build_driver
from cabinet.drivers.rs485 import BoardSpec
from cabinet.ports import DoorChange
from firmware_sim import BoardConfig, PtyServer, SimulatedBus
from protocol.lockboard.family_8a import QueryAll
from tests.cabinet.drivers.test_rs485 import drain


@pytest.mark.parametrize("line", ["virtual time", "real time"])
async def test_an_8_channel_board_answering_3_status_bytes_is_healthy_and_its_door_seen(
    rig_factory, line
):
    # The captured board: 8 channels, query-all answered with `80 01 S3 S2 S1 33 CHK`.
    rig = rig_factory(BoardConfig(address=1, channels=8, status_bytes=3), pty=line == "real time")
    driver = rig.driver({"A": (1, 1), "H": (1, 8)})
    feed = driver.changes()
    await driver.start()
    first = await driver.poll()
    rig.bus.person.force_door(1, 8)
    second = await driver.poll()
    third = await driver.poll()  # the reply length is known now: framed without waiting
    health = driver.health()
    changes = await drain(feed, 3)
    await driver.close()

    assert first == {"A": False, "H": False}
    assert second == {"A": False, "H": True}
    assert third == second
    assert changes == [DoorChange("A", False), DoorChange("H", False), DoorChange("H", True)]
    board = health["boards"]["1"]
    assert not board["faulted"] and health["out_of_service"] == []
    assert board["timeouts"] == board["retries"] == board["wrong_replies"] == 0
    assert board["malformed"] == board["bad_checksum"] == board["garbage_bytes"] == 0
    assert rig.bus.heard.count(QueryAll(1)) == 3  # one try per poll: no reply was dropped


async def test_a_50_channel_board_is_polled_and_its_50th_door_seen(rig_factory):
    # 50 channels: ceil(50 / 8) = 7 status bytes, S1 (channels 1-8) last on the wire.
    rig = rig_factory(BoardConfig(address=3, channels=50))
    driver = rig.driver({"A": (3, 1), "Y": (3, 49), "Z": (3, 50)})
    await driver.start()
    rig.bus.person.force_door(3, 50)
    readings = await driver.poll()
    result = await driver.unlock("Y")
    after = await driver.poll()
    health = driver.health()
    await driver.close()

    assert readings == {"A": False, "Y": False, "Z": True}
    assert result.released and after["Y"] is True
    assert not health["boards"]["3"]["faulted"]


async def test_a_longer_reply_lends_the_board_no_doors_beyond_its_own(rig_factory):
    # A 24-channel board answering 4 bytes: the extra (highest) byte is no door of the board.
    rig = rig_factory(BoardConfig(address=1, channels=24, status_bytes=4))
    driver = rig.driver({"A": (1, 24)})
    await driver.start()
    readings = await driver.poll()
    await driver.close()
    assert readings == {"A": False}
    with pytest.raises(Exception, match="25"):
        rig.driver({"B": (1, 25)})  # channel 25 is beyond the board's 24


def test_a_board_spec_takes_any_size_the_wire_allows():
    assert BoardSpec(1, channels=1).channels == 1
    assert BoardSpec(1, channels=50).channels == 50
    with pytest.raises(ValueError, match="1-255"):
        BoardSpec(1, channels=256)


CONFIG = """
cabinet_id = "cab-boards"
code_key = "k"

[buses.main]
port = "{port}"
query_timeout_s = 0.05
quiet_gap_s = 0.01
poll_interval_s = 0

[[boards]]
address = 1
channels = 8

[[boards]]
address = 2
channels = 50

[[layout.compartments]]
id = "A8"
size = "M"
driver = "rs485"
board = 1
channel = 8

[[layout.compartments]]
id = "B50"
size = "L"
driver = "rs485"
board = 2
channel = 50
"""


async def test_a_cabinet_config_with_the_captured_board_and_a_50_channel_board_runs_on_the_sim(
    tmp_path,
):
    # End to end, real time: TOML -> build_driver -> pty -> simulated boards -> doors.
    bus = SimulatedBus(
        [BoardConfig(1, channels=8, status_bytes=3), BoardConfig(2, channels=50)],
        pulse_s=0.01,
        query_reply_s=0.001,
    )
    server = PtyServer(bus).start()
    try:
        path = tmp_path / "cabinet.toml"
        path.write_text(CONFIG.format(port=server.path))
        driver = build_driver(load_config(path, env={}))
        await driver.start()
        try:
            before = await driver.poll()
            result = await driver.unlock("B50")
            bus.person.force_door(1, 8)
            after = await driver.poll()
            health = driver.health()
        finally:
            await driver.close()
    finally:
        server.close()

    assert before == {"A8": False, "B50": False}
    assert result.released
    assert after == {"A8": True, "B50": True}
    assert health["out_of_service"] == []
    assert not health["boards"]["1"]["faulted"] and not health["boards"]["2"]["faulted"]
