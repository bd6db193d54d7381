"""Only the kiosk's own page may drive the kiosk's API: Host, Origin and Content-Type checks.

The screen's browser also visits nothing else, but a technician's laptop on the cabinet's LAN, or
any page the kiosk ever shows, could otherwise reach the API:

- Host must name this server: `localhost`, `127.0.0.1`, `[::1]` or the address the connection
  came in on, with the server's port. A DNS-rebinding page (evil.example resolving to 127.0.0.1)
  sends `Host: evil.example:8080` and is refused (403).
- Origin, when a browser sends one, must be `http://` + one of those hosts: another site's page
  is refused (403) even for a "simple" request that skips CORS preflight.
- Every POST must be `application/json`: an HTML form or a `text/plain` fetch from another origin
  cannot send that without a preflight, which this API never grants (415).

A pure ASGI middleware: it refuses before the app sees the request; a small refused body
is read and dropped first, so the refusal reaches the client.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from protocol.http_edge import App, Receive, Scope, Send, drain, header, is_json, send_error

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD"})
# What a refused request's body may be read up to (the kiosk's body limit) before it is dropped.
REFUSED_BODY_READ_BYTES = 8 * 1024


def _bracketed(address: str) -> str:
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address  # not an IP (a test client's "testserver"): compared as it is


def allowed_hosts(server: tuple[str, int] | None) -> frozenset[str]:
    """The Host values that name this server, for the connection's local (address, port)."""
    if server is None:
        return frozenset()
    address, port = server[0], server[1]
    names = {*LOOPBACK_NAMES, _bracketed(address).lower()}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:  # a browser leaves the default port out
        hosts |= names
    return frozenset(hosts)


def _error(message: str) -> dict[str, Any]:
    return {"error": message}


async def _refuse(receive: Receive, send: Send, status: int, message: str) -> None:
    # A refused request's small body is read first, so the answer is not lost to a reset.
    whole = await drain(receive, max_bytes=REFUSED_BODY_READ_BYTES)
    await send_error(send, status, _error(message), close=not whole)


class SameOrigin:
    """Refuse requests that are not from the kiosk's own page (see the module's docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hosts = allowed_hosts(scope.get("server"))
        host = (header(scope, b"host") or "").strip().lower()
        if host not in hosts:
            message = f"Host {host[:64]!r} is not this kiosk: open it at http://localhost:<port>"
            await _refuse(receive, send, 403, message)
            return
        origin = header(scope, b"origin")
        if origin is not None and origin.strip().lower() not in {f"http://{h}" for h in hosts}:
            message = f"requests from {origin[:64]!r} are refused: only the kiosk's page may call"
            await _refuse(receive, send, 403, message)
            return
        if scope["method"] not in SAFE_METHODS and not is_json(header(scope, b"content-type")):
            message = "send the body as application/json"
            await _refuse(receive, send, 415, message)
            return
        await self.app(scope, receive, send)
