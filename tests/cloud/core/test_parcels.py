"""The parcel life table: every legal transition, every illegal one, and what each one causes."""

from __future__ import annotations

import copy
import re
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import pytest

from cloud.core import parcels as p
from cloud.core.errors import IllegalTransition
from cloud.core.notices import Audience, NoticeKind
from cloud.core.pauses import PauseReason
from tests.cloud.core import factories as f
from tests.cloud.core.factories import CAB, HOUR, PARCEL_ID, PHONE, T0

SLACK = timedelta(seconds=p.CODE_EXPIRY_SLACK_S)

# One case per row of TRANSITIONS: (parcel before, event, now).
LEGAL = {
    (None, p.Announce): (lambda: None, f.announce_event(), T0),
    (None, p.Deposit): (lambda: None, f.deposit_event(), T0),
    (p.Status.ANNOUNCED, p.UpdateAnnouncement): (
        f.announced,
        p.UpdateAnnouncement(cabinet_id="CAB-2"),
        T0 - HOUR,
    ),
    (p.Status.ANNOUNCED, p.Deposit): (f.announced, f.deposit_event(), T0),
    (p.Status.ANNOUNCED, p.Cancel): (f.announced, p.Cancel("buyer cancelled"), T0),
    (p.Status.IN_LOCKER, p.Remind): (f.in_locker, p.Remind(), T0 + 48 * HOUR),
    (p.Status.IN_LOCKER, p.ReissueCode): (f.in_locker, p.ReissueCode(f.code("12345678")), T0),
    (p.Status.IN_LOCKER, p.PauseDeadline): (
        f.in_locker,
        p.PauseDeadline(PauseReason.COMPARTMENT_FAULTED),
        T0 + HOUR,
    ),
    (p.Status.IN_LOCKER, p.ResumeDeadline): (
        f.paused,
        p.ResumeDeadline(PauseReason.CABINET_OFFLINE),
        T0 + 15 * HOUR,
    ),
    (p.Status.IN_LOCKER, p.PickUp): (f.in_locker, f.pick_up_event(), T0 + 2 * HOUR),
    (p.Status.IN_LOCKER, p.Expire): (f.in_locker, p.Expire(), T0 + 72 * HOUR),
    (p.Status.IN_LOCKER, p.Retrieve): (
        f.in_locker,
        f.retrieve_event(reason="courier_cancel", at=T0 + 3 * HOUR),
        T0 + 3 * HOUR,
    ),
    (p.Status.IN_LOCKER, p.Cancel): (f.in_locker, p.Cancel(), T0 + HOUR),
    (p.Status.EXPIRED, p.PickUp): (
        f.expired,
        f.pick_up_event(method="remote", at=T0 + 73 * HOUR),
        T0 + 73 * HOUR,
    ),
    (p.Status.EXPIRED, p.Retrieve): (f.expired, f.retrieve_event(), T0 + 80 * HOUR),
    (p.Status.CANCELLED, p.PickUp): (f.cancelled_in_locker, f.pick_up_event(), T0 + 2 * HOUR),
    (p.Status.CANCELLED, p.Retrieve): (
        f.cancelled_in_locker,
        f.retrieve_event(reason="courier_cancel"),
        T0 + 80 * HOUR,
    ),
    (p.Status.RETRIEVED, p.ConfirmReturn): (f.retrieved, p.ConfirmReturn("at the depot"), T0),
    (p.Status.IN_LOCKER, p.ExtendDeadline): (
        f.in_locker,
        p.ExtendDeadline(seconds=24 * 3600, by="mgr", reason="on holiday"),
        T0 + HOUR,
    ),
    (p.Status.IN_LOCKER, p.StaffCancel): (
        f.in_locker,
        p.StaffCancel(by="ops", reason="wrong address"),
        T0 + HOUR,
    ),
    (p.Status.IN_LOCKER, p.MarkForReturn): (
        f.in_locker,
        p.MarkForReturn(by="ops", reason="refused"),
        T0 + HOUR,
    ),
}

# One instance of every event type, for the illegal cases.
SAMPLES: list[object] = [
    f.announce_event(),
    p.UpdateAnnouncement(phone="+8613700000000"),
    p.Cancel(),
    f.deposit_event(),
    f.pick_up_event(),
    f.retrieve_event(),
    p.Remind(),
    p.ReissueCode(f.code("12345678")),
    p.PauseDeadline(PauseReason.CABINET_OFFLINE),
    p.ResumeDeadline(PauseReason.CABINET_OFFLINE),
    p.Expire(),
    p.ConfirmReturn(),
    p.ExtendDeadline(seconds=3600, by="mgr", reason="r"),
    p.StaffCancel(by="ops", reason="r"),
    p.MarkForReturn(by="ops", reason="r"),
]

