"""A wall-clock step: the cabinet's own timers move with it, the cloud's deadlines do not.

The core reads one clock, `now`, the cabinet's wall clock: events carry it and the cloud's
deadlines (a code's `expires_at`, a reservation's `until`) are compared with it. Its own timers
are durations kept as instants (an unlock's window, a door left open, a courier idle, a keypad
lockout, a resend interval), and a wall clock that steps (NTP correcting a board that booted
without a real-time clock, an operator setting the time) would stretch or cut them: a step forward
of ten minutes used to lapse an unlock the recipient was about to pull, so the opening counted as
forced and the pickup was never recorded.

So the daemon compares the wall clock with a monotonic one on every read, and when the two
disagree by more than `STEP_TOLERANCE` it moves every timer instant by the step (`shift_timers`):
each timer then measures the time that really passed. Instants the cloud gave or that only record
when something happened (`deposited_at`, `signed_in_at`) are left alone.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from cabinet.core.lockout import Guard
from cabinet.core.state import Cabinet

# Below this a disagreement is two reads a moment apart, or NTP slewing (≤ 0.5 ms per second).
STEP_TOLERANCE = timedelta(seconds=1)


def clock_step(last: tuple[datetime, float] | None, now: datetime, tick: float) -> timedelta | None:
    """How far the wall clock stepped since `last` (wall, monotonic seconds), or None if it did
    not: the wall time that passed minus the monotonic time that passed, beyond the tolerance."""
    if last is None:
        return None
    then, then_tick = last
    step = (now - then) - timedelta(seconds=tick - then_tick)
    return step if abs(step) > STEP_TOLERANCE else None


def shift_timers(cabinet: Cabinet, by: timedelta) -> Cabinet:
    """A copy of `cabinet` with every timer instant of its own moved by `by`."""
    new = cabinet.copy()

    def moved(at: datetime | None) -> datetime | None:
        return None if at is None else at + by

    for cid, compartment in cabinet.compartments.items():
        if compartment.unlocked_at is not None or compartment.opened_at is not None:
            new.compartments[cid] = replace(
                compartment,
                unlocked_at=moved(compartment.unlocked_at),
                opened_at=moved(compartment.opened_at),
            )
    for pid, parcel in cabinet.parcels.items():
        if parcel.resend_requested_at is not None:
            new.parcels[pid] = replace(
                parcel, resend_requested_at=moved(parcel.resend_requested_at)
            )
    if cabinet.session is not None:
        new.session = replace(
            cabinet.session, last_activity_at=cabinet.session.last_activity_at + by
        )
    new.keypad = _shift_guard(cabinet.keypad, by)
    new.courier_guards = {k: _shift_guard(g, by) for k, g in cabinet.courier_guards.items()}
    new.resend_asked = {phone: at + by for phone, at in cabinet.resend_asked.items()}
    return new


def _shift_guard(guard: Guard, by: timedelta) -> Guard:
    if (
        not guard.failures_at
        and guard.last_failure_at is None
        and guard.session_locked_until is None
    ):
        return guard
    return replace(
        guard,
        failures_at=tuple(at + by for at in guard.failures_at),
        last_failure_at=None if guard.last_failure_at is None else guard.last_failure_at + by,
        session_locked_until=(
            None if guard.session_locked_until is None else guard.session_locked_until + by
        ),
    )
