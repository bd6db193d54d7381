"""Builders for the cloud core tests: a scripted random source and parcels in every status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cloud.core import parcels as p
from cloud.core.codes import IssuedCode, issue_code
from cloud.core.pauses import PauseReason

# 10:00 in Shanghai, a Wednesday.
T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
WINDOW_S = 72 * 3600
CODE_KEY = b"cabinet-CAB-1-code-key"
PHONE = "+8613812341234"
TYPED_PHONE = "+8613900001111"
CAB = "CAB-1"
PARCEL_ID = "01HZX3M6Q8G7N2V4B5C6D7E8F9"
TRACKING_NO = "SF1234567890"
CODE = "40718253"


@dataclass
class Scripted:
    """A fake `randbelow` that returns the values it was given, in order, and records its calls."""

    values: list[int]
    calls: list[int] = field(default_factory=list)

    def __call__(self, n: int) -> int:
        self.calls.append(n)
        return self.values.pop(0)


def code(value: str = CODE) -> IssuedCode:
    return issue_code(
        length=len(value), live_hashes=set(), randbelow=Scripted([int(value)]), code_key=CODE_KEY
    )


def announce_event(**changes: object) -> p.Announce:
    fields: dict = dict(tracking_no=TRACKING_NO, cabinet_id=CAB, phone=PHONE, order_no="SO-1001")
    return p.Announce(**(fields | changes))


def deposit_event(issued: IssuedCode | None = None, **changes: object) -> p.Deposit:
    fields: dict = dict(
        parcel_id=PARCEL_ID,
        cabinet_id=CAB,
        compartment="A03",
        size="M",
        tracking_no=TRACKING_NO,
        phone=PHONE,
        courier_id="courier-7",
        at=T0 - timedelta(minutes=1),
        code=issued or code(),
        window_s=WINDOW_S,
    )
    return p.Deposit(**(fields | changes))


def pick_up_event(**changes: object) -> p.PickUp:
    fields: dict = dict(parcel_id=PARCEL_ID, compartment="A03", method="code", at=T0 + 2 * HOUR)
    return p.PickUp(**(fields | changes))


def retrieve_event(**changes: object) -> p.Retrieve:
    fields: dict = dict(
        parcel_id=PARCEL_ID,
        compartment="A03",
        courier_id="courier-7",
        reason="expired",
        at=T0 + 80 * HOUR,
    )
    return p.Retrieve(**(fields | changes))


def run(parcel: p.Parcel | None, steps: Iterable[tuple[object, datetime]]) -> p.Parcel:
    for event, now in steps:
        parcel, _ = p.apply(parcel, event, now)  # type: ignore[arg-type]
    assert parcel is not None
    return parcel


def announced() -> p.Parcel:
    return run(None, [(announce_event(), T0 - 24 * HOUR)])


def in_locker() -> p.Parcel:
    return run(announced(), [(deposit_event(), T0)])


def paused(reason: PauseReason = PauseReason.CABINET_OFFLINE) -> p.Parcel:
    return run(in_locker(), [(p.PauseDeadline(reason), T0 + 10 * HOUR)])


def expired() -> p.Parcel:
    return run(in_locker(), [(p.Expire(), T0 + 72 * HOUR)])


def picked_up() -> p.Parcel:
    return run(in_locker(), [(pick_up_event(), T0 + 2 * HOUR)])


def retrieved() -> p.Parcel:
    return run(expired(), [(retrieve_event(), T0 + 80 * HOUR)])


def returned() -> p.Parcel:
    return run(retrieved(), [(p.ConfirmReturn(), T0 + 120 * HOUR)])


def cancelled() -> p.Parcel:
    return run(announced(), [(p.Cancel("order refunded"), T0 - HOUR)])


def cancelled_in_locker() -> p.Parcel:
    return run(in_locker(), [(p.Cancel("order refunded"), T0 + HOUR)])


BY_STATUS = {
    None: lambda: None,
    p.Status.ANNOUNCED: announced,
    p.Status.IN_LOCKER: in_locker,
    p.Status.PICKED_UP: picked_up,
    p.Status.EXPIRED: expired,
    p.Status.RETRIEVED: retrieved,
    p.Status.RETURNED: returned,
    p.Status.CANCELLED: cancelled_in_locker,
}
