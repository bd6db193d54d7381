"""Doors reserved for announced parcels, and the courier's deposit of one, at the core."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cabinet.core import Cabinet
from cabinet.core.compartments import CompartmentState, Size
from cabinet.core.errors import IllegalTransition, InvalidInput
from cabinet.core.inputs import (
    Cancel,
    CompartmentService,
    CompartmentsRelease,
    CompartmentsReserve,
    Confirm,
    CourierGrant,
    CouriersPut,
    OpenReserved,
    PhoneEntered,
    SizeChosen,
    TrackingEntered,
)
from cabinet.core.reservations import NoDoorToReserve
from cabinet.core.screens import (
    NoFreeDoor,
    PhoneAccepted,
    ReservationFound,
    ReservationProblem,
    ReservationRefused,
    TrackingAccepted,
)
from cabinet.core.state import Step
from tests.cabinet.core.harness import (
    PHONE_E164,
    Harness,
    emitted,
    fake_pin_hash,
    shown,
    unlocks,
)

DAY = timedelta(days=1)


def reserve(
    h: Harness,
    parcel_id: str = "SHIP1",
    size: Size = Size.M,
    *,
    tracking_no: str | None = "SF9001",
    carrier: str | None = "sf",
    until: timedelta = DAY,
) -> list:
    return h.do(
        CompartmentsReserve(
            parcel_id=parcel_id,
            size=size,
            until=h.now + until,
            phone=PHONE_E164,
            tracking_no=tracking_no,
            carrier_id=carrier,
        )
    )


def courier(h: Harness, courier_id: str = "C1", carrier: str | None = "sf") -> None:
    h.do(CouriersPut((CourierGrant(courier_id, fake_pin_hash("246810"), carrier),)))
    h.sign_in(courier_id)


def test_an_announced_parcel_goes_in_with_two_taps_under_its_announced_id() -> None:
    h = Harness()
    reserve(h)
    assert h.cab.reservations["SHIP1"].compartment == "A04"  # the first M door
    courier(h)

    screens = shown(h.do(TrackingEntered(" sf9001 ")))
    assert screens == [ReservationFound("SF9001", "+86 138****5678", Size.M)]
    assert h.cab.session is not None and h.cab.session.step is Step.RESERVED

    assert unlocks(h.do(OpenReserved())) == ["A04"]
    h.cycle("A04")
    (event,) = emitted(h.do(Confirm()), "parcel.deposited")
    assert event == {
        "parcel_id": "SHIP1",  # the cloud links the deposit to its shipment by this id
        "compartment": "A04",
        "size": "M",
        "tracking_no": "SF9001",
        "phone": PHONE_E164,
        "courier_id": "C1",
    }
    assert h.cab.compartments["A04"].state is CompartmentState.OCCUPIED
    assert h.cab.reservations == {}


def test_a_reserved_door_is_given_to_no_other_deposit() -> None:
    h = Harness()
    reserve(h, "SHIP1", Size.M)
    reserve(h, "SHIP2", Size.M, tracking_no="SF9002")
    assert {r.compartment for r in h.cab.reservations.values()} == {"A04", "A05"}
    courier(h)
    h.do(TrackingEntered("OTHER1"))
    (accepted,) = shown(h.do(PhoneEntered("13812345678")))
    assert isinstance(accepted, PhoneAccepted)
    assert accepted.free_by_size[Size.M] == 0  # both M doors are held
    # An M parcel goes to the L door: the held M doors stay for their parcels.
    assert unlocks(h.do(SizeChosen(Size.M))) == ["B01"]


def test_a_full_cabinet_refuses_the_reservation_naming_why() -> None:
    h = Harness()
    reserve(h, "SHIP1", Size.L, tracking_no="SF1")
    reserve(h, "SHIP2", Size.L, tracking_no="SF2")  # the XL door: the next larger
    with pytest.raises(NoDoorToReserve, match="no free door of size L or larger"):
        reserve(h, "SHIP3", Size.L, tracking_no="SF3")
    assert set(h.cab.reservations) == {"SHIP1", "SHIP2"}


def test_a_reservation_ends_at_its_time_on_release_and_survives_a_snapshot() -> None:
    h = Harness()
    reserve(h, "SHIP1", until=timedelta(hours=2))
    reserve(h, "SHIP2", tracking_no="SF9002")
    restored = Cabinet.from_dict(h.cab.to_dict())
    assert restored.reservations == h.cab.reservations

    h.do(CompartmentsRelease(("SHIP2", "UNKNOWN")))  # an unknown one is no error
    assert set(h.cab.reservations) == {"SHIP1"}
    h.tick(2 * 3600)
    assert h.cab.reservations == {}
    courier(h)
    assert shown(h.do(TrackingEntered("SF9001"))) == [TrackingAccepted("SF9001")]  # unannounced


def test_a_courier_of_another_carrier_is_refused_with_the_cause() -> None:
    h = Harness()
    reserve(h, carrier="sf")
    courier(h, "C2", carrier="zto")
    screens = shown(h.do(TrackingEntered("SF9001")))
    assert screens == [ReservationRefused("SF9001", ReservationProblem.OTHER_CARRIER)]
    assert h.cab.session is not None and h.cab.session.step is Step.TRACKING
    assert "SHIP1" in h.cab.reservations  # nothing was taken


def test_without_a_carrier_the_courier_types_the_announced_phone_to_get_the_door() -> None:
    # A merchant's shipment: nobody vouches for the announced phone, so the courier types it.
    h = Harness()
    reserve(h, "SHIP2", tracking_no="SF9002", carrier=None)
    courier(h, "C2", carrier="zto")
    assert shown(h.do(TrackingEntered("SF9002"))) == [TrackingAccepted("SF9002")]
    (found,) = shown(h.do(PhoneEntered("13812345678")))
    assert found == ReservationFound("SF9002", "+86 138****5678", Size.M)
    assert unlocks(h.do(OpenReserved())) == ["A04"]
    h.cycle("A04")
    (event,) = emitted(h.do(Confirm()), "parcel.deposited")
    assert event["parcel_id"] == "SHIP2"

    # Another phone typed: the parcel goes in as an unannounced one, the door stays held.
    reserve(h, "SHIP3", tracking_no="SF9003", carrier=None)
    h.do(TrackingEntered("SF9003"))
    (accepted,) = shown(h.do(PhoneEntered("13900001111")))
    assert isinstance(accepted, PhoneAccepted)
    assert h.cab.session is not None and h.cab.session.draft.reservation is None
    opened = unlocks(h.do(SizeChosen(Size.M)))
    assert opened != [h.cab.reservations["SHIP3"].compartment]
    h.cycle(opened[0])
    (event,) = emitted(h.do(Confirm()), "parcel.deposited")
    assert event["parcel_id"] != "SHIP3" and "SHIP3" in h.cab.reservations


def test_a_courier_the_cabinet_knows_no_carrier_of_is_refused_too() -> None:
    h = Harness()
    reserve(h, carrier="sf")
    courier(h, "C3", carrier=None)
    (screen,) = shown(h.do(TrackingEntered("SF9001")))
    assert screen == ReservationRefused("SF9001", ReservationProblem.OTHER_CARRIER)


def test_cancel_at_the_door_keeps_the_reservation_and_a_dead_door_is_replaced() -> None:
    h = Harness()
    reserve(h)
    courier(h)
    h.do(TrackingEntered("SF9001"))
    assert unlocks(h.do(OpenReserved())) == ["A04"]
    h.do(Cancel())
    assert h.cab.compartments["A04"].state is CompartmentState.FREE
    assert h.cab.reservations["SHIP1"].compartment == "A04"

    # The held door is taken out of service meanwhile: another M door opens instead.
    h.do(CompartmentService("A04", in_service=False))
    h.do(TrackingEntered("SF9001"))
    assert unlocks(h.do(OpenReserved())) == ["A05"]


def test_a_reservation_released_while_the_courier_looks_at_it_is_lapsed() -> None:
    h = Harness()
    reserve(h)
    courier(h)
    h.do(TrackingEntered("SF9001"))
    h.do(CompartmentsRelease(("SHIP1",)))
    assert shown(h.do(OpenReserved())) == [ReservationRefused("SF9001", ReservationProblem.LAPSED)]
    assert unlocks(h.effects) == []


def test_no_free_door_when_the_held_one_broke_and_none_is_left() -> None:
    h = Harness()
    reserve(h, size=Size.XL, tracking_no="SF9")
    courier(h)
    h.do(CompartmentService("B02", in_service=False))
    h.do(TrackingEntered("SF9"))
    assert shown(h.do(OpenReserved())) == [NoFreeDoor(Size.XL)]


def test_bad_reservations_are_refused() -> None:
    h = Harness()
    with pytest.raises(InvalidInput, match="is past"):
        reserve(h, until=timedelta(0))
    reserve(h, "SHIP1")
    with pytest.raises(IllegalTransition, match="reserved for parcel SHIP1"):
        reserve(h, "SHIP9")  # the same tracking number
    # Sent again for the same parcel: its terms change, its door stays.
    reserve(h, "SHIP1", until=2 * DAY)
    assert h.cab.reservations["SHIP1"].compartment == "A04"
    assert h.cab.reservations["SHIP1"].until == h.now + 2 * DAY
