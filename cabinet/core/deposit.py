"""The courier's session at the screen: sign in, deposit parcels one by one, sign out.

    (signed out) --CourierSignIn(PIN ok)--> TRACKING
    TRACKING --TrackingEntered--> PHONE --PhoneEntered--> SIZE --SizeChosen(door found)--> AT_DOOR
    TRACKING --TrackingEntered(an announced parcel with a reserved door)--> RESERVED
    RESERVED --OpenReserved--> AT_DOOR (its reserved door; the phone is the announced one)
    AT_DOOR: door unlocked -> seen open -> seen closed, then
        Confirm  -> parcel.deposited, back to TRACKING (next parcel); where the compartment
                    has an occupancy sensor that sees nothing inside, DepositEmpty instead
                    (put the parcel in and Reopen/shut, or Cancel)
        Reopen   -> unlock the same door again
        Larger   -> give this door back, unlock a larger one
        Cancel   -> give this door back (the courier declares it empty), back to TRACKING
    TRACKING/PHONE/SIZE --CourierSignOut, or idle--> (signed out)

ACCEPTS below lists the steps each input is allowed in; anything else raises IllegalTransition.
A door is given back only while it is not seen open; Confirm needs it seen open then closed.

An announced parcel (`reservations`) needs no phone and no size: the screen shows the masked
phone and the reserved size, one tap opens the held door, and the deposit is recorded under the
announced parcel's id, so the cloud links it to its shipment. Where the announcement names a
carrier, a courier of another carrier (or of none the cabinet knows) is refused, and nothing is
taken. Where it names none (a merchant's key), nobody vouches for the announced phone, so the
courier types it as for any parcel: the same phone leads to the reserved door, another makes the
parcel an unannounced one.

A lock fault on the first unlock of a deposit (the door never opened, so the parcel cannot be
inside) faults that compartment and unlocks another of the same size or larger at once. A lock
fault on a reopen (the parcel may be inside) leaves the courier at that door: they Confirm (the
parcel is recorded in the faulted compartment, where no code opens it until a technician has
looked) or give it back.

An idle courier (no input and no door movement for `courier_idle_s`) is signed out. At a door,
that waits until the door is shut and no unlock is pending, then: a door that was seen open and
closed is confirmed (the parcel went in and the courier forgot to tap; recording it loses
nothing), any other door is given back.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cabinet.core import effects as fx
from cabinet.core import removal, reservations
from cabinet.core.allocation import allocate, free_by_size
from cabinet.core.compartments import Compartment, CompartmentState, Door, Trigger, transition
from cabinet.core.effects import Effect, Show, Unlock
from cabinet.core.errors import IllegalTransition
from cabinet.core.inputs import (
    Cancel,
    Confirm,
    CourierSignIn,
    CourierSignOut,
    Larger,
    OpenReserved,
    PhoneEntered,
    Reopen,
    RetrieveParcels,
    SizeChosen,
    TrackingEntered,
)
from cabinet.core.lockout import Guard, attempts_left, locked_for_s, record_failure, record_success
from cabinet.core.occupancy import seen_empty
from cabinet.core.phones import mask_phone, parse_phone
from cabinet.core.screens import (
    CourierLocked,
    DepositCancelled,
    DepositDoorClosed,
    DepositDoorOpening,
    Deposited,
    DepositEmpty,
    DoorFaulted,
    DoorMoved,
    NoFreeDoor,
    NoLargerDoor,
    PhoneAccepted,
    PhoneProblem,
    PhoneRejected,
    ReservationFound,
    ReservationProblem,
    ReservationRefused,
    SignedIn,
    SignedOut,
    TrackingAccepted,
    TrackingProblem,
    TrackingRejected,
    UnknownCourier,
    WrongPin,
)
from cabinet.core.state import Cabinet, CourierSession, Draft, Parcel, Reservation, Step
from protocol.courier_ids import courier_key

if TYPE_CHECKING:
    from cabinet.core.cabinet import Context

_BEFORE_DOOR = frozenset({Step.TRACKING, Step.PHONE, Step.SIZE, Step.RESERVED})
# The steps of a courier session in which each input is accepted.
ACCEPTS: dict[type, frozenset[Step]] = {
    TrackingEntered: _BEFORE_DOOR,  # again at PHONE/SIZE: starts this parcel over
    PhoneEntered: frozenset({Step.PHONE, Step.SIZE}),
    SizeChosen: frozenset({Step.SIZE}),
    OpenReserved: frozenset({Step.RESERVED}),
    Confirm: frozenset({Step.AT_DOOR}),
    Reopen: frozenset({Step.AT_DOOR}),
    Larger: frozenset({Step.AT_DOOR}),
    Cancel: frozenset({Step.AT_DOOR}),
    RetrieveParcels: frozenset({Step.TRACKING}),
    CourierSignOut: _BEFORE_DOOR,  # at a door: confirm or cancel first
}

TRACKING_MAX_CHARS = 40
_TRACKING = re.compile(r"[A-Z0-9-]+")


def session_for(cabinet: Cabinet, action: object, now: datetime) -> CourierSession:
    """The signed-in session if it accepts `action` now; it counts as courier activity."""
    session = cabinet.session
    name = type(action).__name__
    if session is None:
        raise IllegalTransition(f"{name}: no courier is signed in", action=name)
    if session.step not in ACCEPTS[type(action)]:
        raise IllegalTransition(
            f"{name} is not accepted at step {session.step.value}",
            state=session.step.value,
            action=name,
        )
    session = replace(session, last_activity_at=now)
    cabinet.session = session
    return session


def check_tracking_no(typed: str, cabinet: Cabinet) -> str | TrackingProblem:
    """The tracking number normalised (trimmed, upper case), or why it is refused."""
    tracking_no = typed.strip().upper()
    if not tracking_no:
        return TrackingProblem.EMPTY
    if len(tracking_no) > TRACKING_MAX_CHARS:
        return TrackingProblem.TOO_LONG
    if not _TRACKING.fullmatch(tracking_no):
        return TrackingProblem.BAD_CHARACTERS
    if any(p.tracking_no == tracking_no for p in cabinet.parcels.values()):
        return TrackingProblem.ALREADY_IN_CABINET
    return tracking_no


# --- sign in and out ------------------------------------------------------------------------


def sign_in(cabinet: Cabinet, inp: CourierSignIn, now: datetime, ctx: Context) -> list[Effect]:
    """Check the PIN against the hash the cloud pushed; wrong PINs count toward a lockout."""
    if cabinet.session is not None:
        raise IllegalTransition("a courier is already signed in", action="CourierSignIn")
    # Ids compare case-insensitively (the keyboard has capitals only); the session and every
    # event carry the id as the registry spelt it, so the cloud finds its courier row.
    courier_id = registered_courier_id(cabinet, inp.courier_id)
    if courier_id is None:
        return [Show(UnknownCourier(inp.courier_id.strip().upper()))]
    pin_hash = cabinet.couriers[courier_id]
    policy = cabinet.config.courier_pins
    guard = cabinet.courier_guards.get(courier_id, Guard())
    if seconds := locked_for_s(guard, policy, now):
        return [Show(CourierLocked(seconds))]
    if not ctx.verify_pin(inp.pin, pin_hash):
        guard, lockout = record_failure(guard, policy, now)
        cabinet.courier_guards[courier_id] = guard
        if lockout:
            return [Show(CourierLocked(lockout.seconds))]
        return [Show(WrongPin(attempts_left(guard, policy, now)))]
    cabinet.courier_guards[courier_id] = record_success(guard)
    cabinet.session = CourierSession(courier_id=courier_id, signed_in_at=now, last_activity_at=now)
    due = sum(1 for p in cabinet.parcels.values() if p.retrieve)
    return [Show(SignedIn(courier_id, retrievals_due=due))]


def registered_courier_id(cabinet: Cabinet, typed: str) -> str | None:
    """The id as the registry spelt it for a typed id (compared by `courier_key`), or None."""
    key = courier_key(typed)
    if typed in cabinet.couriers:
        return typed
    return next((known for known in cabinet.couriers if courier_key(known) == key), None)


def sign_out(cabinet: Cabinet, inp: CourierSignOut, now: datetime) -> list[Effect]:
    """End the session (not while a door is reserved)."""
    session = session_for(cabinet, inp, now)
    cabinet.session = None
    effects = removal.courier_left(cabinet, session.courier_id)
    return [*effects, Show(SignedOut(session.courier_id, session.deposited))]


# --- one parcel -----------------------------------------------------------------------------


def tracking_entered(cabinet: Cabinet, inp: TrackingEntered, now: datetime) -> list[Effect]:
    """Start a parcel with its tracking number."""
    session = session_for(cabinet, inp, now)
    checked = check_tracking_no(inp.tracking_no, cabinet)
    if isinstance(checked, TrackingProblem):
        return [Show(TrackingRejected(checked))]
    held = reservations.find(cabinet, checked, now)
    if held is not None:
        return _reserved_parcel(cabinet, session, held)
    cabinet.session = replace(session, step=Step.PHONE, draft=Draft(tracking_no=checked))
    return [Show(TrackingAccepted(checked))]


def _reserved_parcel(cabinet: Cabinet, session: CourierSession, held: Reservation) -> list[Effect]:
    """An announced parcel: show what the announcement says, or why this courier may not."""
    tracking_no = held.tracking_no or ""
    if held.carrier_id is None:
        # Nobody vouches for the announced phone (a merchant's key, not a carrier's): as for
        # any announcement, the courier types the phone, and only the same one completes it.
        draft = Draft(tracking_no=tracking_no, reservation=held.parcel_id)
        cabinet.session = replace(session, step=Step.PHONE, draft=draft)
        return [Show(TrackingAccepted(tracking_no))]
    carrier = cabinet.courier_carriers.get(session.courier_id)
    if carrier != held.carrier_id:
        cabinet.session = replace(session, step=Step.TRACKING, draft=Draft())
        return [Show(ReservationRefused(tracking_no, ReservationProblem.OTHER_CARRIER))]
    return _reserved_found(cabinet, session, held)


def _reserved_found(cabinet: Cabinet, session: CourierSession, held: Reservation) -> list[Effect]:
    """Show the announced parcel (masked phone, size) and wait for the tap that opens it."""
    tracking_no = held.tracking_no or ""
    draft = Draft(
        tracking_no=tracking_no, phone=held.phone, size=held.size, reservation=held.parcel_id
    )
    cabinet.session = replace(session, step=Step.RESERVED, draft=draft)
    return [Show(ReservationFound(tracking_no, mask_phone(held.phone), held.size))]


def open_reserved(cabinet: Cabinet, inp: OpenReserved, now: datetime) -> list[Effect]:
    """Open the door held for the announced parcel (another that fits if it stopped working)."""
    session = session_for(cabinet, inp, now)
    draft = session.draft
    held = cabinet.reservations.get(draft.reservation or "")
    if held is None or held.until <= now:
        cabinet.session = replace(session, step=Step.TRACKING, draft=Draft())
        problem = ReservationProblem.LAPSED
        return [Show(ReservationRefused(draft.tracking_no or "", problem))]
    door = reservations.door_for(cabinet, held, now)
    if door is None:
        return [Show(NoFreeDoor(held.size))]
    return _take_door(cabinet, door.id, now)


def phone_entered(cabinet: Cabinet, inp: PhoneEntered, now: datetime) -> list[Effect]:
    """Take the recipient's mobile, stored as E.164."""
    session = session_for(cabinet, inp, now)
    phone = parse_phone(inp.phone, cabinet.config.phone_region)
    if isinstance(phone, PhoneProblem):
        return [Show(PhoneRejected(phone))]
    held = cabinet.reservations.get(session.draft.reservation or "")
    if held is not None and held.until > now and held.phone == phone:
        # The announced parcel of a shipment that named no carrier: the courier has typed the
        # announced phone, which is what lets the announcement win (docs/who-may-do-what.md).
        return _reserved_found(cabinet, session, held)
    draft = replace(session.draft, phone=phone, reservation=None)  # another phone: unannounced
    cabinet.session = replace(session, step=Step.SIZE, draft=draft)
    free = free_by_size(reservations.unheld(cabinet, now))
    return [Show(PhoneAccepted(mask_phone(phone), free))]


