"""The pure bus: routing, timing, collisions and the faults in what boards transmit."""

import pytest

from firmware_sim import BoardConfig, ConfigError, SimulatedBus, UnknownBoardError
from firmware_sim.bus import Chunk, collide
from protocol.lockboard.common import LOCK_CLOSED, LOCK_OPEN
from protocol.lockboard.family_8a import (
    HEAD_UNLOCK,
    AddressReply,
    LockStatus,
    Query,
    QueryAll,
    ReadAddress,
    ReplyDecoder,
    Unlock,
    UnlockAll,
    encode,
)
from tests.firmware_sim.conftest import FAST, ask, wire


def two_boards(clock, first=1, second=2) -> SimulatedBus:
    configs = [BoardConfig(address=first), BoardConfig(address=second)]
    return SimulatedBus(configs, clock=clock, **FAST)


# --- routing -------------------------------------------------------------------------------


def test_each_board_answers_only_its_own_address(clock):
    bus = two_boards(clock)
    wire(bus, Unlock(2, 1))
    assert bus.board(2).door(1).door_open
    assert not bus.board(1).door(1).door_open
    assert ask(bus, Query(2, 1)) == [LockStatus(2, 1, LOCK_OPEN)]
    assert wire(bus, Query(3, 1)) == b""  # nobody at address 3


def test_read_address_is_answered_by_a_board_alone_on_the_bus(clock):
    bus = SimulatedBus([BoardConfig(address=5)], clock=clock, **FAST)
    assert wire(bus, ReadAddress()) == bytes.fromhex("80 01 05 99 1D")  # golden


def test_read_address_with_two_boards_on_the_bus_collides(clock):
    bus = two_boards(clock, 5, 6)
    assert AddressReply(5) not in ask(bus, ReadAddress())
    assert ask(bus, ReadAddress()) == []
    assert bus.collisions == 2
    bus.faults.power_off(6)  # the other board gone: a clean answer again
    assert ask(bus, ReadAddress()) == [AddressReply(5)]


def test_two_boards_at_one_address_both_act_and_their_replies_garble(clock):
    bus = two_boards(clock, 1, 1)  # a DIP-address clash
    data = wire(bus, Unlock(1, 1))
    assert data == bytes.fromhex("8A 8B 01 01 8A 8A")  # see bus.collide
    assert all(board.door(1).door_open for board in bus.boards)
    decoder = ReplyDecoder()
    decoder.expect(Unlock(1, 1))
    assert decoder.feed(data) == []
    assert bus.collisions == 1


def test_collide_ors_each_later_board_one_byte_time_behind():
    assert collide([b"\x01\x02", b"\x10\x20"]) == b"\x01\x12\x20"


def test_an_unknown_board_is_an_error(bus):
    with pytest.raises(UnknownBoardError, match="no board at address 9"):
        bus.person.close_door(9, 1)


def test_a_bus_needs_boards_and_sane_timing():
    with pytest.raises(ConfigError):
        SimulatedBus([])
    with pytest.raises(ConfigError):
        SimulatedBus([BoardConfig(address=1)], pulse_s=-1)


def test_requests_split_anywhere_and_wrapped_in_garbage_still_arrive(bus):
    data = b"\x00\x13" + encode(Query(1, 1)) + b"\xff"
    chunks = [chunk for byte in data for chunk in bus.feed(bytes([byte]), 100.0)]
    assert [c.data for c in chunks] == [encode(LockStatus(1, 1, LOCK_CLOSED))]
    assert bus.decoder.stats.garbage_bytes == 3


# --- timing --------------------------------------------------------------------------------


def test_a_query_is_answered_after_the_turnaround_and_an_unlock_after_its_pulse(clock):
    bus = SimulatedBus([BoardConfig(address=1, channels=8)], pulse_s=0.2, query_reply_s=0.005)
    assert [c.delay_s for c in bus.feed(encode(Query(1, 1)), 10.0)] == [0.005]
    assert [c.delay_s for c in bus.feed(encode(Unlock(1, 1)), 20.0)] == [0.2]
    # Unlock-all pulses the locks one after another.
    assert [c.delay_s for c in bus.feed(encode(UnlockAll(1)), 30.0)] == [pytest.approx(1.6)]


def test_a_request_heard_mid_pulse_is_answered_after_the_pulse(clock):
    bus = SimulatedBus([BoardConfig(address=1)], pulse_s=0.5, query_reply_s=0.005)
    bus.feed(encode(Unlock(1, 1)), 10.0)
    [chunk] = bus.feed(encode(Query(1, 2)), 10.1)
    assert chunk.delay_s == pytest.approx(0.405)


# --- board faults --------------------------------------------------------------------------


