"""The cabinet daemon's clock: the wall clock, unless a test run names an offset or a clock file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from locker.cabinet_command import CLOCK_FILE_ENV, CLOCK_OFFSET_ENV, _clock_override
from protocol.offset_clock import FileClock, write_clock_file


def test_without_the_setting_the_daemon_reads_the_plain_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CLOCK_OFFSET_ENV, raising=False)
    monkeypatch.delenv(CLOCK_FILE_ENV, raising=False)
    assert _clock_override() == {}


def test_the_file_the_setting_names_moves_the_daemon_s_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset = tmp_path / "offset"
    offset.write_text("-7200\n")  # two hours behind, as the chaos nemesis skews it
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(offset))
    monkeypatch.delenv(CLOCK_FILE_ENV, raising=False)
    clock = _clock_override()["clock"]
    behind_s = (datetime.now(UTC) - clock()).total_seconds()
    assert 7199 < behind_s < 7230


def test_the_clock_file_holds_the_daemon_s_time_still_until_it_is_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clock"
    start = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    write_clock_file(path, start)
    monkeypatch.delenv(CLOCK_OFFSET_ENV, raising=False)
    monkeypatch.setenv(CLOCK_FILE_ENV, str(path))
    override = _clock_override()
    # No monotonic clock to check it against: moving the file is time passing, not a step.
    assert set(override) == {"clock"}
    clock = override["clock"]
    assert clock() == start
    assert clock() == start  # it stands still
    write_clock_file(path, start + timedelta(seconds=83))
    assert clock() == start + timedelta(seconds=83)
    path.write_text("not a time")  # a broken file keeps the last time read
    assert clock() == start + timedelta(seconds=83)


def test_a_clock_file_that_never_held_a_time_stops_the_daemon_at_once(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="holds no time"):
        FileClock(tmp_path / "missing")()
