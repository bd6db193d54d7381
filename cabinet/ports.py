"""The small interfaces the cabinet's adapters sit behind: here, the door driver.

A `DoorDriver` unlocks compartments, reads their doors and tells ONE owner (the task that owns
the cabinet's state) whenever a door is seen to open or close. Everything is asyncio; drivers that
do blocking I/O (a serial thread, gpiozero's callback threads) hand results to the event loop with
`loop.call_soon_threadsafe`, so the owner never sees another thread.

What `unlock` may claim: `RELEASED` only when the hardware said so (a lock board's reply or query
reading "released", a reed switch seen open); `STILL_LATCHED` only when the lock said "still
closed" after its retry (a lock fault); `UNKNOWN` when the pulse may have fired but nothing
confirmed it; `NOT_SENT` when the command never reached the hardware. Never a bare True.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from cabinet.core.inputs import DoorObserved, OccupancyObserved, UnlockFailed
from cabinet.errors import FeedTaken


class UnlockOutcome(Enum):
    """What an unlock achieved, as far as the hardware lets the driver know."""

    RELEASED = "released"  # the latch is confirmed released (or the door seen open)
    STILL_LATCHED = "still_latched"  # the lock answered "closed" after its one retry: a lock fault
    UNKNOWN = "unknown"  # the pulse may have fired, but nothing confirmed either way
    NOT_SENT = "not_sent"  # the command never left: nothing can have moved


@dataclass(frozen=True)
class UnlockResult:
    """The outcome of one `unlock`, with a human detail for logs and the maintenance screen."""

    compartment: str
    outcome: UnlockOutcome
    detail: str = ""

    @property
    def released(self) -> bool:
        return self.outcome is UnlockOutcome.RELEASED

    def as_input(self) -> UnlockFailed | None:
        """The core's input for a failed unlock (None when it released)."""
        if self.released:
            return None
        return UnlockFailed(self.compartment, f"{self.outcome.value}: {self.detail}")


@dataclass(frozen=True)
class DoorChange:
    """A door seen open or closed (its first reading, then every change)."""

    compartment: str
    open: bool

    def as_input(self) -> DoorObserved:
        return DoorObserved(self.compartment, self.open)


@dataclass(frozen=True)
class OccupancyChange:
    """A compartment's occupancy sensor seen to see something, or nothing (first, then changes).

    Only boards with sensors (KR-CU) publish these; a driver publishes a status reply's sensor
    changes before its door changes, so the owner knows what is inside when a door shuts.
    """

    compartment: str
    occupied: bool

    def as_input(self) -> OccupancyObserved:
        return OccupancyObserved(self.compartment, self.occupied)


Change = DoorChange | OccupancyChange


class ChangeFeed:
    """Door changes for one owner: the driver publishes on the loop, the owner iterates."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._taken = False

    def publish(self, change: Change) -> None:
        """Queue a change; call on the event loop's thread."""
        self._queue.put_nowait(change)

    def close(self) -> None:
        """End the owner's iteration."""
        self._queue.put_nowait(None)

    def take(self) -> AsyncIterator[Change]:
        """Hand the changes to their one owner; a second caller gets FeedTaken."""
        if self._taken:
            raise FeedTaken("door changes already have an owner")
        self._taken = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Change]:
        while (change := await self._queue.get()) is not None:
            yield change

    def get_nowait(self) -> Change | None:
        """The next queued change, if any (for composite drivers and tests)."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None


@runtime_checkable
class DoorDriver(Protocol):
    """Unlock compartments, read their doors, report door changes and faults."""

    @property
    def compartments(self) -> frozenset[str]:
        """The compartment ids this driver routes."""
        ...

    async def start(self) -> None:
        """Open the hardware and start watching doors (call on the running loop)."""

    async def unlock(self, compartment: str) -> UnlockResult:
        """Release one compartment's latch and say what is known to have happened."""
        ...

    async def read(self, compartment: str) -> bool | None:
        """Whether the door is open now; None when it cannot be read (board faulted)."""
        ...

    async def poll(self) -> Mapping[str, bool]:
        """Read every door it can now (unreadable ones are left out); changes are published."""
        ...

    def changes(self) -> AsyncIterator[Change]:
        """Door changes (and sensor changes, where boards have them), to one owner only.

        A second caller gets FeedTaken.
        """
        ...

    def health(self) -> dict[str, Any]:
        """Counters and faulted flags for the maintenance screen (JSON-able)."""
        ...

    def hold_polls(self, seconds: float) -> None:
        """Keep background status polls off the bus for a while: a code is being typed.

        On a shared RS485 bus an unlock that arrives while a poll is in flight waits for the
        poll's reply and the inter-request gap. A person types a code over seconds, so the kiosk
        calls this at the first digit and the unlock finds the bus free. Drivers without a bus
        (GPIO) have nothing to hold. A bus driver caps the hold (cabinet/drivers/poll_hold.py),
        since anyone who reaches the kiosk can ask for one: doors must never go unseen for long.
        """

    def release_polls(self) -> None:
        """End a `hold_polls` early (the code was checked)."""

    async def close(self) -> None:
        """Stop watching and release the hardware (safe to call twice)."""
