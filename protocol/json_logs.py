"""Structured logs, one JSON object per line: the format both the cloud and the cabinet offer.

A log pipeline (Loki, Elasticsearch, journald's JSON export) then needs no parsing rules. Each
line holds `time` (RFC 3339, UTC, milliseconds), `level`, `logger`, `message`, and `exc_info`
when there is a traceback. The messages are the same ones the text format shows, so what no log
may hold (a phone number unmasked, a pickup code) is kept out of them at the source.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("time", "level", "logger", "message")


class LineFormatter(JsonFormatter):
    """python-json-logger's formatter with our field names and a UTC timestamp."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            json_ensure_ascii=False,  # zh-CN stays readable
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        moment = datetime.fromtimestamp(record.created, UTC)
        log_data["time"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_to_stderr(level: int, *, json: bool, text_format: str) -> None:
    """Send records at `level` or above to stderr, as JSON lines or as `text_format`.

    As `logging.basicConfig`: a process whose root logger has a handler already keeps it.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter() if json else logging.Formatter(text_format))
    logging.basicConfig(level=level, handlers=[handler])