ILLEGAL = [
    (status, event)
    for status in f.BY_STATUS
    for event in SAMPLES
    if (status, type(event)) not in p.TRANSITIONS
]


def effects_of(effects: list[p.Effect], kind: type) -> list:
    return [effect for effect in effects if isinstance(effect, kind)]


def test_every_row_of_the_table_has_a_legal_case() -> None:
    assert set(LEGAL) == set(p.TRANSITIONS)


def test_every_event_type_has_a_sample() -> None:
    assert {type(event) for event in SAMPLES} == {event for _, event in p.TRANSITIONS}


@pytest.mark.parametrize("row", list(LEGAL), ids=lambda row: f"{row[0]}+{row[1].__name__}")
def test_legal_transition(row: tuple) -> None:
    build, event, now = LEGAL[row]
    before = build()
    snapshot = copy.deepcopy(before)
    rule = p.TRANSITIONS[row]

    after, effects = p.apply(before, event, now)

    assert before == snapshot  # the old state is never touched
    assert after.status is rule.to
    timeline = effects[0]
    assert isinstance(timeline, p.TimelineEntry)
    assert (timeline.status, timeline.source) == (rule.to, rule.source)
    assert timeline.note
    assert len(effects_of(effects, p.TimelineEntry)) == 1
    webhooks = effects_of(effects, p.Webhook)
    if rule.to is row[0]:
        assert webhooks == []
    else:
        assert [(w.status, w.erp_state) for w in webhooks] == [(rule.to, p.erp_state(rule.to))]
        assert webhooks[0].tracking_no == f.TRACKING_NO


@pytest.mark.parametrize(
    ("status", "event"), ILLEGAL, ids=[f"{s}+{type(e).__name__}" for s, e in ILLEGAL]
)
def test_illegal_transition_raises_and_changes_nothing(status: p.Status | None, event) -> None:
    before = f.BY_STATUS[status]()
    snapshot = copy.deepcopy(before)
    with pytest.raises(IllegalTransition) as raised:
        p.apply(before, event, T0 + 100 * HOUR)
    assert before == snapshot
    assert raised.value.status == status
    assert type(event).__name__ in str(raised.value)


GUARDED = {
    "remind twice": (
        lambda: f.run(f.in_locker(), [(p.Remind(), T0 + 48 * HOUR)]),
        p.Remind(),
        T0 + 49 * HOUR,
    ),
    "expire early": (f.in_locker, p.Expire(), T0 + 71 * HOUR),
    "expire while paused": (f.paused, p.Expire(), T0 + 100 * HOUR),
    "pause twice for one reason": (
        f.paused,
        p.PauseDeadline(PauseReason.CABINET_OFFLINE),
        T0 + 11 * HOUR,
    ),
    "resume without a pause": (
        f.in_locker,
        p.ResumeDeadline(PauseReason.CABINET_OFFLINE),
        T0 + HOUR,
    ),
    "resume another reason": (
        f.paused,
        p.ResumeDeadline(PauseReason.COMPARTMENT_FAULTED),
        T0 + 11 * HOUR,
    ),
    "new code while the cabinet is offline": (
        f.paused,
        p.ReissueCode(f.code("12345678")),
        T0 + 11 * HOUR,
    ),
    "pickup of another parcel": (
        f.in_locker,
        f.pick_up_event(parcel_id="01HZX3M6Q8G7N2V4B5C6D7OTHER"),
        T0 + HOUR,
    ),
    "retrieval of a parcel never deposited": (f.cancelled, f.retrieve_event(), T0),
    "deposit of another tracking number": (
        f.announced,
        f.deposit_event(tracking_no="YT0000000001"),
        T0,
    ),
}


@pytest.mark.parametrize("case", list(GUARDED))
def test_guards_refuse_and_change_nothing(case: str) -> None:
    build, event, now = GUARDED[case]
    before = build()
    snapshot = copy.deepcopy(before)
    with pytest.raises(IllegalTransition):
        p.apply(before, event, now)
    assert before == snapshot


def test_the_docstring_table_is_the_table() -> None:
    assert p.__doc__ is not None
    rows = set()
    for line in p.__doc__.splitlines():
        match = re.match(r"^    (\(none\)|[a-z_]+)\s+([A-Z]\w+)\s+([a-z_]+)\s+([a-z]+)\b", line)
        if match:
            rows.add(match.groups())
    table = {
        (str(before or "(none)"), event.__name__, str(rule.to), str(rule.source))
        for (before, event), rule in p.TRANSITIONS.items()
    }
    assert rows == table


