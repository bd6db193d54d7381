"""The deadline clock's pauses: spans when a parcel's pickup window stood still, and their sum.

The clock stops while the cabinet is offline or the parcel's compartment is faulted (the
recipient could not have picked up). The two can overlap; the overlap counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class PauseReason(StrEnum):
    """Why the deadline clock stopped."""

    CABINET_OFFLINE = "cabinet_offline"
    COMPARTMENT_FAULTED = "compartment_faulted"


@dataclass(frozen=True)
class Pause:
    """One stop of the clock; `ended_at` is None while it lasts."""

    reason: PauseReason
    started_at: datetime
    ended_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Whether the clock is still stopped for this reason."""
        return self.ended_at is None


def paused_s(pauses: Iterable[Pause], *, since: datetime, now: datetime) -> float:
    """Return the seconds between `since` and `now` covered by at least one pause."""
    spans = sorted(
        (max(p.started_at, since), min(p.ended_at or now, now))
        for p in pauses
        if min(p.ended_at or now, now) > max(p.started_at, since)
    )
    total = timedelta()
    current_start: datetime | None = None
    current_end: datetime | None = None
    for start, end in spans:
        if current_end is None or start > current_end:
            if current_start is not None and current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_start is not None and current_end is not None:
        total += current_end - current_start
    return total.total_seconds()


def shifted_deadline(
    *, started_at: datetime, window_s: int, pauses: Iterable[Pause], now: datetime
) -> datetime:
    """Return the deadline: the window from `started_at`, pushed back by every pause until `now`.

    While a pause is open the result moves with `now` (it is the deadline if the pause ended now).
    """
    pushed_s = paused_s(pauses, since=started_at, now=now)
    return started_at + timedelta(seconds=window_s + pushed_s)
