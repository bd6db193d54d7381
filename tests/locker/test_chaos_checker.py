"""The chaos checker's invariants for the ERP and the phone: `webhook`, `reservation`, and
`notice` over both channels, judged on small histories written out by hand (no processes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from locker.chaos.checker import Checker, Evidence
from locker.chaos.history import History
from locker.chaos.phones import openid_of
from locker.chaos.workload import Parcel
from locker.demo.erp_receiver import ReceivedWebhook

PHONE = "+8613900000001"
TRACKING = "CH0001000001"
AT = datetime(2026, 12, 4, 12, tzinfo=UTC)


def _parcel(**fields: Any) -> Parcel:
    fields = {"state": "picked_up", **fields}
    return Parcel(
        n=1,
        tracking_no=TRACKING,
        cab="cab-1",
        phone=PHONE,
        courier=("sf-001", "1234"),
        size="S",
        path="code",
        parcel_id="P1",
        compartment="A01",
        **fields,
    )


def _cloud(statuses: list[str], reservation: dict[str, Any] | None = None) -> dict[str, Any]:
    timeline = [
        {"status": s, "at": AT + timedelta(minutes=i), "source": "cabinet", "seq": i}
        for i, s in enumerate(statuses)
    ]
    return {
        "parcels": {
            TRACKING: {
                "status": statuses[-1],
                "parcel_id": "P1",
                "compartment": "A01",
                "timeline": timeline,
                "row_id": "row-1",
            }
        },
        "events": {},
        "applied_upto": {},
        "doors": {},
        "reservations": {TRACKING: reservation} if reservation else {},
    }


def _hook(event: str, webhook_id: str, *, verified: bool = True) -> ReceivedWebhook:
    return ReceivedWebhook(
        n=0,
        received_at="2026-12-04T12:00:00Z",
        webhook_id=webhook_id,
        verified=verified,
        error=None if verified else "No matching signature found",
        duplicate=False,
        event_type=f"parcel.{event}",
        tracking_no=TRACKING,
        order_no=f"SO-{TRACKING}",
        parcel_id="P1",
        cabinet_id="cab-1",
        status=event,
        order_state="",
        erp_state="",
        shipx_status="",
    )


def _sms_code(code: str) -> tuple[str, str, str]:
    return (f"SM{code}", PHONE, f"Pickup code {code}: parcel {TRACKING} is in door A01 at cab-1.")


def _check(parcel: Parcel, cloud: dict[str, Any], **evidence: Any) -> tuple[Checker, list]:
    checker = Checker(History())
    found = checker.check(
        Evidence(
            parcels=[parcel],
            sms=evidence.pop("sms", [_sms_code("12345678")]),
            sim={},
            journals={},
            cabinet_doors={},
            cloud=cloud,
            **evidence,
        )
    )
    return checker, found


def _about(found: list, invariant: str) -> list[str]:
    return [v.detail for v in found if v.invariant == invariant]


def test_every_status_once_in_order_holds_even_with_a_retried_copy() -> None:
    hooks = [
        _hook("announced", "msg_1"),
        _hook("in_locker", "msg_2"),
        _hook("in_locker", "msg_2"),  # a retry after a lost answer: same id, dropped by the ERP
        _hook("picked_up", "msg_3"),
    ]
    checker, found = _check(
        _parcel(announced=True), _cloud(["announced", "in_locker", "picked_up"]), webhooks=hooks
    )
    assert _about(found, "webhook") == []
    assert checker.checked["webhook"] == 3


def test_a_lost_status_a_second_id_and_a_late_first_status_are_violations() -> None:
    hooks = [
        _hook("in_locker", "msg_2"),
        _hook("announced", "msg_1"),
        _hook("in_locker", "msg_9"),  # the same status sent again as a new message
    ]
    _checker, found = _check(
        _parcel(announced=True), _cloud(["announced", "in_locker", "picked_up"]), webhooks=hooks
    )
    details = _about(found, "webhook")
    assert any("never got ['parcel.picked_up']" in d for d in details), details
    assert any("several webhook-ids" in d and "msg_9" in d for d in details), details
    assert any("arrived as ['parcel.in_locker', 'parcel.announced']" in d for d in details)


def test_a_webhook_that_fails_verification_is_a_violation() -> None:
    hooks = [_hook("announced", "msg_1"), _hook("in_locker", "msg_2", verified=False)]
    _checker, found = _check(
        _parcel(announced=True, state="deposited"),
        _cloud(["announced", "in_locker"]),
        webhooks=[*hooks, _hook("in_locker", "msg_2")],
    )
    assert [d for d in _about(found, "webhook") if "failed verification" in d]


def test_a_parcel_nobody_announced_is_owed_no_webhook() -> None:
    _checker, found = _check(_parcel(), _cloud(["in_locker", "picked_up"]), webhooks=[])
    assert _about(found, "webhook") == []


def test_a_door_still_held_for_a_deposited_parcel_is_a_violation() -> None:
    held = {"cabinet_id": "cab-1", "door_size": "S", "until": AT, "ended_at": None}
    _checker, found = _check(_parcel(), _cloud(["announced", "in_locker", "picked_up"], held))
    assert _about(found, "reservation") == [
        f"{TRACKING} is picked_up, yet an S door of cab-1 is still held for it (until {AT})"
    ]
    ended = {**held, "ended_at": AT, "ended_why": "deposited"}
    _checker, found = _check(_parcel(), _cloud(["announced", "in_locker", "picked_up"], ended))
    assert _about(found, "reservation") == []


def test_the_code_may_come_by_wechat_but_only_once_whatever_the_channel() -> None:
    wechat = (
        "1000001",
        openid_of(PHONE),
        f"cab-1 A01 {TRACKING} Pickup code 87654321, collect by 7 Dec.",
    )
    _checker, found = _check(_parcel(), _cloud(["in_locker", "picked_up"]), sms=[], wechat=[wechat])
    assert _about(found, "notice") == []
    # A second, different code by SMS too: two live codes for one parcel.
    _checker, found = _check(
        _parcel(), _cloud(["in_locker", "picked_up"]), sms=[_sms_code("11111111")], wechat=[wechat]
    )
    assert _about(found, "notice") == [
        f"{TRACKING}: its recipient got 2 pickup codes (one was due)"
    ]
    # The same WeChat message delivered twice.
    _checker, found = _check(
        _parcel(), _cloud(["in_locker", "picked_up"]), sms=[], wechat=[wechat, wechat]
    )
    assert any("WeChat message sent 2 times" in d for d in _about(found, "notice"))


def test_an_announced_parcel_never_deposited_owes_no_code() -> None:
    parcel = _parcel(announced=True, state="not_deposited")
    _checker, found = _check(parcel, _cloud(["announced", "cancelled"]), sms=[])
    assert _about(found, "notice") == []


def test_an_announcement_that_never_reached_the_cloud_owes_no_webhook() -> None:
    # Every try of the ERP failed (the API was down): the courier brought it as a walk-in.
    _checker, found = _check(
        _parcel(announced=True), _cloud(["in_locker", "picked_up"]), webhooks=[]
    )
    assert _about(found, "webhook") == []
