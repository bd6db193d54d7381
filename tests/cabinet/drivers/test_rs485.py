"""The RS485 driver against firmware-sim: docs/lockboard.md#the-drivers-rules.

Most tests run the driver's production timings in virtual time (`rig`, virtual_line.py): a board
that never answers costs the test no real second. The tests marked "real time" run on a pty and
prove the same rules hold at the real pace: the periodic poller, unasked reports heard while
idle, an unlock overtaking queued polls, a real timeout expiring.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import serial

from cabinet.drivers.rs485 import BoardSpec, Rs485Driver
from cabinet.ports import DoorChange, UnlockOutcome
from firmware_sim import BoardConfig, Chunk, PtyServer
from protocol.lockboard.common import Polarity
from protocol.lockboard.family_8a import HEAD_QUERY, HEAD_UNLOCK, Query, QueryAll, Unlock
from tests.cabinet.aio import eventually
from tests.cabinet.drivers.conftest import FAST_TIMING, VIRTUAL_TIMING, RecordingBus


async def drain(feed, count: int, timeout_s: float = 3.0) -> list[DoorChange]:
    """Take `count` door changes from a feed, failing at the deadline."""
    return [await asyncio.wait_for(anext(feed), timeout_s) for _ in range(count)]


def unlocks(rig) -> list[Unlock]:
    return [request for request in rig.bus.heard if isinstance(request, Unlock)]


@pytest.mark.parametrize("line", ["virtual time", "real time"])
async def test_unlock_releases_and_the_board_saw_it(rig_factory, line):
    rig = rig_factory(BoardConfig(address=1, channels=24), pty=line == "real time")
    driver = rig.driver()
    await driver.start()
    result = await driver.unlock("1-1")
    await driver.close()

    assert result.outcome is UnlockOutcome.RELEASED
    assert rig.bus.heard == [Unlock(1, 1)]
    assert rig.bus.board(1).saw("unlock", 1) and rig.pulses(1, 1) == 1


async def test_a_door_closed_by_hand_reaches_the_owner_through_a_poll(rig):
    driver = rig.driver({"A": (1, 1), "B": (1, 2)})
    feed = driver.changes()
    await driver.start()
    assert await driver.poll() == {"A": False, "B": False}
    assert await drain(feed, 2) == [DoorChange("A", False), DoorChange("B", False)]
    await driver.unlock("A")
    assert await drain(feed, 1) == [DoorChange("A", True)]
    rig.bus.person.close_door(1, 1)
    assert (await driver.poll())["A"] is False
    assert await drain(feed, 1) == [DoorChange("A", False)]
    assert await driver.read("A") is False
    await driver.close()


async def test_the_periodic_poll_catches_a_forced_door_without_being_asked(pty_rig):
    rig = pty_rig  # real time: the poller sleeps on the event loop
    driver = rig.driver({"A": (1, 4)}, timing=replace(FAST_TIMING, poll_interval_s=0.01))
    feed = driver.changes()
    await driver.start()
    assert await drain(feed, 1) == [DoorChange("A", False)]
    rig.bus.person.force_door(1, 4)
    assert await drain(feed, 1) == [DoorChange("A", True)]
    await driver.close()


async def test_two_boards_share_one_bus(rig_factory):
    rig = rig_factory(BoardConfig(address=1, channels=24), BoardConfig(address=7, channels=32))

    driver = rig.driver({"A": (1, 1), "Z": (7, 32)})
    await driver.start()
    result = await driver.unlock("Z")
    readings = await driver.poll()
    await driver.close()

    assert result.released
    assert readings == {"A": False, "Z": True}
    assert rig.pulses(7, 32) == 1 and rig.pulses(1, 1) == 0
    assert QueryAll(1) in rig.bus.heard and QueryAll(7) in rig.bus.heard


async def test_a_jammed_lock_gets_exactly_one_more_pulse_then_a_lock_fault(rig):
    rig.bus.faults.jam(1, 2)

    driver = rig.driver()
    await driver.start()
    result = await driver.unlock("1-2")
    await driver.poll()  # the bus stays usable, and no stray third pulse follows
    health = driver.health()
    await driver.close()

    assert result.outcome is UnlockOutcome.STILL_LATCHED
    assert "lock fault" in result.detail
    assert rig.pulses(1, 2) == 2
    assert unlocks(rig) == [Unlock(1, 2), Unlock(1, 2)]
    assert health["boards"]["1"]["unlock_faults"] == 1
    assert result.as_input().compartment == "1-2"


@pytest.mark.parametrize("mode", ["checksum", "flip", "truncate"])
async def test_a_garbled_unlock_reply_is_followed_by_a_query_never_a_second_unlock(rig, mode):
    rig.bus.faults.corrupt(1, mode, count=1)

    driver = rig.driver()
    await driver.start()
    result = await driver.unlock("1-3")
    health = driver.health()["boards"]["1"]
    await driver.close()

    assert result.outcome is UnlockOutcome.RELEASED
    assert rig.pulses(1, 3) == 1
    assert rig.bus.heard == [Unlock(1, 3), Query(1, 3)]
    assert health["bad_checksum"] + health["malformed"] + health["garbage_bytes"] >= 1


@pytest.mark.parametrize("line", ["virtual time", "real time"])
async def test_an_unanswered_unlock_is_unknown_and_never_resent(rig_factory, line):
    rig = rig_factory(BoardConfig(address=1, channels=24), pty=line == "real time")
    rig.bus.faults.silence(1)  # the board hears and fires, but its transmitter is dead

    driver = rig.driver()
    await driver.start()
    result = await driver.unlock("1-1")
    health = driver.health()["boards"]["1"]
    await driver.close()

    assert result.outcome is UnlockOutcome.UNKNOWN
    assert "outcome unknown" in result.detail
    assert rig.pulses(1, 1) == 1  # it did fire: that is why the driver must not resend
    assert rig.bus.heard == [Unlock(1, 1), Query(1, 1), Query(1, 1), Query(1, 1)]
    assert health["unlock_unknown"] == 1 and health["retries"] == 2


async def test_an_unlock_that_never_left_says_so(rig):
    port = serial.serial_for_url("loop://", timeout=0.01)

    def broken_write(data: bytes) -> int:
        raise serial.SerialException("adapter unplugged")

    port.write = broken_write  # type: ignore[method-assign]

    driver = Rs485Driver(port, [BoardSpec(1)], {"A": (1, 1)}, timing=FAST_TIMING)
    await driver.start()
    result = await driver.unlock("A")
    await driver.close()

    assert result.outcome is UnlockOutcome.NOT_SENT
    assert "never left" in result.detail


async def test_a_silent_board_is_faulted_after_retries_and_recovers(rig_factory):
    rig = rig_factory(BoardConfig(address=1), BoardConfig(address=2))

    driver = rig.driver({"A": (1, 1), "B": (2, 1)})
    feed = driver.changes()
    await driver.start()
    await driver.poll()
    await drain(feed, 2)
    rig.bus.faults.silence(2)
    rig.bus.heard.clear()
    readings = await driver.poll()
    health = driver.health()
    unread = await driver.read("B")
    rig.bus.faults.clear(2)
    recovered = await driver.poll()
    after = driver.health()
    change = await drain(feed, 1)
    await driver.close()

    assert readings == {"A": False}  # B is unknown, not reported closed
    assert rig.bus.heard.count(QueryAll(2)) >= 3  # the first poll: one try and two retries
    assert health["boards"]["2"]["faulted"] and health["boards"]["2"]["timeouts"] >= 3
    assert health["boards"]["2"]["retries"] == 2
    assert health["out_of_service"] == ["B"]
    assert not health["boards"]["1"]["faulted"]
    assert unread is None
    assert recovered == {"A": False, "B": False}
    assert not after["boards"]["2"]["faulted"] and after["out_of_service"] == []
    assert change == [DoorChange("B", False)]  # its doors are reported afresh


async def test_replies_one_byte_at_a_time_still_work(rig):
    rig.bus.faults.byte_at_a_time(1, 0.002)  # well inside the quiet gap

    driver = rig.driver()
    await driver.start()
    result = await driver.unlock("1-1")
    readings = await driver.poll()
    await driver.close()

    assert result.released and readings["1-1"] is True
    assert rig.pulses(1, 1) == 1


async def test_a_slow_board_within_the_timeout_still_works(rig):
    rig.bus.faults.slow(1, 0.02)

    driver = rig.driver()
    await driver.start()
    readings = await driver.poll()
    health = driver.health()["boards"]["1"]
    await driver.close()

    assert readings == {"1-1": False, "1-2": False, "1-3": False}
    assert health["timeouts"] == 0 and health["retries"] == 0


async def test_a_reply_too_late_is_retried_and_its_leftover_counted_in_the_next_transaction(rig):
    # Past the query timeout and the one read (a quiet gap long) that may straddle it.
    late_s = VIRTUAL_TIMING.query_timeout_s + VIRTUAL_TIMING.quiet_gap_s + 0.02
    rig.bus.faults.slow(1, late_s)

    driver = rig.driver()
    await driver.start()
    await driver.poll()
    rig.bus.faults.slow(1, 0)
    # Let the last late reply land, then the next poll must drain and still work.
    rig.clock.advance(late_s)
    assert rig.bytes_out < 7 * len(rig.bus.heard)  # it is on the line, not read yet
    readings_after = await driver.poll()
    health = driver.health()
    await driver.close()

    assert readings_after == {"1-1": False, "1-2": False, "1-3": False}
    board = health["boards"]["1"]
    assert board["retries"] >= 1
    # Late replies either land inside a retry (accepted: they answer the same query) or in
    # the next transaction's drain (counted as late).
    assert board["timeouts"] + health["line"]["late_frames"] >= 1
    # In virtual time the course is exact: the first try times out, its reply answers the retry,
    # and the retry's own reply is drained, late, by the next poll.
    assert (board["timeouts"], board["retries"], health["line"]["late_frames"]) == (1, 1, 1)


async def test_a_truncated_query_reply_is_retried(rig):
    rig.bus.faults.corrupt(1, "truncate", count=1)

    driver = rig.driver()
    await driver.start()
    readings = await driver.poll()
    health = driver.health()["boards"]["1"]
    await driver.close()

    assert readings == {"1-1": False, "1-2": False, "1-3": False}
    assert health["retries"] == 1 and health["garbage_bytes"] >= 1
    assert rig.bus.heard == [QueryAll(1), QueryAll(1)]


async def test_garbage_before_replies_is_skipped_and_counted(rig):
    rig.bus.faults.garbage(b"\x00\xff\x55\x13", count=None)

    driver = rig.driver()
    await driver.start()
    result = await driver.unlock("1-2")
    readings = await driver.poll()
    health = driver.health()["boards"]["1"]
    await driver.close()

    assert result.released and readings["1-2"] is True
    assert health["garbage_bytes"] >= 8 and health["retries"] == 0


async def test_unlocks_overtake_queued_polls(rig_factory):
    # Real time: the unlock must be queued while a poll holds the bus.
    rig = rig_factory(*(BoardConfig(address=a) for a in (1, 2, 3)), pty=True)
    rig.bus.faults.slow(1, 0.03)  # the first poll holds the bus while the rest queue

    driver = rig.driver({"A": (1, 1), "B": (2, 1), "C": (3, 5)})
    await driver.start()
    polling = asyncio.ensure_future(driver.poll())
    await eventually(lambda: QueryAll(1) in rig.bus.heard, 3, "the first poll on the bus")
    result = await driver.unlock("C")
    await polling
    await driver.close()

    assert result.released
    heard = rig.bus.heard
    assert heard.index(Unlock(3, 5)) < heard.index(QueryAll(2))
    assert heard.index(Unlock(3, 5)) < heard.index(QueryAll(3))


@pytest.mark.parametrize("accepted", [{HEAD_UNLOCK, HEAD_QUERY}, {HEAD_QUERY}])
async def test_the_head_80_unlock_reply_variant(rig_factory, accepted):
    rig = rig_factory(BoardConfig(address=1, unlock_reply_head=HEAD_QUERY))

    driver = rig.driver({"A": (1, 1)}, boards=[BoardSpec(1, unlock_reply_heads=accepted)])
    await driver.start()
    result = await driver.unlock("A")
    await driver.close()

    assert result.released
    assert rig.bus.heard == [Unlock(1, 1)]


async def test_an_unlock_reply_with_a_head_the_board_is_not_set_for_is_checked_by_query(rig):
    driver = rig.driver({"A": (1, 1)}, boards=[BoardSpec(1, unlock_reply_heads={HEAD_QUERY})])
    await driver.start()
    result = await driver.unlock("A")
    health = driver.health()["boards"]["1"]
    await driver.close()

    assert result.released and health["wrong_replies"] == 1
    assert rig.bus.heard == [Unlock(1, 1), Query(1, 1)]
    assert rig.pulses(1, 1) == 1


async def test_inverted_polarity(rig_factory):
    rig = rig_factory(BoardConfig(address=1, polarity=Polarity.INVERTED))

    driver = rig.driver(
        {"A": (1, 1), "B": (1, 2)}, boards=[BoardSpec(1, polarity=Polarity.INVERTED)]
    )
    await driver.start()
    before = await driver.poll()
    result = await driver.unlock("A")
    after = await driver.poll()
    rig.bus.person.close_door(1, 1)
    closed = await driver.read("A")
    await driver.close()

    assert before == {"A": False, "B": False}
    assert result.released
    assert after == {"A": True, "B": False}
    assert closed is False


async def test_two_boards_on_one_address_are_flagged_as_a_clash(rig_factory):
    rig = rig_factory(BoardConfig(address=1), BoardConfig(address=1))

    driver = rig.driver({"A": (1, 1)}, boards=[BoardSpec(1)])
    await driver.start()
    readings = [await driver.poll() for _ in range(2)]
    health = driver.health()
    await driver.close()

    assert readings[-1] == {}
    board = health["boards"]["1"]
    assert board["clashes"] >= 2 and board["address_clash_suspected"]
    assert board["faulted"] and health["out_of_service"] == ["A"]
    assert rig.bus.collisions >= 2


async def test_unasked_state_reports_are_taken_as_door_changes(rig_factory):
    # Real time: the report is heard by the bus thread's idle listening.
    rig = rig_factory(BoardConfig(address=2, sends_reports=True), pty=True)

    driver = rig.driver({"A": (2, 5)})
    feed = driver.changes()
    await driver.start()
    await driver.poll()
    assert await drain(feed, 1) == [DoorChange("A", False)]
    rig.bus.heard.clear()
    rig.bus.person.force_door(2, 5)
    change = await drain(feed, 1)  # no poll asked for it
    await driver.close()

    assert change == [DoorChange("A", True)]
    assert rig.bus.heard == []


class EchoingBus(RecordingBus):
    """A bus behind an adapter that hears its own transmission: every request comes back first."""

    def feed(self, data: bytes, now: float) -> list[Chunk]:
        return [Chunk(0.0, data), *super().feed(data, now)]


@pytest.mark.parametrize("echo", [True, False])
async def test_an_echoing_adapter_needs_echo_set(echo):
    # An unlock's echo is byte for byte a "still closed" unlock reply: without the setting the
    # driver would believe the lock jammed and fire it a second time.
    bus = EchoingBus([BoardConfig(address=1)], pulse_s=0.05, query_reply_s=0.001)

    with PtyServer(bus) as server:
        driver = Rs485Driver(
            server.path, [BoardSpec(1)], {"A": (1, 1)}, timing=FAST_TIMING, echo=echo
        )
        await driver.start()
        result = await driver.unlock("A")
        readings = await driver.poll()
        await driver.close()
    if echo:
        assert result.released and readings == {"A": True}
        assert bus.board(1).doors[1].pulses == 1
    else:
        assert bus.board(1).doors[1].pulses == 2  # what the setting is for


async def test_a_held_bus_skips_status_polls_until_released(rig):
    # The kiosk holds polls while a code is typed, so the unlock never queues behind one.
    driver = rig.driver()
    await driver.start()
    await driver.poll()
    before = rig.bus.heard.count(QueryAll(1))
    driver.hold_polls(60)
    await driver.poll()
    held = rig.bus.heard.count(QueryAll(1)) - before
    result = await driver.unlock("1-2")
    driver.release_polls()
    readings = await driver.poll()
    after = rig.bus.heard.count(QueryAll(1)) - before
    await driver.close()

    assert held == 0
    assert result.released and readings["1-2"] is True
    assert after >= 1
