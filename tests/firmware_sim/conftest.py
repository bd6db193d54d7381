"""Fixtures for the simulator's tests: a bus with a hand-turned clock, a served pty, a client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import serial

from firmware_sim import BoardConfig, PtyServer, SimulatedBus
from protocol.lockboard.family_8a import Frame, ReplyDecoder, Request, encode

FAST = {"pulse_s": 0.01, "query_reply_s": 0.001}  # tiny delays: tests never wait long


class FakeClock:
    """A clock the test turns by hand (what the control API stamps its log with)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ask(bus: SimulatedBus, request: Request, now: float = 100.0, **expect: int) -> list[Frame]:
    """Send `request` to a pure bus and decode every byte it answers with."""
    decoder = ReplyDecoder()
    decoder.expect(request, **expect)
    return decoder.feed(b"".join(chunk.data for chunk in bus.feed(encode(request), now)))


def wire(bus: SimulatedBus, request: Request, now: float = 100.0) -> bytes:
    """Every byte the bus answers `request` with, in order."""
    return b"".join(chunk.data for chunk in bus.feed(encode(request), now))


def read_exactly(port: serial.Serial, size: int, timeout_s: float = 2.0) -> bytes:
    """Read `size` bytes, or what came before the deadline."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while len(data) < size and time.monotonic() < deadline:
        data += port.read(size - len(data))
    return data


def wait_for(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Poll `condition` until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus(clock: FakeClock) -> SimulatedBus:
    """One 24-channel board at address 1, default polarity and head, on a pure bus."""
    return SimulatedBus([BoardConfig(address=1, channels=24)], clock=clock, **FAST)


@pytest.fixture
def served() -> Iterator[PtyServer]:
    """One 24-channel board at address 1, served on a pty."""
    bus = SimulatedBus([BoardConfig(address=1, channels=24)], **FAST)
    with PtyServer(bus) as server:
        yield server


@pytest.fixture
def port(served: PtyServer) -> Iterator[serial.Serial]:
    """A pyserial client on the served pty, as the cabinet daemon would open it."""
    with serial.Serial(served.path, 9600, timeout=0.5) as client:
        yield client
