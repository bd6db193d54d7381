"""Door driver for GPIO cabinets through gpiozero: a relay per lock, a reed switch per door.

What `unlock` can know: a reed switch tells only whether the door is open, not whether the latch
let go. So the driver pulses the relay and watches the switch for `release_window_s` from the
start of the pulse: the door seen open means RELEASED; a door still shut means UNKNOWN (the
latch may be released with the door held or stuck shut), never "still latched", since no switch
here can say so. A relay that cannot be driven means NOT_SENT.

gpiozero calls `when_activated` / `when_deactivated` on its own threads; each edge is handed to the
event loop with `loop.call_soon_threadsafe`, so door changes reach their owner on the loop.
Any pin factory may be passed (tests use `gpiozero.pins.mock.MockFactory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import GPIOZeroError

from cabinet.errors import DriverClosed, DriverError, UnknownCompartment
from cabinet.ports import ChangeFeed, DoorChange, UnlockOutcome, UnlockResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpioDoor:
    """The two pins of one compartment (gpiozero pin names: 17, "GPIO17", "BOARD11")."""

    relay_pin: int | str
    sensor_pin: int | str


@dataclass(frozen=True)
class GpioTiming:
    """Relay and switch settings shared by a cabinet's doors."""

    pulse_s: float = 0.5  # how long the relay powers the lock
    release_window_s: float = 2.0  # how long after the pulse starts the door may take to open
    relay_active_high: bool = True
    sensor_pull_up: bool = True  # reed switch to ground, closed (pin low) while the door is shut
    bounce_time_s: float | None = 0.05


class GpioDriver:
    """Every compartment wired straight to GPIO pins."""

    def __init__(
        self,
        doors: Mapping[str, GpioDoor],
        *,
        timing: GpioTiming | None = None,
        pin_factory: Any = None,
        name: str = "gpio",
    ) -> None:
        self.name = name
        self.timing = timing or GpioTiming()
        self._doors = dict(doors)
        self._pin_factory = pin_factory
        self._relays: dict[str, DigitalOutputDevice] = {}
        self._sensors: dict[str, DigitalInputDevice] = {}
        self._seen_open: dict[str, asyncio.Event] = {}
        self._known: dict[str, bool] = {}
        self._counters = {c: {"pulses": 0, "not_sent": 0, "unknown": 0} for c in self._doors}
        self._feed: ChangeFeed | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False

    @property
    def compartments(self) -> frozenset[str]:
        return frozenset(self._doors)

    async def start(self) -> None:
        """Claim the pins, report every door's first reading and watch for edges."""
        self._loop = asyncio.get_running_loop()
        self._feed = self._feed or ChangeFeed()
        timing = self.timing
        try:
            for compartment, door in self._doors.items():
                self._relays[compartment] = DigitalOutputDevice(
                    door.relay_pin,
                    active_high=timing.relay_active_high,
                    initial_value=False,
                    pin_factory=self._pin_factory,
                )
                sensor = DigitalInputDevice(
                    door.sensor_pin,
                    pull_up=timing.sensor_pull_up,
                    bounce_time=timing.bounce_time_s,
                    pin_factory=self._pin_factory,
                )
                # The switch is closed ("active") while the magnet holds it: the door is shut.
                # (DigitalInputDevice, not Button: a Button's hold thread makes close() slow.)
                sensor.when_activated = self._edge_handler(compartment, door_open=False)
                sensor.when_deactivated = self._edge_handler(compartment, door_open=True)
                self._sensors[compartment] = sensor
                self._seen_open[compartment] = asyncio.Event()
        except (GPIOZeroError, OSError, ValueError) as err:
            self._release_pins()
            raise DriverError(f"{self.name}: cannot claim pins: {err}") from err
        self._started = True
        await self.poll()

    async def unlock(self, compartment: str) -> UnlockResult:
        relay = self._device(self._relays, compartment)
        seen_open = self._seen_open[compartment]
        seen_open.clear()
        if self._is_open(compartment):
            seen_open.set()
        try:
            relay.on()
        except (GPIOZeroError, OSError) as err:
            self._counters[compartment]["not_sent"] += 1
            return UnlockResult(compartment, UnlockOutcome.NOT_SENT, f"relay not driven: {err}")
        self._counters[compartment]["pulses"] += 1
        try:
            await asyncio.sleep(self.timing.pulse_s)
        finally:
            relay.off()
        window_left_s = max(0.0, self.timing.release_window_s - self.timing.pulse_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen_open.wait(), window_left_s)
        if seen_open.is_set() or self._is_open(compartment):
            self._saw(compartment, True)
            return UnlockResult(compartment, UnlockOutcome.RELEASED, "door seen open")
        self._counters[compartment]["unknown"] += 1
        return UnlockResult(
            compartment,
            UnlockOutcome.UNKNOWN,
            f"relay pulsed but the door was not seen open within {self.timing.release_window_s}s "
            "(a reed switch cannot tell a latch released with the door held shut)",
        )

    async def read(self, compartment: str) -> bool | None:
        self._device(self._sensors, compartment)
        return self._is_open(compartment)

    def hold_polls(self, seconds: float) -> None:
        """Nothing to hold: reed switches interrupt, no bus is shared."""

    def release_polls(self) -> None:
        """Nothing to release."""

    async def poll(self) -> dict[str, bool]:
        self._check_running()
        readings = {compartment: self._is_open(compartment) for compartment in self._sensors}
        for compartment, door_open in readings.items():
            self._saw(compartment, door_open)
        return readings

    def changes(self) -> AsyncIterator[DoorChange]:
        if self._feed is None:
            self._feed = ChangeFeed()
        return self._feed.take()

    def health(self) -> dict[str, Any]:
        return {
            "driver": "gpio",
            "name": self.name,
            "doors": {c: dict(counters) for c, counters in self._counters.items()},
            "out_of_service": [],
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release_pins()
        if self._feed is not None:
            self._feed.close()

    # --- internals --------------------------------------------------------------------------------

    def _edge_handler(self, compartment: str, *, door_open: bool) -> Callable[[], None]:
        def on_edge() -> None:
            # Called on a gpiozero thread: hand the edge to the loop that owns the doors.
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._saw, compartment, door_open)

        return on_edge

    def _saw(self, compartment: str, door_open: bool) -> None:
        if door_open:
            self._seen_open[compartment].set()
        if self._known.get(compartment) == door_open:
            return
        self._known[compartment] = door_open
        if self._feed is not None:
            self._feed.publish(DoorChange(compartment, door_open))

    def _is_open(self, compartment: str) -> bool:
        return not self._sensors[compartment].is_active

    def _device(self, devices: Mapping[str, Any], compartment: str) -> Any:
        self._check_running()
        try:
            return devices[compartment]
        except KeyError:
            raise UnknownCompartment(compartment) from None

    def _check_running(self) -> None:
        if self._closed or not self._started:
            raise DriverClosed(f"{self.name} is not running")

    def _release_pins(self) -> None:
        for device in [*self._relays.values(), *self._sensors.values()]:
            with contextlib.suppress(Exception):
                device.close()
        self._relays.clear()
        self._sensors.clear()
