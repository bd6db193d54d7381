"""One contract, every driver: the DoorDriver behaviours both RS485 and GPIO must share."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

import pytest
from gpiozero.pins.mock import MockFactory

from cabinet.drivers.gpio import GpioDoor, GpioDriver, GpioTiming
from cabinet.errors import DriverClosed, FeedTaken, UnknownCompartment
from cabinet.ports import DoorChange, DoorDriver, UnlockOutcome
from firmware_sim import BoardConfig
from tests.cabinet.drivers.conftest import Rig

COMPARTMENTS = ("A", "B")


class SimWorld:
    """The RS485 driver over firmware-sim: doors spring open when their lock releases."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.driver: DoorDriver = rig.driver({"A": (1, 1), "B": (1, 2)})

    async def begin(self) -> None:
        """The world's starting state: every door shut and latched."""

    def close_by_hand(self, compartment: str) -> None:
        self.rig.bus.person.close_door(1, {"A": 1, "B": 2}[compartment])

    async def end(self) -> None:
        pass


class PinWorld:
    """The GPIO driver over MockFactory pins: a task plays the door spring on each relay pulse."""

    PINS: ClassVar[dict[str, tuple[int, int]]] = {"A": (17, 27), "B": (22, 23)}

    def __init__(self) -> None:
        self.factory = MockFactory()
        timing = GpioTiming(pulse_s=0.01, release_window_s=0.2, bounce_time_s=None)
        doors = {c: GpioDoor(relay, sensor) for c, (relay, sensor) in self.PINS.items()}
        self.driver = GpioDriver(doors, timing=timing, pin_factory=self.factory)
        self._springs: list[asyncio.Task[None]] = []

    async def begin(self) -> None:
        for relay, sensor in self.PINS.values():
            self.factory.pin(sensor).drive_low()
            self._springs.append(asyncio.ensure_future(self._spring(relay, sensor)))
        await self.driver.poll()

    async def _spring(self, relay: int, sensor: int) -> None:
        relay_pin, sensor_pin = self.factory.pin(relay), self.factory.pin(sensor)
        while True:
            if relay_pin.state:
                sensor_pin.drive_high()
            await asyncio.sleep(0.001)

    def close_by_hand(self, compartment: str) -> None:
        self.factory.pin(self.PINS[compartment][1]).drive_low()

    async def end(self) -> None:
        for task in self._springs:
            task.cancel()
        self.factory.reset()


@pytest.fixture(params=["rs485-sim", "gpio-mock"])
def make_world(request, rig_factory) -> Callable[[], SimWorld | PinWorld]:
    if request.param == "rs485-sim":
        return lambda: SimWorld(rig_factory(BoardConfig(address=1)))
    return PinWorld


@pytest.fixture
async def started(make_world) -> AsyncIterator[tuple[SimWorld | PinWorld, AsyncIterator]]:
    """A world with its driver started; `(world, feed)`; everything closed after the test."""
    world = make_world()
    feed = world.driver.changes()
    await world.driver.start()
    await world.begin()
    yield world, feed
    await world.driver.close()
    await world.end()


async def next_change(feed, compartment: str, door_open: bool) -> None:
    """Skip changes until `compartment` is seen `door_open` (first readings come first)."""
    while True:
        change = await asyncio.wait_for(anext(feed), 2)
        if change == DoorChange(compartment, door_open):
            return


async def test_it_is_a_door_driver(started):
    world, _feed = started
    assert isinstance(world.driver, DoorDriver)
    assert world.driver.compartments == frozenset(COMPARTMENTS)


async def test_poll_reads_every_door(started):
    world, _feed = started
    assert await world.driver.poll() == {"A": False, "B": False}
    assert await world.driver.read("B") is False


async def test_unlock_releases_and_the_owner_sees_the_door_open(started):
    world, feed = started
    result = await world.driver.unlock("A")
    assert result.outcome is UnlockOutcome.RELEASED and result.as_input() is None
    await next_change(feed, "A", True)
    assert await world.driver.read("A") is True
    assert await world.driver.read("B") is False


async def test_a_door_closed_by_hand_reaches_the_owner(started):
    world, feed = started
    await world.driver.unlock("B")
    await next_change(feed, "B", True)
    world.close_by_hand("B")
    await world.driver.poll()
    await next_change(feed, "B", False)
    assert (await world.driver.poll())["B"] is False


async def test_an_unknown_compartment_is_refused(started):
    world, _feed = started
    with pytest.raises(UnknownCompartment):
        await world.driver.unlock("Z9")
    with pytest.raises(UnknownCompartment):
        await world.driver.read("Z9")


async def test_door_changes_have_one_owner(started):
    world, _feed = started
    with pytest.raises(FeedTaken):
        world.driver.changes()


async def test_health_is_json_for_the_maintenance_screen(started):
    world, _feed = started
    health = world.driver.health()
    json.dumps(health)
    assert health["out_of_service"] == []


async def test_close_ends_the_feed_and_refuses_more_work(make_world):
    world = make_world()
    feed = world.driver.changes()
    await world.driver.start()
    await world.begin()
    await world.driver.close()
    await world.driver.close()  # twice is fine
    with pytest.raises(DriverClosed):
        await world.driver.unlock("A")
    assert [change async for change in feed][-1:] != [None]
    await world.end()
