"""The pure board model: door physics, variants and lock faults, seen as the bytes a host gets."""

import json

import pytest

from firmware_sim import BoardConfig, ConfigError, RefusedError, SimulatedBus, UnknownChannelError
from firmware_sim.board import Board
from protocol.lockboard.common import LOCK_CLOSED, LOCK_OPEN, Polarity
from protocol.lockboard.family_8a import (
    HEAD_QUERY,
    HEAD_UNLOCK,
    AllStatus,
    Hold,
    LockStatus,
    Query,
    QueryAll,
    StateReport,
    Unlock,
    UnlockAll,
    UnlockMany,
    encode,
)
from tests.firmware_sim.conftest import FAST, ask, wire


def one_board(clock, **config) -> SimulatedBus:
    return SimulatedBus([BoardConfig(address=1, **config)], clock=clock, **FAST)


# --- unlock, the door springs open, closing re-latches ---------------------------------------


def test_an_unlock_releases_the_latch_and_the_door_springs_open(bus):
    assert wire(bus, Unlock(1, 1)) == bytes.fromhex("8A 01 01 00 8A")  # docs/lockboard.md golden
    door = bus.board(1).door(1)
    assert (door.state, door.latched, door.door_open, door.pulses) == ("open", False, True, 1)
    assert bus.board(1).saw("door_opened", 1)


def test_a_query_reports_the_opened_door(bus):
    assert wire(bus, Query(1, 1)) == bytes.fromhex("80 01 01 11 91")  # closed, golden
    wire(bus, Unlock(1, 1))
    assert ask(bus, Query(1, 1)) == [LockStatus(1, 1, LOCK_OPEN, HEAD_QUERY)]


def test_query_all_golden_with_locks_2_and_10_open(bus):
    wire(bus, Unlock(1, 2))
    wire(bus, Unlock(1, 10))
    assert wire(bus, QueryAll(1)) == bytes.fromhex("80 01 FF FD FD 33 4D")


def test_query_all_of_a_32_channel_board_all_closed(clock):
    bus = one_board(clock, channels=32)
    assert wire(bus, QueryAll(1)) == bytes.fromhex("80 01 FF FF FF FF 33 B2")


def test_inverted_polarity_reports_the_inverse_bytes_and_bits(clock):
    bus = one_board(clock, polarity=Polarity.INVERTED, channels=8)
    assert ask(bus, Query(1, 1)) == [LockStatus(1, 1, LOCK_OPEN)]  # latched reads 0x00
    assert ask(bus, Unlock(1, 1)) == [LockStatus(1, 1, LOCK_CLOSED, HEAD_UNLOCK)]  # released
    [status] = ask(bus, QueryAll(1), channels=8)
    assert status == AllStatus(1, bytes([0b0000_0001]))  # only the open door's bit is set
    assert status.latched_map(Polarity.INVERTED)[1] is False


def test_the_head_80_variant_answers_an_unlock_with_head_80(clock):
    bus = one_board(clock, unlock_reply_head=HEAD_QUERY)
    assert wire(bus, Unlock(1, 1)) == bytes.fromhex("80 01 01 00 80")  # golden


def test_closing_the_door_re_latches_it(bus):
    wire(bus, Unlock(1, 3))
    bus.person.close_door(1, 3)
    assert bus.board(1).door(3).state == "latched"
    assert ask(bus, Query(1, 3)) == [LockStatus(1, 3, LOCK_CLOSED)]
    assert bus.board(1).saw("latched", 3)


def test_an_open_door_stays_open_until_someone_closes_it(bus):
    wire(bus, Unlock(1, 3))
    wire(bus, Unlock(1, 3))  # a second pulse changes nothing
    assert ask(bus, Query(1, 3)) == [LockStatus(1, 3, LOCK_OPEN)]
    assert bus.board(1).door(3).times_opened == 1


# --- the person ------------------------------------------------------------------------------


def test_a_latched_door_does_not_open_by_hand(bus):
    with pytest.raises(RefusedError, match="latched"):
        bus.person.open_door(1, 2)
    assert bus.board(1).door(2).state == "latched"


def test_force_opens_a_latched_door_with_no_unlock(bus):
    bus.person.force_door(1, 2)
    door = bus.board(1).door(2)
    assert (door.state, door.pulses, door.times_forced) == ("open", 0, 1)
    assert ask(bus, Query(1, 2)) == [LockStatus(1, 2, LOCK_OPEN)]
    assert bus.board(1).saw("forced", 2)


