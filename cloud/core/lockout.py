"""The console's sign-in lockout and session lifetime: pure arithmetic, no I/O.

Failed sign-ins are counted in a sliding window, separately per account (the username tried)
and per address (where the attempts come from):

- an account is locked once it has `ACCOUNT_LIMIT` failures within `WINDOW`: 5 wrong passwords
  within 15 minutes lock it until the oldest of those 5 is 15 minutes old. An online guesser
  thus gets at most 5 guesses per 15 minutes per account: 480 a day, against a password of at
  least 12 characters;
- an address is locked once it has `ADDRESS_LIMIT` failures within `WINDOW` (20 in 15 minutes,
  whatever usernames it tried), so one machine cannot walk through many accounts.

An attempt refused because of a lock is not a failure (the lock ends when stated, however often
someone knocks), and a success does not erase earlier failures (they age out of the window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW = timedelta(minutes=15)

# A session ends 12 hours after sign-in, or after 30 minutes without a request, whichever first.
SESSION_LIFETIME = timedelta(hours=12)
IDLE_TIMEOUT = timedelta(minutes=30)
# A request refreshes the session's last use at most this often: one write a minute, not one per
# request (the idle timeout is then exact to within this).
TOUCH_EVERY = timedelta(seconds=60)


def locked_until(
    failures: Sequence[datetime], *, limit: int, now: datetime, window: timedelta = WINDOW
) -> datetime | None:
    """Return when a lock ends, or None if `failures` (their times, any order) lock nothing.

    Locked while `limit` or more failures lie within `window` before `now`: the lock ends when
    the `limit`-th newest of them leaves the window.
    """
    recent = sorted((at for at in failures if now - window < at <= now), reverse=True)
    if len(recent) < limit:
        return None
    return recent[limit - 1] + window


@dataclass(frozen=True)
class SessionTimes:
    """A session's three times."""

    created_at: datetime
    last_used_at: datetime
    expires_at: datetime


def session_alive(times: SessionTimes, now: datetime) -> bool:
    """Whether a session still signs its holder in at `now`."""
    return now < times.expires_at and now - times.last_used_at < IDLE_TIMEOUT


def needs_touch(times: SessionTimes, now: datetime) -> bool:
    """Whether a request at `now` should record itself as the session's last use."""
    return now - times.last_used_at >= TOUCH_EVERY
