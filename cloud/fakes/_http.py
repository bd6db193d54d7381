"""A local HTTP server on 127.0.0.1 with a free port, run in a thread, for the fakes to build on."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from cloud.fakes.background import BackgroundHttpServer


class Request:
    """One request as a fake's handler sees it."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.headers = handler.headers
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length else b""

    def form(self) -> dict[str, str]:
        """Return the body as a form (last value wins, as Twilio reads it)."""
        return {k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        """Return the body as JSON, or None if it is not JSON."""
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


class FakeServer:
    """Serve `handle(request) -> (status, json_body)` on 127.0.0.1:<free port> until stopped.

    A handler may return `(status, body, headers)` instead, e.g. a redirect's `Location`.
    """

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                status, body, *extra = owner.handle(Request(self))
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # requests carry phones: keep them out of stderr

        self._http = BackgroundHttpServer(Handler, name=type(self).__name__)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """The base URL to point a client at: `http://127.0.0.1:<port>`."""
        return self._http.url

    def handle(self, request: Request) -> tuple[Any, ...]:
        raise NotImplementedError

    def start(self) -> Self:
        """Start serving in a daemon thread."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
