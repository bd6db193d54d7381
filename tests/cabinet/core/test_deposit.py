"""The courier's deposit session, end to end at the core."""

from __future__ import annotations

import pytest

from cabinet.core.compartments import CompartmentState, Size
from cabinet.core.errors import IllegalTransition
from cabinet.core.inputs import (
    Cancel,
    CompartmentService,
    Confirm,
    CourierGrant,
    CourierSignIn,
    CourierSignOut,
    CouriersPut,
    Larger,
    PhoneEntered,
    Reopen,
    SizeChosen,
    TrackingEntered,
    UnlockFailed,
)
from cabinet.core.screens import (
    CourierLocked,
    DepositCancelled,
    DepositDoorClosed,
    DoorFaulted,
    DoorMoved,
    NoFreeDoor,
    NoLargerDoor,
    PhoneAccepted,
    PhoneProblem,
    PhoneRejected,
    SignedIn,
    SignedOut,
    TrackingAccepted,
    TrackingProblem,
    TrackingRejected,
    UnknownCourier,
    WrongPin,
)
from cabinet.core.state import Step
from protocol.hashing import pin_hash, verify_pin
from tests.cabinet.core.harness import (
    PHONE,
    PHONE_E164,
    Harness,
    emitted,
    fake_pin_hash,
    shown,
    unlocks,
)


def at_size(h: Harness, tracking_no: str = "SF1001") -> None:
    h.do(TrackingEntered(tracking_no))
    h.do(PhoneEntered(PHONE))


def test_several_parcels_with_reopen_larger_and_cancel() -> None:
    h = Harness()
    assert shown(h.sign_in()) == [SignedIn("C1", retrievals_due=0)]

    # Parcel 1: straight through. S goes to the lowest-id S door at hand height.
    at_size(h, "sf1001")
    assert unlocks(h.do(SizeChosen(Size.S))) == ["A01"]
    assert h.cab.compartments["A01"].state is CompartmentState.RESERVED
    h.door("A01", True)
    assert shown(h.door("A01", False)) == [DepositDoorClosed("A01")]
    (deposited,) = emitted(h.do(Confirm()), "parcel.deposited")
    assert deposited == {
        "parcel_id": "P0001",
        "compartment": "A01",
        "size": "S",
        "tracking_no": "SF1001",  # normalised to upper case
        "phone": PHONE_E164,
        "courier_id": "C1",
    }
    assert h.cab.compartments["A01"].state is CompartmentState.OCCUPIED

    # Parcel 2: reopened once to fix it, then confirmed.
    at_size(h, "SF1002")
    assert unlocks(h.do(SizeChosen(Size.S))) == ["A02"]
    h.cycle("A02")
    assert unlocks(h.do(Reopen())) == ["A02"]
    with pytest.raises(IllegalTransition):
        h.do(Confirm())  # the door is about to spring open again
    h.door("A02", True)
    with pytest.raises(IllegalTransition):
        h.do(Confirm())  # and now it is open
    h.door("A02", False)
    assert emitted(h.do(Confirm()), "parcel.deposited")[0]["compartment"] == "A02"

    # Parcel 3: did not fit in S, moved to a larger size (M), confirmed there.
    at_size(h, "SF1003")
    assert unlocks(h.do(SizeChosen(Size.S))) == ["A03"]
    h.cycle("A03")
    assert unlocks(h.do(Larger())) == ["A04"]
    assert h.cab.compartments["A03"].state is CompartmentState.FREE
    h.cycle("A04")
    (event,) = emitted(h.do(Confirm()), "parcel.deposited")
    assert (event["compartment"], event["size"]) == ("A04", "M")

    # Parcel 4: cancelled; the door is given back.
    at_size(h, "SF1004")
    assert unlocks(h.do(SizeChosen(Size.L))) == ["B01"]
    h.cycle("B01")
    assert shown(h.do(Cancel())) == [DepositCancelled("B01")]
    assert h.cab.compartments["B01"].state is CompartmentState.FREE

    assert shown(h.do(CourierSignOut())) == [SignedOut("C1", deposited=3)]
    assert h.cab.session is None
    assert sorted(p.compartment for p in h.cab.parcels.values()) == ["A01", "A02", "A04"]


