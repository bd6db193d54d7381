"""Deadlines with an injected clock: pauses, reminders outside quiet hours, expiry, overdue fee."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from cloud.core import expiry
from cloud.core import parcels as p
from cloud.core.notices import NoticeKind
from cloud.core.pauses import Pause, PauseReason, paused_s
from cloud.core.policies import SitePolicy
from tests.cloud.core import factories as f
from tests.cloud.core.factories import HOUR, PARCEL_ID, T0

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = SitePolicy()
OFFLINE = PauseReason.CABINET_OFFLINE
FAULTED = PauseReason.COMPARTMENT_FAULTED


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def notices(effects: list[p.Effect]) -> list[p.Notify]:
    return [e for e in effects if isinstance(e, p.Notify)]


def deposited_at(now: datetime) -> p.Parcel:
    return f.run(None, [(f.deposit_event(at=now), now)])


# --- the paused clock -----------------------------------------------------------------------------


def test_cabinet_offline_five_hours_moves_the_deadline_five_hours_and_tells_once() -> None:
    """Drive a parcel hour by hour through scheduler and presence, as the worker would."""
    parcel = f.in_locker()
    told: list[p.Notify] = []
    puts: list[p.CodesPut] = []
    online = True
    now = T0
    while parcel.status is p.Status.IN_LOCKER:
        now += timedelta(minutes=30)
        should_be_online = not (T0 + 10 * HOUR <= now < T0 + 15 * HOUR)
        if should_be_online != online:
            event = expiry.presence_event(online, should_be_online)
            assert event is not None
            parcel, effects = p.apply(parcel, event, now)
            told += [n for n in notices(effects) if n.kind is NoticeKind.NEW_DEADLINE]
            puts += [e for e in effects if isinstance(e, p.CodesPut)]
            online = should_be_online
        for action in expiry.due([parcel], POLICY, now):
            parcel, _ = p.apply(parcel, action.event, now)

    assert now == T0 + 77 * HOUR  # 72 h window + 5 h offline
    assert parcel.status is p.Status.EXPIRED
    assert [n.deadline for n in told] == [T0 + 77 * HOUR]
    assert [put.expires_at for put in puts] == [T0 + 78 * HOUR]  # the cabinet's copy follows
    assert parcel.code_expires_at == T0 + 77 * HOUR + timedelta(seconds=p.CODE_EXPIRY_SLACK_S)


def test_while_paused_the_deadline_moves_and_nothing_expires() -> None:
    parcel = f.paused()  # offline since T0 + 10 h
    later = T0 + 100 * HOUR
    assert expiry.deadline(parcel, later) == T0 + 162 * HOUR
    assert expiry.due([parcel], POLICY, later) == []
    assert expiry.next_due_at([parcel], POLICY, later) is None


def test_overlapping_pauses_count_once_and_tell_once_at_the_end() -> None:
    parcel = f.in_locker()
    parcel, _ = p.apply(parcel, p.PauseDeadline(OFFLINE), T0 + 10 * HOUR)
    parcel, _ = p.apply(parcel, p.PauseDeadline(FAULTED), T0 + 12 * HOUR)
    parcel, first = p.apply(parcel, p.ResumeDeadline(OFFLINE), T0 + 15 * HOUR)
    assert notices(first) == [] and parcel.is_paused
    parcel, last = p.apply(parcel, p.ResumeDeadline(FAULTED), T0 + 20 * HOUR)
    assert [n.deadline for n in notices(last)] == [T0 + 82 * HOUR]
    assert expiry.deadline(parcel, T0 + 90 * HOUR) == T0 + 82 * HOUR


def test_a_short_pause_moves_the_deadline_without_a_text() -> None:
    parcel = f.run(f.in_locker(), [(p.PauseDeadline(OFFLINE), T0 + HOUR)])
    parcel, effects = p.apply(parcel, p.ResumeDeadline(OFFLINE), T0 + HOUR + timedelta(minutes=2))
    assert notices(effects) == []
    # The cabinet's copy of the code runs an hour past the deadline: it need not hear of it.
    assert [e for e in effects if isinstance(e, p.CodesPut)] == []
    assert parcel.code_expires_at == T0 + 73 * HOUR > parcel.deadline(T0 + 2 * HOUR)
    assert parcel.told_deadline == T0 + 72 * HOUR


def test_short_pauses_add_up_to_a_text_once_they_are_worth_one() -> None:
    parcel = f.in_locker()
    told = []
    for i in range(4):  # four 4-minute blips: the fourth one passes 10 minutes since the last text
        start = T0 + (i + 1) * HOUR
        parcel = f.run(parcel, [(p.PauseDeadline(OFFLINE), start)])
        parcel, effects = p.apply(parcel, p.ResumeDeadline(OFFLINE), start + timedelta(minutes=4))
        told += notices(effects)
    assert [n.deadline for n in told] == [T0 + 72 * HOUR + timedelta(minutes=12)]


def test_paused_s_unions_and_clips_intervals() -> None:
    pauses = [
        Pause(OFFLINE, T0, T0 + 2 * HOUR),
        Pause(FAULTED, T0 + HOUR, T0 + 3 * HOUR),
        Pause(OFFLINE, T0 + 5 * HOUR, None),
    ]
    assert paused_s(pauses, since=T0, now=T0 + 6 * HOUR) == 4 * 3600
    assert paused_s(pauses, since=T0 + timedelta(minutes=90), now=T0 + 6 * HOUR) == 2.5 * 3600
    assert paused_s([], since=T0, now=T0 + HOUR) == 0


def test_no_deadline_before_deposit() -> None:
    assert expiry.deadline(f.announced(), T0) is None
    assert expiry.due([f.announced()], POLICY, T0 + 1000 * HOUR) == []


# --- reminders and expiry -------------------------------------------------------------------------


def test_reminder_is_due_24_hours_before_the_deadline() -> None:
    parcel = f.in_locker()  # deposited 10:00 local, deadline 10:00 local three days later
    assert expiry.reminder_at(parcel, POLICY, T0) == T0 + 48 * HOUR
    assert expiry.due([parcel], POLICY, T0 + 48 * HOUR - timedelta(seconds=1)) == []
    [action] = expiry.due([parcel], POLICY, T0 + 48 * HOUR)
    assert action == expiry.DueAction(PARCEL_ID, p.Remind(), T0 + 48 * HOUR)
    reminded, _ = p.apply(parcel, action.event, T0 + 48 * HOUR)
    assert expiry.due([reminded], POLICY, T0 + 50 * HOUR) == []


def test_reminder_in_quiet_hours_waits_for_the_morning() -> None:
    parcel = deposited_at(local(2024, 5, 1, 23, 30))  # reminder would be 23:30 local on May 3
    assert expiry.reminder_at(parcel, POLICY, local(2024, 5, 1, 23, 30)) == local(2024, 5, 4, 8, 0)
    assert expiry.due([parcel], POLICY, local(2024, 5, 3, 23, 30)) == []
    assert expiry.due([parcel], POLICY, local(2024, 5, 4, 7, 59)) == []
    [action] = expiry.due([parcel], POLICY, local(2024, 5, 4, 8, 0))
    assert isinstance(action.event, p.Remind)


def test_a_reminder_that_quiet_hours_push_past_the_deadline_is_skipped() -> None:
    policy = SitePolicy(reminder_before_s=2 * 3600)
    parcel = deposited_at(local(2024, 5, 1, 4, 0))  # deadline 04:00, reminder 02:00: both quiet
    assert expiry.reminder_at(parcel, policy, local(2024, 5, 1, 4, 0)) is None
    assert expiry.due([parcel], policy, local(2024, 5, 4, 3, 59)) == []
    [action] = expiry.due([parcel], policy, local(2024, 5, 4, 4, 0))
    assert isinstance(action.event, p.Expire)


def test_an_overdue_reminder_found_at_night_still_waits_for_the_morning() -> None:
    parcel = f.in_locker()  # reminder due 10:00 local May 3; the scheduler was down until 23:00
    assert expiry.due([parcel], POLICY, local(2024, 5, 3, 23, 0)) == []
    [action] = expiry.due([parcel], POLICY, local(2024, 5, 4, 8, 0))
    assert isinstance(action.event, p.Remind)


def test_no_reminder_when_the_site_has_none() -> None:
    policy = SitePolicy(reminder_before_s=None)
    assert expiry.reminder_at(f.in_locker(), policy, T0) is None
    assert expiry.due([f.in_locker()], policy, T0 + 71 * HOUR) == []


def test_expiry_is_due_at_the_deadline_and_replaces_a_missed_reminder() -> None:
    parcel = f.in_locker()
    [action] = expiry.due([parcel], POLICY, T0 + 72 * HOUR)
    assert action == expiry.DueAction(PARCEL_ID, p.Expire(), T0 + 72 * HOUR)
    expired, _ = p.apply(parcel, action.event, T0 + 72 * HOUR)
    assert expiry.due([expired], POLICY, T0 + 100 * HOUR) == []


def test_due_lists_the_oldest_first_and_skips_other_statuses() -> None:
    early = f.in_locker()
    late = f.run(None, [(f.deposit_event(parcel_id="P-LATE"), T0 + HOUR)])
    actions = expiry.due(
        [late, f.picked_up(), f.expired(), f.announced(), early], POLICY, T0 + 80 * HOUR
    )
    assert [a.parcel_id for a in actions] == [PARCEL_ID, "P-LATE"]


def test_next_due_at_is_the_next_reminder_or_deadline() -> None:
    parcel = f.in_locker()
    assert expiry.next_due_at([parcel], POLICY, T0) == T0 + 48 * HOUR
    reminded = f.run(parcel, [(p.Remind(), T0 + 48 * HOUR)])
    assert expiry.next_due_at([reminded], POLICY, T0 + 48 * HOUR) == T0 + 72 * HOUR
    assert expiry.next_due_at([], POLICY, T0) is None


@pytest.mark.parametrize(
    ("was_online", "online", "expected"),
    [
        (True, False, p.PauseDeadline(OFFLINE)),
        (None, False, p.PauseDeadline(OFFLINE)),
        (False, True, p.ResumeDeadline(OFFLINE)),
        (True, True, None),
        (None, True, None),
        (False, False, None),
    ],
)
def test_presence_changes_pause_and_resume(was_online, online, expected) -> None:
    assert expiry.presence_event(was_online, online) == expected


@pytest.mark.parametrize(
    ("parcel", "usable", "expected"),
    [
        (f.in_locker, False, p.PauseDeadline(FAULTED)),
        (f.in_locker, True, None),  # never faulted: nothing to resume
        (lambda: f.paused(FAULTED), True, p.ResumeDeadline(FAULTED)),
        (lambda: f.paused(FAULTED), False, None),  # a second fault report
        (lambda: f.paused(OFFLINE), False, p.PauseDeadline(FAULTED)),  # both count, once
        (lambda: f.paused(OFFLINE), True, None),  # the offline pause is presence's to end
        (f.expired, False, None),  # no clock runs any more
    ],
)
def test_compartment_faults_pause_and_repairs_resume(parcel, usable, expected) -> None:
    assert expiry.compartment_event(parcel(), usable=usable) == expected


def test_a_fault_during_an_outage_moves_the_deadline_by_the_union_of_both() -> None:
    parcel = f.run(
        f.in_locker(),
        [
            (p.PauseDeadline(OFFLINE), T0 + HOUR),
            (p.PauseDeadline(FAULTED), T0 + 2 * HOUR),
            (p.ResumeDeadline(OFFLINE), T0 + 3 * HOUR),  # the clock stays paused: the door
        ],
    )
    assert parcel.is_paused
    resumed, effects = p.apply(parcel, p.ResumeDeadline(FAULTED), T0 + 5 * HOUR)
    assert resumed.deadline(T0 + 6 * HOUR) == T0 + 76 * HOUR  # paused from 1 h to 5 h
    (notice,) = notices(effects)
    assert (notice.kind, notice.deadline) == (NoticeKind.NEW_DEADLINE, T0 + 76 * HOUR)


# --- overdue fee ----------------------------------------------------------------------------------

FEE = SitePolicy(overdue_fee_per_day_minor=200, overdue_fee_cap_minor=1000)
DEADLINE = T0 + 72 * HOUR


@pytest.mark.parametrize(
    ("after", "days", "amount"),
    [
        (timedelta(0), 0, 0),
        (timedelta(seconds=1), 1, 200),
        (timedelta(hours=24), 1, 200),
        (timedelta(hours=24, seconds=1), 2, 400),
        (timedelta(days=10), 10, 1000),  # capped
    ],
)
def test_overdue_fee_per_started_day_capped(after: timedelta, days: int, amount: int) -> None:
    fee = expiry.overdue_fee(f.expired(), FEE, DEADLINE + after)
    assert (fee.days, fee.amount_minor, fee.currency) == (days, amount, "CNY")


def test_no_fee_before_the_deadline_or_without_a_fee_policy() -> None:
    assert expiry.overdue_fee(f.in_locker(), FEE, DEADLINE - HOUR).amount_minor == 0
    assert expiry.overdue_fee(f.expired(), POLICY, DEADLINE + 100 * HOUR).amount_minor == 0


def test_fee_stops_when_the_parcel_leaves_the_locker() -> None:
    late = f.run(f.expired(), [(f.pick_up_event(at=DEADLINE + 30 * HOUR), DEADLINE + 31 * HOUR)])
    assert expiry.overdue_fee(late, FEE, DEADLINE + 200 * HOUR).amount_minor == 400


def test_fee_counts_from_the_paused_deadline() -> None:
    parcel = f.run(
        f.in_locker(),
        [(p.PauseDeadline(OFFLINE), T0 + HOUR), (p.ResumeDeadline(OFFLINE), T0 + 6 * HOUR)],
    )
    assert expiry.overdue_fee(parcel, FEE, DEADLINE + 4 * HOUR).amount_minor == 0
    assert expiry.overdue_fee(parcel, FEE, DEADLINE + 6 * HOUR).amount_minor == 200


def test_quiet_hours_within_one_day() -> None:
    policy = SitePolicy(quiet_start=time(1, 0), quiet_end=time(6, 0))
    assert policy.is_quiet(local(2024, 5, 1, 1, 0))
    assert not policy.is_quiet(local(2024, 5, 1, 6, 0))
    assert not policy.is_quiet(local(2024, 5, 1, 23, 0))
    assert policy.outside_quiet_hours(local(2024, 5, 1, 3, 0)) == local(2024, 5, 1, 6, 0)
