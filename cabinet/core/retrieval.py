"""Couriers take back the parcels the cloud marked for return (`retrievals.put`).

A signed-in courier sees how many wait (`SignedIn.retrievals_due`, `due()`), taps
`RetrieveParcels`, and their doors open one after another (the removal queue). Each parcel is
`parcel.retrieved` with the courier's id once its door was seen open and then closed; the reason
is `expired` when its code's deadline has passed and `courier_cancel` when the cloud asked for it
back before that (a cancelled shipment).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from cabinet.core.compartments import CompartmentState, Removal, RemovalKind, natural_key
from cabinet.core.deposit import session_for
from cabinet.core.effects import Effect, Log, Show
from cabinet.core.inputs import RetrievalsPut, RetrieveParcels
from cabinet.core.removal import queue
from cabinet.core.screens import NothingToRetrieve, RetrievalOpening
from cabinet.core.state import Cabinet, Parcel


def retrievals_put(cabinet: Cabinet, inp: RetrievalsPut) -> list[Effect]:
    """Mark parcels for return; ids the cabinet does not hold are logged and skipped."""
    effects: list[Effect] = []
    for parcel_id in inp.parcel_ids:
        parcel = cabinet.parcels.get(parcel_id)
        if parcel is None:
            effects.append(Log(f"retrievals.put: parcel {parcel_id} is not in this cabinet"))
            continue
        cabinet.parcels[parcel_id] = replace(parcel, retrieve=True)
    return effects


def due(cabinet: Cabinet) -> list[Parcel]:
    """Parcels waiting to be taken back, in door order."""
    waiting = [p for p in cabinet.parcels.values() if p.retrieve]
    return sorted(waiting, key=lambda p: natural_key(p.compartment))


def retrieve(cabinet: Cabinet, inp: RetrieveParcels, now: datetime) -> list[Effect]:
    """Queue every door holding a parcel to take back (faulted ones are listed as unavailable)."""
    session = session_for(cabinet, inp, now)
    opening: list[str] = []
    unavailable: list[str] = []
    for parcel in due(cabinet):
        compartment = cabinet.compartments[parcel.compartment]
        if compartment.state is CompartmentState.OCCUPIED:
            queue(cabinet, compartment.id, Removal(RemovalKind.RETRIEVAL, session.courier_id))
            opening.append(compartment.id)
        elif compartment.state is CompartmentState.FAULTED:
            unavailable.append(compartment.id)
        # OPENING: already on its way out (a pickup or a remote open got there first).
    if not opening and not unavailable:
        return [Show(NothingToRetrieve())]
    return [Show(RetrievalOpening(tuple(opening), tuple(unavailable)))]
