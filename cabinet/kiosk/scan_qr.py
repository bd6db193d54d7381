"""The idle screen's scan-to-open QR, fetched from the cloud over HTTP and kept fresh.

`GET {cloud_api_url}/api/v1/cabinets/{cab}/scan-qr` answers an SVG whose URL (also in the
`X-Scan-URL` header) carries a nonce that lives 5 minutes. The kiosk fetches a new one every
`refresh_s` (well inside that life) and serves it at `/api/scan-qr`; when the cloud cannot be
reached it keeps the last one only while its nonce is still alive, then shows "scan unavailable"
until a fetch works again. A recipient's phone needs the cloud to open a door this way, so a
stale QR would only fail on their phone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

NONCE_LIFE_S = 300.0  # the cloud's NONCE_TTL_S
REFRESH_S = 60.0
RETRY_S = 10.0
FETCH_TIMEOUT_S = 5.0
MAX_SVG_BYTES = 256 * 1024


@dataclass(frozen=True)
class ScanCode:
    """One fetched QR: its SVG, the URL it encodes, and when it was fetched (monotonic s)."""

    svg: str
    url: str
    fetched_at: float
    version: int


class ScanQr:
    """Fetch the cabinet's scan-to-open QR from the cloud, now and every `refresh_s`."""

    def __init__(
        self,
        cloud_api_url: str,
        cabinet_id: str,
        *,
        refresh_s: float = REFRESH_S,
        retry_s: float = RETRY_S,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.endpoint = f"{cloud_api_url.rstrip('/')}/api/v1/cabinets/{cabinet_id}/scan-qr"
        self._refresh_s = refresh_s
        self._retry_s = retry_s
        self._transport = transport
        self._clock = clock
        self.on_change = on_change
        self._code: ScanCode | None = None
        self._version = 0
        self._announced: int | None = None  # the version last told to on_change (None: none)
        self.last_error: str | None = None

    def current(self) -> ScanCode | None:
        """The QR to show, or None: never fetched, or its nonce has died since."""
        code = self._code
        # A fetch took a moment; count the nonce's life from before it, with a margin.
        if code is None or self._clock() - code.fetched_at >= NONCE_LIFE_S - FETCH_TIMEOUT_S:
            return None
        return code

    async def refresh(self) -> bool:
        """Fetch a new QR; True if it worked (a failure keeps the old one while it lives)."""
        started = self._clock()
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=FETCH_TIMEOUT_S
            ) as client:
                answer = await client.get(self.endpoint)
            answer.raise_for_status()
            url = answer.headers.get("X-Scan-URL")
            if not url or not answer.headers.get("content-type", "").startswith("image/svg+xml"):
                raise ValueError("the answer is not an SVG with an X-Scan-URL header")
            if len(answer.content) > MAX_SVG_BYTES:
                raise ValueError(f"the SVG is over {MAX_SVG_BYTES} bytes")
        except (httpx.HTTPError, ValueError) as err:
            self.last_error = f"{type(err).__name__}: {err}"
            log.info("kiosk: scan-to-open QR unavailable (%s)", self.last_error)
            self._announce()
            return False
        self._version += 1
        self._code = ScanCode(answer.text, url, started, self._version)
        self.last_error = None
        self._announce()
        return True

    def _announce(self) -> None:
        """Tell on_change about a new QR, or about the loss of the last one."""
        code = self.current()
        shown = code.version if code is not None else None
        if shown != self._announced:
            self._announced = shown
            if self.on_change is not None:
                self.on_change()

    async def run(self) -> None:
        """Refresh forever: every `refresh_s`, or every `retry_s` while the cloud is away."""
        while True:
            ok = await self.refresh()
            await asyncio.sleep(self._refresh_s if ok else self._retry_s)
