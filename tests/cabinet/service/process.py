"""The cabinet daemon as a subprocess: a generated config, start, talk, SIGTERM or kill -9."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from locker.harness.processes import JsonLinesProcess, clean_env
from tests.cabinet.service.harness import CHANNELS, CODE_KEY, LAYOUT
from tests.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[3]
LOCKER = Path(sys.executable).parent / "locker"


def write_config(
    path: Path,
    *,
    broker: Mosquitto,
    serial_port: str,
    journal: Path | None = None,
    extra: str = "",
    kiosk_port: int | None = None,
    mqtt_password: str | None = None,
) -> Path:
    """A config for cab1: the sim's pty with fast bus clocks, the test broker, a tmp journal.

    The kiosk gets a free port (`kiosk_port` to choose it), so daemons of parallel tests never
    meet on the default 8080. `mqtt_password` is the cabinet's (an anonymous test broker ignores
    it; the cloud checks it when the kiosk fetches its scan QR). The journal goes beside the
    config unless `journal` says where.
    """
    journal = journal or path.parent / "journal.sqlite3"
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


def run_cli(
    config: Path,
    *,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`locker cabinet run --config CONFIG`, its output piped (or where `stdout`/`stderr` say);
    `env`: LOCKER_* settings for it (the test's own never leak in)."""
    return subprocess.Popen(
        [str(LOCKER), "cabinet", "run", "--config", str(config)],
        cwd=ROOT,
        env=clean_env(**(env or {})),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=True,
    )


class Daemon(JsonLinesProcess):
    """The real daemon with the test-only stdin control channel (daemon_process.py)."""

    def __init__(self, config: Path, log_path: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "tests.cabinet.service.daemon_process", str(config)],
            log_path=log_path,
            name="the daemon",
            cwd=ROOT,
            log_mode="a",
        )
        try:
            assert self.next(20) == {"ready": True}
        except BaseException:
            self.kill()  # never leave a daemon behind on the test's pty
            raise

    def ask(self, request: dict[str, Any], timeout_s: float = 10) -> dict[str, Any]:
        return super().ask(request, timeout_s)

    def submit(self, name: str, **args: Any) -> list[dict[str, Any]]:
        """Run a kiosk input; return its screens (as dicts with a "type")."""
        answer = self.ask({"input": name, "args": args})
        assert answer["ok"], answer
        return answer["screens"]

    def cabinet(self) -> dict[str, Any]:
        return self.ask({"query": "cabinet"})["cabinet"]

    def door(self, compartment: str) -> str:
        return self.cabinet()["compartments"][compartment]["door"]

    def terminate(self) -> int:
        """SIGTERM, as systemd stops it; return its exit status."""
        return self.stop(timeout_s=10)
