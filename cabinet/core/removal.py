"""Taking parcels out: the one-door-at-a-time unlock queue, and what a finished removal emits.

Pickups and retrievals queue their doors and the queue unlocks them one at a time. Why: the
lock coils of a cabinet hang on one supply (and, on RS-485 boards, one bus), and two coils
pulled at once can brown the supply out so that neither latch lets go; and the person in front
of the cabinet sees which door is theirs now. Remote opens skip the queue: a manager acts on
one door.

How long a door holds the queue: until it is seen open, its unlock fails, or
`unlock_settle_s` (3 s) has passed since its unlock, whichever comes first. The coil's pulse
and the latch's release are over by then (0.5 s + 2 s on the GPIO boards), so the supply is free
again; a door not seen open by then has a sensor that cannot be trusted (stuck, unplugged) or a
person who has not pulled it yet, and neither is a reason to keep the next person waiting for
the whole `unlock_window_s` (60 s). The door's unlock stays expected for that window (so a late
pull is not "forced"); only the queue moves on.

A queued door is never fired with nobody there: when the kiosk's pickup screen ends (Done, back
home, the screen's idle timeout: `PickupClosed`), its doors still waiting in the queue are
dropped, back to OCCUPIED with the code still valid, so the recipient can simply try again.
Likewise a courier's retrieval doors still waiting when their session ends (sign-out, idle).
A door already unlocked is not called back (a pulse cannot be undone). Doors queued by an
earlier code, whose screen a later code replaced, keep their place: the queue moves at least
one door per `unlock_settle_s`, so they open within seconds, while their person can still be
there.

A removal is finished only when the door, opened after the cabinet unlocked it, is seen closed
again (`DoorChange.CYCLED`): never on a timeout. An unlock that lapses unseen puts the parcel
back to OCCUPIED, its code still valid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from cabinet.core import effects as fx
from cabinet.core.compartments import CompartmentState, Removal, RemovalKind, Trigger, transition
from cabinet.core.effects import Effect, Log, Show, Unlock
from cabinet.core.screens import DoorNowOpening, ParcelRetrievedShown, ParcelTaken
from cabinet.core.state import Cabinet, Parcel


def queue(cabinet: Cabinet, compartment_id: str, removal: Removal) -> None:
    """Commit an OCCUPIED compartment to a removal; its unlock waits its turn."""
    compartment = cabinet.compartment(compartment_id)
    cabinet.compartments[compartment_id] = transition(
        compartment, Trigger.OPEN_FOR_REMOVAL, removal=removal
    )
    cabinet.open_queue = (*cabinet.open_queue, compartment_id)


def holds_queue(cabinet: Cabinet, now: datetime) -> bool:
    """Whether a removal door unlocked less than `unlock_settle_s` ago is not yet seen open."""
    settle = timedelta(seconds=cabinet.config.unlock_settle_s)
    return any(
        c.state is CompartmentState.OPENING
        and c.unlocked_at is not None
        and now - c.unlocked_at < settle
        for c in cabinet.compartments.values()
    )


def advance(cabinet: Cabinet, now: datetime) -> list[Effect]:
    """Unlock the next queued door if no door holds the queue."""
    effects: list[Effect] = []
    while cabinet.open_queue and not holds_queue(cabinet, now):
        compartment_id, *rest = cabinet.open_queue
        cabinet.open_queue = tuple(rest)
        compartment = cabinet.compartments[compartment_id]
        if compartment.state is not CompartmentState.OPENING:
            continue  # it faulted while it waited
        cabinet.compartments[compartment_id] = replace(compartment, unlocked_at=now)
        effects.append(Unlock(compartment_id))
        if compartment.removal is not None and compartment.removal.after_others:
            effects.append(Show(DoorNowOpening(compartment_id)))
    return effects


def pickup_closed(cabinet: Cabinet, pickup: str) -> list[Effect]:
    """The pickup screen ended: drop its doors still waiting; their parcels stay live."""
    if pickup != str(cabinet.pickups_shown):
        return []  # a later code took the screen: that pickup is not this one
    effects = drop_waiting(cabinet, cabinet.screen_pickup, "its pickup screen ended")
    cabinet.screen_pickup = ()
    return effects


def courier_left(cabinet: Cabinet, courier_id: str) -> list[Effect]:
    """A courier's session ended: drop their retrieval doors still waiting (same rule)."""
    theirs = [
        c.id
        for c in cabinet.compartments.values()
        if c.removal is not None
        and c.removal.kind is RemovalKind.RETRIEVAL
        and c.removal.courier_id == courier_id
    ]
    return drop_waiting(cabinet, theirs, "its courier signed out")


def drop_waiting(cabinet: Cabinet, compartment_ids: Iterable[str], why: str) -> list[Effect]:
    """Take these doors out of the queue if they still wait there: back to OCCUPIED, never
    unlocked. A door already unlocked is left alone: a pulse cannot be called back."""
    effects: list[Effect] = []
    for compartment_id in compartment_ids:
        if compartment_id not in cabinet.open_queue:
            continue  # unlocked already (or taken out, or faulted): nothing to call back
        cabinet.open_queue = tuple(c for c in cabinet.open_queue if c != compartment_id)
        compartment = cabinet.compartments[compartment_id]
        if compartment.state is not CompartmentState.OPENING:
            continue  # it faulted while it waited: the fault keeps it
        cabinet.compartments[compartment_id] = transition(compartment, Trigger.GIVEN_UP)
        effects.append(Log(f"door {compartment_id} was not opened: {why}"))
    return effects


def finished(cabinet: Cabinet, compartment_id: str, now: datetime) -> list[Effect]:
    """The door of an OPENING compartment was seen open then closed: the parcel is out."""
    compartment = cabinet.compartments[compartment_id]
    removal = compartment.removal
    assert removal is not None and compartment.parcel_id is not None
    parcel = cabinet.parcels.pop(compartment.parcel_id)
    cabinet.compartments[compartment_id] = transition(
        compartment, Trigger.EMPTIED, parcel_id=None, removal=None
    )
    if removal.kind is RemovalKind.RETRIEVAL:
        assert removal.courier_id is not None
        return [
            fx.parcel_retrieved(
                compartment=compartment_id,
                parcel_id=parcel.parcel_id,
                courier_id=removal.courier_id,
                reason=retrieval_reason(parcel, now),
            ),
            Show(ParcelRetrievedShown(compartment_id)),
        ]
    return [
        fx.parcel_picked_up(
            compartment=compartment_id, parcel_id=parcel.parcel_id, method=removal.kind.value
        ),
        Show(ParcelTaken(compartment_id)),
    ]


def retrieval_reason(parcel: Parcel, now: datetime) -> str:
    """`expired` once its code's deadline has passed; before it, the cloud cancelled it."""
    if parcel.expires_at is not None and parcel.expires_at <= now:
        return "expired"
    return "courier_cancel"
