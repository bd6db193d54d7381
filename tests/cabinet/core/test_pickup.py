"""Recipients: codes, QR payloads, one door after another, remote open, resend."""

from __future__ import annotations

import pytest

from cabinet.core.compartments import CompartmentState, Size
from cabinet.core.errors import IllegalTransition, UnknownCompartment
from cabinet.core.inputs import (
    CodesRevoke,
    CompartmentOpen,
    CourierSignOut,
    PhoneEntered,
    QrScanned,
    ResendRequested,
    SizeChosen,
    TrackingEntered,
    UnlockFailed,
)
from cabinet.core.pickup import parse_qr, qr_payload
from cabinet.core.screens import (
    CodeExpired,
    DoorFaulted,
    DoorsOpening,
    MalformedCode,
    ParcelTaken,
    ResendAccepted,
    ResendTooSoon,
    UnreadableQr,
    WrongCabinet,
    WrongCode,
)
from tests.cabinet.core.harness import (
    CAB,
    PHONE,
    PHONE_E164,
    Harness,
    emitted,
    event_types,
    shown,
    unlocks,
)

CODE = "12345678"


def with_parcels(*sizes: Size) -> tuple[Harness, list[str]]:
    h = Harness()
    h.sign_in()
    ids = [h.deposit(f"SF{i}", size) for i, size in enumerate(sizes)]
    h.do(CourierSignOut())
    return h, ids


def test_one_code_opens_two_doors_one_after_another() -> None:
    h, (p1, p2) = with_parcels(Size.S, Size.M)
    h.grant(p1, CODE)
    h.grant(p2, CODE)  # one code for the recipient's parcels at this cabinet

    effects = h.enter("1234 5678")
    assert shown(effects) == [DoorsOpening(("A01", "A04"))]
    assert unlocks(effects) == ["A01"]  # only the first door, for now
    assert h.cab.compartments["A04"].state is CompartmentState.OPENING

    assert unlocks(h.door("A01", True)) == ["A04"]  # the first is open: the second unlocks
    assert emitted(h.effects, "parcel.picked_up") == []  # open is not yet picked up
    effects = h.door("A04", True)
    assert unlocks(effects) == [] and emitted(effects) == []

    effects = h.door("A01", False)
    assert emitted(effects, "parcel.picked_up") == [
        {"compartment": "A01", "parcel_id": p1, "method": "code"}
    ]
    assert ParcelTaken("A01") in shown(effects)
    assert emitted(h.door("A04", False), "parcel.picked_up")[0]["parcel_id"] == p2
    assert h.cab.parcels == {}
    assert h.cab.compartments["A01"].state is CompartmentState.FREE
    # The code went with the parcels.
    assert shown(h.enter(CODE)) == [WrongCode(attempts_left=2)]


def test_never_picked_up_on_a_timeout() -> None:
    h, (p1,) = with_parcels(Size.S)
    h.grant(p1, CODE)
    assert unlocks(h.enter(CODE)) == ["A01"]
    effects = h.tick(3600)  # the door was never seen open: the unlock lapses
    assert emitted(effects) == []
    assert h.cab.compartments["A01"].state is CompartmentState.OCCUPIED
    assert p1 in h.cab.parcels
    # The code still works.
    assert unlocks(h.enter(CODE)) == ["A01"]
    h.door("A01", True)
    effects = h.tick(3600)  # open for an hour: an alarm, never a pickup
    assert event_types(effects) == ["door.left_open"]
    assert emitted(h.door("A01", False), "parcel.picked_up")[0]["parcel_id"] == p1


def test_a_door_never_seen_open_holds_the_queue_only_while_its_lock_settles() -> None:
    h, (p1, p2) = with_parcels(Size.S, Size.S)
    h.grant(p1, CODE)
    h.grant(p2, CODE)
    assert unlocks(h.enter(CODE)) == ["A01"]
    assert unlocks(h.tick(2)) == []
    assert unlocks(h.tick(1)) == ["A02"]  # unlock_settle_s after A01's pulse, not 60 s
    assert h.cab.compartments["A01"].unlocked_at is not None  # A01 may still be pulled open
    h.tick(60)
    assert h.cab.compartments["A01"].state is CompartmentState.OCCUPIED


