"""The removal queue: a door that is never seen open holds the next one for seconds, not the whole
unlock window, and a queued door whose person gave up is never fired (docs/people.md)."""

from __future__ import annotations

from cabinet.core.compartments import CompartmentState, Size
from cabinet.core.effects import Unlock
from cabinet.core.inputs import CourierSignOut, PickupClosed, UnlockFailed
from cabinet.core.screens import DoorNotSeenOpen, DoorNowOpening, DoorsOpening, ParcelTaken
from tests.cabinet.core.harness import Harness, emitted, event_types, shown, unlocks

FIRST, SECOND = "11111111", "22222222"  # two recipients' codes


def two_recipients() -> tuple[Harness, str, str]:
    """A01 holds the first recipient's parcel, A02 the second's."""
    h = Harness()
    h.sign_in()
    p1 = h.deposit("SF1", Size.S)
    p2 = h.deposit("SF2", Size.S)
    h.do(CourierSignOut())
    h.grant(p1, FIRST)
    h.grant(p2, SECOND)
    return h, p1, p2


def stuck_door_ahead(h: Harness) -> None:
    """A01's sensor is stuck reading "open"; the first recipient's code unlocks it and the
    cabinet never sees it move."""
    assert event_types(h.door("A01", True)) == ["door.forced"]  # the sensor sticks
    assert unlocks(h.enter(FIRST)) == ["A01"]
    h.tick(1)
    assert h.cab.compartments["A01"].door.value == "open"  # no change the cabinet could see


def test_a_second_person_who_waits_gets_their_door_in_seconds_not_a_minute() -> None:
    h, _p1, p2 = two_recipients()
    stuck_door_ahead(h)

    effects = h.enter(SECOND)
    # Told at once that their door waits for another one, and nothing fired yet.
    assert shown(effects) == [DoorsOpening(("A02",), after_others=True)]
    assert unlocks(effects) == []

    assert unlocks(h.tick(1)) == []  # 2 s after A01's pulse: its lock may still be letting go
    effects = h.tick(1)  # 3 s: the pulse has settled, the queue moves on
    assert unlocks(effects) == ["A02"]
    assert shown(effects) == [DoorNowOpening("A02")]

    effects = h.cycle("A02")
    assert emitted(effects, "parcel.picked_up") == [
        {"compartment": "A02", "parcel_id": p2, "method": "code"}
    ]
    assert ParcelTaken("A02") in shown(effects)


def test_a_queued_door_is_never_fired_after_its_person_gave_up() -> None:
    h, _p1, p2 = two_recipients()
    stuck_door_ahead(h)
    (opening,) = shown(h.enter(SECOND))
    before = len(h.effects)

    h.advance(1)  # still behind A01's pulse; the person taps Done and walks away
    h.do(PickupClosed(opening.pickup))
    for _ in range(130):  # past A01's settle time, its unlock window, and the left-open alarm
        h.tick(1)

    assert "A02" not in unlocks(h.effects[before:])  # no unlock frame for A02, ever
    assert h.cab.open_queue == ()
    a02 = h.cab.compartments["A02"]
    assert a02.state is CompartmentState.OCCUPIED and a02.unlocked_at is None
    assert p2 in h.cab.parcels  # the parcel is still live ...
    effects = h.enter(SECOND)  # ... and the code still opens it, at once this time
    assert shown(effects) == [DoorsOpening(("A02",))]
    assert unlocks(effects) == ["A02"]


def test_closing_the_screen_keeps_a_door_already_unlocked_and_other_peoples_doors() -> None:
    h, p1, p2 = two_recipients()
    assert unlocks(h.enter(FIRST)) == ["A01"]  # the first person's door pops (not yet seen)
    (opening,) = shown(h.enter(SECOND))  # a second person at the screen: their door waits
    h.do(PickupClosed(opening.pickup))  # they leave: only their queued door is dropped
    assert h.cab.compartments["A02"].state is CompartmentState.OCCUPIED
    assert h.cab.compartments["A01"].unlocked_at is not None  # A01's unlock is still expected
    assert emitted(h.cycle("A01"), "parcel.picked_up")[0]["parcel_id"] == p1
    # A pulse cannot be called back: a pickup screen closed after its door was unlocked leaves
    # the unlock expected, so the door opening late is a pickup, not a forced door.
    effects = h.enter(SECOND)
    assert unlocks(effects) == ["A02"]
    h.do(PickupClosed(shown(effects)[0].pickup))
    assert emitted(h.cycle("A02"), "parcel.picked_up")[0]["parcel_id"] == p2


def test_an_unlock_never_seen_open_tells_the_recipient_their_code_still_works() -> None:
    h, p1, _p2 = two_recipients()
    stuck_door_ahead(h)
    effects = h.tick(h.cab.config.unlock_window_s)
    assert DoorNotSeenOpen("A01") in shown(effects)
    assert h.cab.compartments["A01"].state is CompartmentState.OCCUPIED
    assert p1 in h.cab.parcels


def test_a_door_seen_open_moves_the_queue_at_once_and_a_fault_too() -> None:
    h, _p1, _p2 = two_recipients()
    h.enter(FIRST)
    effects = h.enter(SECOND)
    assert shown(effects) == [DoorsOpening(("A02",), after_others=True)]
    # A01's lock reports no release straight away: A02 goes next, in the same step.
    effects = h.do(UnlockFailed("A01", "no release"))
    assert [e for e in effects if isinstance(e, Unlock)] == [Unlock("A02")]
    assert DoorNowOpening("A02") in shown(effects)


def test_a_late_close_of_an_earlier_pickup_screen_drops_nothing_of_the_newer_one() -> None:
    h, _p1, _p2 = two_recipients()
    stuck_door_ahead(h)
    (first,) = shown(h.enter(FIRST))  # the first code again: its screen comes back
    (second,) = shown(h.enter(SECOND))  # a scanned QR replaced that screen; A02 waits
    assert h.do(PickupClosed(first.pickup)) == []  # the first screen's close arrives late
    assert h.cab.open_queue == ("A02",)
    assert unlocks(h.tick(2)) == ["A02"]
    assert second.pickup != first.pickup
