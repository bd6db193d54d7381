"""`locker sim` as a user runs it: a process serving a pty until SIGTERM."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import serial

from tests.firmware_sim.conftest import read_exactly, wait_for

LOCKER = Path(sys.executable).with_name("locker")
ENV = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def test_locker_sim_serves_a_pty_and_cleans_up_on_sigterm(tmp_path):
    link = tmp_path / "ttyLOCK"
    command = [str(LOCKER), "sim", "--boards", "1", "--locks", "24", "--link", str(link)]
    process = subprocess.Popen(
        [*command, "--control-port", "0", "--pulse-ms", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.start()
    try:
        control_url = None
        deadline = time.monotonic() + 10
        while control_url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                assert process.poll() is None, "locker sim exited early"
                continue
            if match := re.match(r"control: (http://\S+)", line):
                control_url = match.group(1)
        assert control_url, "locker sim never printed its control URL"
        wait_for(link.is_symlink)

        with serial.Serial(str(link), 9600, timeout=0.5) as port:
            port.write(bytes.fromhex("8A 01 01 11 9B"))
            assert read_exactly(port, 5) == bytes.fromhex("8A 01 01 00 8A")
        with urllib.request.urlopen(control_url + "/state", timeout=5) as response:
            state = json.loads(response.read())
        assert state["boards"][0]["doors"][0]["state"] == "open"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not link.exists() and not link.is_symlink()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)


def test_locker_sim_refuses_a_channel_count_the_wire_cannot_carry():
    result = subprocess.run(
        [str(LOCKER), "sim", "--locks", "256"], capture_output=True, text=True, env=ENV, timeout=30
    )
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "'--locks'" in said and "less than or equal to 255" in said


def test_locker_sim_refuses_fewer_status_bytes_than_its_locks_need():
    result = subprocess.run(
        [str(LOCKER), "sim", "--locks", "50", "--status-bytes", "6"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
    )
    assert result.returncode != 0
    assert "status" in (result.stdout + result.stderr).lower()


def test_locker_sim_help_says_how_to_use_it():
    result = subprocess.run(
        [str(LOCKER), "sim", "--help"], capture_output=True, text=True, env=ENV, timeout=30
    )
    assert result.returncode == 0
    for needle in ("pty", "miniterm", "curl", "--link"):
        assert needle in result.stdout
