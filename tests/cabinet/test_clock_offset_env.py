"""The cabinet daemon's clock: the wall clock, unless a test run names an offset file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from locker.cabinet_command import CLOCK_OFFSET_ENV, _clock_override


def test_without_the_setting_the_daemon_reads_the_plain_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CLOCK_OFFSET_ENV, raising=False)
    assert _clock_override() == {}


def test_the_file_the_setting_names_moves_the_daemon_s_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset = tmp_path / "offset"
    offset.write_text("-7200\n")  # two hours behind, as the chaos nemesis skews it
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(offset))
    clock = _clock_override()["clock"]
    behind_s = (datetime.now(UTC) - clock()).total_seconds()
    assert 7199 < behind_s < 7230