def test_sign_in_checks_the_real_scrypt_hash_and_locks_after_wrong_pins() -> None:
    h = Harness(verify_pin=verify_pin)  # the real scrypt check, once
    h.do(CouriersPut((CourierGrant("C9", pin_hash("135790", b"0123456789abcdef")),)))
    assert shown(h.do(CourierSignIn("nobody", "1"))) == [UnknownCourier("NOBODY")]
    assert shown(h.do(CourierSignIn("C9", "000000"))) == [WrongPin(attempts_left=4)]
    for _ in range(3):
        h.do(CourierSignIn("C9", "000000"))
    assert shown(h.do(CourierSignIn("C9", "000000"))) == [CourierLocked(300)]
    # Locked: even the right PIN is not checked.
    assert shown(h.do(CourierSignIn("C9", "135790"))) == [CourierLocked(300)]
    h.advance(300)
    assert shown(h.do(CourierSignIn("C9", "135790"))) == [SignedIn("C9", retrievals_due=0)]


def test_courier_ids_ignore_case_and_events_carry_the_registered_spelling() -> None:
    # The registry made `sf-001`; the kiosk's keyboard has capitals only.
    h = Harness()
    h.do(CouriersPut((CourierGrant("sf-001", fake_pin_hash("135790")),)))
    assert shown(h.do(CourierSignIn(" SF-001 ", "135790"))) == [
        SignedIn("sf-001", retrievals_due=0)
    ]
    assert h.cab.session is not None and h.cab.session.courier_id == "sf-001"
    h.do(CourierSignOut())
    # A really unknown id is named as typed (upper case), so the courier sees what was checked.
    assert shown(h.do(CourierSignIn("sf-002", "135790"))) == [UnknownCourier("SF-002")]


def test_tracking_number_is_validated() -> None:
    h = Harness()
    h.sign_in()
    assert shown(h.do(TrackingEntered("   "))) == [TrackingRejected(TrackingProblem.EMPTY)]
    assert shown(h.do(TrackingEntered("X" * 41))) == [TrackingRejected(TrackingProblem.TOO_LONG)]
    bad = TrackingRejected(TrackingProblem.BAD_CHARACTERS)
    assert shown(h.do(TrackingEntered("SF 10"))) == [bad]
    assert shown(h.do(TrackingEntered("SF10;DROP"))) == [bad]
    h.deposit("SF2001")
    duplicate = TrackingRejected(TrackingProblem.ALREADY_IN_CABINET)
    assert shown(h.do(TrackingEntered(" sf2001 "))) == [duplicate]
    assert shown(h.do(TrackingEntered("JD-77"))) == [TrackingAccepted("JD-77")]


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", PhoneProblem.EMPTY),
        ("12345", PhoneProblem.INVALID),
        ("not a phone", PhoneProblem.INVALID),
        ("01012345678", PhoneProblem.NOT_MOBILE),  # a Beijing landline
    ],
)
def test_phone_is_validated(typed: str, problem: PhoneProblem) -> None:
    h = Harness()
    h.sign_in()
    h.do(TrackingEntered("SF3001"))
    assert shown(h.do(PhoneEntered(typed))) == [PhoneRejected(problem)]
    assert h.cab.session is not None and h.cab.session.step is Step.PHONE


@pytest.mark.parametrize("typed", ["13812345678", "+86 138 1234 5678", "+8613812345678"])
def test_phone_is_stored_as_e164_and_shown_masked(typed: str) -> None:
    h = Harness()
    h.sign_in()
    h.do(TrackingEntered("SF3002"))
    (screen,) = shown(h.do(PhoneEntered(typed)))
    assert isinstance(screen, PhoneAccepted)
    assert screen.phone_masked == "+86 138****5678"  # the one rule, protocol.phones
    assert screen.free_by_size == {Size.S: 3, Size.M: 2, Size.L: 1, Size.XL: 1}
    assert h.cab.session is not None and h.cab.session.draft.phone == PHONE_E164


def test_no_free_door_of_that_size_or_larger() -> None:
    h = Harness()
    h.sign_in()
    h.deposit("XL1", Size.XL)
    at_size(h, "XL2")
    assert shown(h.do(SizeChosen(Size.XL))) == [NoFreeDoor(Size.XL)]
    assert h.cab.session is not None and h.cab.session.step is Step.SIZE
    # A smaller parcel falls back to a bigger door when its own size is gone.
    assert unlocks(h.do(SizeChosen(Size.L))) == ["B01"]
    h.cycle("B01")
    assert shown(h.do(Larger())) == [NoLargerDoor("B01")]