def test_a_sticky_door_stays_shut_but_released_until_opened_or_pushed_shut(bus):
    bus.faults.sticky_door(1, 4)
    assert ask(bus, Unlock(1, 4)) == [LockStatus(1, 4, LOCK_OPEN, HEAD_UNLOCK)]
    door = bus.board(1).door(4)
    assert (door.state, door.door_open) == ("released", False)
    bus.person.open_door(1, 4)  # released: it opens by hand
    assert door.state == "open"
    bus.person.close_door(1, 4)
    wire(bus, Unlock(1, 4))
    bus.person.close_door(1, 4)  # pushing a released door shut latches it
    assert door.state == "latched"


def test_parcels_go_in_and_out_only_through_an_open_door(bus):
    with pytest.raises(RefusedError, match="shut"):
        bus.person.put_parcel(1, 5)
    wire(bus, Unlock(1, 5))
    bus.person.put_parcel(1, 5)
    with pytest.raises(RefusedError, match="full"):
        bus.person.put_parcel(1, 5)
    bus.person.close_door(1, 5)
    assert bus.board(1).door(5).occupied
    wire(bus, Unlock(1, 5))
    bus.person.take_parcel(1, 5)
    with pytest.raises(RefusedError, match="empty"):
        bus.person.take_parcel(1, 5)
    assert bus.board(1).saw("parcel_in", 5) and bus.board(1).saw("parcel_out", 5)


def test_a_door_the_board_lacks_is_an_error_and_changes_nothing(bus):
    with pytest.raises(UnknownChannelError):
        bus.person.force_door(1, 25)
    with pytest.raises(UnknownChannelError):
        bus.faults.jam(1, 0)


# --- lock faults -----------------------------------------------------------------------------


def test_a_jammed_lock_replies_closed_and_the_door_stays_shut(bus):
    bus.faults.jam(1, 6)
    assert wire(bus, Unlock(1, 6)) == bytes.fromhex("8A 01 06 11 9C")  # still closed
    door = bus.board(1).door(6)
    assert (door.state, door.pulses) == ("latched", 1)
    assert bus.board(1).saw("jammed", 6)


def test_a_stuck_sensor_reads_its_fixed_value_whatever_the_door_does(bus):
    bus.faults.stick_sensor(1, 7, latched=True)
    assert ask(bus, Unlock(1, 7)) == [LockStatus(1, 7, LOCK_CLOSED, HEAD_UNLOCK)]
    assert bus.board(1).door(7).door_open  # the door did open
    bus.faults.stick_sensor(1, 8, latched=False)
    assert ask(bus, Query(1, 8)) == [LockStatus(1, 8, LOCK_OPEN)]
    bus.faults.clear(1)
    assert ask(bus, Query(1, 7)) == [LockStatus(1, 7, LOCK_OPEN)]
    assert ask(bus, Query(1, 8)) == [LockStatus(1, 8, LOCK_CLOSED)]


# --- the other requests ----------------------------------------------------------------------


def test_unlock_all_pulses_every_lock_and_says_whether_all_released(clock):
    bus = one_board(clock, channels=8)
    assert wire(bus, UnlockAll(1)) == bytes.fromhex("8A 01 00 00 8B")
    assert all(door.door_open for door in bus.board(1).doors.values())
    for channel in range(1, 9):
        bus.person.close_door(1, channel)
    bus.faults.jam(1, 3)
    assert ask(bus, UnlockAll(1)) == [LockStatus(1, 0, LOCK_CLOSED, HEAD_UNLOCK)]
    assert [d.door_open for d in bus.board(1).doors.values()].count(False) == 1


def test_unlock_many_pulses_the_named_locks_and_gets_no_reply(bus):
    assert bus.feed(bytes.fromhex("90 01 02 02 02 93"), 100.0) == []  # golden: locks 2, 10, 18
    opened = [ch for ch, door in bus.board(1).doors.items() if door.door_open]
    assert opened == [2, 10, 18]


def test_a_variant_without_unlock_many_or_hold_ignores_them(clock):
    bus = one_board(clock, supports_unlock_many=False, supports_hold=False)
    wire(bus, UnlockMany(1, frozenset({1, 2})))
    wire(bus, Hold(1, 3, on=True))
    assert not any(door.door_open for door in bus.board(1).doors.values())
    assert bus.board(1).counters.ignored == 2


