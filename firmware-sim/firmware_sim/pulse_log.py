"""Pulse logs: every unlock pulse a simulated board's locks receive, one JSON line each, in a file
per board. The board's own log (`GET /log`) keeps only its last entries; a fault campaign that
runs for half an hour needs every pulse, and must still have them if it looks once at the end.

    board-8a-1.pulses   {"at": 1234.5, "family": "8a", "board": 1, "channel": 7, "kind": "pulse",
                         "jammed": false}

`at` is CLOCK_MONOTONIC seconds (Linux: one clock for every process on the machine), so a reader
can line pulses up with what other processes recorded on the same clock.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from firmware_sim.board import Board, PulseRecord


class PulseLog:
    """Attached to `boards`: each pulse is appended (and flushed) to its board's file."""

    def __init__(self, folder: Path, boards: list[Board]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[tuple[str, int], Any] = {}
        for board in boards:
            key = (board.config.family, board.address)
            if key not in self._files:  # a DIP clash: two boards, one file
                self._files[key] = (folder / file_name(*key)).open("a", encoding="utf-8")
            board.on_pulse = self._write

    def _write(self, record: PulseRecord) -> None:
        line = json.dumps(record.as_dict()) + "\n"
        with self._lock:
            out = self._files[(record.family, record.board)]
            out.write(line)
            out.flush()

    def close(self) -> None:
        with self._lock:
            for out in self._files.values():
                out.close()


def file_name(family: str, board: int) -> str:
    return f"board-{family}-{board}.pulses"


def read_pulses(path: Path) -> list[dict[str, Any]]:
    """The pulses of one board's file, oldest first (a half-written last line is skipped)."""
    pulses = []
    if not path.exists():
        return pulses
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            pulses.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return pulses
