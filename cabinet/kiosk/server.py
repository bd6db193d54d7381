"""The kiosk's HTTP server: uvicorn inside the daemon's own event loop, on one bound socket.

One process and one loop: the HTTP handlers call `CabinetService.submit`, which queues each input
for the service's owner task, so the one-owner rule holds. The socket is bound here (not by
uvicorn) so a port in use is an OSError at start-up, not uvicorn's `sys.exit`; and the daemon,
not uvicorn, owns SIGINT and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

GRACEFUL_S = 2.0  # open event streams get this long to end at shutdown


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon's loop handles the signals and stops us


class KioskServer:
    """Serve an ASGI app on host:port (0: any free port) until `stop`."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._socket is not None, "start the server first"
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind (OSError if the port is taken), then serve in a task of this loop."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart after a kill -9
        try:
            sock.bind((self._host, self._port))
        except OSError as err:
            sock.close()
            raise OSError(
                err.errno,
                f"cannot serve the kiosk on {self._host}:{self._port} ({err.strerror}); "
                "set kiosk_port to a free port",
            ) from err
        sock.setblocking(False)
        self._socket = sock
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_S,
            ws="none",  # the page uses server-sent events, not websockets
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="kiosk-http")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what went wrong
                raise RuntimeError("the kiosk server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("kiosk: serving on %s", self.url)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._socket is not None:
            self._socket.close()