def test_hold_keeps_the_lock_released_until_hold_off(bus):
    assert wire(bus, Hold(1, 1, on=True)) == b""  # golden 9A 01 01 11 8B gets no reply
    door = bus.board(1).door(1)
    assert (door.state, door.held) == ("open", True)
    bus.person.close_door(1, 1)
    assert door.state == "released"  # the powered lock cannot catch the door
    wire(bus, Hold(1, 1, on=False))
    assert door.state == "latched"


def test_a_board_ignores_other_addresses_and_channels_it_lacks(bus):
    assert wire(bus, Unlock(2, 1)) == b""
    assert wire(bus, Query(1, 30)) == b""  # a 24-channel board has no lock 30
    assert wire(bus, Unlock(1, 30)) == b""
    board = bus.board(1)
    assert board.counters.requests == 2  # the request to board 2 never concerned it
    assert board.counters.ignored == 2
    assert not any(door.door_open for door in board.doors.values())


def test_a_reporting_board_sends_82_frames_after_its_reply(clock):
    bus = one_board(clock, sends_reports=True)
    assert ask(bus, Unlock(1, 5)) == [
        LockStatus(1, 5, LOCK_OPEN, HEAD_UNLOCK),
        StateReport(1, 5, LOCK_OPEN),
    ]
    assert bus.take_unsolicited() == []
    bus.person.close_door(1, 5)  # no request: the report is sent of the board's own accord
    [chunk] = bus.take_unsolicited()
    assert chunk.data == bytes.fromhex("82 01 05 11 97")


def test_a_board_without_reports_sends_none(bus):
    bus.person.force_door(1, 5)
    assert bus.take_unsolicited() == []
    assert ask(bus, Unlock(1, 6)) == [LockStatus(1, 6, LOCK_OPEN, HEAD_UNLOCK)]


def test_state_report_golden_board_2_lock_5_opened(clock):
    bus = SimulatedBus([BoardConfig(address=2, sends_reports=True)], clock=clock, **FAST)
    bus.person.force_door(2, 5)
    assert [c.data for c in bus.take_unsolicited()] == [bytes.fromhex("82 02 05 00 85")]


# --- config, counters, snapshot --------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"address": 0},
        {"address": 0x41},
        {"address": 1, "channels": 0},
        {"address": 1, "channels": 256},  # the channel byte tops out at 255
        {"address": 1, "channels": 8, "status_bytes": 33},  # MAX_STATUS_BYTES = 32
        {"address": 1, "channels": 50, "status_bytes": 6},  # ceil(50 / 8) = 7 at least
    ],
)
def test_a_bad_board_config_is_refused_clearly(config):
    with pytest.raises(ConfigError):
        BoardConfig(**config)


def test_the_snapshot_is_json_and_names_every_door(bus):
    wire(bus, Unlock(1, 3))
    bus.faults.jam(1, 4)
    snapshot = json.loads(json.dumps(bus.snapshot()))
    [board] = snapshot["boards"]
    assert board["address"] == 1 and len(board["doors"]) == 24
    assert board["doors"][2]["state"] == "open"
    assert board["doors"][3]["faults"]["jammed"] is True
    assert board["counters"]["requests"] == 1
    assert board["counters"]["replies_sent"] == 1
    assert any(entry["kind"] == "door_opened" for entry in bus.log())


def test_a_board_on_its_own_answers_only_when_powered(clock):
    board = Board(BoardConfig(address=3))
    assert board.handle(Query(3, 1), now=0.0).replies == [LockStatus(3, 1, LOCK_CLOSED)]
    board.power_off(now=1.0)
    assert board.handle(Query(3, 1), now=2.0) is None


def test_a_board_answering_more_status_bytes_than_it_needs_sends_the_captured_frame():
    # The captured 8-channel board, every door open: `80 01 00 00 00 33 B2`.
    board = Board(BoardConfig(address=1, channels=8, status_bytes=3))
    for channel in range(1, 9):
        board.force_door(channel, 0.0)
    [reply] = board.handle(QueryAll(1), 0.0).replies
    assert encode(reply) == bytes.fromhex("80 01 00 00 00 33 B2")
    assert board.as_dict()["status_bytes"] == 3


def test_a_50_channel_board_answers_with_7_status_bytes():
    board = Board(BoardConfig(address=1, channels=50))
    [reply] = board.handle(QueryAll(1), 0.0).replies
    assert len(reply.status) == 7  # ceil(50 / 8)
    assert board.as_dict()["status_bytes"] == 7
    assert sorted(reply.latched_map(channels=50)) == list(range(1, 51))
