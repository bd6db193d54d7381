"""The worker's clock: the wall clock, or (for demos and end-to-end runs) one moved by a file.

`locker demo --story` shows a parcel expire without waiting out a 72-hour pickup window: it
writes a number of seconds into the file named by `LOCKER_CLOUD_CLOCK_OFFSET_FILE`, and every
worker reading it from then on lives that far in the future (the API and the cabinets keep real
time). Nothing else about expiry changes: the same scheduler applies the same site policy. The
file is read at most once per `reread_s`; a missing file is no offset, an unreadable one keeps
the last offset read (and says so once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as wall_time
from pathlib import Path
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Return the wall clock, aware UTC."""
    return datetime.now(UTC)


def offset_to_local_time(now: datetime, zone: ZoneInfo, at: wall_time) -> float:
    """Return the seconds from `now` to the next `at` on the wall clocks of `zone` (0 to < 1 day).

    Written into the offset file before the workers start, it pins the hour of day they live at,
    so a run (the demo's story, its tests) can be made to meet a site's night or its day on
    purpose, whatever hour it really is.
    """
    local = now.astimezone(zone)
    target = datetime.combine(local.date(), at, tzinfo=zone)
    if target < local:
        target = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return (target - now).total_seconds()


class FileOffsetClock:
    """The wall clock plus the seconds written in `path` (0 while the file does not exist)."""

    def __init__(
        self,
        path: Path,
        *,
        wall: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        reread_s: float = 0.5,
    ) -> None:
        self.path = path
        self._wall = wall
        self._monotonic = monotonic
        self._reread_s = reread_s
        self._offset_s = 0.0
        self._read_at: float | None = None
        self._complained = False

    @property
    def offset_s(self) -> float:
        """The offset in force, after reading the file if it is due."""
        now = self._monotonic()
        if self._read_at is None or now - self._read_at >= self._reread_s:
            self._read_at = now
            self._offset_s = self._read()
        return self._offset_s

    def __call__(self) -> datetime:
        return self._wall() + timedelta(seconds=self.offset_s)

    def _read(self) -> float:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0.0
        except OSError as err:
            return self._keep(f"cannot read {self.path}: {err}")
        try:
            offset = float(text or 0)
        except ValueError:
            return self._keep(f"{self.path} holds {text[:40]!r}, not a number of seconds")
        if offset != self._offset_s:
            log.warning(
                "clock offset file %s: the worker's clock now runs %+g s", self.path, offset
            )
        self._complained = False
        return offset

    def _keep(self, reason: str) -> float:
        if not self._complained:
            log.error("%s; keeping the offset %+g s", reason, self._offset_s)
            self._complained = True
        return self._offset_s
