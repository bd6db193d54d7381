"""The worker's clock: the wall clock, or (for demos and end-to-end runs) one moved by a file.

`locker demo --story` shows a parcel expire without waiting out a 72-hour pickup window: it
writes a number of seconds into the file named by `LOCKER_CLOUD_CLOCK_OFFSET_FILE`, and every
worker reading it from then on lives that far in the future (the API and the cabinets keep real
time). Nothing else about expiry changes: the same scheduler applies the same site policy. The
file is read at most once per `reread_s`; a missing file is no offset, an unreadable one keeps
the last offset read (and says so once).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as wall_time
from zoneinfo import ZoneInfo

# The clock itself is shared with the cabinet daemon (whose clock a fault campaign skews).
from protocol.offset_clock import FileOffsetClock

__all__ = ["FileOffsetClock", "offset_to_local_time", "utc_now"]


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
