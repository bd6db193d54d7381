"""The RS485 driver on a Kerong KR-CU16 bus (docs/lockboard.md#the-second-family-kerong-kr-cu16).

Production timings in virtual time (virtual_line.py): a board that never answers an unlock
costs the test no real second. The simulated boards speak the KR-CU frames; the driver is the
same one that drives 8A/80 boards, told the bus's family.
"""

from __future__ import annotations

import asyncio

from cabinet.drivers.rs485 import BoardSpec, Rs485Driver
from cabinet.ports import Change, DoorChange, OccupancyChange, UnlockOutcome
from firmware_sim import BoardConfig, SimulatedBus
from protocol.lockboard.common import Polarity
from tests.cabinet.drivers.conftest import VIRTUAL_TIMING
from tests.cabinet.drivers.virtual_line import VirtualClock, VirtualPort


def _bus(*configs: BoardConfig) -> tuple[SimulatedBus, VirtualClock]:
    clock = VirtualClock()
    return SimulatedBus(list(configs), pulse_s=0.01, query_reply_s=0.001, clock=clock), clock


def _driver(bus: SimulatedBus, clock: VirtualClock, routes, boards=None) -> Rs485Driver:
    return Rs485Driver(
        VirtualPort(bus, clock),
        boards or [BoardSpec(b.address, b.config.channels) for b in bus.boards],
        routes,
        timing=VIRTUAL_TIMING,
        clock=clock,
        sleep=clock.sleep,
        board_family="krcu",
    )


async def _drain(feed, count: int) -> list[Change]:
    return [await asyncio.wait_for(anext(feed), 3) for _ in range(count)]


async def test_a_poll_reports_sensors_before_doors_and_follows_the_parcels() -> None:
    bus, clock = _bus(BoardConfig(address=1, channels=16, family="krcu"))
    driver = _driver(bus, clock, {"A": (1, 1), "B": (1, 16)})
    feed = driver.changes()
    await driver.start()
    assert await driver.poll() == {"A": False, "B": False}
    assert await _drain(feed, 4) == [
        OccupancyChange("A", False),
        OccupancyChange("B", False),
        DoorChange("A", False),
        DoorChange("B", False),
    ]
    assert (await driver.unlock("B")).outcome is UnlockOutcome.RELEASED
    assert await _drain(feed, 1) == [DoorChange("B", True)]
    bus.person.put_parcel(1, 16)
    bus.person.close_door(1, 16)
    await driver.poll()
    # the sensor first: when the owner hears the door shut, it knows the parcel is in
    assert await _drain(feed, 2) == [OccupancyChange("B", True), DoorChange("B", False)]
    assert driver.sensed() == {"A": False, "B": True}
    assert driver.health()["family"] == "krcu"
    await driver.close()


async def test_an_unlock_a_board_never_answers_is_confirmed_by_status_not_resent() -> None:
    bus, clock = _bus(BoardConfig(address=2, channels=16, family="krcu", answers_unlock=False))
    driver = _driver(bus, clock, {"A": (2, 5)}, [BoardSpec(2, 16, answers_unlock=False)])
    await driver.start()
    started = clock()
    result = await driver.unlock("A")
    assert result.outcome is UnlockOutcome.RELEASED, result
    assert bus.board(2).doors[5].pulses == 1  # fired once, never again on a guess
    assert clock() - started >= VIRTUAL_TIMING.unlock_timeout_s  # it waited for a reply first
    board = driver.health()["boards"]["2"]
    assert board["unlock_unknown"] == 0
    assert board["timeouts"] == 0  # this board is known not to answer unlocks
    await driver.close()


async def test_a_jammed_lock_is_a_fault_after_one_retry() -> None:
    bus, clock = _bus(BoardConfig(address=1, channels=16, family="krcu"))
    bus.faults.jam(1, 3)
    driver = _driver(bus, clock, {"A": (1, 3)})
    await driver.start()
    result = await driver.unlock("A")
    assert result.outcome is UnlockOutcome.STILL_LATCHED
    assert bus.board(1).doors[3].pulses == 2
    await driver.close()


async def test_a_dead_board_faults_and_its_unlock_is_unknown() -> None:
    bus, clock = _bus(
        BoardConfig(address=1, channels=16, family="krcu"),
        BoardConfig(address=2, channels=16, family="krcu"),
    )
    bus.faults.silence(2)
    driver = _driver(bus, clock, {"A": (1, 1), "B": (2, 1)})
    await driver.start()
    assert await driver.poll() == {"A": False}  # B cannot be read
    assert driver.health()["out_of_service"] == ["B"]
    result = await driver.unlock("B")
    assert result.outcome is UnlockOutcome.UNKNOWN  # it hears and fires, but says nothing
    assert bus.board(2).doors[1].pulses == 1
    await driver.close()


async def test_a_stuck_sensor_and_an_inverted_one_read_as_set() -> None:
    bus, clock = _bus(
        BoardConfig(address=1, channels=16, family="krcu", sensor_polarity=Polarity.INVERTED)
    )
    bus.faults.stick_occupancy(1, 2, True)
    boards = [BoardSpec(1, 16, sensor_polarity=Polarity.INVERTED)]
    driver = _driver(bus, clock, {"A": (1, 1), "B": (1, 2)}, boards)
    await driver.start()
    await driver.poll()
    assert driver.sensed() == {"A": False, "B": True}
    await driver.close()
