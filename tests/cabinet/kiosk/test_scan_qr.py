"""The idle screen's scan-to-open QR: fetched from the real cloud endpoint over HTTP, refreshed,
and dropped once its nonce has died while the cloud is unreachable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cabinet.kiosk.scan_qr import NONCE_LIFE_S, ScanQr
from tests.cabinet.kiosk.cloud import BASE_URL, CABINET_PASSWORD, CloudServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_qr_comes_from_the_cloud_and_goes_when_its_nonce_dies_offline(tmp_path: Path):
    cloud_now = [datetime.now(UTC)]
    cloud = CloudServer(tmp_path, clock=lambda: cloud_now[0])
    clock, changes = Clock(), []
    scan = ScanQr(
        cloud.url,
        "cab1",
        password=CABINET_PASSWORD,
        clock=clock,
        on_change=lambda: changes.append(clock.now),
    )

    try:
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
    finally:
        cloud.close()  # the cloud goes away: connections are refused

    # The last QR stays while its nonce lives, then the screen says "scan unavailable"
    # rather than show a QR the recipient's phone could not use.
    clock.now += 120
    assert await scan.refresh() is False
    assert scan.current() == second and "FetchError" in scan.last_error
    clock.now += NONCE_LIFE_S
    assert scan.current() is None
    assert await scan.refresh() is False
    assert changes == [1000.0, 1060.0, clock.now]  # each new QR, then its loss

    cloud = CloudServer(tmp_path, port=cloud.port)  # and comes back
    try:
        assert await scan.refresh() is True and scan.current().version == 3
    finally:
        cloud.close()


async def test_an_unknown_cabinet_or_a_wrong_password_gets_no_qr(tmp_path: Path):
    cloud = CloudServer(tmp_path)
    try:
        scan = ScanQr(cloud.url + "/", "cab-other", password=CABINET_PASSWORD)
        assert scan.endpoint == f"{cloud.url}/api/v1/cabinets/cab-other/scan-qr"
        assert await scan.refresh() is False
        assert scan.current() is None and "401" in scan.last_error
        for password in (None, "not-the-password"):
            scan = ScanQr(cloud.url, "cab1", password=password)
            assert await scan.refresh() is False
            assert scan.current() is None and "401" in scan.last_error
    finally:
        cloud.close()