def test_first_comment_says_the_table_is_here() -> None:
    first_line = Path(p.__file__).read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("#") and "TRANSITIONS" in first_line


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        p.apply(None, f.announce_event(), T0.replace(tzinfo=None))


# --- what each transition causes -----------------------------------------------------------------


def test_deposit_of_an_announcement_puts_the_code_and_tells_the_recipient() -> None:
    issued = f.code()
    parcel, effects = p.apply(f.announced(), f.deposit_event(issued), T0)

    deadline = T0 + timedelta(hours=72)
    assert parcel.parcel_id == PARCEL_ID and parcel.order_no == "SO-1001"
    assert parcel.code_hash == issued.code_hash and parcel.code_generation == 1
    assert parcel.deadline(T0) == deadline and parcel.told_deadline == deadline
    assert effects_of(effects, p.CodesPut) == [
        p.CodesPut(CAB, PARCEL_ID, "A03", issued.code_hash, deadline + SLACK)
    ]
    [notice] = effects_of(effects, p.Notify)
    assert (notice.kind, notice.audience, notice.phone, notice.code) == (
        NoticeKind.DEPOSITED,
        Audience.RECIPIENT,
        PHONE,
        issued.code,
    )
    assert notice.deadline == deadline
    assert effects[0].at == T0 - timedelta(minutes=1)  # the cabinet's time of the fact


def test_window_starts_when_the_cloud_learns_of_an_offline_deposit() -> None:
    late = T0 + 5 * HOUR
    parcel, _ = p.apply(None, f.deposit_event(at=T0), late)
    assert parcel.deposited_at == T0
    assert parcel.deadline(late) == late + timedelta(hours=72)


def test_unannounced_deposit_is_created_in_locker_without_an_order() -> None:
    parcel, effects = p.apply(None, f.deposit_event(), T0)
    assert parcel.status is p.Status.IN_LOCKER and parcel.order_no is None
    assert "not announced" in effects[0].note
    [webhook] = effects_of(effects, p.Webhook)
    assert webhook.order_no is None and webhook.tracking_no == f.TRACKING_NO


def test_deposit_keeps_the_announced_phone_and_notes_a_different_cabinet() -> None:
    parcel, effects = p.apply(
        f.announced(), f.deposit_event(phone=f.TYPED_PHONE, cabinet_id="CAB-9"), T0
    )
    assert parcel.phone == PHONE and parcel.cabinet_id == "CAB-9"
    note = effects[0].note
    assert "announced for cabinet CAB-1" in note
    assert "+86 139****1111" in note and f.TYPED_PHONE not in note


def test_find_announcement_matches_by_tracking_number_only_while_announced() -> None:
    parcels = [f.cancelled(), f.announced(), f.in_locker()]
    assert p.find_announcement(parcels, f.TRACKING_NO) == parcels[1]
    assert p.find_announcement(parcels, "NOPE") is None
    assert p.find_announcement([f.cancelled()], f.TRACKING_NO) is None


def test_update_masks_the_phone_in_the_timeline() -> None:
    parcel, effects = p.apply(f.announced(), p.UpdateAnnouncement(phone="+8613700001234"), T0)
    assert parcel.phone == "+8613700001234"
    assert "+86 137****1234" in effects[0].note and "13700001234" not in effects[0].note


def test_the_erps_window_override_is_the_deposits_window() -> None:
    announced, _ = p.apply(None, f.announce_event(window_s=p.MIN_WINDOW_S), T0)
    parcel, _ = p.apply(announced, f.deposit_event(), T0)
    # The site's 72 h (the deposit event's window) gives way to the ERP's hour.
    assert parcel.deadline(T0) == T0 + timedelta(seconds=p.MIN_WINDOW_S)


def test_an_update_moves_the_window_and_says_so() -> None:
    parcel, effects = p.apply(f.announced(), p.UpdateAnnouncement(window_s=2 * p.MIN_WINDOW_S), T0)
    assert parcel.window_override_s == 7200
    assert effects[0].note == "updated: pickup window 7200 s"
    deposited, _ = p.apply(parcel, f.deposit_event(), T0)
    assert deposited.deadline(T0) == T0 + timedelta(seconds=7200)


@pytest.mark.parametrize("window_s", [p.MIN_WINDOW_S - 1, p.MAX_WINDOW_S + 1, 0])
def test_a_window_override_outside_an_hour_to_30_days_is_refused(window_s: int) -> None:
    assert (p.MIN_WINDOW_S, p.MAX_WINDOW_S) == (3_600, 30 * 86_400)
    with pytest.raises(ValueError, match="pickup window"):
        p.apply(f.announced(), p.UpdateAnnouncement(window_s=window_s), T0)
    with pytest.raises(ValueError, match="pickup window"):
        p.apply(None, f.announce_event(window_s=window_s), T0)


