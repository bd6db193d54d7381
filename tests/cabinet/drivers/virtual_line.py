"""The simulated bus as a serial port in virtual time: the driver's timeouts cost no real time.

On the pty (`firmware_sim.PtyServer`) a board that never answers costs the driver its whole
reply timeout in real seconds, and tests shortened the timeouts to keep the suite fast. Here the
same `SimulatedBus` sits behind a port object the driver reads in place of pyserial's, and one
`VirtualClock` is the time of both: the driver's deadlines and line gap (`Rs485Driver(clock=,
sleep=)`), the bus's replies and the person's actions (`SimulatedBus(clock=)`). A read waits the
way a serial read does (until a byte is due, or for the port's timeout) by moving the clock, so
the production timings (a 1.5 s unlock timeout, 25 ms quiet gaps) run in microseconds and the
outcome is the same on every run.

What virtual time cannot show is the driver's real pacing against a real tty; the pty tests in
test_rs485.py (marked "real time") keep that covered.
"""

from __future__ import annotations

import heapq
import itertools
import threading

import serial

from firmware_sim import Chunk, SimulatedBus


class VirtualClock:
    """Monotonic seconds that move only when the driver waits or the test moves them."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        """What `time.sleep` is to the driver: the time passes, at once."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    def advance_to(self, moment: float) -> None:
        """Move on to `moment` (never back: the driver may already have waited past it)."""
        with self._lock:
            self._now = max(self._now, moment)


class VirtualPort(serial.SerialBase):
    """A serial port on a `SimulatedBus`, read and written in `VirtualClock` time."""

    def __init__(self, bus: SimulatedBus, clock: VirtualClock) -> None:
        self.bus = bus
        self.clock = clock
        self.bytes_out = 0  # what the boards have sent the driver so far
        self._due: list[tuple[float, int, bytes]] = []  # (due_at, tie-break, data)
        self._order = itertools.count()
        super().__init__(port=None)
        self.port = "virtual"
        self.is_open = True

    # --- what pyserial's SerialBase leaves to a port ----------------------------------------------

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _reconfigure_port(self) -> None:
        """Nothing to set: there is no device."""

    @property
    def in_waiting(self) -> int:
        self._take_unsolicited()
        now = self.clock()
        return sum(len(data) for due_at, _, data in self._due if due_at <= now)

    def write(self, data: bytes) -> int:
        now = self.clock()
        for chunk in self.bus.feed(bytes(data), now):
            self._schedule(now, chunk)
        return len(data)

    def flush(self) -> None:
        """Written bytes reach the bus at once."""

    def reset_input_buffer(self) -> None:
        now = self.clock()
        self._due = [item for item in self._due if item[0] > now]
        heapq.heapify(self._due)

    def read(self, size: int = 1) -> bytes:
        """Up to `size` bytes due now; else wait (move the clock) until some are due, at most
        the port's timeout; b"" when none came within it."""
        self._take_unsolicited()
        now = self.clock()
        if not (self._due and self._due[0][0] <= now):
            timeout = self.timeout if self.timeout is not None else float("inf")
            if self._due and self._due[0][0] <= now + timeout:
                self.clock.advance_to(self._due[0][0])
            else:
                self.clock.advance(timeout)
                return b""
        now = self.clock()
        out = b""
        while self._due and self._due[0][0] <= now and len(out) < size:
            due_at, order, data = heapq.heappop(self._due)
            take = size - len(out)
            out += data[:take]
            if len(data) > take:  # the rest stays on the line for the next read
                heapq.heappush(self._due, (due_at, order, data[take:]))
        self.bytes_out += len(out)
        return out

    # --- the line ---------------------------------------------------------------------------------

    def _take_unsolicited(self) -> None:
        now = self.clock()
        for chunk in self.bus.take_unsolicited():
            self._schedule(now, chunk)

    def _schedule(self, base: float, chunk: Chunk) -> None:
        heapq.heappush(self._due, (base + chunk.delay_s, next(self._order), chunk.data))
