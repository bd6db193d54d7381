"""The cabinet daemon as a subprocess: a generated config, start, talk, SIGTERM or kill -9."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.cabinet.service.harness import CHANNELS, CODE_KEY, LAYOUT
from tests.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[3]
LOCKER = Path(sys.executable).parent / "locker"


def write_config(
    path: Path,
    *,
    broker: Mosquitto,
    serial_port: str,
    journal: Path,
    extra: str = "",
    kiosk_port: int | None = None,
    mqtt_password: str | None = None,
) -> Path:
    """A config for cab1: the sim's pty with fast bus clocks, the test broker, a tmp journal.

    The kiosk gets a free port (`kiosk_port` to choose it), so daemons of parallel tests never
    meet on the default 8080. `mqtt_password` is the cabinet's (an anonymous test broker ignores
    it; the cloud checks it when the kiosk fetches its scan QR).
    """
    doors = "".join(
        f'\n[[layout.compartments]]\nid = "{c.id}"\nsize = "{c.size}"\nlow_door = '
        f'{str(c.low).lower()}\ndriver = "rs485"\nboard = 1\nchannel = {CHANNELS[c.id]}\n'
        for c in LAYOUT
    )
    credentials = f'username = "cab1"\npassword = "{mqtt_password}"\n' if mqtt_password else ""
    path.write_text(
        f'cabinet_id = "cab1"\ncode_key = "{CODE_KEY.decode()}"\njournal_path = "{journal}"\n'
        f"kiosk_port = {kiosk_port or free_port()}\n{extra}\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nkeepalive_s = 5\n{credentials}\n'
        f'[buses.main]\nport = "{serial_port}"\nquery_timeout_s = 0.05\n'
        "unlock_timeout_s = 0.3\nquiet_gap_s = 0.01\ninter_request_gap_s = 0.001\n"
        "poll_interval_s = 0.02\n\n"
        '[[boards]]\nbus = "main"\naddress = 1\nchannels = 24\n' + doors
    )
    return path


def clean_env() -> dict[str, str]:
    """This environment without LOCKER_ overrides, so only the generated config counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}


def run_cli(config: Path) -> subprocess.Popen[str]:
    """`locker cabinet run --config CONFIG`."""
    return subprocess.Popen(
        [str(LOCKER), "cabinet", "run", "--config", str(config)],
        cwd=ROOT,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Daemon:
    """The real daemon with the test-only stdin control channel (daemon_process.py)."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self._log = log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.cabinet.service.daemon_process", str(config)],
            cwd=ROOT,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            assert self._next(20) == {"ready": True}
        except BaseException:
            self.kill()  # never leave a daemon behind on the test's pty
            raise

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def _next(self, timeout_s: float) -> dict[str, Any]:
        try:
            return json.loads(self._lines.get(timeout=timeout_s))
        except queue.Empty:
            raise TimeoutError(f"the daemon said nothing for {timeout_s:g} s") from None

    def ask(self, request: dict[str, Any], timeout_s: float = 10) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._next(timeout_s)

    def submit(self, name: str, **args: Any) -> list[dict[str, Any]]:
        """Run a kiosk input; return its screens (as dicts with a "type")."""
        answer = self.ask({"input": name, "args": args})
        assert answer["ok"], answer
        return answer["screens"]

    def cabinet(self) -> dict[str, Any]:
        return self.ask({"query": "cabinet"})["cabinet"]

    def door(self, compartment: str) -> str:
        return self.cabinet()["compartments"][compartment]["door"]

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(10)
        self._log.close()
        return code
