"""`locker cabinet doctor` against the simulator: a two-family wire with a planted DIP clash.

One pty carries 8A/80 boards (9600 baud) and KR-CU16 boards (19200): each answers only at its
own rate, as real UARTs do. Planted: two 8A/80 boards on address 3, a door whose feedback switch
is stuck "open", a KR-CU board that never answers unlocks, and a board the config expects that
is not there.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from firmware_sim import BoardConfig, PtyServer, SimulatedBus
from locker.cli import app
from protocol.lockboard.common import Polarity

runner = CliRunner()


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatedBus, PtyServer]]:
    bus = SimulatedBus(
        [
            BoardConfig(address=1, channels=8, status_bytes=3),  # the captured 8-lock variant
            BoardConfig(address=2, channels=24, polarity=Polarity.INVERTED),
            BoardConfig(address=3, channels=24),
            BoardConfig(address=3, channels=24),  # the DIP clash
            BoardConfig(address=1, channels=16, family="krcu"),
            BoardConfig(address=2, channels=16, family="krcu", answers_unlock=False),
        ],
        pulse_s=0.0,
        query_reply_s=0.001,
    )
    bus.faults.stick_sensor(1, 5, False)  # 8A board 1 door 5 never reports closed
    # something in KR-CU board 1's compartment 3 (`bus.faults` names boards by address alone)
    bus.board(1, "krcu").set_stuck_occupancy(3, True, 0.0)
    server = PtyServer(bus, link=tmp_path_factory.mktemp("doctor") / "ttyLOCK").start()
    yield bus, server
    server.close()


def _config(tmp_path: Path, port: str) -> Path:
    path = tmp_path / "cabinet.toml"
    path.write_text(
        f"""
cabinet_id = "cab-doc"
[buses.main]
port = "{port}"
[[boards]]
bus = "main"
address = 4
channels = 8
[[layout.compartments]]
id = "A01"
size = "S"
driver = "rs485"
board = 4
channel = 1
""",
        encoding="utf-8",
    )
    return path


def test_the_doctor_finds_a_two_family_bus_and_its_wiring_problems(
    wire: tuple[SimulatedBus, PtyServer], tmp_path: Path
) -> None:
    bus, server = wire
    out = tmp_path / "found.toml"
    result = runner.invoke(
        app,
        [
            "cabinet",
            "doctor",
            "--port",
            server.path,
            "--addresses",
            "1-4",
            "--timeout-ms",
            "80",  # generous: a loaded test machine must not make a board look silent
            "--pulse",
            "krcu:2:1",
            "--write",
            str(out),
            "--config",
            str(_config(tmp_path, server.path)),
        ],
        env={"COLUMNS": "200"},
    )
    text = result.output
    assert result.exit_code == 1, text  # problems found
    # Boards: family, address, channels, polarity.
    rows = {
        tuple(cell.strip() for cell in line.split("│")[1:5])
        for line in text.splitlines()
        if line.startswith("│")
    }
    assert ("8a", "1", "8", "normal (guess)") in rows  # 8 channels, though it sends 3 bytes
    assert ("8a", "2", "24", "inverted (guess)") in rows
    assert ("krcu", "1", "16", "normal (guess)") in rows
    assert ("krcu", "2", "16", "normal (guess)") in rows
    assert not any(row[:2] == ("8a", "3") for row in rows)  # the clash is no board
    # Doors and sensors, read.
    assert "■■■■□■■■" in text  # board 1: door 5 reads open
    assert "○○●○○○○○○○○○○○○○" in text  # KR-CU board 1: something in compartment 3
    # The pulse: KR-CU board 2 never answers an unlock, and its lock read back released.
    assert "pulse krcu board 2 lock 1: reply none, released" in text
    assert bus.board(2).doors[1].pulses == 0  # the 8A board 2 was not touched
    assert bus.board(2, "krcu").doors[1].pulses == 1  # fired once, never resent
    # Wiring problems.
    assert "8a address 3: every reply came back garbled" in text
    assert "8a board 1 door 5 read open in every read" in text
    assert "8a board 4 is in the layout but did not answer" in text
    assert "8A/80 and KR-CU boards share this wire" in text
    assert "4 board(s), 4 problem(s)." in text

    layout = tomllib.loads(out.read_text(encoding="utf-8"))
    assert {name: b["family"] for name, b in layout["buses"].items()} == {
        "bus1": "8a",
        "bus1_krcu": "krcu",
    }
    boards = {(b["bus"], b["address"]): (b["channels"], b["polarity"]) for b in layout["boards"]}
    assert boards == {
        ("bus1", 1): (8, "normal"),
        ("bus1", 2): (24, "inverted"),
        ("bus1_krcu", 1): (16, "normal"),
        ("bus1_krcu", 2): (16, "normal"),
    }
    assert len(layout["layout"]["compartments"]) == 8 + 24 + 16 + 16


def test_the_doctor_on_an_empty_port_says_so(tmp_path: Path) -> None:
    bus = SimulatedBus([BoardConfig(address=9, channels=8)])
    with PtyServer(bus) as server:
        result = runner.invoke(
            app,
            ["cabinet", "doctor", "-p", server.path, "--addresses", "1-2", "--timeout-ms", "20"],
            env={"COLUMNS": "200"},
        )
    assert result.exit_code == 1
    assert "0 board(s), 0 problem(s)." in result.output
