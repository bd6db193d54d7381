"""A wall clock moved by a file: the wall clock plus the seconds written in it.

The cloud workers take one (`LOCKER_CLOUD_CLOCK_OFFSET_FILE`) so a demo or an end-to-end run can
make a parcel expire without waiting out its pickup window; the cabinet daemon takes one
(`LOCKER_CABINET_CLOCK_OFFSET_FILE`) so a fault campaign can skew a cabinet's clock. Neither is
set in production, where each process reads the plain wall clock. The file is read at most once
per `reread_s`; a missing file is no offset, an unreadable one keeps the last offset read (and
says so once).

`FileClock` is the other test-run clock: the time written in a file, standing still until the
file is rewritten (`LOCKER_CABINET_CLOCK_FILE`). A browser test drives the whole daemon on it, so
what a screen shows after "10 minutes" or "3 seconds" never depends on how fast the machine is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FileOffsetClock:
    """The wall clock plus the seconds written in `path` (0 while the file does not exist)."""

    def __init__(
        self,
        path: Path,
        *,
        wall: Callable[[], datetime] = _utc_now,
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
                "clock offset file %s: this process's clock now runs %+g s", self.path, offset
            )
        self._complained = False
        return offset

    def _keep(self, reason: str) -> float:
        if not self._complained:
            log.error("%s; keeping the offset %+g s", reason, self._offset_s)
            self._complained = True
        return self._offset_s


class FileClock:
    """The time written in `path` (Unix seconds), read afresh at every call: it stands still
    until the file is rewritten. Write it whole (a temporary file renamed over it): a file read
    half-written, unreadable or missing keeps the last time read (and says so once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: datetime | None = None
        self._complained = False

    def __call__(self) -> datetime:
        try:
            now = datetime.fromtimestamp(float(self.path.read_text()), UTC)
        except (OSError, ValueError) as err:
            if self._last is None:
                raise RuntimeError(f"the clock file {self.path} holds no time: {err}") from err
            if not self._complained:
                log.error("cannot read the clock file %s: %s; it stands still", self.path, err)
                self._complained = True
            return self._last
        self._last, self._complained = now, False
        return now


def write_clock_file(path: Path, moment: datetime) -> None:
    """Set a `FileClock`'s time: write it beside `path`, then rename (a reader sees it whole)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(f"{moment.timestamp():.6f}\n")
    partial.replace(path)
