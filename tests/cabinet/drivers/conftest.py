"""Fixtures for the door drivers: a simulated lock-board bus on a real pty, MockFactory pins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from cabinet.drivers.rs485 import BoardSpec, BusTiming, Rs485Driver
from firmware_sim import BoardConfig, Chunk, PtyServer, SimulatedBus
from protocol.lockboard.common import Polarity
from protocol.lockboard.family_8a import Request, RequestDecoder

# Short clocks so a timeout costs tens of milliseconds, not seconds.
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

    def feed(self, data: bytes, now: float) -> list[Chunk]:
        with self.lock:
            self.heard += self._listener.feed(data)
        return super().feed(data, now)


async def wait_until(condition: Callable[[], object], timeout_s: float = 3.0) -> None:
    """Poll `condition` on the loop until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


@dataclass
class Rig:
    """A simulated bus on a pty and how to build drivers for it."""

    bus: RecordingBus
    server: PtyServer
    drivers: list[Rs485Driver] = field(default_factory=list)

    def driver(
        self,
        compartments: dict[str, tuple[int, int]] | None = None,
        *,
        timing: BusTiming = FAST_TIMING,
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
        driver = Rs485Driver(self.server.path, boards, compartments, timing=timing)
        self.drivers.append(driver)
        return driver

    def pulses(self, address: int, channel: int) -> int:
        return self.bus.board(address).doors[channel].pulses


@pytest.fixture
def rig_factory() -> Iterator[Callable[..., Rig]]:
    """Make `Rig(boards...)`; every pty is closed after the test."""
    servers: list[PtyServer] = []

    def make(*configs: BoardConfig) -> Rig:
        bus = RecordingBus(
            list(configs or [BoardConfig(address=1)]), pulse_s=0.01, query_reply_s=0.001
        )
        server = PtyServer(bus).start()
        servers.append(server)
        return Rig(bus, server)

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    """One 24-channel board at address 1."""
    return rig_factory(BoardConfig(address=1, channels=24))
