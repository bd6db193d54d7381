"""Waiting inside an async test: poll on the test's own loop, so the daemon keeps running."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.005,
) -> T:
    """Await until `predicate()` holds; return its value or raise TimeoutError naming `what`.

    `predicate` may be a coroutine function (an HTTP call to the kiosk): it is awaited each time.

    The async twin of tests.services.wait_for: a blocking poll would stop the very loop the
    service, link or kiosk under test runs on, and the condition could never come true.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)
