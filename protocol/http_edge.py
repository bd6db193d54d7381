"""What our HTTP servers (the cloud API, the kiosk) do before an app sees a request body.

`BodyGuard` is a pure ASGI middleware (no framework needed, so the FastAPI cloud and the Starlette
kiosk share it):

- a body over `max_bytes` is refused with 413 before it is read: at once when Content-Length
  says so, and as soon as a chunked body grows past the limit while it streams in. At most
  `max_bytes` plus one chunk is ever held in memory.
- a JSON body (`application/json` or `+json`) must pass `protocol.codec.strict_loads`, the rule
  the MQTT decoder applies: no duplicate keys, no NaN, at most MAX_JSON_DEPTH deep. Otherwise
  422 naming the problem. The app then parses a body that is known to be well-formed.

Errors are JSON, shaped by `render(status, message)` so each app keeps its own error format.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from protocol.codec import strict_loads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Render = Callable[[int, str], dict[str, Any]]


def detail(_status: int, message: str) -> dict[str, Any]:
    """The default error body: `{"detail": message}`."""
    return {"detail": message}


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), decoded as latin-1; None if absent."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is JSON (`application/json`, `application/problem+json`, ...)."""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = mime.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def send_error(send: Send, status: int, body: dict[str, Any], *, close: bool = False) -> None:
    """Answer with a JSON error; `close` asks the server to drop the connection after it."""
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if close:  # the rest of a refused body is never read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def drain(receive: Receive, *, max_bytes: int) -> bool:
    """Read and drop a request's body; True if it ended within `max_bytes`.

    A refusal sent while the client's body is still unread would make the server close with
    bytes in its receive buffer: the kernel then answers with a reset, which can reach the
    client before the refusal does. A small body is cheaper to read than to lose the answer.
    """
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client went away
        seen += len(message.get("body", b""))
        if seen > max_bytes:
            return False
        if not message.get("more_body", False):
            return True


class BodyGuard:
    """Limit request bodies to `max_bytes` and hold JSON bodies to the strict rule."""

    def __init__(
        self, app: App, *, max_bytes: int, render: Render = detail, strict_json: bool = True
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render
        self.strict_json = strict_json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"the request body is over the {self.max_bytes}-byte limit"
        length = header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                message = f"Content-Length {length[:32]!r} is not a number"
                await send_error(send, 400, self.render(400, message), close=True)
                return
            if int(length) > self.max_bytes:
                await send_error(send, 413, self.render(413, too_big), close=True)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its body was in: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, 413, self.render(413, too_big), close=True)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and self.strict_json and is_json(header(scope, b"content-type")):
            try:
                strict_loads(body)
            except ValueError as err:
                reason = f"the body is not JSON we accept: {err}"
                await send_error(send, 422, self.render(422, reason))
                return
        replayed = False

        async def replay() -> Message:
            # The body once, whole; after it, the server's own messages (http.disconnect).
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
