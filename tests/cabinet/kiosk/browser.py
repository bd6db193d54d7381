"""Debian's Chromium under Playwright, and the real daemon (`locker cabinet run`) it shows.

Playwright's own browser downloads are never used (`playwright install` is never run): the
tests launch /usr/bin/chromium, which `./dev services` installs from Debian's packages. Without
it they skip, naming the fix; under CI=true they fail, like the other service fixtures.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from locker.cabinet_command import CLOCK_FILE_ENV
from locker.harness.processes import stop_pid
from protocol.offset_clock import write_clock_file
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
        env: dict[str, str] | None = None,
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
        self.process = run_cli(config, stdout=self._log, stderr=subprocess.STDOUT, env=env)
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


class FrozenClock:
    """A daemon's clock (`LOCKER_CABINET_CLOCK_FILE`): its time stands still until `advance`
    writes a later one, so its timers run exactly as far as the test says, however slow the
    machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = datetime.now(UTC).replace(microsecond=0)
        write_clock_file(path, self.now)

    @property
    def env(self) -> dict[str, str]:
        """The daemon's environment setting that puts it on this clock."""
        return {CLOCK_FILE_ENV: str(self.path)}

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        write_clock_file(self.path, self.now)


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


# The screens real lockers have: a 5" and a 7" panel, a 15.6" landscape and a portrait one.
SIZES = {
    "800x480": (800, 480),
    "1024x600": (1024, 600),
    "1280x800": (1280, 800),
    "1080x1920": (1080, 1920),
}

# Every problem that makes a screen unusable at this size, as readable strings.
PROBLEMS_JS = """() => {
  const vw = window.innerWidth, vh = window.innerHeight, problems = [];
  const shown = (el) => el.offsetParent !== null && getComputedStyle(el).visibility !== "hidden";
  const name = (el) => el.id || el.dataset.key || el.dataset.size || el.dataset.compartment
    || el.textContent.trim().slice(0, 20);
  for (const b of document.querySelectorAll("button")) {
    if (!shown(b)) continue;
    const r = b.getBoundingClientRect();
    if (r.width < 48 || r.height < 48) problems.push(`${name(b)}: ${r.width}x${r.height} px`);
    if (r.left < -0.5 || r.top < -0.5 || r.right > vw + 0.5 || r.bottom > vh + 0.5) {
      problems.push(`${name(b)}: outside the screen (${r.left},${r.top},${r.right},${r.bottom})`);
      continue;
    }
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!hit || !b.contains(hit)) problems.push(`${name(b)}: covered by ${hit && hit.className}`);
  }
  const texts = ".msg, .banner, .hint-line, .instruction, h1, .courier-line, .door .what";
  for (const m of document.querySelectorAll(texts)) {
    if (!shown(m) || !m.textContent.trim()) continue;
    const r = m.getBoundingClientRect();
    if (r.top < -0.5 || r.bottom > vh + 0.5 || r.left < -0.5 || r.right > vw + 0.5) {
      problems.push(`"${m.textContent.trim().slice(0, 30)}": outside the screen`);
    }
    if (m.scrollWidth > m.clientWidth + 1 || m.scrollHeight > m.clientHeight + 1) {
      problems.push(`"${m.textContent.trim().slice(0, 30)}": cut off`);
    }
  }
  const screen = document.querySelector(".screen:not([hidden])");
  if (screen.scrollHeight > screen.clientHeight + 1) {
    problems.push(`the screen needs scrolling (${screen.scrollHeight} > ${screen.clientHeight})`);
  }
  return problems;
}"""


def launch_chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, under Playwright: a module's `browser` fixture yields from
    this (skipped, or failed under CI, without the browser)."""
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


def at_every_size(page: Any, shots: Path, name: str) -> None:
    """Check the screen fits at every size; screenshot each into `shots`; back at 1280x800."""
    shots.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r()))")
        page.screenshot(path=str(shots / f"{name}-{size}.png"))
        if problems := page.evaluate(PROBLEMS_JS):
            found[size] = problems
    page.set_viewport_size({"width": 1280, "height": 800})
    assert found == {}, f"{name}: {found}"


def visible(page: Any, screen: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(f"#s-{screen}")).to_be_visible(timeout=5000)


def has_text(page: Any, selector: str, text: str | re.Pattern[str]) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_contain_text(text, timeout=5000)


def keys(page: Any, where: str, text: str) -> int:
    for char in text:
        page.locator(f'{where} [data-key="{char}"]').click()
    return len(text)
