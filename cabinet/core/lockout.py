"""Lockouts against guessing: pickup codes at the keypad, and each courier's PIN.

A `Guard` remembers recent failures; a `LockoutPolicy` says when they lock. Two layers:

- the screen session: `session_max_failures` failures in a row (no pause longer than
  `session_idle_s` between them, no success in between) lock for `session_lockout_s`. This is
  a breather for a fumbling person and slows a burst; it carries no weight in the bound below.
- the windows: a failure is only *checked* if fewer than `max_failures` failures happened in the
  last `span_s` seconds, for every window. Otherwise the keypad is locked until the oldest of
  them leaves the window (no code is even compared while locked). So, by construction, no
  interval of `span_s` seconds ever holds more than `max_failures` failures.

What counts as a failure at the keypad: a well-formed code that opens nothing (wrong, revoked, or
expired: an expired hit opens nothing either, and counting it keeps the bound exact). A malformed
entry (not `code_digits` digits) is refused without comparing anything and is not counted.

The arithmetic for the keypad defaults (8-digit codes, 100 live parcels):

    p, one guess opens some door      = 100 / 10^8                 = 1e-6
    want, any door opened in a day    <= 1e-4
    union bound over G guesses a day  :  G * 1e-6 <= 1e-4   =>  G <= 100

    windows: 10 per hour, 50 per 24 h  =>  at most 50 failures in any 24 h (the day window)
    guesses that can open a door      <= 50 failures + 1 success    = 51
    chance per day                    <= 51 * 1e-6 = 5.1e-5        <= 1e-4, with 2x margin

`max_failures_per_day()` computes the 50 from any policy (the hour window alone would allow
24 * 10 = 240, so the day window is what bounds it) and a test runs a perfect attacker against the
core for simulated days and counts.

The trade-off. The cabinet's own users mistype: a building with 100 pickups a day and a 5 %
slip rate makes about 5 failures a day, far below 10 an hour or 50 a day, and a failed burst at
the screen costs only the 30 s session breather. Any cap that bounds a guesser is also a budget
a vandal can burn: 50 junk codes lock the keypad for the rest of that 24 h. The hour window
makes that take at least four hours (10, then 10 an hour), `keypad.lockout` tells the manager at
once, and the lockout covers typed and scanned codes only: remote open (and WeChat's "open",
which the cloud turns into `compartment.open`) and couriers keep working. A window short enough
that a vandal cannot lock the building for long would let a guesser past the bound.

Courier PINs get their own guard per courier (5 in a row lock for 5 minutes, at most 20 failures
per courier per day), so a guesser cannot lock out other couriers and gets 20 tries a day at one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

DAY_S = 24 * 3600


@dataclass(frozen=True)
class Window:
    """At most `max_failures` failures in any `span_s` seconds."""

    span_s: int
    max_failures: int


@dataclass(frozen=True)
class LockoutPolicy:
    """When failures lock: in a row at the screen, and per sliding window."""

    session_max_failures: int = 3
    session_lockout_s: int = 30
    session_idle_s: int = 120  # a pause this long starts a new screen session
    windows: tuple[Window, ...] = (Window(3600, 10), Window(DAY_S, 50))


KEYPAD_POLICY = LockoutPolicy()
COURIER_PIN_POLICY = LockoutPolicy(
    session_max_failures=5, session_lockout_s=300, windows=(Window(DAY_S, 20),)
)


@dataclass(frozen=True)
class Guard:
    """Recent failures of one keypad or one courier."""

    # Failures still inside the longest window, oldest first.
    failures_at: tuple[datetime, ...] = ()
    session_failures: int = 0  # in a row, in the current screen session
    last_failure_at: datetime | None = None
    session_locked_until: datetime | None = None


@dataclass(frozen=True)
class Lockout:
    """A lockout that a failure has just started."""

    seconds: int
    by_window: bool  # a window filled (an alarm for the manager), not just the session


def _ceil_s(delta: timedelta) -> int:
    return max(0, math.ceil(delta.total_seconds()))


def _in_window(guard: Guard, window: Window, now: datetime) -> list[datetime]:
    # A failure stamped in the future (the wall clock stepped back) still counts: erring on the
    # side of locking keeps the bound when the clock misbehaves.
    start = now - timedelta(seconds=window.span_s)
    return [t for t in guard.failures_at if t > start]


def _window_free_at(guard: Guard, policy: LockoutPolicy, now: datetime) -> datetime | None:
    """When every window has room again, or None if they all have room now."""
    free_at = None
    for window in policy.windows:
        recent = sorted(_in_window(guard, window, now))
        if len(recent) >= window.max_failures:
            # When this one leaves the window, one more failure fits.
            leaves = recent[len(recent) - window.max_failures] + timedelta(seconds=window.span_s)
            free_at = leaves if free_at is None else max(free_at, leaves)
    return free_at


def locked_for_s(guard: Guard, policy: LockoutPolicy, now: datetime) -> int:
    """Seconds until an entry is checked again; 0 when it is checked now."""
    until = [t for t in (guard.session_locked_until, _window_free_at(guard, policy, now)) if t]
    return _ceil_s(max(until) - now) if until else 0


def window_locked(guard: Guard, policy: LockoutPolicy, now: datetime) -> bool:
    """Whether a window (not just the screen session) is full now."""
    return _window_free_at(guard, policy, now) is not None


def _session_failures(guard: Guard, policy: LockoutPolicy, now: datetime) -> int:
    last = guard.last_failure_at
    if last is None or now - last >= timedelta(seconds=policy.session_idle_s):
        return 0
    return guard.session_failures


def attempts_left(guard: Guard, policy: LockoutPolicy, now: datetime) -> int:
    """Failures still allowed before the next lockout of either kind."""
    left = policy.session_max_failures - _session_failures(guard, policy, now)
    for window in policy.windows:
        left = min(left, window.max_failures - len(_in_window(guard, window, now)))
    return max(0, left)


def record_failure(
    guard: Guard, policy: LockoutPolicy, now: datetime
) -> tuple[Guard, Lockout | None]:
    """Count a failure (the caller checked `locked_for_s` first); say if it starts a lockout."""
    longest = timedelta(seconds=max((w.span_s for w in policy.windows), default=0))
    kept = tuple(t for t in guard.failures_at if t > now - longest)
    in_a_row = _session_failures(guard, policy, now) + 1
    locked_until = guard.session_locked_until
    if in_a_row >= policy.session_max_failures:
        locked_until = now + timedelta(seconds=policy.session_lockout_s)
        in_a_row = 0  # served by the lockout
    guard = Guard(
        failures_at=(*kept, now) if policy.windows else (),
        session_failures=in_a_row,
        last_failure_at=now,
        session_locked_until=locked_until,
    )
    seconds = locked_for_s(guard, policy, now)
    if not seconds:
        return guard, None
    return guard, Lockout(seconds=seconds, by_window=window_locked(guard, policy, now))


def record_success(guard: Guard) -> Guard:
    """A right entry ends the run of failures at the screen; the windows keep their count."""
    return replace(guard, session_failures=0, last_failure_at=None)


def max_failures_per_day(policy: LockoutPolicy) -> int | None:
    """The most failures any 24 h can hold under `policy` (None: unbounded)."""
    bounds = [w.max_failures * math.ceil(DAY_S / w.span_s) for w in policy.windows]
    return min(bounds, default=None)


def chance_per_day(policy: LockoutPolicy, *, live_codes: int = 100, code_digits: int = 8) -> float:
    """Upper bound on a guesser opening any door in a day (the docstring's arithmetic)."""
    failures = max_failures_per_day(policy)
    if failures is None:
        return 1.0
    return min(1.0, (failures + 1) * live_codes / 10**code_digits)
