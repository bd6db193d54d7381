# Every transition of a parcel's life is in TRANSITIONS, in this file, and nowhere else.
"""The parcel life of the cloud (docs/parcel-life.md): one table, `apply(parcel, event, now)`.

    from        event               to          by          what else happens
    ----------  ------------------  ----------  ----------  ------------------------------------
    (none)      Announce            announced   erp
    (none)      Deposit             in_locker   cabinet     codes.put, deposit notice
    announced   UpdateAnnouncement  announced   erp
    announced   Deposit             in_locker   cabinet     codes.put, deposit notice
    announced   Cancel              cancelled   erp
    in_locker   Remind              in_locker   scheduler   reminder notice (once)
    in_locker   ReissueCode         in_locker   recipient   codes.put (new hash), resend notice
    in_locker   PauseDeadline       in_locker   cloud
    in_locker   ResumeDeadline      in_locker   cloud       codes.put if the held expiry ends
                                                            too soon, new-deadline notice
    in_locker   PickUp              picked_up   cabinet     codes.revoke
    in_locker   Expire              expired     scheduler   codes.revoke, retrievals.put, notices
    in_locker   Retrieve            retrieved   cabinet     codes.revoke, withdrawn notice
    in_locker   Cancel              cancelled   erp         codes.revoke, retrievals.put, withdrawn
    in_locker   ExtendDeadline      in_locker   staff       codes.put (new expiry), new-deadline
    in_locker   StaffCancel         cancelled   staff       codes.revoke, retrievals.put, withdrawn
    in_locker   MarkForReturn       expired     staff       codes.revoke, retrievals.put, withdrawn
    expired     PickUp              picked_up   cabinet
    expired     Retrieve            retrieved   cabinet
    cancelled   PickUp              picked_up   cabinet
    cancelled   Retrieve            retrieved   cabinet
    retrieved   ConfirmReturn       returned    erp

Every applied event yields exactly one TimelineEntry (the ERP's tracking timeline) first among its
effects, and a Webhook whenever the status changes. Anything not in the table raises
IllegalTransition, as do the guards inside the rows; the parcel passed in is never changed
(parcels are frozen), so a refused event leaves nothing behind.

Decisions the original design left open (docs/parcel-life.md explains each):

- A courier may deposit a parcel the ERP never announced: it is created directly in_locker
  (`(none) + Deposit`), with no order number; the ERP links it by tracking number from the
  webhook. A deposit matches an announcement by tracking number, whatever cabinet it was
  announced for: the cabinet it is really in wins. Which announcement it completes, if any, is
  the policy's (`cloud.core.access.choose_announcement`): a differing announced phone is kept
  only over a courier of the announcing key's carrier (the ERP has it from the order; the
  courier typed it), and the timeline says so.
- Facts reported by the cabinet win over the cloud's view: a parcel can be picked up or taken
  back after it expired or was cancelled (the revoke had not reached an offline cabinet yet).
- The ERP may cancel a parcel already in the locker: its code is revoked and couriers are asked
  to take it back (`retrievals.put`), which is why `cancelled` has exits to picked_up/retrieved.
- The pickup window starts when the cloud learns of the deposit (`now`), not at the cabinet's
  timestamp: a deposit made offline reached no one until then, and the clock pauses offline.
- The cloud keeps no clear code, so "send my code again" issues a new one (ReissueCode), refused
  while the cabinet is offline, since the new hash could not reach it.
- One reminder per parcel; a deadline moved by a pause is told in its own notice instead.
- A code is sent to the cabinet with an expiry CODE_EXPIRY_SLACK_S past the deadline, and the
  parcel remembers it (`code_expires_at`). A resume sends `codes.put` again only when the new
  deadline passes that expiry: a broker restart (every cabinet offline for seconds) resends
  nothing. The slack never lets a code outlive its deadline in the cloud's eyes: the clock
  pauses while the cabinet is offline, so the cabinet's copy is behind the true deadline, and
  while it is online the cloud's `codes.revoke` at expiry ends the code first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cloud.core.codes import IssuedCode
from cloud.core.errors import IllegalTransition
from cloud.core.notices import AUDIENCE, Audience, NoticeKind, dedupe_key
from cloud.core.pauses import Pause, PauseReason, shifted_deadline
from cloud.core.phones import mask_phone

# A pause shorter than this moves the deadline without telling the recipient: a cabinet that
# blinked offline for a minute is not worth a text message.
NEW_DEADLINE_NOTICE_MIN_S = 10 * 60
# An ERP's pickup window override: at least an hour (a recipient must be able to come), at most
# 30 days (a door is not a warehouse).
MIN_WINDOW_S = 60 * 60
MAX_WINDOW_S = 30 * 24 * 60 * 60
# How far past the deadline the cabinet's copy of a code runs. Outages that add up to less than
# this move the deadline without a new `codes.put`; longer ones resend the code once, with the
# slack again. An hour covers a broker restart or a site's network blip many times over.
CODE_EXPIRY_SLACK_S = 60 * 60


class Status(StrEnum):
    """Where a parcel is in its life."""

    ANNOUNCED = "announced"
    IN_LOCKER = "in_locker"
    PICKED_UP = "picked_up"
    EXPIRED = "expired"
    RETRIEVED = "retrieved"
    RETURNED = "returned"
    CANCELLED = "cancelled"


class Source(StrEnum):
    """Who or what caused a transition (the timeline's `source` column)."""

    ERP = "erp"
    CABINET = "cabinet"
    SCHEDULER = "scheduler"
    RECIPIENT = "recipient"
    CLOUD = "cloud"
    STAFF = "staff"  # an operator or site manager in the console (who: the audit log)


# --- state ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parcel:
    """What the cloud knows of one parcel. Holds the code's hash only, never the code."""

    status: Status
    tracking_no: str
    cabinet_id: str
    phone: str = field(repr=False)
    order_no: str | None = None
    parcel_id: str | None = None  # named by the cabinet at deposit; None while announced
    compartment: str | None = None
    size: str | None = None
    courier_id: str | None = None
    code_hash: str | None = field(default=None, repr=False)
    code_generation: int = 0  # 1 at deposit, +1 per reissue
    announced_at: datetime | None = None
    deposited_at: datetime | None = None  # the cabinet's clock
    clock_started_at: datetime | None = None  # the cloud's clock: the pickup window starts here
    window_s: int | None = None  # the site's pickup window when it was deposited
    window_override_s: int | None = None  # the ERP's own pickup window, used at deposit
    pauses: tuple[Pause, ...] = ()
    reminded_at: datetime | None = None
    told_deadline: datetime | None = None  # the deadline the recipient was last told
    code_expires_at: datetime | None = None  # the expiry of the cabinet's copy of the code
    left_locker_at: datetime | None = None  # picked up or taken back (the cabinet's clock)

    def deadline(self, now: datetime) -> datetime | None:
        """Return the pickup deadline (None before deposit); moves with `now` while paused."""
        return pickup_deadline(self.clock_started_at, self.window_s, self.pauses, now)

    def open_pause(self, reason: PauseReason) -> Pause | None:
        """Return the open pause for `reason`, if the clock is stopped for it."""
        return next((p for p in self.pauses if p.reason is reason and p.is_open), None)

    @property
    def is_paused(self) -> bool:
        """Whether the deadline clock is stopped for any reason."""
        return any(p.is_open for p in self.pauses)


def pickup_deadline(
    clock_started_at: datetime | None,
    window_s: int | None,
    pauses: Iterable[Pause],
    now: datetime,
) -> datetime | None:
    """A parcel's pickup deadline from the fields it depends on (`Parcel.deadline`); for a
    reader that has those fields and not a whole Parcel (a page of 50 rows)."""
    if clock_started_at is None or window_s is None:
        return None
    return shifted_deadline(started_at=clock_started_at, window_s=window_s, pauses=pauses, now=now)


# --- events: what can happen to a parcel ----------------------------------------------------------


@dataclass(frozen=True)
class Announce:
    """The ERP announces a shipment for a cabinet."""

    tracking_no: str
    cabinet_id: str
    phone: str = field(repr=False)
    order_no: str | None = None
    window_s: int | None = None  # overrides the site's pickup window for this parcel


@dataclass(frozen=True)
class UpdateAnnouncement:
    """The ERP changes the recipient's phone, the target cabinet or the window before deposit."""

    phone: str | None = field(default=None, repr=False)
    cabinet_id: str | None = None
    window_s: int | None = None


@dataclass(frozen=True)
class Cancel:
    """The ERP cancels the shipment."""

    reason: str = ""


@dataclass(frozen=True)
class Deposit:
    """`parcel.deposited` from the cabinet, with the code issued for it and the site's window."""

    parcel_id: str
    cabinet_id: str
    compartment: str
    size: str
    tracking_no: str
    phone: str = field(repr=False)
    courier_id: str
    at: datetime = field(kw_only=True)
    code: IssuedCode = field(kw_only=True)
    window_s: int = field(kw_only=True)


@dataclass(frozen=True)
class PickUp:
    """`parcel.picked_up` from the cabinet; `method` is code, qr or remote."""

    parcel_id: str
    compartment: str
    method: str
    at: datetime


@dataclass(frozen=True)
class Retrieve:
    """`parcel.retrieved` from the cabinet; `reason` is expired or courier_cancel."""

    parcel_id: str
    compartment: str
    courier_id: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Remind:
    """The scheduler found the reminder due (`expiry.due`)."""


@dataclass(frozen=True)
class ReissueCode:
    """The recipient asked for their code again and may have it (`notices.resend_decision`)."""

    code: IssuedCode
    reason: str = "resend requested"


@dataclass(frozen=True)
class PauseDeadline:
    """The cabinet went offline or the compartment faulted: stop the clock."""

    reason: PauseReason


@dataclass(frozen=True)
class ResumeDeadline:
    """The cabinet is back or the compartment repaired: restart the clock."""

    reason: PauseReason


@dataclass(frozen=True)
class Expire:
    """The scheduler found the deadline passed (`expiry.due`)."""


@dataclass(frozen=True)
class ConfirmReturn:
    """The ERP confirms the parcel is back with the sender."""

    note: str = ""


@dataclass(frozen=True)
class ExtendDeadline:
    """Staff give the recipient more time: the pickup window grows by `seconds`."""

    seconds: int
    by: str  # the account, for the timeline's note
    reason: str


@dataclass(frozen=True)
class StaffCancel:
    """Staff call a parcel in the locker off: couriers are asked to take it back."""

    by: str
    reason: str


@dataclass(frozen=True)
class MarkForReturn:
    """Staff send a parcel back before its deadline, as if it had expired now."""

    by: str
    reason: str


Event = (
    Announce
    | UpdateAnnouncement
    | Cancel
    | Deposit
    | PickUp
    | Retrieve
    | Remind
    | ReissueCode
    | PauseDeadline
    | ResumeDeadline
    | Expire
    | ConfirmReturn
    | ExtendDeadline
    | StaffCancel
    | MarkForReturn
)


# --- effects: what the adapters must do about it --------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """Write a timeline row (the ERP reads them at GET /tracking/{tracking_no})."""

    status: Status
    at: datetime
    source: Source
    note: str


@dataclass(frozen=True)
class Webhook:
    """Send the ERP a signed status webhook."""

    status: Status
    erp_state: ErpOrderState
    at: datetime
    tracking_no: str
    order_no: str | None
    parcel_id: str | None
    cabinet_id: str


@dataclass(frozen=True)
class Notify:
    """Queue a notice (render it with `notices.compose`, send it no earlier than `send_after`).

    `code` is set only for notices that show it; drop it from the outbox once sent.
    """

    kind: NoticeKind
    audience: Audience
    parcel_id: str
    dedupe_key: str
    deadline: datetime
    phone: str | None = field(default=None, repr=False)
    courier_id: str | None = None
    code: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CodesPut:
    """Queue `codes.put` to the cabinet: this hash opens this parcel's door until `expires_at`."""

    cabinet_id: str
    parcel_id: str
    compartment: str
    code_hash: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class CodesRevoke:
    """Queue `codes.revoke` to the cabinet."""

    cabinet_id: str
    parcel_ids: tuple[str, ...]


@dataclass(frozen=True)
class RetrievalsPut:
    """Queue `retrievals.put` to the cabinet: couriers must take these parcels back."""

    cabinet_id: str
    parcel_ids: tuple[str, ...]


Effect = TimelineEntry | Webhook | Notify | CodesPut | CodesRevoke | RetrievalsPut


# --- the ERP's own order states -------------------------------------------------------------------


class ErpOrderState(StrEnum):
    """The order states an ERP keeps for itself."""

    PENDING_SHIPMENT = "pending_shipment"
    SHIPPED = "shipped"
    AWAITING_PICKUP = "awaiting_pickup"
    SIGNED = "signed"
    RETURNED = "returned"


@dataclass(frozen=True)
class OrderState:
    """One row of the order-state mapping: how a parcel status or event shows to an ERP.

    `erp` is this API's `erp_state`; `zh` the order state of a Chinese ERP (待审核 → 审核通过 →
    待发货 → 已发货 → 已签收, and the returns); `shipx` the ShipX-like status an integrator of
    InPost's API knows.
    """

    erp: ErpOrderState
    zh: str
    shipx: str


# THE order-state mapping (docs/parcel-life.md, "The ERP's order states" holds it to the code).
# 待审核 and 审核通过 are the ERP's own, before it ships: no parcel status shows as them.
ORDER_STATES: dict[Status, OrderState] = {
    Status.ANNOUNCED: OrderState(ErpOrderState.SHIPPED, "已发货", "confirmed"),
    Status.IN_LOCKER: OrderState(ErpOrderState.AWAITING_PICKUP, "已发货", "ready_to_pickup"),
    Status.PICKED_UP: OrderState(ErpOrderState.SIGNED, "已签收", "delivered"),
    # Still at the pickup point and a late pickup can still happen: telling the ERP "returned"
    # now could trigger a refund for a parcel the recipient then collects.
    Status.EXPIRED: OrderState(ErpOrderState.AWAITING_PICKUP, "已发货", "pickup_time_expired"),
    # On its way back to the sender.
    Status.RETRIEVED: OrderState(ErpOrderState.RETURNED, "退货中", "returned_to_sender"),
    Status.RETURNED: OrderState(ErpOrderState.RETURNED, "已退货", "returned"),
    # The shipment is off; the order is the ERP's to ship again.
    Status.CANCELLED: OrderState(ErpOrderState.PENDING_SHIPMENT, "待发货", "canceled"),
}

# Each event, as the ERP is told of it: the order state it leaves the order in. An event that
# keeps the status keeps its order state, but ShipX names some on their own (a reminder).
EVENT_ORDER_STATES: dict[str, OrderState] = {
    "Announce": ORDER_STATES[Status.ANNOUNCED],
    "UpdateAnnouncement": ORDER_STATES[Status.ANNOUNCED],
    "Deposit": ORDER_STATES[Status.IN_LOCKER],
    "Remind": OrderState(ErpOrderState.AWAITING_PICKUP, "已发货", "pickup_reminder_sent"),
    "ReissueCode": ORDER_STATES[Status.IN_LOCKER],
    "PauseDeadline": ORDER_STATES[Status.IN_LOCKER],
    "ResumeDeadline": ORDER_STATES[Status.IN_LOCKER],
    "PickUp": ORDER_STATES[Status.PICKED_UP],
    "Expire": ORDER_STATES[Status.EXPIRED],
    "Retrieve": ORDER_STATES[Status.RETRIEVED],
    "Cancel": ORDER_STATES[Status.CANCELLED],
    "ConfirmReturn": ORDER_STATES[Status.RETURNED],
    "ExtendDeadline": ORDER_STATES[Status.IN_LOCKER],
    "StaffCancel": ORDER_STATES[Status.CANCELLED],
    "MarkForReturn": ORDER_STATES[Status.EXPIRED],
}


# The `erp_state` column of the table, as the code before it knew it.
ERP_STATES: dict[Status, ErpOrderState] = {status: row.erp for status, row in ORDER_STATES.items()}


def erp_state(status: Status) -> ErpOrderState:
    """Return the ERP order state a parcel status shows as."""
    return ERP_STATES[status]


def order_state(status: Status) -> OrderState:
    """Return the whole order-state row of a parcel status."""
    return ORDER_STATES[status]


def statuses_for(state: ErpOrderState) -> frozenset[Status]:
    """Return the parcel statuses an ERP order state covers."""
    return frozenset(status for status, erp in ERP_STATES.items() if erp is state)


# --- the rows' handlers: (parcel before, event, now) -> (parcel after, note, effects) -------------

Handler = Callable[[Any, Any, datetime], tuple[Parcel, str, list[Effect]]]


def _announce(_: None, event: Announce, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    parcel = Parcel(
        status=Status.ANNOUNCED,
        tracking_no=event.tracking_no,
        cabinet_id=event.cabinet_id,
        phone=event.phone,
        order_no=event.order_no,
        announced_at=now,
        window_override_s=_window(event.window_s),
    )
    return parcel, f"announced for cabinet {event.cabinet_id}", []


def _update(
    parcel: Parcel, event: UpdateAnnouncement, now: datetime
) -> tuple[Parcel, str, list[Effect]]:
    if event.phone is None and event.cabinet_id is None and event.window_s is None:
        raise ValueError("an update must change the phone, the cabinet or the window")
    changes = []
    if event.phone is not None:
        changes.append(f"phone {mask_phone(event.phone)}")
    if event.cabinet_id is not None:
        changes.append(f"cabinet {event.cabinet_id}")
    if event.window_s is not None:
        changes.append(f"pickup window {_window(event.window_s)} s")
    updated = replace(
        parcel,
        window_override_s=(
            event.window_s if event.window_s is not None else parcel.window_override_s
        ),
        phone=event.phone if event.phone is not None else parcel.phone,
        cabinet_id=event.cabinet_id if event.cabinet_id is not None else parcel.cabinet_id,
    )
    return updated, "updated: " + ", ".join(changes), []


def _deposit(
    announced: Parcel | None, event: Deposit, now: datetime
) -> tuple[Parcel, str, list[Effect]]:
    if event.window_s < 1:
        raise ValueError("the pickup window must be at least one second")
    # The ERP's own window for this parcel, if it set one, wins over the site's.
    window_s = announced.window_override_s if announced is not None else None
    window_s = window_s or event.window_s
    notes = [f"deposited in {event.compartment} by courier {event.courier_id}"]
    if announced is None:
        notes.append("not announced by the ERP")
        phone, order_no, announced_at = event.phone, None, None
    else:
        if announced.tracking_no != event.tracking_no:
            raise IllegalTransition(
                announced.status, "Deposit", "its tracking number is not the announced one"
            )
        phone, order_no, announced_at = announced.phone, announced.order_no, announced.announced_at
        if announced.cabinet_id != event.cabinet_id:
            notes.append(f"announced for cabinet {announced.cabinet_id}")
        if announced.phone != event.phone:
            notes.append(
                f"phone typed at the cabinet ({mask_phone(event.phone)}) differs from the "
                "announced one, which is kept"
            )
    parcel = Parcel(
        status=Status.IN_LOCKER,
        tracking_no=event.tracking_no,
        cabinet_id=event.cabinet_id,
        phone=phone,
        order_no=order_no,
        parcel_id=event.parcel_id,
        compartment=event.compartment,
        size=event.size,
        courier_id=event.courier_id,
        code_hash=event.code.code_hash,
        code_generation=1,
        announced_at=announced_at,
        deposited_at=_aware(event.at),
        clock_started_at=now,
        window_s=window_s,
        window_override_s=announced.window_override_s if announced is not None else None,
    )
    deadline = _deadline(parcel, now)
    parcel, put = _codes_put(replace(parcel, told_deadline=deadline), deadline)
    effects: list[Effect] = [
        put,
        _notify(parcel, NoticeKind.DEPOSITED, deadline, code=event.code.code),
    ]
    return parcel, "; ".join(notes), effects


def _cancel(parcel: Parcel, event: Cancel, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    note = "cancelled by the ERP" + (f": {event.reason}" if event.reason else "")
    if parcel.status is Status.ANNOUNCED:
        return parcel, note, []
    deadline = _deadline(parcel, now)
    effects: list[Effect] = [
        _revoke(parcel),
        RetrievalsPut(parcel.cabinet_id, (_id(parcel),)),
        _notify(parcel, NoticeKind.WITHDRAWN, deadline),
    ]
    return parcel, note + "; couriers are asked to take it back", effects


def _remind(parcel: Parcel, _: Remind, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    if parcel.reminded_at is not None:
        raise IllegalTransition(parcel.status, "Remind", "the recipient was already reminded")
    deadline = _deadline(parcel, now)
    reminded = replace(parcel, reminded_at=now)
    return reminded, "reminder sent", [_notify(parcel, NoticeKind.REMINDER, deadline)]


def _reissue(parcel: Parcel, event: ReissueCode, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    if parcel.open_pause(PauseReason.CABINET_OFFLINE):
        raise IllegalTransition(
            parcel.status, "ReissueCode", "the cabinet is offline: a new code could not reach it"
        )
    deadline = _deadline(parcel, now)
    reissued, put = _codes_put(
        replace(parcel, code_hash=event.code.code_hash, code_generation=parcel.code_generation + 1),
        deadline,
    )
    effects: list[Effect] = [
        put,
        _notify(reissued, NoticeKind.RESEND, deadline, code=event.code.code),
    ]
    return reissued, f"new pickup code issued ({event.reason})", effects


def _pause(parcel: Parcel, event: PauseDeadline, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    if parcel.open_pause(event.reason):
        raise IllegalTransition(
            parcel.status, "PauseDeadline", f"the clock is already paused: {event.reason}"
        )
    paused = replace(parcel, pauses=(*parcel.pauses, Pause(event.reason, now)))
    return paused, f"deadline clock paused: {event.reason}", []


def _resume(
    parcel: Parcel, event: ResumeDeadline, now: datetime
) -> tuple[Parcel, str, list[Effect]]:
    pause = parcel.open_pause(event.reason)
    if pause is None:
        raise IllegalTransition(
            parcel.status, "ResumeDeadline", f"the clock is not paused: {event.reason}"
        )
    pauses = tuple(replace(p, ended_at=now) if p is pause else p for p in parcel.pauses)
    resumed = replace(parcel, pauses=pauses)
    if resumed.is_paused:
        return resumed, f"{event.reason} is over; the clock stays paused", []
    deadline = _deadline(resumed, now)
    effects: list[Effect] = []
    held = parcel.code_expires_at
    if held is None or held < deadline:  # the cabinet would refuse the code before the deadline
        resumed, put = _codes_put(resumed, deadline)
        effects.append(put)
    told = parcel.told_deadline
    if told is None or deadline - told >= timedelta(seconds=NEW_DEADLINE_NOTICE_MIN_S):
        effects.append(_notify(resumed, NoticeKind.NEW_DEADLINE, deadline))
        resumed = replace(resumed, told_deadline=deadline)
    return resumed, f"deadline clock resumed; deadline now {deadline.isoformat()}", effects


def _pick_up(parcel: Parcel, event: PickUp, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    _same_parcel(parcel, event.parcel_id, "PickUp")
    note = f"picked up ({event.method})"
    effects: list[Effect] = []
    if parcel.status is Status.IN_LOCKER:
        effects.append(_revoke(parcel))
    else:  # the code was revoked already; an offline cabinet had not heard yet
        note += f" after it was {parcel.status}"
    return replace(parcel, left_locker_at=_aware(event.at)), note, effects


def _expire(parcel: Parcel, _: Expire, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    if parcel.is_paused:
        raise IllegalTransition(parcel.status, "Expire", "the deadline clock is paused")
    deadline = _deadline(parcel, now)
    if now < deadline:
        raise IllegalTransition(
            parcel.status, "Expire", f"the deadline {deadline.isoformat()} is not reached"
        )
    effects: list[Effect] = [
        _revoke(parcel),
        RetrievalsPut(parcel.cabinet_id, (_id(parcel),)),
        _notify(parcel, NoticeKind.EXPIRED, deadline),
    ]
    if parcel.courier_id:
        effects.append(_notify(parcel, NoticeKind.EXPIRED_COURIER, deadline))
    return parcel, f"expired: not picked up by {deadline.isoformat()}", effects


def _retrieve(parcel: Parcel, event: Retrieve, now: datetime) -> tuple[Parcel, str, list[Effect]]:
    _same_parcel(parcel, event.parcel_id, "Retrieve")
    effects: list[Effect] = []
    if parcel.status is Status.IN_LOCKER:  # taken back before expiry: tell the recipient
        effects += [_revoke(parcel), _notify(parcel, NoticeKind.WITHDRAWN, _deadline(parcel, now))]
    note = f"taken back by courier {event.courier_id} ({event.reason})"
    return replace(parcel, left_locker_at=_aware(event.at)), note, effects


def _confirm_return(
    parcel: Parcel, event: ConfirmReturn, now: datetime
) -> tuple[Parcel, str, list[Effect]]:
    return parcel, "return confirmed by the ERP" + (f": {event.note}" if event.note else ""), []


def _extend(
    parcel: Parcel, event: ExtendDeadline, now: datetime
) -> tuple[Parcel, str, list[Effect]]:
    if event.seconds <= 0 or parcel.window_s is None:
        raise IllegalTransition(parcel.status, "ExtendDeadline", "nothing to extend")
    longer = replace(parcel, window_s=parcel.window_s + event.seconds)
    deadline = _deadline(longer, now)
    note = f"deadline extended by {event.by} to {deadline.isoformat()}: {event.reason}"
    if longer.is_paused:  # the clock stands: the resume puts the codes and tells the recipient
        return longer, note, []
    longer, put = _codes_put(replace(longer, told_deadline=deadline), deadline)
    effects: list[Effect] = [put, _notify(longer, NoticeKind.NEW_DEADLINE, deadline)]
    return longer, note, effects


def _staff_withdraw(
    parcel: Parcel, event: StaffCancel | MarkForReturn, now: datetime
) -> tuple[Parcel, str, list[Effect]]:
    what = "cancelled" if isinstance(event, StaffCancel) else "marked for return"
    effects: list[Effect] = [
        _revoke(parcel),
        RetrievalsPut(parcel.cabinet_id, (_id(parcel),)),
        _notify(parcel, NoticeKind.WITHDRAWN, _deadline(parcel, now)),
    ]
    note = f"{what} by {event.by}: {event.reason}; couriers are asked to take it back"
    return parcel, note, effects


# --- THE TABLE ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One row: the status a parcel goes to, who causes it, and the handler that does the rest."""

    to: Status
    source: Source
    handler: Handler


TRANSITIONS: dict[tuple[Status | None, type], Rule] = {
    (None, Announce): Rule(Status.ANNOUNCED, Source.ERP, _announce),
    (None, Deposit): Rule(Status.IN_LOCKER, Source.CABINET, _deposit),
    (Status.ANNOUNCED, UpdateAnnouncement): Rule(Status.ANNOUNCED, Source.ERP, _update),
    (Status.ANNOUNCED, Deposit): Rule(Status.IN_LOCKER, Source.CABINET, _deposit),
    (Status.ANNOUNCED, Cancel): Rule(Status.CANCELLED, Source.ERP, _cancel),
    (Status.IN_LOCKER, Remind): Rule(Status.IN_LOCKER, Source.SCHEDULER, _remind),
    (Status.IN_LOCKER, ReissueCode): Rule(Status.IN_LOCKER, Source.RECIPIENT, _reissue),
    (Status.IN_LOCKER, PauseDeadline): Rule(Status.IN_LOCKER, Source.CLOUD, _pause),
    (Status.IN_LOCKER, ResumeDeadline): Rule(Status.IN_LOCKER, Source.CLOUD, _resume),
    (Status.IN_LOCKER, PickUp): Rule(Status.PICKED_UP, Source.CABINET, _pick_up),
    (Status.IN_LOCKER, Expire): Rule(Status.EXPIRED, Source.SCHEDULER, _expire),
    (Status.IN_LOCKER, Retrieve): Rule(Status.RETRIEVED, Source.CABINET, _retrieve),
    (Status.IN_LOCKER, Cancel): Rule(Status.CANCELLED, Source.ERP, _cancel),
    (Status.IN_LOCKER, ExtendDeadline): Rule(Status.IN_LOCKER, Source.STAFF, _extend),
    (Status.IN_LOCKER, StaffCancel): Rule(Status.CANCELLED, Source.STAFF, _staff_withdraw),
    (Status.IN_LOCKER, MarkForReturn): Rule(Status.EXPIRED, Source.STAFF, _staff_withdraw),
    (Status.EXPIRED, PickUp): Rule(Status.PICKED_UP, Source.CABINET, _pick_up),
    (Status.EXPIRED, Retrieve): Rule(Status.RETRIEVED, Source.CABINET, _retrieve),
    (Status.CANCELLED, PickUp): Rule(Status.PICKED_UP, Source.CABINET, _pick_up),
    (Status.CANCELLED, Retrieve): Rule(Status.RETRIEVED, Source.CABINET, _retrieve),
    (Status.RETRIEVED, ConfirmReturn): Rule(Status.RETURNED, Source.ERP, _confirm_return),
}


def apply(parcel: Parcel | None, event: Event, now: datetime) -> tuple[Parcel, list[Effect]]:
    """Apply `event` to `parcel` (None: not created yet) at `now`; return it and the effects.

    The first effect is always the TimelineEntry. Raise IllegalTransition, changing nothing,
    if the table or a row's guard forbids the event.
    """
    _aware(now)
    before = parcel.status if parcel is not None else None
    rule = TRANSITIONS.get((before, type(event)))
    if rule is None:
        raise IllegalTransition(before, type(event).__name__)
    after, note, effects = rule.handler(parcel, event, now)
    after = replace(after, status=rule.to)
    # A cabinet fact happened when the cabinet says; everything else happens now.
    at = _aware(getattr(event, "at", now))
    result: list[Effect] = [TimelineEntry(rule.to, at, rule.source, note), *effects]
    if rule.to is not before:
        result.append(
            Webhook(
                status=rule.to,
                erp_state=erp_state(rule.to),
                at=at,
                tracking_no=after.tracking_no,
                order_no=after.order_no,
                parcel_id=after.parcel_id,
                cabinet_id=after.cabinet_id,
            )
        )
    return after, result


def legal_events(status: Status | None) -> frozenset[type]:
    """Return the event types the table accepts in `status` (guards may still refuse one)."""
    return frozenset(event for (source, event) in TRANSITIONS if source is status)


def find_announcement(parcels: Iterable[Parcel], tracking_no: str) -> Parcel | None:
    """Return the announcement a deposit of `tracking_no` completes: the latest still announced."""
    candidates = [
        p for p in parcels if p.status is Status.ANNOUNCED and p.tracking_no == tracking_no
    ]
    return max(
        candidates,
        key=lambda p: p.announced_at.timestamp() if p.announced_at else 0.0,
        default=None,
    )


# --- helpers --------------------------------------------------------------------------------------


def _deadline(parcel: Parcel, now: datetime) -> datetime:
    deadline = parcel.deadline(now)
    if deadline is None:  # only a deposited parcel reaches a handler that asks
        raise IllegalTransition(parcel.status, "deadline", "the parcel was never deposited")
    return deadline


def _id(parcel: Parcel) -> str:
    if parcel.parcel_id is None:
        raise IllegalTransition(parcel.status, "command", "the parcel was never deposited")
    return parcel.parcel_id


def _same_parcel(parcel: Parcel, parcel_id: str, event: str) -> None:
    if parcel.parcel_id != parcel_id:
        raise IllegalTransition(parcel.status, event, f"it is about parcel {parcel_id!r}")


def _codes_put(parcel: Parcel, deadline: datetime) -> tuple[Parcel, CodesPut]:
    """Return the parcel remembering the expiry it sent and the `codes.put` for `deadline`."""
    if parcel.code_hash is None or parcel.compartment is None:
        raise IllegalTransition(parcel.status, "codes.put", "the parcel has no code or compartment")
    expires_at = deadline + timedelta(seconds=CODE_EXPIRY_SLACK_S)
    put = CodesPut(parcel.cabinet_id, _id(parcel), parcel.compartment, parcel.code_hash, expires_at)
    return replace(parcel, code_expires_at=expires_at), put


def _revoke(parcel: Parcel) -> CodesRevoke:
    return CodesRevoke(parcel.cabinet_id, (_id(parcel),))


def _notify(
    parcel: Parcel, kind: NoticeKind, deadline: datetime, *, code: str | None = None
) -> Notify:
    audience = AUDIENCE[kind]
    return Notify(
        kind=kind,
        audience=audience,
        parcel_id=_id(parcel),
        dedupe_key=dedupe_key(_id(parcel), kind, deadline, parcel.code_generation),
        deadline=deadline,
        phone=parcel.phone if audience is Audience.RECIPIENT else None,
        courier_id=parcel.courier_id if audience is Audience.COURIER else None,
        code=code,
    )


def _window(window_s: int | None) -> int | None:
    if window_s is not None and not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
        raise ValueError(f"the pickup window must be {MIN_WINDOW_S}-{MAX_WINDOW_S} seconds")
    return window_s


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return at
