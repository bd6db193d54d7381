"""A real local HTTP receiver for webhook tests: records what arrives, can be told to answer
500, to hang past the sender's timeout, or to recover."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from standardwebhooks import Webhook

from cloud.fakes.background import BackgroundHttpServer


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    def verify(self, secret: str) -> dict:
        """Verify with the independent Standard Webhooks verifier; return the parsed body."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """`mode`: "ok" (204), "fail" (500) or "hang" (no answer until released or stopped)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.received: list[Received] = []  # every request that was answered 2xx
        self.tries = 0
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.tries += 1
                mode = receiver.mode
                if mode == "hang":
                    receiver._release.wait(5)
                    self.close_connection = True
                    return
                if mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append(Received(body, dict(self.headers.items())))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._http = BackgroundHttpServer(Handler, name="webhook-receiver")
        self.port = self._http.port
        self.url = f"{self._http.url}/hook"

    def recover(self) -> None:
        """Answer 204 again, and let go of any request left hanging."""
        self.mode = "ok"
        self._release.set()
        self._release = threading.Event()

    def __enter__(self) -> Receiver:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()  # a hanging handler ends, so the server's shutdown does not wait
        self._http.stop()