def test_every_status_and_event_has_an_order_state_three_ways() -> None:
    assert set(p.ORDER_STATES) == set(p.Status)
    assert set(p.EVENT_ORDER_STATES) == {event.__name__ for _, event in p.TRANSITIONS}
    assert {row.zh for row in p.ORDER_STATES.values()} == {
        "待发货",
        "已发货",
        "已签收",
        "退货中",
        "已退货",
    }
    assert all(p.ERP_STATES[s] is row.erp for s, row in p.ORDER_STATES.items())


def test_update_with_nothing_to_change_is_refused() -> None:
    with pytest.raises(ValueError):
        p.apply(f.announced(), p.UpdateAnnouncement(), T0)


def test_pickup_revokes_the_code() -> None:
    parcel, effects = p.apply(f.in_locker(), f.pick_up_event(), T0 + 2 * HOUR)
    assert effects_of(effects, p.CodesRevoke) == [p.CodesRevoke(CAB, (PARCEL_ID,))]
    assert parcel.left_locker_at == T0 + 2 * HOUR


def test_pickup_after_expiry_is_a_fact_with_nothing_left_to_revoke() -> None:
    parcel, effects = p.apply(f.expired(), f.pick_up_event(at=T0 + 73 * HOUR), T0 + 74 * HOUR)
    assert parcel.status is p.Status.PICKED_UP
    assert effects_of(effects, p.CodesRevoke) == []
    assert "after it was expired" in effects[0].note


def test_expiry_revokes_asks_for_retrieval_and_tells_recipient_and_courier() -> None:
    deadline = T0 + 72 * HOUR
    _, effects = p.apply(f.in_locker(), p.Expire(), deadline)
    assert effects_of(effects, p.CodesRevoke) == [p.CodesRevoke(CAB, (PARCEL_ID,))]
    assert effects_of(effects, p.RetrievalsPut) == [p.RetrievalsPut(CAB, (PARCEL_ID,))]
    notices = {(n.kind, n.audience, n.phone, n.courier_id) for n in effects_of(effects, p.Notify)}
    assert notices == {
        (NoticeKind.EXPIRED, Audience.RECIPIENT, PHONE, None),
        (NoticeKind.EXPIRED_COURIER, Audience.COURIER, None, "courier-7"),
    }
    [webhook] = effects_of(effects, p.Webhook)
    assert (webhook.status, webhook.erp_state) == (
        p.Status.EXPIRED,
        p.ErpOrderState.AWAITING_PICKUP,
    )


def test_courier_taking_a_live_parcel_back_tells_the_recipient() -> None:
    _, effects = p.apply(
        f.in_locker(), f.retrieve_event(reason="courier_cancel", at=T0 + HOUR), T0 + HOUR
    )
    assert effects_of(effects, p.CodesRevoke) == [p.CodesRevoke(CAB, (PARCEL_ID,))]
    assert [n.kind for n in effects_of(effects, p.Notify)] == [NoticeKind.WITHDRAWN]


def test_retrieving_an_expired_parcel_only_records_it() -> None:
    parcel, effects = p.apply(f.expired(), f.retrieve_event(), T0 + 80 * HOUR)
    assert parcel.left_locker_at == T0 + 80 * HOUR
    assert {type(e) for e in effects} == {p.TimelineEntry, p.Webhook}


def test_cancel_in_locker_revokes_and_asks_for_retrieval() -> None:
    _, effects = p.apply(f.in_locker(), p.Cancel("refund"), T0 + HOUR)
    assert effects_of(effects, p.CodesRevoke) == [p.CodesRevoke(CAB, (PARCEL_ID,))]
    assert effects_of(effects, p.RetrievalsPut) == [p.RetrievalsPut(CAB, (PARCEL_ID,))]
    assert [n.kind for n in effects_of(effects, p.Notify)] == [NoticeKind.WITHDRAWN]
    assert "refund" in effects[0].note


def test_cancel_of_an_announcement_sends_no_command() -> None:
    _, effects = p.apply(f.announced(), p.Cancel(), T0)
    assert {type(e) for e in effects} == {p.TimelineEntry, p.Webhook}


