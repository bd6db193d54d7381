"""The idle screen's scan-to-open QR, fetched from the cloud over HTTP and kept fresh.

`GET {cloud_api_url}/api/v1/cabinets/{cab}/scan-qr` answers an SVG whose URL (also in the
`X-Scan-URL` header) carries a nonce that lives 5 minutes. The cloud gives it to the cabinet only:
the GET carries HTTP Basic with the cabinet's MQTT username and password (what the cabinet is
provisioned with anyway), so a nonce means someone stood at this screen. The kiosk fetches a new
one every `refresh_s` (well inside that life) and serves it at `/api/scan-qr`; when the cloud
cannot be reached it keeps the last one only while its nonce is still alive, then shows "scan
unavailable" until a fetch works again. A recipient's phone needs the cloud to open a door this
way, so a stale QR would only fail on their phone.

The fetch is the standard library's urllib on a worker thread: one small GET a minute does not
justify httpx's 4.5 MB in the daemon's memory (`locker bench edge` counts it; the target is
60 MB).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

NONCE_LIFE_S = 300.0  # the cloud's NONCE_TTL_S
REFRESH_S = 60.0
RETRY_S = 10.0
FETCH_TIMEOUT_S = 5.0
MAX_SVG_BYTES = 256 * 1024


@dataclass(frozen=True)
class Answer:
    """What an HTTP GET answered: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class FetchError(Exception):
    """The GET failed: no connection, a timeout, or an error status."""


def basic_auth(username: str, password: str) -> str:
    """The `Authorization` header's value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _get(url: str, timeout_s: float, headers: dict[str, str]) -> Answer:
    request = urllib.request.Request(url, headers={"Accept": "image/svg+xml", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            body = answer.read(MAX_SVG_BYTES + 1)
            headers = {k.lower(): v for k, v in answer.headers.items()}
            return Answer(answer.status, headers, body)
    except urllib.error.HTTPError as err:
        raise FetchError(f"HTTP {err.code} from {url}") from None
    except (urllib.error.URLError, OSError) as err:  # refused, unreachable, timed out, TLS
        raise FetchError(f"{url}: {getattr(err, 'reason', err)}") from None


async def http_get(url: str, timeout_s: float, headers: dict[str, str]) -> Answer:
    """GET `url` with `headers` on a worker thread (FetchError if it fails)."""
    return await asyncio.to_thread(_get, url, timeout_s, headers)


@dataclass(frozen=True)
class ScanCode:
    """One fetched QR: its SVG, the URL it encodes, and when it was fetched (monotonic s)."""

    svg: str
    url: str
    fetched_at: float
    version: int


class ScanQr:
    """Fetch the cabinet's scan-to-open QR from the cloud, now and every `refresh_s`.

    `username` and `password` are the cabinet's MQTT credentials (the username defaults to the
    cabinet id, as the registry provisions it); without a password the cloud answers 401.
    """

    def __init__(
        self,
        cloud_api_url: str,
        cabinet_id: str,
        *,
        password: str | None = None,
        username: str | None = None,
        refresh_s: float = REFRESH_S,
        retry_s: float = RETRY_S,
        fetch: Callable[[str, float, dict[str, str]], Awaitable[Answer]] = http_get,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.endpoint = f"{cloud_api_url.rstrip('/')}/api/v1/cabinets/{cabinet_id}/scan-qr"
        self._headers = (
            {"Authorization": basic_auth(username or cabinet_id, password)} if password else {}
        )
        self._refresh_s = refresh_s
        self._retry_s = retry_s
        self._fetch = fetch
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
            answer = await self._fetch(self.endpoint, FETCH_TIMEOUT_S, self._headers)
            if answer.status != 200:
                raise FetchError(f"HTTP {answer.status} from {self.endpoint}")
            url = answer.headers.get("x-scan-url")
            if not url or not answer.headers.get("content-type", "").startswith("image/svg+xml"):
                raise ValueError("the answer is not an SVG with an X-Scan-URL header")
            if len(answer.body) > MAX_SVG_BYTES:
                raise ValueError(f"the SVG is over {MAX_SVG_BYTES} bytes")
            svg = answer.body.decode("utf-8")
        except (FetchError, ValueError) as err:  # UnicodeDecodeError is a ValueError
            self.last_error = f"{type(err).__name__}: {err}"
            log.info("kiosk: scan-to-open QR unavailable (%s)", self.last_error)
            self._announce()
            return False
        self._version += 1
        self._code = ScanCode(svg, url, started, self._version)
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
