"""The one entry point: `apply(cabinet, input, now, ctx) -> (cabinet, effects)`, and `reconcile`.

`apply` works on a copy of the cabinet and returns it with the effects to run, in order. If the
input is refused it raises a `CoreError` and the cabinet passed in is untouched (it is never
changed in place), so the caller simply keeps the old one. Time comes in as `now` (timezone
aware); ids, the code key and the PIN check come in through `Context`.

How the adapters drive it:

- kiosk: each tap becomes an input; `Show` effects are its screens.
- door driver: every reading becomes `DoorObserved` (repeats are harmless), every exhausted
  unlock `UnlockFailed`; it runs each `Unlock` effect. A `Tick` every second runs the timers.
- MQTT link: each decoded command becomes its input (`CodesPut`, ...); `CoreError` means ack
  `ok: false` with `str(err)`; each `Emit` is journalled with the next `seq`, then published.
- journal: persist the input, the resulting `to_dict()` snapshot and the effects before running
  any effect; after a restart, load the snapshot and call `reconcile` with fresh door readings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cabinet.core import alarms, deposit, occupancy, pickup, removal, reservations, retrieval
from cabinet.core import effects as fx
from cabinet.core.compartments import (
    CompartmentState,
    Door,
    DoorChange,
    Trigger,
    observe_door,
    transition,
)
from cabinet.core.effects import Effect, Log, Show, Unlock
from cabinet.core.errors import IllegalTransition, InvalidInput
from cabinet.core.inputs import (
    Cancel,
    CodeEntered,
    CodesPut,
    CodesRevoke,
    CompartmentOpen,
    CompartmentService,
    CompartmentsRelease,
    CompartmentsReserve,
    Confirm,
    CourierSignIn,
    CourierSignOut,
    CouriersPut,
    DoorObserved,
    Input,
    Larger,
    OccupancyObserved,
    OpenReserved,
    PhoneEntered,
    PickupClosed,
    QrScanned,
    Reopen,
    ResendRequested,
    RetrievalsPut,
    RetrieveParcels,
    SizeChosen,
    Tick,
    TrackingEntered,
    UnlockFailed,
)
from cabinet.core.screens import DoorFaulted
from cabinet.core.state import Cabinet
from protocol.hashing import verify_pin


@dataclass(frozen=True)
class Context:
    """What the core needs from outside besides inputs and time."""

    code_key: bytes = field(repr=False)  # the pickup-code HMAC key: a secret, never in a snapshot
    new_id: Callable[[], str]  # a globally unique parcel id; the adapter passes lambda: str(ULID())
    verify_pin: Callable[[str, str], bool] = verify_pin


def apply(
    cabinet: Cabinet, inp: Input, now: datetime, ctx: Context
) -> tuple[Cabinet, list[Effect]]:
    """Apply one input at `now`; return the new cabinet and the effects to run, in order."""
    _check_now(now)
    work = cabinet.copy()
    effects = _dispatch(work, inp, now, ctx)
    effects += removal.advance(work, now)
    effects += _occupancy_alarms(work)
    return work, effects


def _occupancy_alarms(cab: Cabinet) -> list[Effect]:
    # After any input: a deposit cancelled over a full compartment, a parcel recorded, a door
    # shut may each have made a sensor and the record disagree (occupancy.py).
    effects: list[Effect] = []
    for compartment_id, compartment in cab.compartments.items():
        if compartment.sensor:
            effects += occupancy.check(cab, compartment_id)
    return effects


def _dispatch(cab: Cabinet, inp: Input, now: datetime, ctx: Context) -> list[Effect]:
    match inp:
        case CourierSignIn():
            return deposit.sign_in(cab, inp, now, ctx)
        case CourierSignOut():
            return deposit.sign_out(cab, inp, now)
        case TrackingEntered():
            return deposit.tracking_entered(cab, inp, now)
        case PhoneEntered():
            return deposit.phone_entered(cab, inp, now)
        case SizeChosen():
            return deposit.size_chosen(cab, inp, now)
        case Confirm():
            return deposit.confirm(cab, inp, now, ctx)
        case Reopen():
            return deposit.reopen(cab, inp, now)
        case Larger():
            return deposit.larger(cab, inp, now)
        case Cancel():
            return deposit.cancel(cab, inp, now)
        case OpenReserved():
            return deposit.open_reserved(cab, inp, now)
        case RetrieveParcels():
            return retrieval.retrieve(cab, inp, now)
        case CodeEntered():
            return pickup.code_entered(cab, inp, now, ctx)
        case QrScanned():
            return pickup.qr_scanned(cab, inp, now, ctx)
        case ResendRequested():
            return pickup.resend_requested(cab, inp, now)
        case PickupClosed():
            return removal.pickup_closed(cab, inp.pickup)
        case DoorObserved():
            return _door_observed(cab, inp.compartment, inp.open, now)
        case OccupancyObserved():
            return occupancy.observed(cab, inp.compartment, inp.occupied)
        case UnlockFailed():
            return _unlock_failed(cab, inp, now)
        case Tick():
            return _tick(cab, now, ctx)
        case CodesPut():
            return pickup.codes_put(cab, inp)
        case CodesRevoke():
            return pickup.codes_revoke(cab, inp)
        case CompartmentOpen():
            return pickup.remote_open(cab, inp, now)
        case CompartmentService():
            return _service(cab, inp)
        case CouriersPut():
            for courier in inp.couriers:
                cab.couriers[courier.courier_id] = courier.pin_hash
                if courier.carrier_id is not None:
                    cab.courier_carriers[courier.courier_id] = courier.carrier_id
                else:
                    cab.courier_carriers.pop(courier.courier_id, None)
            return []
        case CompartmentsReserve():
            return reservations.reserve(cab, inp, now)
        case CompartmentsRelease():
            return reservations.release(cab, inp)
        case RetrievalsPut():
            return retrieval.retrievals_put(cab, inp)
    raise InvalidInput(f"not a cabinet input: {type(inp).__name__}")


def _check_now(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidInput("now must be a timezone-aware datetime")


def _door_observed(cab: Cabinet, compartment_id: str, is_open: bool, now: datetime) -> list[Effect]:
    """Record a reading and hand what it meant to the flow that owns the door."""
    cab.compartment(compartment_id)  # UnknownCompartment before anything changes
    effects = alarms.lapse_if_due(cab, compartment_id, now)
    compartment, change = observe_door(cab.compartments[compartment_id], is_open, now)
    cab.compartments[compartment_id] = compartment
    return effects + _door_meant(cab, compartment_id, change, now)


def _door_meant(
    cab: Cabinet, compartment_id: str, change: DoorChange, now: datetime
) -> list[Effect]:
    compartment = cab.compartments[compartment_id]
    courier_door = deposit.holds_door(cab, compartment_id)
    match change:
        case DoorChange.FORCED:
            return alarms.forced(compartment_id)
        case DoorChange.OPENED if courier_door:
            deposit.door_moved(cab, now)
        case DoorChange.CYCLED if courier_door:
            return deposit.door_cycled(cab, compartment_id, now)
        case DoorChange.CYCLED if compartment.state is CompartmentState.OPENING:
            if occupancy.seen_full(compartment):
                return occupancy.parcel_left_inside(cab, compartment_id, now)
            return removal.finished(cab, compartment_id, now)
    return []


def _unlock_failed(cab: Cabinet, inp: UnlockFailed, now: datetime) -> list[Effect]:
    before = cab.compartment(inp.compartment)
    effects = alarms.lock_fault(cab, inp.compartment, inp.detail)
    if deposit.holds_door(cab, inp.compartment):
        effects += deposit.lock_failed(cab, inp.compartment, now)
    elif before.removal is not None:
        effects.append(Show(DoorFaulted(inp.compartment)))  # the person waiting for it
    return effects


def _tick(cab: Cabinet, now: datetime, ctx: Context) -> list[Effect]:
    effects = alarms.unlock_lapses(cab, now)
    effects += alarms.left_open(cab, now)
    effects += deposit.idle(cab, now, ctx)
    effects += reservations.lapse(cab, now)
    return effects


def _service(cab: Cabinet, inp: CompartmentService) -> list[Effect]:
    """Out of service (only when empty), or back in service (which also clears a fault)."""
    compartment = cab.compartment(inp.compartment)
    state = compartment.state
    if deposit.holds_door(cab, compartment.id):
        # Even a faulted one: the courier must first confirm or give back what is behind it.
        raise IllegalTransition(
            f"compartment.service: a courier's deposit is at {compartment.id}",
            state=state.value,
            action="compartment.service",
        )
    if inp.in_service:
        if state is CompartmentState.OUT_OF_SERVICE:
            trigger = Trigger.PUT_BACK
        elif state is CompartmentState.FAULTED:
            holding = compartment.parcel_id is not None
            trigger = Trigger.REPAIRED_HOLDING if holding else Trigger.REPAIRED
        else:
            return []  # already in service
    else:
        if state is CompartmentState.OUT_OF_SERVICE:
            return []
        trigger = Trigger.TAKE_OUT
    cab.compartments[compartment.id] = moved = transition(compartment, trigger)
    in_service = moved.state is not CompartmentState.OUT_OF_SERVICE
    return [fx.compartment_service(compartment=compartment.id, in_service=in_service)]


# A recipient (or a manager for one) or a courier stands at these doors; an empty door unlocked
# for a technician is not sent again (the technician can ask again).
_SOMEONE_WAITS = (CompartmentState.OPENING, CompartmentState.RESERVED)


def reconcile(
    cabinet: Cabinet, door_readings: Mapping[str, bool], now: datetime
) -> tuple[Cabinet, list[Effect]]:
    """Bring a restored cabinet in line with fresh door readings (compartment -> open).

    After a restart nothing is believed about a door that was not just read: every reading is
    applied as a `DoorObserved` would be, so a door open with no unlock pending raises
    `door.forced`, and a door seen open before the restart and shut now finishes its pickup,
    retrieval or deposit cycle. A door the driver could not read becomes UNKNOWN.

    An unlock journalled before the restart but maybe never driven (the journal writes ahead)
    is sent again while its window is still open and the door is shut, if the door is being
    emptied or is reserved for a deposit: someone with a valid claim may be waiting in front of
    it, and if they already took the parcel, the empty door pops and is shut again, which
    finishes the pickup. Older unlocks lapse as on a `Tick`.
    """
    _check_now(now)
    work = cabinet.copy()
    effects: list[Effect] = []
    for compartment_id in sorted(set(door_readings) - set(work.compartments)):
        effects.append(Log(f"door reading for unknown compartment {compartment_id!r} ignored"))
    for compartment_id, compartment in list(work.compartments.items()):
        if compartment_id not in door_readings:
            work.compartments[compartment_id] = replace(compartment, door=Door.UNKNOWN)
            effects.append(Log(f"door {compartment_id} was not read: its state is unknown"))
            continue
        effects += _door_observed(work, compartment_id, bool(door_readings[compartment_id]), now)
    effects += alarms.unlock_lapses(work, now)
    window = timedelta(seconds=work.config.unlock_window_s)
    for compartment in work.compartments.values():
        pending = compartment.unlocked_at
        if (
            compartment.state in _SOMEONE_WAITS
            and pending is not None
            and compartment.door is Door.CLOSED
            and now - pending < window
        ):
            effects.append(Unlock(compartment.id))
    effects += removal.advance(work, now)
    return work, effects