def test_reissue_replaces_the_hash_and_sends_the_new_code() -> None:
    issued = f.code("12345678")
    parcel, effects = p.apply(f.in_locker(), p.ReissueCode(issued), T0 + HOUR)
    assert parcel.code_hash == issued.code_hash and parcel.code_generation == 2
    [put] = effects_of(effects, p.CodesPut)
    assert put.code_hash == issued.code_hash and put.expires_at == T0 + 72 * HOUR + SLACK
    [notice] = effects_of(effects, p.Notify)
    assert (notice.kind, notice.code) == (NoticeKind.RESEND, "12345678")
    assert notice.dedupe_key.endswith("/code2")


def test_remind_sends_one_reminder_without_the_code() -> None:
    parcel, effects = p.apply(f.in_locker(), p.Remind(), T0 + 48 * HOUR)
    assert parcel.reminded_at == T0 + 48 * HOUR
    [notice] = effects_of(effects, p.Notify)
    assert notice.kind is NoticeKind.REMINDER and notice.code is None


def test_return_closes_the_life() -> None:
    parcel = f.returned()
    assert parcel.status is p.Status.RETURNED
    assert p.legal_events(p.Status.RETURNED) == frozenset()
    assert p.legal_events(p.Status.PICKED_UP) == frozenset()


def test_storage_never_holds_the_clear_code() -> None:
    issued = f.code()
    parcel, effects = p.apply(f.announced(), f.deposit_event(issued), T0)
    assert issued.code not in str(asdict(parcel))
    assert issued.code not in repr(parcel)
    for effect in effects:
        if not isinstance(effect, p.Notify):  # the notice is the one place it may go
            assert issued.code not in str(asdict(effect))
        assert issued.code not in repr(effect)


def test_phones_stay_out_of_reprs() -> None:
    parcel = f.in_locker()
    assert "13812341234" not in repr(parcel)
    assert "13812341234" not in repr(f.deposit_event())


# --- the ERP's order states -----------------------------------------------------------------------


def test_every_status_maps_to_an_erp_state() -> None:
    assert set(p.ERP_STATES) == set(p.Status)


@pytest.mark.parametrize(
    ("status", "erp"),
    [
        (p.Status.ANNOUNCED, "shipped"),
        (p.Status.IN_LOCKER, "awaiting_pickup"),
        (p.Status.PICKED_UP, "signed"),
        (p.Status.EXPIRED, "awaiting_pickup"),
        (p.Status.RETRIEVED, "returned"),
        (p.Status.RETURNED, "returned"),
        (p.Status.CANCELLED, "pending_shipment"),
    ],
)
def test_erp_state_of_each_status(status: p.Status, erp: str) -> None:
    assert p.erp_state(status) == erp


def test_every_erp_state_covers_some_status() -> None:
    covered = {status for state in p.ErpOrderState for status in p.statuses_for(state)}
    assert covered == set(p.Status)
    assert p.statuses_for(p.ErpOrderState.RETURNED) == {p.Status.RETRIEVED, p.Status.RETURNED}


def test_staff_extend_a_deadline_and_the_cabinet_and_recipient_hear_of_it() -> None:
    """ExtendDeadline: the window grows, the code's expiry on the cabinet moves with it
    (codes.put) and the recipient is told the new deadline, once."""
    before = f.in_locker()
    after, effects = p.apply(before, p.ExtendDeadline(24 * 3600, "mgr", "on holiday"), T0 + HOUR)
    deadline = before.deadline(T0 + HOUR) + timedelta(hours=24)
    assert after.deadline(T0 + HOUR) == deadline and after.told_deadline == deadline
    [put] = effects_of(effects, p.CodesPut)
    assert put.expires_at == deadline + SLACK
    [notice] = effects_of(effects, p.Notify)
    assert notice.kind is NoticeKind.NEW_DEADLINE
    assert "deadline extended by mgr" in effects[0].note and "on holiday" in effects[0].note
    with pytest.raises(IllegalTransition):
        p.apply(before, p.ExtendDeadline(0, "mgr", "nothing"), T0 + HOUR)


@pytest.mark.parametrize("event", [p.StaffCancel("ops", "r"), p.MarkForReturn("ops", "r")])
def test_staff_withdraw_a_parcel_and_couriers_are_asked_to_take_it_back(event) -> None:
    after, effects = p.apply(f.in_locker(), event, T0 + HOUR)
    assert after.status is (
        p.Status.CANCELLED if isinstance(event, p.StaffCancel) else p.Status.EXPIRED
    )
    assert effects_of(effects, p.CodesRevoke) and effects_of(effects, p.RetrievalsPut)
    [notice] = effects_of(effects, p.Notify)
    assert notice.kind is NoticeKind.WITHDRAWN and effects[0].source is p.Source.STAFF
