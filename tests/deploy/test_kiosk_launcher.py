"""deploy/kiosk/locker-kiosk: shellcheck-clean; waits for the kiosk port, restarts the browser.

The real launcher runs against a real local HTTP server; the browser is a stand-in script
(named by LOCKER_KIOSK_BROWSER) that records its pid and arguments and then stays up like a
browser until it is killed. Chromium itself cannot show a window here (no display, no seat):
what is checked is the launcher's part, the flags it passes and its supervision.
"""

from __future__ import annotations

import http.server
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, debian, require_tool
from tests.services import free_port, wait_for

LAUNCHER = DEPLOY / "kiosk" / "locker-kiosk"
KIOSK_FLAGS = (
    "--kiosk",
    "--noerrdialogs",
    "--disable-infobars",
    "--no-first-run",
    "--disable-session-crashed-bubble",
    "--incognito",
)


def test_the_launcher_is_shellcheck_clean() -> None:
    tool = require_tool("shellcheck", debian("shellcheck"))
    result = subprocess.run([tool, str(LAUNCHER)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


class KioskPage:
    """A local HTTP server standing in for the daemon's kiosk page; stop and start it again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), http.server.SimpleHTTPRequestHandler
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Launcher:
    """The launcher as a process, its stderr lines queued for the test to read."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(LAUNCHER)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.said: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def expect(self, words: str, timeout_s: float = 10) -> str:
        """Wait for a line of stderr holding `words`; return it."""
        while True:
            try:
                line = self.lines.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"the launcher never said {words!r}: {self.said}") from None
            self.said.append(line)
            if words in line:
                return line

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


@pytest.fixture
def page() -> Iterator[KioskPage]:
    served = KioskPage(free_port())
    yield served
    served.stop()


def fake_browser(tmp_path: Path) -> tuple[Path, Path]:
    runs = tmp_path / "browser-runs"
    browser = tmp_path / "fake-chromium"
    # exec: the pid the launcher started is the one that stays up, as a real browser's would.
    browser.write_text(f'#!/bin/sh\necho "$$ $*" >> "{runs}"\nexec sleep 600\n')
    browser.chmod(0o755)
    return browser, runs


def browser_runs(runs: Path) -> list[tuple[int, list[str]]]:
    if not runs.exists():
        return []
    return [
        (int(pid), args.split())
        for pid, _, args in (line.partition(" ") for line in runs.read_text().splitlines())
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_waits_for_the_port_then_restarts_the_browser_whenever_it_dies(
    tmp_path: Path, page: KioskPage
) -> None:
    browser, runs = fake_browser(tmp_path)
    config = tmp_path / "cabinet.toml"  # the port comes from the cabinet's config
    config.write_text(f'cabinet_id = "cab1"\nkiosk_port = {page.port}\n\n[mqtt]\nport = 1883\n')
    env = {
        "PATH": os.environ["PATH"],
        "TMPDIR": str(tmp_path),
        "LOCKER_CABINET_CONFIG": str(config),
        "LOCKER_KIOSK_BROWSER": str(browser),
        "LOCKER_KIOSK_POLL_S": "0.02",
        "LOCKER_KIOSK_RESTART_DELAY_S": "0.02",
    }
    launcher = Launcher(env)
    try:
        launcher.expect(f"waiting for the kiosk at 127.0.0.1:{page.port}")
        assert browser_runs(runs) == []  # nothing listens yet: no browser
        page.start()
        wait_for(lambda: browser_runs(runs), 10, "the browser's first start")
        ((first_pid, args),) = browser_runs(runs)
        assert args[-1] == f"http://127.0.0.1:{page.port}/"
        assert set(KIOSK_FLAGS) <= set(args)
        profile = next(a for a in args if a.startswith("--user-data-dir="))
        assert Path(profile.split("=", 1)[1]).is_dir()

        # The page goes away and the browser dies: the launcher waits for the page again.
        page.stop()
        os.kill(first_pid, signal.SIGKILL)
        launcher.expect("exited with status 137")
        launcher.expect("waiting for the kiosk")
        assert len(browser_runs(runs)) == 1
        assert not Path(profile.split("=", 1)[1]).exists()  # the crashed run's profile is gone
        page.start()
        wait_for(lambda: len(browser_runs(runs)) == 2, 10, "the browser's restart")
        second_pid, again = browser_runs(runs)[1]
        assert second_pid != first_pid and alive(second_pid)
        assert again[-1] == args[-1]

        # SIGTERM (systemctl stop) ends the browser and the launcher.
        assert launcher.stop() == 0
        wait_for(lambda: not alive(second_pid), 5, "the browser to be stopped")
    finally:
        launcher.stop()
        for pid, _ in browser_runs(runs):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_url_may_be_given_and_a_missing_browser_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "LOCKER_KIOSK_URL": "http://127.0.0.1:1/",
        "LOCKER_KIOSK_BROWSER": str(tmp_path / "no-such-browser"),
    }
    result = subprocess.run([str(LAUNCHER)], env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert "no-such-browser is not an executable" in result.stderr
    bad = subprocess.run(
        [str(LAUNCHER)],
        env={**env, "LOCKER_KIOSK_URL": "http://127.0.0.1:eighty/"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert bad.returncode == 1 and "cannot read a port" in bad.stderr
