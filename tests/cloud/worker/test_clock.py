"""The workers' clock offset file (`locker demo --story`'s time travel): read, re-read, refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.worker.clock import FileOffsetClock

WALL = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(path: Path, ticks: Ticks) -> FileOffsetClock:
    return FileOffsetClock(path, wall=lambda: WALL, monotonic=ticks, reread_s=0.5)


def test_no_file_is_the_wall_clock(tmp_path: Path) -> None:
    assert make(tmp_path / "offset", Ticks())() == WALL


def test_the_offset_moves_the_clock_once_the_file_is_read_again(tmp_path: Path) -> None:
    path, ticks = tmp_path / "offset", Ticks()
    clock = make(path, ticks)
    assert clock() == WALL
    path.write_text("259260\n")  # 72 h and a minute
    assert clock() == WALL  # read less than reread_s ago
    ticks.now = 0.5
    assert clock() == WALL + timedelta(hours=72, minutes=1)


def test_a_bad_file_keeps_the_last_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, ticks = tmp_path / "offset", Ticks()
    path.write_text("60")
    clock = make(path, ticks)
    assert clock() == WALL + timedelta(seconds=60)
    path.write_text("soon")
    ticks.now = 1
    assert clock() == WALL + timedelta(seconds=60)
    assert "not a number of seconds" in caplog.text
