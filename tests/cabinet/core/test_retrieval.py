"""Couriers taking back the parcels the cloud marked for return."""

from __future__ import annotations

import pytest

from cabinet.core.compartments import CompartmentState, Size
from cabinet.core.errors import IllegalTransition
from cabinet.core.inputs import CourierSignOut, RetrievalsPut, RetrieveParcels, UnlockFailed
from cabinet.core.screens import NothingToRetrieve, RetrievalOpening, SignedIn
from tests.cabinet.core.harness import Harness, emitted, shown, unlocks


def test_retrieval_door_by_door_after_open_then_close() -> None:
    h = Harness()
    h.sign_in()
    p1, p2, p3 = (h.deposit(f"SF{n}", Size.S) for n in range(3))
    h.do(CourierSignOut())
    h.grant(p1, "11112222", valid_s=3600)
    h.grant(p2, "33334444", valid_s=7 * 86400)
    h.advance(7200)  # p1's code has expired; p2's has not (the shipment was cancelled)

    effects = h.do(RetrievalsPut((p1, p2, "P-unknown")))
    assert [e.message for e in effects] == [
        "retrievals.put: parcel P-unknown is not in this cabinet"
    ]

    assert shown(h.sign_in("C2")) == [SignedIn("C2", retrievals_due=2)]
    effects = h.do(RetrieveParcels())
    assert shown(effects) == [RetrievalOpening(("A01", "A02"))]
    assert unlocks(effects) == ["A01"]
    assert unlocks(h.door("A01", True)) == ["A02"]
    assert emitted(h.door("A01", False), "parcel.retrieved") == [
        {"compartment": "A01", "parcel_id": p1, "courier_id": "C2", "reason": "expired"}
    ]
    h.door("A02", True)
    assert emitted(h.door("A02", False), "parcel.retrieved") == [
        {"compartment": "A02", "parcel_id": p2, "courier_id": "C2", "reason": "courier_cancel"}
    ]
    assert set(h.cab.parcels) == {p3}
    assert shown(h.do(RetrieveParcels())) == [NothingToRetrieve()]


def test_retrieval_skips_faulted_doors_and_needs_a_courier() -> None:
    h = Harness()
    h.sign_in()
    p1 = h.deposit("SF1", Size.S)
    h.do(CourierSignOut())
    h.do(RetrievalsPut((p1,)))
    with pytest.raises(IllegalTransition):
        h.do(RetrieveParcels())
    h.sign_in()
    h.do(RetrieveParcels())
    h.do(UnlockFailed("A01", "jammed"))
    assert h.cab.compartments["A01"].state is CompartmentState.FAULTED
    assert shown(h.do(RetrieveParcels())) == [RetrievalOpening((), ("A01",))]


def test_retrieval_doors_still_waiting_when_the_courier_signs_out_are_never_unlocked() -> None:
    h = Harness()
    h.sign_in()
    p1, p2 = (h.deposit(f"SF{n}", Size.S) for n in range(2))
    h.do(RetrievalsPut((p1, p2)))
    assert unlocks(h.do(RetrieveParcels())) == ["A01"]  # A02 waits behind it
    before = len(h.effects)
    h.do(CourierSignOut())  # the courier walks off before A01 was seen open
    for _ in range(70):
        h.tick(1)
    assert unlocks(h.effects[before:]) == []  # A02 never fires for a courier who has gone
    assert h.cab.compartments["A02"].state is CompartmentState.OCCUPIED
    assert p2 in h.cab.parcels and h.cab.parcels[p2].retrieve  # still due for the next one