def size_chosen(cabinet: Cabinet, inp: SizeChosen, now: datetime) -> list[Effect]:
    """Reserve the smallest free compartment that fits, and unlock it."""
    session = session_for(cabinet, inp, now)
    chosen = allocate(reservations.unheld(cabinet, now), inp.size)
    if chosen is None:
        return [Show(NoFreeDoor(inp.size))]
    draft = replace(session.draft, size=inp.size)
    cabinet.session = replace(session, step=Step.AT_DOOR, draft=draft)
    return _take_door(cabinet, chosen.id, now)


def _take_door(cabinet: Cabinet, compartment_id: str, now: datetime) -> list[Effect]:
    """Reserve a door for the draft and unlock it."""
    session = cabinet.session
    assert session is not None
    compartment = cabinet.compartments[compartment_id]
    cabinet.compartments[compartment_id] = transition(compartment, Trigger.RESERVE, unlocked_at=now)
    draft = replace(session.draft, compartment=compartment_id, door_cycled=False)
    cabinet.session = replace(session, step=Step.AT_DOOR, draft=draft)
    return [Unlock(compartment_id), Show(DepositDoorOpening(compartment_id, compartment.size))]


def _door(cabinet: Cabinet, session: CourierSession, action: str) -> Compartment:
    """The draft's door, which must not be seen open (a door is given back or confirmed shut)."""
    compartment = cabinet.compartments[session.draft.compartment or ""]
    if compartment.door is Door.OPEN:
        raise IllegalTransition(
            f"{action}: door {compartment.id} is open; shut it first",
            state="door_open",
            action=action,
        )
    return compartment


