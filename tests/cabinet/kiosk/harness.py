"""The kiosk over a real service, all on the test's loop: HTTP on a free port, SSE in a task."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from cabinet.kiosk.app import Kiosk, build_app
from cabinet.kiosk.maintenance import Maintenance
from cabinet.kiosk.scan_qr import ScanQr
from cabinet.kiosk.server import KioskServer
from tests.cabinet.service.harness import ServiceRunner


class Api:
    """The kiosk's JSON API at `url`, as the page calls it (an async client: the kiosk serves
    on the same loop as the test, so a blocking call would wait for itself)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=10)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        # Always JSON, as the page sends it (the kiosk refuses any other POST).
        return await self.http.post(path, json={} if body is None else body, **kwargs)

    async def input(self, type_: str, **fields: Any) -> list[dict[str, Any]]:
        """POST /api/input; its screens (the answer must be 200)."""
        answer = await self.post("/api/input", {"type": type_, **fields})
        assert answer.status_code == 200, answer.text
        return answer.json()["screens"]

    async def status(self) -> dict[str, Any]:
        answer = await self.http.get("/api/status")
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def close(self) -> None:
        await self.http.aclose()


class KioskRunner(Api):
    """A `Kiosk` and its HTTP server for a `ServiceRunner`'s service; `await start_kiosk_for`."""

    def __init__(
        self,
        runner: ServiceRunner,
        *,
        maintenance: Maintenance | None = None,
        scan: ScanQr | None = None,
    ) -> None:
        self.runner = runner
        self.kiosk = Kiosk(runner.service, language="en", maintenance=maintenance, scan=scan)
        self.server = KioskServer(build_app(self.kiosk), "127.0.0.1", 0)

    async def start(self) -> KioskRunner:
        await self.server.start()
        await self.kiosk.start()
        super().__init__(self.server.url)
        return self

    async def close(self) -> None:
        await super().close()
        await self.kiosk.stop()
        await self.server.stop()


async def start_kiosk_for(runner: ServiceRunner, **kwargs: Any) -> KioskRunner:
    """A `KioskRunner` (same arguments), serving on the running loop."""
    return await KioskRunner(runner, **kwargs).start()


class EventReader:
    """Read `/api/events` in a task; `await next(event)` waits for the next event of that name."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        self._open = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> EventReader:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._open.wait(), 5)  # "the event stream did not open"
        return self

    async def _read(self) -> None:
        event = "message"
        with contextlib.suppress(httpx.HTTPError):  # closed by the test or the server
            async with self._client.stream("GET", f"{self._url}/api/events") as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                self._open.set()
                async for line in answer.aiter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        self._events.put_nowait((event, json.loads(line.removeprefix("data: "))))

    async def next(self, event: str, timeout_s: float = 5) -> dict[str, Any]:
        while True:
            try:
                name, data = await asyncio.wait_for(self._events.get(), timeout_s)
            except TimeoutError:
                raise TimeoutError(f"no {event!r} event within {timeout_s:g} s") from None
            if name == event:
                return data

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()


async def read_events(url: str) -> EventReader:
    """An `EventReader` on `url`, its stream open."""
    return await EventReader(url).start()