def test_a_silent_board_sends_nothing_but_still_fires_its_locks(bus):
    bus.faults.silence(1)
    assert bus.feed(encode(Unlock(1, 1)), 100.0) == []
    assert bus.board(1).door(1).door_open  # the pulse fired: never resend an unlock blindly
    assert bus.board(1).counters.replies_suppressed == 1
    bus.faults.silence(1, silent=False)
    assert ask(bus, Query(1, 1)) == [LockStatus(1, 1, LOCK_OPEN)]


def test_power_off_is_deaf_and_silent_and_power_on_finds_the_doors_as_left(bus):
    wire(bus, Unlock(1, 1))
    bus.faults.power_off(1)
    assert wire(bus, Unlock(1, 2)) == b""
    assert not bus.board(1).door(2).door_open  # deaf: it did not act
    bus.person.close_door(1, 1)  # the mechanics work without power
    bus.faults.power_on(1)
    assert ask(bus, Query(1, 1)) == [LockStatus(1, 1, LOCK_CLOSED)]


def test_a_power_cut_lets_go_of_holds(bus):
    bus.feed(bytes.fromhex("9A 01 01 11 8B"), 100.0)  # golden hold-open
    bus.person.close_door(1, 1)
    assert bus.board(1).door(1).state == "released"
    bus.faults.power_off(1)
    assert bus.board(1).door(1).state == "latched"


@pytest.mark.parametrize(
    ("mode", "damaged"),
    [
        ("checksum", "80 01 01 11 6E"),
        ("flip", "80 01 00 11 91"),
        ("truncate", "80 01 01"),
    ],
)
def test_corrupted_replies(bus, mode, damaged):
    bus.faults.corrupt(1, mode=mode, count=1)
    assert wire(bus, Query(1, 1)) == bytes.fromhex(damaged)
    assert wire(bus, Query(1, 1)) == bytes.fromhex("80 01 01 11 91")  # count=1: once only
    assert bus.board(1).counters.replies_corrupted == 1


def test_corrupt_without_a_count_damages_every_reply_until_cleared(bus):
    bus.faults.corrupt(1)
    for _ in range(3):
        assert ask(bus, Query(1, 1)) == []
    bus.faults.clear(1)
    assert ask(bus, Query(1, 1)) == [LockStatus(1, 1, LOCK_CLOSED)]


def test_a_bad_corrupt_mode_or_count_changes_nothing(bus):
    with pytest.raises(ConfigError):
        bus.faults.corrupt(1, mode="melt")
    with pytest.raises(ConfigError):
        bus.faults.corrupt(1, count=0)
    assert bus.board(1).tx.corrupt_mode is None


def test_a_slow_board_answers_late(bus):
    bus.faults.slow(1, delay_s=0.25)
    [chunk] = bus.feed(encode(Query(1, 1)), 100.0)
    assert chunk.delay_s == pytest.approx(0.251)


def test_a_board_can_send_one_byte_at_a_time(bus):
    bus.faults.byte_at_a_time(1, gap_s=0.02)
    chunks = bus.feed(encode(Unlock(1, 1)), 100.0)
    assert [c.data for c in chunks] == [bytes([b]) for b in bytes.fromhex("8A 01 01 00 8A")]
    assert [round(c.delay_s, 3) for c in chunks] == [0.01, 0.03, 0.05, 0.07, 0.09]


# --- line faults ---------------------------------------------------------------------------


def test_garbage_on_the_line_comes_before_the_next_reply(bus):
    bus.faults.garbage(b"\x00\xff\x13", count=1)
    decoder = ReplyDecoder()
    decoder.expect(Query(1, 1))
    assert decoder.feed(wire(bus, Query(1, 1))) == [LockStatus(1, 1, LOCK_CLOSED)]
    assert decoder.stats.garbage_bytes == 3
    assert wire(bus, Query(1, 1)) == bytes.fromhex("80 01 01 11 91")


def test_injected_bytes_go_out_at_once(bus):
    woken = []
    bus.on_unsolicited = lambda: woken.append(True)
    bus.faults.inject(b"\x13\x11")
    assert bus.take_unsolicited() == [Chunk(0.0, b"\x13\x11")]
    assert woken == [True]


def test_clearing_a_board_undoes_every_fault(bus):
    bus.faults.jam(1, 1)
    bus.faults.sticky_door(1, 2)
    bus.faults.silence(1)
    bus.faults.power_off(1)
    bus.faults.clear(1)
    assert ask(bus, Unlock(1, 1)) == [LockStatus(1, 1, LOCK_OPEN, HEAD_UNLOCK)]
    wire(bus, Unlock(1, 2))
    assert bus.board(1).door(2).door_open
    assert ask(bus, QueryAll(1), channels=24)