def confirm(cabinet: Cabinet, inp: Confirm, now: datetime, ctx: Context) -> list[Effect]:
    """Record the parcel: it was put in through a door seen open and then closed."""
    session = session_for(cabinet, inp, now)
    compartment = _door(cabinet, session, "Confirm")
    if compartment.unlocked_at is not None:
        # Recording it now would leave a full door about to spring open with nobody watching.
        raise IllegalTransition(
            f"Confirm: door {compartment.id} is being unlocked; wait until it opens",
            state="door_unlocking",
            action="Confirm",
        )
    if not session.draft.door_cycled or compartment.door is not Door.CLOSED:
        raise IllegalTransition(
            f"Confirm: door {compartment.id} has not been seen open and then closed",
            state="door_not_cycled",
            action="Confirm",
        )
    if seen_empty(compartment):
        # Its sensor sees nothing inside: put the parcel in (Reopen) or give the door back.
        return [Show(DepositEmpty(compartment.id))]
    return _record(cabinet, session, now, ctx)


def _record(cabinet: Cabinet, session: CourierSession, now: datetime, ctx: Context) -> list[Effect]:
    draft = session.draft
    assert draft.tracking_no and draft.phone and draft.compartment
    compartment = cabinet.compartments[draft.compartment]
    # An announced parcel keeps the id the cloud reserved its door under: that links the two.
    parcel_id = draft.reservation or ctx.new_id()
    if parcel_id in cabinet.parcels:
        raise IllegalTransition(
            f"parcel id {parcel_id!r} is in the cabinet already", action="Confirm"
        )
    if draft.reservation is not None:
        cabinet.reservations.pop(draft.reservation, None)
    cabinet.compartments[compartment.id] = transition(
        compartment, Trigger.DEPOSIT, parcel_id=parcel_id
    )
    parcel = Parcel(
        parcel_id=parcel_id,
        compartment=compartment.id,
        size=compartment.size,  # the door it is in, which the cloud counts occupancy by
        tracking_no=draft.tracking_no,
        phone=draft.phone,
        courier_id=session.courier_id,
        deposited_at=now,
    )
    cabinet.parcels[parcel_id] = parcel
    cabinet.session = replace(
        session, step=Step.TRACKING, draft=Draft(), deposited=session.deposited + 1
    )
    return [
        fx.parcel_deposited(
            parcel_id=parcel_id,
            compartment=compartment.id,
            size=compartment.size.value,
            tracking_no=parcel.tracking_no,
            phone=parcel.phone,
            courier_id=parcel.courier_id,
        ),
        Show(Deposited(compartment.id, parcel_id, parcel.tracking_no)),
    ]


