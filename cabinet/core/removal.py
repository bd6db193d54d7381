"""Taking parcels out: the one-door-at-a-time unlock queue, and what a finished removal emits.

Pickups and retrievals queue their doors; the next door is unlocked only once the door before
it has been seen open (or its unlock failed, or lapsed unseen). One door at a time so the person
in front of the cabinet sees which door is theirs now, and so two latch coils never pull at once
on a small power supply. Remote opens skip the queue: a manager acts on one door.

A removal is finished only when the door, opened after the cabinet unlocked it, is seen closed
again (`DoorChange.CYCLED`): never on a timeout. An unlock that lapses unseen puts the parcel
back to OCCUPIED, its code still valid.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from cabinet.core import effects as fx
from cabinet.core.compartments import CompartmentState, Removal, RemovalKind, Trigger, transition
from cabinet.core.effects import Effect, Show, Unlock
from cabinet.core.screens import ParcelRetrievedShown, ParcelTaken
from cabinet.core.state import Cabinet, Parcel


def queue(cabinet: Cabinet, compartment_id: str, removal: Removal) -> None:
    """Commit an OCCUPIED compartment to a removal; its unlock waits its turn."""
    compartment = cabinet.compartment(compartment_id)
    cabinet.compartments[compartment_id] = transition(
        compartment, Trigger.OPEN_FOR_REMOVAL, removal=removal
    )
    cabinet.open_queue = (*cabinet.open_queue, compartment_id)


def unlock_in_progress(cabinet: Cabinet) -> bool:
    """Whether a removal door has been unlocked and not yet seen open."""
    return any(
        c.state is CompartmentState.OPENING and c.unlocked_at is not None
        for c in cabinet.compartments.values()
    )


def advance(cabinet: Cabinet, now: datetime) -> list[Effect]:
    """Unlock the next queued door if none is on its way."""
    effects: list[Effect] = []
    while cabinet.open_queue and not unlock_in_progress(cabinet):
        compartment_id, *rest = cabinet.open_queue
        cabinet.open_queue = tuple(rest)
        compartment = cabinet.compartments[compartment_id]
        if compartment.state is not CompartmentState.OPENING:
            continue  # it faulted while it waited
        cabinet.compartments[compartment_id] = replace(compartment, unlocked_at=now)
        effects.append(Unlock(compartment_id))
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
