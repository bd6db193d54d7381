"""Fixtures for the door drivers: a simulated lock-board bus in virtual time or on a real pty,
and MockFactory pins.

`rig` runs the RS485 driver with its production timings against the simulator in virtual time
(virtual_line.py): a timeout is waited out by moving the clock, not by sleeping. `pty_rig` is the
same bus on a real pty with shortened timings, for the few tests that prove the real pacing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import pytest

from cabinet.drivers.rs485 import BoardSpec, BusTiming, Rs485Driver
from firmware_sim import BoardConfig, Chunk, PtyServer, SimulatedBus
from protocol.lockboard.common import Polarity
from protocol.lockboard.family_8a import Request, RequestDecoder
from tests.cabinet.drivers.virtual_line import VirtualClock, VirtualPort

# The production clocks (docs/lockboard.md#line-and-timing), for the bus in virtual time; the
# tests poll by hand unless they ask for the periodic poller.
VIRTUAL_TIMING = replace(BusTiming(), poll_interval_s=0)
# Short clocks for the real pty, so a timeout costs tens of milliseconds, not seconds.
FAST_TIMING = BusTiming(
    query_timeout_s=0.05,
    unlock_timeout_s=0.3,
    quiet_gap_s=0.01,
    inter_request_gap_s=0.001,
    poll_interval_s=0,  # tests poll by hand unless they ask for the periodic poller
    query_retries=2,
    idle_read_s=0.005,
)


class RecordingBus(SimulatedBus):
    """A simulated bus that also notes every request it hears, in order."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.heard: list[Request] = []
        self._listener = RequestDecoder()

    def feed(self, data: bytes, now: float, *, baud: int | None = None) -> list[Chunk]:
        with self.lock:
            self.heard += self._listener.feed(data)
        return super().feed(data, now, baud=baud)


@dataclass
class Rig:
    """A simulated bus, in virtual time (`clock`) or on a pty (`server`), and its drivers."""

    bus: RecordingBus
    server: PtyServer | None = None
    clock: VirtualClock | None = None
    ports: list[VirtualPort] = field(default_factory=list)
    drivers: list[Rs485Driver] = field(default_factory=list)

    @property
    def bytes_out(self) -> int:
        """What the boards have sent the driver so far."""
        if self.server is not None:
            return self.server.bytes_out
        return sum(port.bytes_out for port in self.ports)

    def driver(
        self,
        compartments: dict[str, tuple[int, int]] | None = None,
        *,
        timing: BusTiming | None = None,
        boards: list[BoardSpec] | None = None,
    ) -> Rs485Driver:
        if boards is None:
            boards = [
                BoardSpec(
                    b.address,
                    b.config.channels,
                    Polarity(b.config.polarity.value),
                )
                for b in self.bus.boards
            ]
            boards = list({spec.address: spec for spec in boards}.values())
        if compartments is None:
            compartments = {
                f"{spec.address}-{ch}": (spec.address, ch) for spec in boards for ch in (1, 2, 3)
            }
        if self.clock is None:
            assert self.server is not None
            driver = Rs485Driver(
                self.server.path, boards, compartments, timing=timing or FAST_TIMING
            )
        else:
            port = VirtualPort(self.bus, self.clock)
            self.ports.append(port)
            driver = Rs485Driver(
                port,
                boards,
                compartments,
                timing=timing or VIRTUAL_TIMING,
                clock=self.clock,
                sleep=self.clock.sleep,
            )
        self.drivers.append(driver)
        return driver

    def pulses(self, address: int, channel: int) -> int:
        return self.bus.board(address).doors[channel].pulses


@pytest.fixture
def rig_factory() -> Iterator[Callable[..., Rig]]:
    """Make `Rig(boards..., pty=False)`: in virtual time, or with `pty=True` on a real pty (every
    pty is closed after the test)."""
    servers: list[PtyServer] = []

    def make(*configs: BoardConfig, pty: bool = False) -> Rig:
        clock = None if pty else VirtualClock()
        bus = RecordingBus(
            list(configs or [BoardConfig(address=1)]),
            pulse_s=0.01,
            query_reply_s=0.001,
            **({} if clock is None else {"clock": clock}),
        )
        if clock is not None:
            return Rig(bus, clock=clock)
        server = PtyServer(bus).start()
        servers.append(server)
        return Rig(bus, server)

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    """One 24-channel board at address 1, in virtual time."""
    return rig_factory(BoardConfig(address=1, channels=24))


@pytest.fixture
def pty_rig(rig_factory: Callable[..., Rig]) -> Rig:
    """One 24-channel board at address 1 on a real pty: real time, shortened timings."""
    return rig_factory(BoardConfig(address=1, channels=24), pty=True)