def reopen(cabinet: Cabinet, inp: Reopen, now: datetime) -> list[Effect]:
    """Unlock the same door again."""
    session = session_for(cabinet, inp, now)
    compartment = _door(cabinet, session, "Reopen")
    if compartment.state is not CompartmentState.RESERVED:
        raise IllegalTransition(
            f"Reopen: door {compartment.id} is {compartment.state.value}",
            state=compartment.state.value,
            action="Reopen",
        )
    cabinet.compartments[compartment.id] = replace(compartment, unlocked_at=now)
    return [Unlock(compartment.id), Show(DepositDoorOpening(compartment.id, compartment.size))]


def larger(cabinet: Cabinet, inp: Larger, now: datetime) -> list[Effect]:
    """Give this door back and unlock the smallest usable one of a larger size."""
    session = session_for(cabinet, inp, now)
    compartment = _door(cabinet, session, "Larger")
    size = session.draft.size or compartment.size
    doors = reservations.unheld(cabinet, now, but=session.draft.reservation)
    bigger = allocate(doors, size, larger_than=compartment.size)
    if bigger is None:
        return [Show(NoLargerDoor(compartment.id))]
    # An unlock still pending on the old door stays expected: a late pop is not "forced".
    cabinet.compartments[compartment.id] = transition(compartment, Trigger.RELEASE)
    return _take_door(cabinet, bigger.id, now)


