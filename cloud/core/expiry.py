"""The deadline policy: paused deadlines, reminders outside quiet hours, expiry, the overdue fee.

`due(parcels, policy, now)` is all the scheduler needs: it lists what to apply now (a Remind or an
Expire per parcel, fed to `parcels.apply`), so the worker is a thin loop over the sites. The
rules, all in site policy (`policies.SitePolicy`):

- the deadline is the pickup window from when the cloud learned of the deposit, pushed back by
  every pause (cabinet offline, compartment faulted); nothing expires while the clock is paused;
- one reminder, `reminder_before_s` before the deadline; in quiet hours it waits for their end,
  and if that would be at or after the deadline there is no reminder (the deposit notice named
  the deadline);
- expiry at the deadline;
- an optional overdue fee per started day past the deadline, capped, counted until the parcel
  leaves the locker: computed and shown, never charged here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cloud.core.parcels import Expire, Parcel, PauseDeadline, Remind, ResumeDeadline, Status
from cloud.core.pauses import PauseReason
from cloud.core.policies import DAY_S, SitePolicy


def deadline(parcel: Parcel, now: datetime) -> datetime | None:
    """Return the parcel's pickup deadline at `now` (None before deposit).

    While the clock is paused this is the deadline if the pause ended now: it moves with `now`.
    """
    return parcel.deadline(now)


def reminder_at(parcel: Parcel, policy: SitePolicy, now: datetime) -> datetime | None:
    """Return when the reminder is due, or None if the parcel gets none."""
    if policy.reminder_before_s is None or parcel.status is not Status.IN_LOCKER:
        return None
    current = parcel.deadline(now)
    if current is None:
        return None
    at = policy.outside_quiet_hours(current - timedelta(seconds=policy.reminder_before_s))
    return at if at < current else None


@dataclass(frozen=True)
class DueAction:
    """Apply `event` to parcel `parcel_id` now; it has been due since `due_at`."""

    parcel_id: str
    event: Remind | Expire
    due_at: datetime


def due(parcels: Iterable[Parcel], policy: SitePolicy, now: datetime) -> list[DueAction]:
    """Return the reminders and expiries due at `now` among one site's parcels, oldest first."""
    actions: list[DueAction] = []
    for parcel in parcels:
        if parcel.status is not Status.IN_LOCKER or parcel.is_paused or parcel.parcel_id is None:
            continue
        current = parcel.deadline(now)
        if current is None:
            continue
        if now >= current:
            actions.append(DueAction(parcel.parcel_id, Expire(), current))
            continue
        if parcel.reminded_at is not None or policy.is_quiet(now):
            # A reminder overdue because the scheduler was down still waits out quiet hours.
            continue
        remind_at = reminder_at(parcel, policy, now)
        if remind_at is not None and now >= remind_at:
            actions.append(DueAction(parcel.parcel_id, Remind(), remind_at))
    return sorted(actions, key=lambda action: action.due_at)


def next_due_at(parcels: Iterable[Parcel], policy: SitePolicy, now: datetime) -> datetime | None:
    """Return the earliest time something may become due (None: nothing pending or all paused).

    A scheduler may sleep until then; a pause ending or a new deposit wakes it earlier.
    """
    times: list[datetime] = []
    for parcel in parcels:
        if parcel.status is not Status.IN_LOCKER or parcel.is_paused:
            continue
        current = parcel.deadline(now)
        if current is None:
            continue
        times.append(current)
        if parcel.reminded_at is None and (remind_at := reminder_at(parcel, policy, now)):
            times.append(policy.outside_quiet_hours(max(remind_at, now)))
    return min(times, default=None)


# A parcel with nothing pending (its deadline clock paused) is judged again this long after;
# the resume that ends the pause writes the parcel, which sets its next check anyway.
PAUSED_RECHECK = timedelta(hours=1)


def check_at(parcel: Parcel, policy: SitePolicy, now: datetime) -> datetime | None:
    """When the expiry scan must judge `parcel` again (None: never, it is not in a locker): its
    next reminder or deadline, or in `PAUSED_RECHECK` if nothing is pending (clock paused)."""
    if parcel.status is not Status.IN_LOCKER:
        return None
    later = next_due_at([parcel], policy, now)
    return later if later is not None else now + PAUSED_RECHECK


@dataclass(frozen=True)
class OverdueFee:
    """The fee a parcel has run up past its deadline (0 when none), in minor units."""

    amount_minor: int
    currency: str
    days: int


def overdue_fee(parcel: Parcel, policy: SitePolicy, now: datetime) -> OverdueFee:
    """Return the overdue fee at `now`: per started day past the deadline, capped."""
    none = OverdueFee(0, policy.currency, 0)
    if not policy.overdue_fee_per_day_minor:
        return none
    until = parcel.left_locker_at or now  # the fee stops when the parcel leaves the locker
    current = parcel.deadline(until)
    if current is None or until <= current:
        return none
    days = -(-(until - current).total_seconds() // DAY_S)  # started days: ceiling division
    amount = int(days) * policy.overdue_fee_per_day_minor
    if policy.overdue_fee_cap_minor is not None:
        amount = min(amount, policy.overdue_fee_cap_minor)
    return OverdueFee(amount, policy.currency, int(days))


def presence_event(was_online: bool | None, online: bool) -> PauseDeadline | ResumeDeadline | None:
    """Return what to apply to a cabinet's in-locker parcels when its presence changes.

    Feed it only states that `protocol.messages.State.supersedes` accepted. Going offline pauses
    every in-locker parcel's clock; coming back resumes those with an open offline pause.
    """
    if online and was_online is False:
        return ResumeDeadline(PauseReason.CABINET_OFFLINE)
    if not online and was_online is not False:
        return PauseDeadline(PauseReason.CABINET_OFFLINE)
    return None


def compartment_event(parcel: Parcel, *, usable: bool) -> PauseDeadline | ResumeDeadline | None:
    """Return what to apply to an in-locker parcel when its compartment faults or is back.

    `usable` is False after a `lock.fault`, a `compartment.service` taking the compartment out,
    or a birth listing it faulted or out of service; True once it is back in service. The
    recipient cannot open a faulted door, so its clock stands still until the door works again.
    Repeats (a second fault, a birth saying what an event said) yield None.
    """
    if parcel.status is not Status.IN_LOCKER:
        return None
    paused = parcel.open_pause(PauseReason.COMPARTMENT_FAULTED) is not None
    if not usable and not paused:
        return PauseDeadline(PauseReason.COMPARTMENT_FAULTED)
    if usable and paused:
        return ResumeDeadline(PauseReason.COMPARTMENT_FAULTED)
    return None
