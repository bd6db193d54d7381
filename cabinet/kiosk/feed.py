"""Fan-out of what the screen must hear unasked: server-sent events to every open page.

The cabinet tells its screen listeners about screens no tap asked for (a door seen shut, an idle
courier signed out, a serial scanner's QR); the kiosk publishes them here, with status changes
(the cloud link up or down, a new scan-to-open QR), and each page's `/api/events` stream reads
its own queue. A page that stops reading loses its oldest events rather than growing memory:
it re-reads `/api/status` when it reconnects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

MAX_QUEUED = 64  # per page; a screen shows a handful of events a minute
KEEPALIVE_S = 15.0  # a comment line now and then, so a dead connection is noticed


class Feed:
    """Publish named JSON events to every subscriber (call on the event loop's thread)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()  # the oldest goes; the page resyncs from /api/status
            queue.put_nowait((event, data))

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        self._closed = True
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def stream(self, keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[str]:
        """One page's events as `text/event-stream` chunks, until the feed closes."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(MAX_QUEUED)
        self._queues.add(queue)
        try:
            yield "retry: 1000\n\n"  # reconnect quickly after a daemon restart
            while not self._closed:
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if item is None:
                    return
                event, data = item
                yield f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
        finally:
            self._queues.discard(queue)
