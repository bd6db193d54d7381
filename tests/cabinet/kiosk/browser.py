"""Debian's Chromium under Playwright, and the real daemon (`locker cabinet run`) it shows.

Playwright's own browser downloads are never used (`playwright install` is never run): the
tests launch /usr/bin/chromium, which `./dev services` installs from Debian's packages. Without
it they skip, naming the fix; under CI=true they fail, like the other service fixtures.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from locker.harness.processes import stop_pid
from tests.cabinet.service.process import ROOT, run_cli, write_config
from tests.services import Mosquitto, free_port, in_ci, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "kiosk"
VIEWPORT = {"width": 1280, "height": 800}  # a 15.6" cabinet touchscreen, landscape


def require_chromium() -> Path:
    if not CHROMIUM.exists():
        message = (
            f"Chromium is not installed at {CHROMIUM}; run `./dev services` "
            "(as root: apt-get install chromium)"
        )
        if in_ci():
            pytest.fail(f"CI needs the browser: {message}", pytrace=False)
        pytest.skip(message)
    return CHROMIUM


class KioskDaemon:
    """`locker cabinet run` on the simulator's pty, with its kiosk on a free port."""

    def __init__(
        self,
        workdir: Path,
        *,
        broker: Mosquitto,
        serial_port: str,
        extra: str = "",
        mqtt_password: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = write_config(
            workdir / "cab.toml",
            broker=broker,
            serial_port=serial_port,
            journal=workdir / "journal.sqlite3",
            extra=extra,
            kiosk_port=self.port,
            mqtt_password=mqtt_password,
        )
        self.log_path = workdir / "daemon.log"
        self._log = self.log_path.open("ab")
        self.process = run_cli(config, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._serving, 20, f"the kiosk on {self.url}")
        except BaseException:
            self.close()
            raise

    def _serving(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the daemon exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/api/status", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/status", timeout=5).json()

    def close(self) -> None:
        stop_pid(self.process, timeout_s=10)
        self._log.close()


class Taps:
    """Count the taps a flow takes (what a person's finger does), and time it."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.count = 0
        self.started = time.monotonic()

    def tap(self, selector: str) -> None:
        self.page.locator(selector).click()
        self.count += 1

    def digits(self, keys: str, text: str) -> None:
        """Tap each character of `text` on the keypad or keyboard under `keys`."""
        for char in text:
            self.tap(f'{keys} [data-key="{char}"]')

    def restart(self) -> None:
        self.count = 0
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


MIN_TARGET_PX = 48

# Every button a finger can reach now, with its size: id, key or text, then width and height.
_TARGETS_JS = """() => [...document.querySelectorAll('button')]
    .filter((b) => b.offsetParent !== null)
    .map((b) => {
        const r = b.getBoundingClientRect();
        return [b.id || b.dataset.key || b.dataset.compartment || b.textContent.trim(),
                r.width, r.height];
    })"""


def small_targets(page: Any) -> list[tuple[str, float, float]]:
    """The visible buttons under MIN_TARGET_PX in either direction."""
    targets = page.evaluate(_TARGETS_JS)
    assert targets, "no buttons on screen"
    return [tuple(t) for t in targets if t[1] < MIN_TARGET_PX or t[2] < MIN_TARGET_PX]


def shot(page: Any, name: str) -> Path:
    """Check the screen's touch targets, then save a screenshot under tests/artifacts/kiosk/."""
    assert small_targets(page) == [], name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