def cancel(cabinet: Cabinet, inp: Cancel, now: datetime) -> list[Effect]:
    """Give the door back; the courier declares it empty."""
    session = session_for(cabinet, inp, now)
    compartment = _door(cabinet, session, "Cancel")
    return _give_back(cabinet, session, compartment.id)


def _give_back(cabinet: Cabinet, session: CourierSession, compartment_id: str) -> list[Effect]:
    compartment = cabinet.compartments[compartment_id]
    cabinet.compartments[compartment_id] = transition(compartment, Trigger.RELEASE)
    cabinet.session = replace(session, step=Step.TRACKING, draft=Draft())
    return [Show(DepositCancelled(compartment_id))]


# --- what the door and the lock do ----------------------------------------------------------


def holds_door(cabinet: Cabinet, compartment_id: str) -> bool:
    """Whether the signed-in courier's parcel in progress has this door."""
    session = cabinet.session
    return (
        session is not None
        and session.step is Step.AT_DOOR
        and session.draft.compartment == compartment_id
    )


def door_moved(cabinet: Cabinet, now: datetime) -> None:
    """The courier's door opened: they are at work, not idle."""
    assert cabinet.session is not None
    cabinet.session = replace(cabinet.session, last_activity_at=now)


def door_cycled(cabinet: Cabinet, compartment_id: str, now: datetime) -> list[Effect]:
    """The courier's door was seen open then closed: ask to confirm."""
    session = cabinet.session
    assert session is not None
    draft = replace(session.draft, door_cycled=True)
    cabinet.session = replace(session, draft=draft, last_activity_at=now)
    return [Show(DepositDoorClosed(compartment_id))]


def lock_failed(cabinet: Cabinet, compartment_id: str, now: datetime) -> list[Effect]:
    """The courier's door faulted (already FAULTED): move to another door, or stay if in use."""
    session = cabinet.session
    assert session is not None
    if session.draft.door_cycled:
        return [Show(DoorFaulted(compartment_id))]
    failed = cabinet.compartments[compartment_id]
    other = allocate(reservations.unheld(cabinet, now, but=session.draft.reservation), failed.size)
    if other is None:
        draft = replace(session.draft, compartment=None, door_cycled=False)
        cabinet.session = replace(session, step=Step.SIZE, draft=draft)
        return [Show(NoFreeDoor(session.draft.size or failed.size))]
    return [Show(DoorMoved(compartment_id, other.id)), *_take_door(cabinet, other.id, now)]


def idle(cabinet: Cabinet, now: datetime, ctx: Context) -> list[Effect]:
    """Sign out a courier who has done nothing for `courier_idle_s` (see the module docstring)."""
    session = cabinet.session
    if session is None:
        return []
    if now - session.last_activity_at < timedelta(seconds=cabinet.config.courier_idle_s):
        return []
    effects: list[Effect] = []
    if session.step is Step.AT_DOOR:
        compartment = cabinet.compartments[session.draft.compartment or ""]
        if compartment.door is not Door.CLOSED or compartment.unlocked_at is not None:
            return []  # the door is moving or open: someone is at it
        if session.draft.door_cycled and not seen_empty(compartment):
            effects += _record(cabinet, session, now, ctx)
        else:
            effects += _give_back(cabinet, session, compartment.id)
        session = cabinet.session
        assert session is not None
    cabinet.session = None
    effects += removal.courier_left(cabinet, session.courier_id)
    return [*effects, Show(SignedOut(session.courier_id, session.deposited, idle=True))]
