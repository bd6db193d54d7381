"""A cabinet whose doors sit on several drivers: route each compartment to its own driver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cabinet.errors import DriverError, UnknownCompartment
from cabinet.ports import Change, ChangeFeed, DoorDriver, UnlockResult


class MixedDriver:
    """Several drivers behind one `DoorDriver`; their door changes merge into one feed."""

    def __init__(self, drivers: Sequence[DoorDriver]) -> None:
        self._drivers = list(drivers)
        self._routes: dict[str, DoorDriver] = {}
        for driver in self._drivers:
            for compartment in driver.compartments:
                if compartment in self._routes:
                    raise DriverError(f"compartment {compartment!r} is routed to two drivers")
                self._routes[compartment] = driver
        self._feed = ChangeFeed()
        self._forwarders: list[asyncio.Task[None]] = []

    @property
    def compartments(self) -> frozenset[str]:
        return frozenset(self._routes)

    async def start(self) -> None:
        # Take each child's feed before it starts, so not even its first readings are missed.
        feeds = [driver.changes() for driver in self._drivers]
        for driver in self._drivers:
            await driver.start()
        self._forwarders = [asyncio.create_task(self._forward(feed)) for feed in feeds]

    async def unlock(self, compartment: str) -> UnlockResult:
        return await self._driver(compartment).unlock(compartment)

    async def read(self, compartment: str) -> bool | None:
        return await self._driver(compartment).read(compartment)

    def hold_polls(self, seconds: float) -> None:
        for driver in self._drivers:
            driver.hold_polls(seconds)

    def release_polls(self) -> None:
        for driver in self._drivers:
            driver.release_polls()

    async def poll(self) -> dict[str, bool]:
        readings: dict[str, bool] = {}
        for part in await asyncio.gather(*(driver.poll() for driver in self._drivers)):
            readings.update(part)
        return readings

    def changes(self) -> AsyncIterator[Change]:
        return self._feed.take()

    def health(self) -> dict[str, Any]:
        parts = [driver.health() for driver in self._drivers]
        return {
            "driver": "mixed",
            "drivers": parts,
            "out_of_service": sorted(c for part in parts for c in part.get("out_of_service", [])),
        }

    async def close(self) -> None:
        for driver in self._drivers:
            await driver.close()
        for task in self._forwarders:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._forwarders = []
        self._feed.close()

    def _driver(self, compartment: str) -> DoorDriver:
        try:
            return self._routes[compartment]
        except KeyError:
            raise UnknownCompartment(compartment) from None

    async def _forward(self, feed: AsyncIterator[Change]) -> None:
        async for change in feed:
            self._feed.publish(change)