def test_unlock_failure_moves_the_parcel_to_another_door() -> None:
    h = Harness()
    h.sign_in()
    at_size(h)
    assert unlocks(h.do(SizeChosen(Size.M))) == ["A04"]
    effects = h.do(UnlockFailed("A04", "no release after 3 tries"))
    assert emitted(effects, "lock.fault") == [
        {"compartment": "A04", "detail": "no release after 3 tries"}
    ]
    assert unlocks(effects) == ["A05"]
    assert DoorMoved("A04", "A05") in shown(effects)
    assert h.cab.compartments["A04"].state is CompartmentState.FAULTED
    h.cycle("A05")
    (event,) = emitted(h.do(Confirm()), "parcel.deposited")
    assert event["compartment"] == "A05"
    # The faulted door is not offered again.
    at_size(h, "SF1002")
    assert unlocks(h.do(SizeChosen(Size.M))) == ["B01"]


def test_unlock_failure_with_no_other_door_goes_back_to_size() -> None:
    h = Harness()
    h.sign_in()
    at_size(h)
    assert unlocks(h.do(SizeChosen(Size.XL))) == ["B02"]
    effects = h.do(UnlockFailed("B02", "jammed"))
    assert unlocks(effects) == []
    assert NoFreeDoor(Size.XL) in shown(effects)
    assert h.cab.session is not None and h.cab.session.step is Step.SIZE


def test_reopen_failure_keeps_the_courier_at_the_door() -> None:
    h = Harness()
    h.sign_in()
    at_size(h)
    h.do(SizeChosen(Size.S))
    h.cycle("A01")
    h.do(Reopen())
    effects = h.do(UnlockFailed("A01", "jammed"))
    assert unlocks(effects) == []  # the parcel may be inside: no silent move
    assert DoorFaulted("A01") in shown(effects)
    with pytest.raises(IllegalTransition):
        h.do(Reopen())
    before = h.cab.copy()
    for in_service in (True, False):  # not while the courier decides about that door
        with pytest.raises(IllegalTransition):
            h.do(CompartmentService("A01", in_service))
        assert h.cab == before
    (event,) = emitted(h.do(Confirm()), "parcel.deposited")
    assert event["compartment"] == "A01"
    compartment = h.cab.compartments["A01"]
    assert compartment.state is CompartmentState.FAULTED
    assert compartment.parcel_id == event["parcel_id"]


def test_steps_out_of_order_raise_and_change_nothing() -> None:
    h = Harness()
    before = h.cab.copy()
    for inp in (TrackingEntered("X1"), Confirm(), CourierSignOut(), SizeChosen(Size.S)):
        with pytest.raises(IllegalTransition):
            h.do(inp)
        assert h.cab == before
    h.sign_in()
    at_size(h)
    h.do(SizeChosen(Size.S))
    before = h.cab.copy()
    for inp in (Confirm(), CourierSignOut(), TrackingEntered("X2"), CourierSignIn("C1", "x")):
        with pytest.raises(IllegalTransition):
            h.do(inp)
        assert h.cab == before
    h.door("A01", True)
    before = h.cab.copy()
    for inp in (Cancel(), Larger(), Reopen(), Confirm()):  # the door is open
        with pytest.raises(IllegalTransition):
            h.do(inp)
        assert h.cab == before


def test_idle_courier_is_signed_out_and_a_closed_cycled_door_is_recorded() -> None:
    h = Harness()
    h.sign_in()
    at_size(h)
    h.do(SizeChosen(Size.S))
    h.door("A01", True)
    h.advance(170)
    h.tick(100)
    assert h.cab.session is not None  # door open: the courier is at work
    h.door("A01", False)
    h.advance(179)
    h.tick()
    assert h.cab.session is not None
    effects = h.tick(1)
    assert emitted(effects, "parcel.deposited")[0]["compartment"] == "A01"
    assert SignedOut("C1", deposited=1, idle=True) in shown(effects)
    assert h.cab.session is None


def test_idle_courier_at_an_unopened_door_gives_it_back() -> None:
    h = Harness()
    h.sign_in()
    at_size(h)
    h.do(SizeChosen(Size.S))
    h.door("A01", False)  # the driver reads it shut; it never opens
    effects = h.tick(180)
    assert emitted(effects) == []
    assert DepositCancelled("A01") in shown(effects)
    assert h.cab.session is None
    assert h.cab.compartments["A01"].state is CompartmentState.FREE


def test_idle_before_a_door_just_signs_out() -> None:
    h = Harness()
    h.sign_in()
    h.do(TrackingEntered("SF1"))
    assert shown(h.tick(180)) == [SignedOut("C1", deposited=0, idle=True)]
