"""The GPIO driver through gpiozero's MockFactory: edges reach the loop, unlocks pulse relays."""

from __future__ import annotations

import asyncio
import threading

import pytest
from gpiozero.pins.mock import MockFactory

from cabinet.drivers.gpio import GpioDoor, GpioDriver, GpioTiming
from cabinet.ports import DoorChange, UnlockOutcome

FAST = GpioTiming(pulse_s=0.01, release_window_s=0.05, bounce_time_s=None)


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.reset()


def states(pin) -> list[bool]:
    """The pin's levels, oldest first, with repeats folded (a change history)."""
    levels: list[bool] = []
    for state in pin.states:
        if not levels or levels[-1] != bool(state.state):
            levels.append(bool(state.state))
    return levels


async def test_sensor_edges_are_delivered_on_the_loop(factory):
    sensor = factory.pin(27)

    driver = GpioDriver({"G1": GpioDoor(17, 27)}, timing=FAST, pin_factory=factory)
    feed = driver.changes()
    await driver.start()
    seen = [await asyncio.wait_for(anext(feed), 1)]  # the pull-up alone: open
    sensor.drive_low()  # the door shuts: the reed switch pulls the pin to ground
    seen.append(await asyncio.wait_for(anext(feed), 1))
    # gpiozero calls back on its own threads: drive the pin from another thread too.
    opener = threading.Thread(target=sensor.drive_high)
    opener.start()
    opener.join()
    seen.append(await asyncio.wait_for(anext(feed), 1))
    assert await driver.read("G1") is True
    sensor.drive_low()
    seen.append(await asyncio.wait_for(anext(feed), 1))
    assert await driver.read("G1") is False
    await driver.close()
    assert seen == [
        DoorChange("G1", True),
        DoorChange("G1", False),
        DoorChange("G1", True),
        DoorChange("G1", False),
    ]


async def test_unlock_pulses_the_relay_and_a_door_that_springs_open_is_released(factory):
    relay, sensor = factory.pin(17), factory.pin(27)

    async def spring_open() -> None:
        while not relay.state:
            await asyncio.sleep(0.001)
        sensor.drive_high()

    driver = GpioDriver({"G1": GpioDoor(17, 27)}, timing=FAST, pin_factory=factory)
    await driver.start()
    sensor.drive_low()
    spring = asyncio.ensure_future(spring_open())
    result = await driver.unlock("G1")
    await spring
    await driver.close()

    assert result.outcome is UnlockOutcome.RELEASED
    assert states(relay) == [False, True, False]  # exactly one pulse


async def test_a_door_not_seen_open_is_unknown_never_still_latched(factory):
    relay, sensor = factory.pin(17), factory.pin(27)

    driver = GpioDriver({"G1": GpioDoor(17, 27)}, timing=FAST, pin_factory=factory)
    await driver.start()
    sensor.drive_low()
    result = await driver.unlock("G1")
    health = driver.health()
    await driver.close()

    assert result.outcome is UnlockOutcome.UNKNOWN
    assert "not seen open" in result.detail
    assert states(relay) == [False, True, False]  # exactly one pulse
    assert health["doors"]["G1"] == {"pulses": 1, "not_sent": 0, "unknown": 1}


async def test_an_active_low_relay_is_pulsed_low(factory):
    relay, sensor = factory.pin("GPIO5"), factory.pin("GPIO6")
    sensor.drive_high()  # already open (as the pull-up leaves it): confirmed at once

    timing = GpioTiming(pulse_s=0.01, release_window_s=0.05, relay_active_high=False)
    driver = GpioDriver({"G1": GpioDoor("GPIO5", "GPIO6")}, timing=timing, pin_factory=factory)
    await driver.start()
    result = await driver.unlock("G1")
    await driver.close()
    assert result.released
    assert states(relay)[-3:] == [True, False, True]
