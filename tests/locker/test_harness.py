"""locker/harness: the one home of the harnesses the tests, the demo and the benches share."""

from __future__ import annotations

import ast
import signal
import sys
from pathlib import Path

from locker.harness.mosquitto import Mosquitto
from locker.harness.processes import JsonLinesProcess, stop_all

ROOT = Path(__file__).resolve().parents[2]
# What each used to copy: four free_ports, two Mosquitto launchers, a pid stopper, a scratch DB.
HARNESS_NAMES = {"free_port", "_free_port", "_stop_pid", "OwnBroker", "scratch_database"}


def test_the_harnesses_are_defined_once_in_locker_harness() -> None:
    homes: dict[str, list[str]] = {}
    for path in sorted(ROOT.glob("**/*.py")):
        if ".venv" in path.parts or "node_modules" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in HARNESS_NAMES:
                homes.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    assert homes == {
        "free_port": ["locker/harness/ports.py"],
        "scratch_database": ["locker/harness/postgres.py"],
    }


def test_the_bench_broker_keeps_no_store_and_a_deep_queue(tmp_path: Path) -> None:
    broker = Mosquitto(
        tmp_path, binary="mosquitto", persistence=False, max_queued_messages=10_000_000
    )
    config = broker._config().splitlines()

    assert "persistence false" in config
    assert "max_queued_messages 10000000" in config
    assert not [line for line in config if line.startswith("persistence_location")]
    # Anonymous: no user names to pin client ids to, so the setting that needs them is off.
    assert "allow_anonymous true" in config
    assert "use_username_as_clientid true" not in config


CHILD = """
import json, signal, sys
if "--deaf" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    print(json.dumps({"echo": json.loads(line)}), flush=True)
"""


def test_a_json_lines_child_answers_then_finishes_when_stdin_closes(tmp_path: Path) -> None:
    child = JsonLinesProcess(
        [sys.executable, "-c", CHILD], log_path=tmp_path / "child.log", name="the child"
    )

    assert child.next(10) == {"ready": True}
    assert child.ask({"n": 1}, 10) == {"echo": {"n": 1}}
    assert child.finish(10) == 0


def test_stop_all_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    deaf = JsonLinesProcess(
        [sys.executable, "-c", CHILD, "--deaf"], log_path=tmp_path / "deaf.log", name="deaf"
    )
    assert deaf.next(10) == {"ready": True}  # its SIGTERM handler is in place
    killed: list[str] = []

    stop_all([("deaf", deaf.process)], grace_s=0.2, on_kill=killed.append)

    assert killed == ["deaf"]
    assert deaf.process.returncode == -signal.SIGKILL
    deaf.kill()  # closes its log; the process is already reaped
