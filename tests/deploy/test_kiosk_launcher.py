"""deploy/kiosk/locker-kiosk: shellcheck-clean; waits for the kiosk port, restarts the browser.

The real launcher runs against a real local HTTP server; the browser is a stand-in script
(named by LOCKER_KIOSK_BROWSER) that records its pid and arguments and then stays up like a
browser until it is killed. Chromium itself cannot show a window here (no display, no seat):
what is checked is the launcher's part, the flags it passes and its supervision.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import queue
import shutil
import signal
import subprocess
import tempfile
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
    """A local HTTP server standing in for the daemon's kiosk page; stop and start it again.

    It records the User-Agent of every request, so a test can tell which browser came.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.visitors: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        visitors = self.visitors

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                visitors.append(self.headers.get("User-Agent", ""))
                body = b"<!doctype html><title>kiosk</title><h1>kiosk</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:  # keep the test's output clean
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
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


def test_the_launcher_stops_once_its_compositor_is_gone(tmp_path: Path) -> None:
    """Orphaned (cage crashed), it must not restart browsers that have no screen, for ever."""
    browser, _runs = fake_browser(tmp_path)
    log = tmp_path / "launcher.log"
    env = {
        "PATH": os.environ["PATH"],
        "LOCKER_KIOSK_URL": f"http://127.0.0.1:{free_port()}/",  # nothing listens
        "LOCKER_KIOSK_BROWSER": str(browser),
        "LOCKER_KIOSK_POLL_S": "0.02",
    }
    # A stand-in compositor: a shell that starts the launcher and tells us its pid.
    compositor = subprocess.Popen(
        ["sh", "-c", f'"{LAUNCHER}" 2>"{log}" & echo $!; wait'],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert compositor.stdout is not None
    launcher_pid = int(compositor.stdout.readline())
    try:
        wait_for(
            lambda: log.exists() and "waiting for the kiosk" in log.read_text(),
            10,
            "the launcher to wait",
        )
        os.kill(compositor.pid, signal.SIGKILL)
        compositor.wait(5)
        wait_for(lambda: not alive(launcher_pid), 10, "the orphaned launcher to exit")
        assert f"(pid {compositor.pid}) is gone" in log.read_text()
    finally:
        if alive(launcher_pid):
            os.kill(launcher_pid, signal.SIGKILL)
        if compositor.poll() is None:
            compositor.kill()
            compositor.wait(5)


def kiosk_exec_start() -> list[str]:
    """The ExecStart of deploy/systemd/locker-kiosk.service, split into words."""
    for line in (DEPLOY / "systemd" / "locker-kiosk.service").read_text().splitlines():
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=").split()
    raise AssertionError("locker-kiosk.service has no ExecStart")


@pytest.mark.parametrize("browser_kind", ["stand-in", "chromium"])
def test_the_kiosk_units_command_runs_the_launcher_under_a_real_cage(
    tmp_path: Path, page: KioskPage, browser_kind: str
) -> None:
    """The unit's own command line, cage and all, on wlroots' headless backend (no screen here).

    With the stand-in browser: cage gives the launcher a Wayland display and the launcher starts
    the browser on it with the kiosk and Wayland flags. With Debian's real Chromium: it comes up
    in kiosk mode under cage and loads the kiosk page (the page sees Chrome's User-Agent). What
    it draws is not checked: headless wlroots with the pixman renderer does not composite it.
    """
    require_tool("cage", debian("cage"))
    require_tool("Xwayland", debian("xwayland"))  # cage 0.1.4 will not start without it
    chromium = require_tool("chromium", debian("chromium")) if browser_kind == "chromium" else ""
    command = kiosk_exec_start()
    assert command[0] == "/usr/bin/cage" and command[-1] == "/usr/local/bin/locker-kiosk"
    # cage refuses to run as root: as root, run it as nobody from a folder nobody may use.
    workdir = Path(tempfile.mkdtemp(prefix="locker-cage-"))
    try:
        shutil.copy(LAUNCHER, workdir / "locker-kiosk")
        browser, runs = fake_browser(workdir)
        runtime = workdir / "run"
        runtime.mkdir(mode=0o700)
        as_user: dict[str, object] = {}
        if os.geteuid() == 0:
            for path in (workdir, *workdir.iterdir()):
                shutil.chown(path, "nobody")
            workdir.chmod(0o755)
            as_user = {"user": "nobody", "group": "nogroup", "extra_groups": []}
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(workdir),  # Chromium keeps its crash reports under ~/.config
            "XDG_RUNTIME_DIR": str(runtime),
            "WLR_BACKENDS": "headless",
            "WLR_LIBINPUT_NO_DEVICES": "1",
            "WLR_RENDERER": "pixman",
            "TMPDIR": str(workdir),
            "LOCKER_KIOSK_URL": f"http://127.0.0.1:{page.port}/",
            "LOCKER_KIOSK_BROWSER": chromium or str(browser),
            "LOCKER_KIOSK_POLL_S": "0.02",
        }
        page.start()
        log = workdir / "cage.log"
        cage = subprocess.Popen(
            [*command[:-1], str(workdir / "locker-kiosk")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            start_new_session=True,  # its own process group: all of it is stopped below
            **as_user,
        )
        try:
            if chromium:
                wait_for(
                    lambda: any("Chrome/" in ua for ua in page.visitors) or cage.poll() is not None,
                    60,
                    "Chromium to load the kiosk page",
                    interval_s=0.1,
                )
                assert cage.poll() is None, log.read_text()[-3000:]
                assert "starting " + chromium in log.read_text()
                return
            wait_for(lambda: browser_runs(runs) or cage.poll() is not None, 20, "the browser")
            assert cage.poll() is None, log.read_text()
            ((_pid, args),) = browser_runs(runs)
            assert "--ozone-platform=wayland" in args and "--kiosk" in args
            assert args[-1] == f"http://127.0.0.1:{page.port}/"
        finally:
            # systemd stops the unit's whole cgroup; here the group stands in for it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cage.pid, signal.SIGKILL)
            cage.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
