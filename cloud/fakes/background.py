"""A local HTTP server in a background thread, started and stopped by its owner.

The fakes (Twilio, WeChat), the demo's pages (notices, ERP receiver) and the tests' stand-ins all
serve something on 127.0.0.1 next to the code that talks to it:

- `BackgroundHttpServer`: an `http.server` handler class (a thread per request), e.g. one
  built on `PageHandler`, which answers pages and JSON and logs nothing;
- `BackgroundUvicorn`: an ASGI app under uvicorn, on an event loop of its own thread.

Both take port 0 for a free port, and `stop` returns once the server has stopped serving.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

POLL_S = 0.05  # serve_forever's poll: `stop` waits for the next one, so keep it short
JOIN_S = 5.0  # a stopped server's thread ends at once; this only bounds a wedged handler


class BackgroundHttpServer:
    """Serve `handler` on host:port (0: a free port) in a daemon thread: `start()`, `stop()`."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "http-server",
    ) -> None:
        self.server = ThreadingHTTPServer((host, port), handler)  # bound now: the port is known
        self.server.daemon_threads = True
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """`http://<host>:<port>`."""
        return f"http://{self.server.server_address[0]}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": POLL_S},
            name=self._name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (if started) and close the socket."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(JOIN_S)
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PageHandler(BaseHTTPRequestHandler):
    """A handler that answers whole bodies, never cached, and keeps requests out of stderr (the
    demo's screen is for its own progress and URLs, and requests can carry phones)."""

    def send_body(self, status: HTTPStatus, kind: str, data: bytes) -> None:
        """Answer `data` as `kind` (a 204 goes without a body or its type)."""
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def send_json(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False, indent=1).encode()
        self.send_body(status, "application/json", data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class BackgroundUvicorn:
    """Serve the ASGI `app` under uvicorn on host:port in a thread with its own event loop."""

    def __init__(
        self,
        app: Any,
        port: int,
        host: str = "127.0.0.1",
        *,
        name: str = "asgi-server",
        start_timeout_s: float = 20.0,
    ) -> None:
        import uvicorn  # only where an ASGI app is served

        self.port = port
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning")
        )
        self._name = name
        self._start_timeout_s = start_timeout_s
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Serve; return once uvicorn accepts connections (RuntimeError if it did not start)."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._name}: uvicorn did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
