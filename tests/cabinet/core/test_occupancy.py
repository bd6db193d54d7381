"""Occupancy sensors in the pure core: deposits, pickups and the mismatch alarm (occupancy.py).

A mixed layout: the S doors have no sensor (8A/80 boards), the M doors have one (KR-CU).
"""

from __future__ import annotations

from cabinet.core.compartments import Compartment, CompartmentState, Size
from cabinet.core.inputs import (
    Cancel,
    Confirm,
    CourierSignOut,
    OccupancyObserved,
    PhoneEntered,
    Reopen,
    SizeChosen,
    TrackingEntered,
)
from cabinet.core.screens import Deposited, DepositEmpty, ParcelStillInside, ParcelTaken
from tests.cabinet.core.harness import (
    PHONE,
    Harness,
    emitted,
    event_types,
    shown,
    unlocks,
)

LAYOUT = (
    Compartment("A01", Size.S),
    Compartment("K01", Size.M, sensor=True),
    Compartment("K02", Size.M, sensor=True),
)


def _harness() -> Harness:
    h = Harness(layout=LAYOUT)
    for compartment in LAYOUT:
        h.door(compartment.id, False)
        if compartment.sensor:
            h.do(OccupancyObserved(compartment.id, False))
    return h


def _to_door(h: Harness, size: Size) -> str:
    h.sign_in()
    h.do(TrackingEntered("SF1001"))
    h.do(PhoneEntered(PHONE))
    (door,) = unlocks(h.do(SizeChosen(size)))
    return door


def test_a_sensed_deposit_is_confirmed_only_with_something_inside() -> None:
    h = _harness()
    door = _to_door(h, Size.M)
    assert door == "K01"
    h.cycle(door)  # opened and shut, nothing put in
    assert shown(h.do(Confirm())) == [DepositEmpty("K01")]
    assert h.cab.compartments["K01"].state is CompartmentState.RESERVED
    assert unlocks(h.do(Reopen())) == ["K01"]
    h.door(door, True)
    h.do(OccupancyObserved(door, True))  # the parcel goes in
    h.door(door, False)
    effects = h.do(Confirm())
    assert isinstance(shown(effects)[0], Deposited)
    assert event_types(effects) == ["parcel.deposited"]


def test_an_unsensed_door_takes_the_couriers_word() -> None:
    h = _harness()
    door = _to_door(h, Size.S)
    assert door == "A01"
    h.cycle(door)
    assert isinstance(shown(h.do(Confirm()))[0], Deposited)


def test_an_idle_courier_over_an_empty_sensed_door_gives_it_back() -> None:
    h = _harness()
    door = _to_door(h, Size.M)
    h.cycle(door)
    effects = h.tick(h.cab.config.courier_idle_s + 1)
    assert "parcel.deposited" not in event_types(effects)
    assert h.cab.compartments[door].state is CompartmentState.FREE


def test_a_pickup_shut_on_the_parcel_keeps_it_live() -> None:
    h = _harness()
    door = _to_door(h, Size.M)
    h.door(door, True)
    h.do(OccupancyObserved(door, True))
    h.door(door, False)
    (deposited,) = emitted(h.do(Confirm()), "parcel.deposited")
    h.grant(deposited["parcel_id"], "12345678")
    h.do(CourierSignOut())
    assert unlocks(h.enter("12345678")) == [door]
    effects = h.cycle(door)  # opened and shut, the parcel still in
    assert shown(effects) == [ParcelStillInside(door)]
    assert "parcel.picked_up" not in event_types(effects)
    assert h.cab.compartments[door].state is CompartmentState.OCCUPIED
    # Its code still opens it; taken this time, the pickup finishes.
    assert unlocks(h.enter("12345678")) == [door]
    h.door(door, True)
    h.do(OccupancyObserved(door, False))
    effects = h.door(door, False)
    assert shown(effects) == [ParcelTaken(door)]
    assert event_types(effects) == ["parcel.picked_up"]


def test_a_disagreeing_shut_door_raises_one_alarm() -> None:
    h = _harness()
    effects = h.do(OccupancyObserved("K02", True))  # something in a free compartment
    assert emitted(effects, "door.occupancy_mismatch") == [
        {"compartment": "K02", "expected": "empty", "sensed": "occupied"}
    ]
    assert not emitted(h.do(OccupancyObserved("K02", True)), "door.occupancy_mismatch")
    h.do(OccupancyObserved("K02", False))  # taken away: agreed again
    again = h.do(OccupancyObserved("K02", True))
    assert len(emitted(again, "door.occupancy_mismatch")) == 1  # a new disagreement


def test_a_deposit_cancelled_over_a_full_compartment_is_an_alarm() -> None:
    h = _harness()
    door = _to_door(h, Size.M)
    h.door(door, True)
    h.do(OccupancyObserved(door, True))
    h.door(door, False)
    effects = h.do(Cancel())  # "it is empty", says the courier; the sensor disagrees
    assert emitted(effects, "door.occupancy_mismatch") == [
        {"compartment": door, "expected": "empty", "sensed": "occupied"}
    ]


def test_readings_for_a_door_without_a_sensor_change_nothing() -> None:
    h = _harness()
    before = h.cab.compartments["A01"]
    h.do(OccupancyObserved("A01", True))
    assert h.cab.compartments["A01"] == before
