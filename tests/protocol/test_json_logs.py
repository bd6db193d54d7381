"""JSON log lines (protocol/json_logs.py): one object per record, the fields a pipeline reads."""

from __future__ import annotations

import json
import logging

from protocol.json_logs import LineFormatter


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    made = logging.LogRecord("cloud.worker", logging.WARNING, __file__, 1, message, args, exc_info)
    made.created = 1_796_400_000.25  # 2026-12-04T16:00:00.250Z
    return made


def test_a_record_is_one_json_object_with_time_level_logger_message() -> None:
    line = LineFormatter().format(record("cabinet %s offline (boot %d)", "cab-1", 7))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-12-04T16:00:00.250Z",
        "level": "WARNING",
        "logger": "cloud.worker",
        "message": "cabinet cab-1 offline (boot 7)",
    }


def test_chinese_stays_readable_and_a_traceback_is_one_field() -> None:
    line = LineFormatter().format(record("取件码已发送 %s", "138****8000", exc=True))
    assert "取件码" in line  # not \\u escapes
    parsed = json.loads(line)
    assert parsed["message"] == "取件码已发送 138****8000"
    assert "ValueError: boom" in parsed["exc_info"]
