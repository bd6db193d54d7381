"""`locker cabinet run` under a stand-in for systemd: READY=1, watchdog pings, STOPPING=1.

The test binds the unix datagram socket systemd would, names it in NOTIFY_SOCKET with a short
WATCHDOG_USEC, runs the real daemon against the simulator and reads what arrives (waiting on
the socket with a timeout, never sleeping for a timer).
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.service.process import LOCKER, ROOT, clean_env, write_config
from tests.services import Mosquitto

WATCHDOG_USEC = 200_000  # pings every 0.1 s


def test_daemon_is_ready_then_pings_the_watchdog_then_says_stopping(
    tmp_path: Path, mosquitto: Mosquitto, sim: tuple[SimulatedBus, PtyServer]
) -> None:
    config = write_config(
        tmp_path / "cab.toml",
        broker=mosquitto,
        serial_port=str(sim[1].link),
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(20)
    env = {
        **clean_env(),
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    process = subprocess.Popen(
        [str(LOCKER), "cabinet", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = sock.recv(4096).decode()
        assert first.splitlines()[0] == "READY=1", first
        # The journal was opened and every door read before READY=1.
        assert (tmp_path / "journal.sqlite3").exists()
        pings = [sock.recv(4096).decode() for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        process.send_signal(signal.SIGTERM)
        while (message := sock.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert message.splitlines()[0] == "STOPPING=1", message
        _out, err = process.communicate(timeout=15)
    finally:
        sock.close()
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err
    assert "systemd watchdog on, a ping every 0.1 s" in err
