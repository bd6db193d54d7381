"""The idle screen's scan-to-open QR: fetched from the real cloud endpoint, refreshed, dropped
once its nonce has died while the cloud is unreachable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from cabinet.kiosk.scan_qr import NONCE_LIFE_S, ScanQr
from tests.cabinet.kiosk.cloud import BASE_URL, cloud_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Switch(httpx.AsyncBaseTransport):
    """The real app, or a network cut: a connection error, as httpx raises for a dead route."""

    def __init__(self, app) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


def test_the_qr_comes_from_the_cloud_and_goes_when_its_nonce_dies_offline(tmp_path: Path):
    cloud_now = [datetime.now(UTC)]
    transport = Switch(cloud_app(tmp_path, clock=lambda: cloud_now[0]))
    clock, changes = Clock(), []
    scan = ScanQr(
        "http://cloud.test",
        "cab1",
        transport=transport,
        clock=clock,
        on_change=lambda: changes.append(clock.now),
    )

    async def run() -> None:
        assert scan.current() is None
        assert await scan.refresh() is True
        first = scan.current()
        assert first is not None and first.version == 1
        assert first.svg.lstrip().startswith("<?xml") and "<svg" in first.svg
        assert first.url.startswith(f"{BASE_URL}/s/cab1/")
        # A minute on, a new nonce (the cloud's clock moved too).
        clock.now += 60
        cloud_now[0] += timedelta(seconds=60)
        assert await scan.refresh() is True
        second = scan.current()
        assert second.version == 2 and second.url != first.url
        # The cloud goes away: the last QR stays while its nonce lives, then the screen says
        # "scan unavailable" rather than show a QR the phone could not use.
        transport.down = True
        clock.now += 120
        assert await scan.refresh() is False
        assert scan.current() == second and "ConnectError" in scan.last_error
        clock.now += NONCE_LIFE_S
        assert scan.current() is None
        assert await scan.refresh() is False
        assert changes == [1000.0, 1060.0, clock.now]  # each new QR, then its loss
        transport.down = False
        assert await scan.refresh() is True and scan.current().version == 3

    asyncio.run(run())


def test_an_unknown_cabinet_gets_no_qr(tmp_path: Path):
    scan = ScanQr(
        "http://cloud.test/", "cab-other", transport=httpx.ASGITransport(app=cloud_app(tmp_path))
    )
    assert scan.endpoint == "http://cloud.test/api/v1/cabinets/cab-other/scan-qr"
    assert asyncio.run(scan.refresh()) is False
    assert scan.current() is None and "404" in scan.last_error
