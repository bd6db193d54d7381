"""The kiosk over a real service: HTTP on a free port of its loop, SSE read on a thread."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx

from cabinet.kiosk.app import Kiosk, build_app
from cabinet.kiosk.maintenance import Maintenance
from cabinet.kiosk.scan_qr import ScanQr
from cabinet.kiosk.server import KioskServer
from tests.cabinet.service.harness import ServiceRunner


class Api:
    """The kiosk's JSON API at `url`, as the page calls it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        # Always JSON, as the page sends it (the kiosk refuses any other POST).
        return self.http.post(path, json={} if body is None else body, **kwargs)

    def input(self, type_: str, **fields: Any) -> list[dict[str, Any]]:
        """POST /api/input; its screens (the answer must be 200)."""
        answer = self.post("/api/input", {"type": type_, **fields})
        assert answer.status_code == 200, answer.text
        return answer.json()["screens"]

    def status(self) -> dict[str, Any]:
        answer = self.http.get("/api/status")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def close(self) -> None:
        self.http.close()


class KioskRunner(Api):
    """A `Kiosk` and its HTTP server for a `ServiceRunner`'s service, on that runner's loop."""

    def __init__(
        self,
        runner: ServiceRunner,
        *,
        maintenance: Maintenance | None = None,
        scan: ScanQr | None = None,
    ) -> None:
        self.runner = runner
        self.kiosk = Kiosk(runner.service, language="en", maintenance=maintenance, scan=scan)

        async def start() -> KioskServer:
            server = KioskServer(build_app(self.kiosk), "127.0.0.1", 0)
            await server.start()
            await self.kiosk.start()
            return server

        self.server = runner.run(start())
        super().__init__(self.server.url)

    def close(self) -> None:
        super().close()

        async def stop() -> None:
            await self.kiosk.stop()
            await self.server.stop()

        self.runner.run(stop())


class EventReader:
    """Read `/api/events` on a thread; `next(event)` waits for the next event of that name."""

    def __init__(self, url: str) -> None:
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()
        assert self._open.wait(5), "the event stream did not open"

    def _read(self, url: str) -> None:
        event = "message"
        try:
            with self._client.stream("GET", f"{url}/api/events") as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                self._open.set()
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        self._events.put((event, json.loads(line.removeprefix("data: "))))
        except (httpx.HTTPError, RuntimeError):
            return  # closed by the test or the server

    def next(self, event: str, timeout_s: float = 5) -> dict[str, Any]:
        while True:
            try:
                name, data = self._events.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"no {event!r} event within {timeout_s:g} s") from None
            if name == event:
                return data

    def close(self) -> None:
        self._client.close()
