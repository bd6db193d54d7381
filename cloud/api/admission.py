"""Admission: no more API requests in flight than the database pool keeps connections.

FastAPI runs each sync dependency and route in a worker thread (anyio's 40), one step at a
time, and a request keeps its session's connection between steps. With more requests in flight
than the pool holds (SQLAlchemy's default 5 + 10), every thread can end up blocked in the
pool's checkout while the requests holding the connections wait for a thread to finish: nothing
moves until the 30 s checkout time-out fails them all. `locker bench queries` did that at 500
tracking reads a second on 2 cores. Waiting here, on the event loop, costs no thread, so a
burst queues (and its latency shows it) instead of locking up.

Only the ERP API's paths (`/api/v1/...`) are admitted this way: the console's event stream holds
its request open for minutes and reads the database only at each poll.
"""

from __future__ import annotations

from typing import Any

import anyio
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

Scope = dict[str, Any]


def pool_capacity(engine: Engine) -> int | None:
    """How many connections the engine's pool keeps open; None: no fixed limit.

    Its size, not size + overflow: an overflow connection is closed when it is given back, so
    a server busy enough to use them opened and closed a PostgreSQL backend (a fork, some
    milliseconds of CPU) every few requests."""
    pool = engine.pool
    return pool.size() if isinstance(pool, QueuePool) else None


class Admission:
    """ASGI middleware: at most `limit` requests under `prefix` run at once; others wait."""

    def __init__(self, app: Any, *, limit: int, prefix: str) -> None:
        self.app, self.prefix = app, prefix
        # anyio's, not asyncio's: it binds to no event loop, and a test client runs one per
        # request.
        self.slots = anyio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)
