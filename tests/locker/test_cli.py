"""The `locker` command as a newcomer meets it: --help, the schema export, the demo."""

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

from typer.testing import CliRunner

from locker.cli import app

LOCKER = Path(sys.executable).with_name("locker")
runner = CliRunner()


def test_help_explains_the_system_and_lists_the_commands():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "parcel lockers" in result.output.lower()
    assert "lockers/v1/{cab}/" in result.output
    for command in ("demo", "sim", "protocol", "cabinet", "cloud"):
        assert re.search(rf"│ {command}\s", result.output), command


def test_protocol_schema_writes_one_valid_schema_per_message(tmp_path):
    result = runner.invoke(app, ["protocol", "schema", str(tmp_path / "schemas")])
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "schemas" / "index.json").read_text())
    written = sorted(p.name for p in (tmp_path / "schemas").glob("*.json"))
    assert f"wrote {len(written)} schema files" in result.output
    text = json.dumps(index)
    for name in ("parcel.deposited", "codes.put", "event-ack", "lockers/v1/{cab}/state"):
        assert name in text
    for path in (tmp_path / "schemas").glob("*.json"):
        if path.name != "index.json":
            assert json.loads(path.read_text())["$schema"].endswith("2020-12/schema")


def test_demo_starts_a_simulated_cabinet_and_stops_cleanly_on_ctrl_c():
    process = subprocess.Popen(
        [str(LOCKER), "demo", "--control-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.start()
    try:
        control_url, deadline = None, time.monotonic() + 15
        while control_url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                assert process.poll() is None, "locker demo exited early"
                continue
            if match := re.match(r"control: (http://\S+)", line):
                control_url = match.group(1)
        assert control_url, "locker demo never printed the simulator's control URL"
        with urllib.request.urlopen(control_url + "/state", timeout=5) as response:
            state = json.loads(response.read())
        assert [len(board["doors"]) for board in state["boards"]] == [24, 24]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
