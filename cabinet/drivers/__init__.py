"""Door drivers behind `cabinet.ports.DoorDriver`, and `build_driver` to make them from config.

- `rs485`  lock-control boards ("8A/80" or Kerong KR-CU16, one family per bus) over pyserial
- `gpio`   relays and reed switches on GPIO pins, through gpiozero (any pin factory)
- `mixed`  several drivers behind one interface, each compartment routed to its own

`build_driver(config)` gives one driver per RS485 bus, one for the GPIO doors, and wraps them in
a `MixedDriver` when there is more than one.
"""

from __future__ import annotations

from typing import Any

from cabinet.config import CabinetConfig
from cabinet.drivers.gpio import GpioDoor, GpioDriver, GpioTiming
from cabinet.drivers.mixed import MixedDriver
from cabinet.drivers.rs485 import BoardSpec, BusTiming, Rs485Driver
from cabinet.ports import DoorDriver
from protocol.lockboard.common import Polarity

__all__ = [
    "BoardSpec",
    "BusTiming",
    "GpioDoor",
    "GpioDriver",
    "GpioTiming",
    "MixedDriver",
    "Rs485Driver",
    "build_driver",
]


def build_driver(config: CabinetConfig, *, pin_factory: Any = None) -> DoorDriver:
    """The door driver for a checked config (nothing is opened until `start`)."""
    drivers: list[DoorDriver] = []
    for bus_name, bus in config.buses.items():
        boards = [board for board in config.boards if board.bus == bus_name]
        routes = {
            c.id: (c.board, c.channel)
            for c in config.layout.compartments
            if c.driver == "rs485" and config.bus_of(c) == bus_name
        }
        if not routes:
            continue
        drivers.append(
            Rs485Driver(
                bus.port,
                [
                    BoardSpec(
                        address=board.address,
                        channels=board.channels,
                        polarity=Polarity(board.polarity),
                        unlock_reply_heads=frozenset(board.unlock_reply_heads),
                        sensor_polarity=Polarity(board.sensor_polarity),
                        sensors=board.sensors,
                        answers_unlock=board.answers_unlock,
                    )
                    for board in boards
                ],
                routes,  # type: ignore[arg-type]  # check_config made board and channel present
                timing=BusTiming(
                    query_timeout_s=bus.query_timeout_s,
                    unlock_timeout_s=bus.unlock_timeout_s,
                    quiet_gap_s=bus.quiet_gap_s,
                    inter_request_gap_s=bus.inter_request_gap_s,
                    poll_interval_s=bus.poll_interval_s,
                    query_retries=bus.query_retries,
                ),
                baud=bus.baud,
                echo=bus.echo,
                board_family=bus.family,
                name=f"rs485:{bus_name}",
            )
        )
    gpio_doors = {
        c.id: GpioDoor(c.relay_pin, c.sensor_pin)  # type: ignore[arg-type]
        for c in config.layout.compartments
        if c.driver == "gpio"
    }
    if gpio_doors:
        settings = config.gpio
        drivers.append(
            GpioDriver(
                gpio_doors,
                timing=GpioTiming(
                    pulse_s=settings.pulse_s,
                    release_window_s=settings.release_window_s,
                    relay_active_high=settings.relay_active_high,
                    sensor_pull_up=settings.sensor_pull_up,
                    bounce_time_s=settings.bounce_time_s,
                ),
                pin_factory=pin_factory,  # None: gpiozero's default (GPIOZERO_PIN_FACTORY)
            )
        )
    return drivers[0] if len(drivers) == 1 else MixedDriver(drivers)