def test_a_lock_fault_during_pickup_moves_on_and_keeps_the_parcel() -> None:
    h, (p1, p2) = with_parcels(Size.S, Size.S)
    h.grant(p1, CODE)
    h.grant(p2, CODE)
    h.enter(CODE)
    effects = h.do(UnlockFailed("A01", "no release"))
    assert unlocks(effects) == ["A02"]
    assert DoorFaulted("A01") in shown(effects)
    assert h.cab.compartments["A01"].state is CompartmentState.FAULTED
    assert h.cab.compartments["A01"].parcel_id == p1
    # Next time the code shows the faulted door as unavailable and opens nothing there.
    h.cycle("A02")
    assert shown(h.enter(CODE)) == [DoorsOpening((), ("A01",))]
    # A manager's remote open retries it; open then shut is a pickup on the recipient's behalf.
    assert unlocks(h.do(CompartmentOpen("A01", "recipient called", "mgr-1"))) == ["A01"]
    assert emitted(h.cycle("A01"), "parcel.picked_up") == [
        {"compartment": "A01", "parcel_id": p1, "method": "remote"}
    ]


def test_expired_code_is_distinct_and_opens_nothing() -> None:
    h, (p1,) = with_parcels(Size.S)
    h.grant(p1, CODE, valid_s=60)
    h.advance(60)
    effects = h.enter(CODE)
    assert shown(effects) == [CodeExpired()]
    assert unlocks(effects) == []


def test_revoked_code_is_just_wrong() -> None:
    h, (p1,) = with_parcels(Size.S)
    h.grant(p1, CODE)
    h.do(CodesRevoke((p1,)))
    assert shown(h.enter(CODE)) == [WrongCode(attempts_left=2)]


def test_malformed_codes_are_refused_without_counting() -> None:
    h, _ = with_parcels(Size.S)
    for typed in ("", "1234", "123456789", "abcdefgh", "１２３４５６７８"):
        assert shown(h.enter(typed)) == [MalformedCode(8)]
    assert h.cab.keypad.failures_at == ()


def test_qr_payload() -> None:
    h, (p1,) = with_parcels(Size.S)
    h.grant(p1, CODE)
    assert parse_qr(qr_payload(CAB, CODE)) == (CAB, CODE)
    assert shown(h.do(QrScanned("https://example.com/x"))) == [UnreadableQr()]
    assert shown(h.do(QrScanned(qr_payload("cab-2", CODE)))) == [WrongCabinet()]
    assert h.cab.keypad.failures_at == ()
    assert unlocks(h.do(QrScanned(qr_payload(CAB, CODE)))) == ["A01"]
    (event,) = emitted(h.cycle("A01"), "parcel.picked_up")
    assert event["method"] == "qr"


def test_no_pickup_while_a_courier_holds_the_screen() -> None:
    h, (p1,) = with_parcels(Size.S)
    h.grant(p1, CODE)
    h.sign_in()
    before = h.cab.copy()
    with pytest.raises(IllegalTransition):
        h.enter(CODE)
    assert h.cab == before


def test_remote_open_of_an_empty_door_emits_nothing() -> None:
    h = Harness()
    assert unlocks(h.do(CompartmentOpen("A03", "cleaning", "tech-7"))) == ["A03"]
    assert emitted(h.cycle("A03")) == []  # expected, so not forced; empty, so no pickup
    with pytest.raises(UnknownCompartment):
        h.do(CompartmentOpen("Z99", "x", "y"))


def test_remote_open_refuses_a_door_in_use() -> None:
    h = Harness()
    h.sign_in()
    h.do(TrackingEntered("SF1"))
    h.do(PhoneEntered(PHONE))
    h.do(SizeChosen(Size.S))
    before = h.cab.copy()
    with pytest.raises(IllegalTransition):
        h.do(CompartmentOpen("A01", "x", "y"))  # reserved for the courier's deposit
    assert h.cab == before


def test_resend_only_for_a_phone_with_a_parcel_and_not_too_often() -> None:
    h, _ = with_parcels(Size.S)
    effects = h.do(ResendRequested("+86 138 1234 5678"))
    assert emitted(effects) == [{"phone": PHONE_E164}]
    assert shown(effects) == [ResendAccepted()]
    again = h.do(ResendRequested(PHONE))  # within resend_interval_s: how long to wait
    assert emitted(again) == [] and shown(again) == [ResendTooSoon(600)]
    h.advance(599)
    assert shown(h.do(ResendRequested(PHONE))) == [ResendTooSoon(1)]
    h.advance(1)
    assert emitted(h.do(ResendRequested(PHONE))) == [{"phone": PHONE_E164}]
    # Another number looks the same on screen, and asks the cloud for nothing.
    effects = h.do(ResendRequested("13900000000"))
    assert emitted(effects) == [] and shown(effects) == [ResendAccepted()]
    # ...and so does its second request: the wait is the same for a number with no parcel.
    assert shown(h.do(ResendRequested("13900000000"))) == [ResendTooSoon(600)]
