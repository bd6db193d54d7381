"""Snapshots (to_dict / from_dict) and reconciling a restored cabinet with fresh door readings."""

from __future__ import annotations

import json

import pytest

from cabinet.core import Cabinet
from cabinet.core.compartments import CompartmentState, Door, Size
from cabinet.core.effects import Log
from cabinet.core.errors import BadSnapshot, InvalidInput
from cabinet.core.inputs import CourierSignOut, SizeChosen, Tick
from cabinet.core.screens import DepositDoorClosed
from tests.cabinet.core.harness import (
    Harness,
    at_size_for,
    emitted,
    event_types,
    shown,
    unlocks,
)


def busy_cabinet() -> Harness:
    """A cabinet with a bit of everything: parcels with codes, a queue, a guard, a session."""
    h = Harness()
    h.sign_in()
    p1, p2 = h.deposit("SF1", Size.S), h.deposit("SF2", Size.S)
    h.do(CourierSignOut())
    h.grant(p1, "11112222")
    h.grant(p2, "11112222")
    h.enter("99999999")
    h.enter("11112222")  # A01 unlocked, A02 queued
    h.sign_in("C2")
    at_size_for(h, "SF3")
    h.do(SizeChosen(Size.M))
    return h


def test_snapshot_round_trip_through_json() -> None:
    h = busy_cabinet()
    snapshot = h.cab.to_dict()
    text = json.dumps(snapshot)  # plain JSON all the way down
    restored = Cabinet.from_dict(json.loads(text))
    assert restored == h.cab
    assert restored.to_dict() == snapshot
    assert restored.open_queue == ("A02",)
    assert restored.session is not None and restored.session.draft.compartment == "A04"


def test_snapshots_hold_no_code_key() -> None:
    h = busy_cabinet()
    assert h.ctx.code_key.decode() not in json.dumps(h.cab.to_dict())


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d.update(v=2),
        lambda d: d.update(cabinet_id=7),
        lambda d: d["compartments"]["A01"].update(state="melted"),
        lambda d: d["compartments"]["A01"].update(unlocked_at="2024-05-01T08:00:00"),
        lambda d: d["compartments"]["A01"].update(parcel_id="nobody"),
        lambda d: d["compartments"]["A01"].update(colour="red"),
        lambda d: d["keypad"].update(session_failures=True),
        lambda d: d["parcels"].clear(),
    ],
)
def test_bad_snapshots_are_refused(spoil) -> None:
    data = busy_cabinet().cab.to_dict()
    spoil(data)
    with pytest.raises(BadSnapshot):
        Cabinet.from_dict(data)


def test_now_must_be_aware() -> None:
    h = Harness()
    h.now = h.now.replace(tzinfo=None)
    before = h.cab.copy()
    with pytest.raises(InvalidInput):
        h.do(Tick())
    assert h.cab == before


def restart(h: Harness) -> Harness:
    """A new process: the cabinet comes back from its snapshot, the clock goes on."""
    again = Harness(Cabinet.from_dict(json.loads(json.dumps(h.cab.to_dict()))))
    again.now = h.now
    return again


ALL_SHUT = {c: False for c in ("A01", "A02", "A03", "A04", "A05", "B01", "B02")}


def test_reconcile_finishes_a_pickup_whose_door_shut_while_down() -> None:
    h = Harness()
    h.sign_in()
    p1 = h.deposit("SF1", Size.S)
    h.do(CourierSignOut())
    h.grant(p1, "11112222")
    h.enter("11112222")
    h.door("A01", True)  # seen open, then the daemon is killed
    h = restart(h)
    h.advance(20)
    effects = h.reconcile(ALL_SHUT)
    assert emitted(effects, "parcel.picked_up") == [
        {"compartment": "A01", "parcel_id": p1, "method": "code"}
    ]
    assert h.cab.compartments["A01"].state is CompartmentState.FREE


def test_reconcile_sends_a_journalled_unlock_again_within_its_window() -> None:
    h = Harness()
    h.sign_in()
    p1 = h.deposit("SF1", Size.S)
    h.do(CourierSignOut())
    h.grant(p1, "11112222")
    assert unlocks(h.enter("11112222")) == ["A01"]  # journalled, maybe never driven
    h = restart(h)
    h.advance(10)
    assert unlocks(h.reconcile(ALL_SHUT)) == ["A01"]
    assert emitted(h.cycle("A01"), "parcel.picked_up")[0]["parcel_id"] == p1


def test_reconcile_lets_an_old_unlock_lapse() -> None:
    h = Harness()
    h.sign_in()
    p1 = h.deposit("SF1", Size.S)
    h.do(CourierSignOut())
    h.grant(p1, "11112222")
    h.enter("11112222")
    h = restart(h)
    h.advance(600)
    effects = h.reconcile(ALL_SHUT)
    assert unlocks(effects) == [] and emitted(effects) == []
    assert h.cab.compartments["A01"].state is CompartmentState.OCCUPIED


def test_reconcile_raises_forced_for_a_door_believed_shut_but_open() -> None:
    h = Harness()
    h.reconcile(ALL_SHUT)
    h = restart(h)
    effects = h.reconcile({**ALL_SHUT, "B02": True})
    assert emitted(effects) == [{"compartment": "B02"}]
    assert event_types(effects) == ["door.forced"]
    assert h.cab.compartments["B02"].door is Door.OPEN


def test_reconcile_marks_unread_doors_unknown_and_logs_strangers() -> None:
    h = Harness()
    h.reconcile(ALL_SHUT)
    readings = {**ALL_SHUT, "Z9": True}
    del readings["A03"]
    effects = h.reconcile(readings)
    assert h.cab.compartments["A03"].door is Door.UNKNOWN
    logs = [e.message for e in effects if isinstance(e, Log)]
    assert any("Z9" in m for m in logs) and any("A03" in m for m in logs)


def test_reconcile_continues_a_deposit_at_its_door() -> None:
    h = Harness()
    h.sign_in()
    at_size_for(h)
    h.do(SizeChosen(Size.S))
    h.door("A01", True)
    h = restart(h)
    restored = h.cab
    snapshot = restored.to_dict()
    effects = h.reconcile(ALL_SHUT)
    assert restored.to_dict() == snapshot  # reconcile works on a copy, like apply
    assert shown(effects) == [DepositDoorClosed("A01")]
    assert h.cab.session is not None and h.cab.session.draft.door_cycled


def test_a_snapshot_cache_gives_the_same_snapshot_as_a_full_walk():
    from cabinet.core.serial import SnapshotCache
    from tests.cabinet.core.harness import Harness

    h = Harness()
    cache = SnapshotCache()
    h.add_courier()
    h.sign_in()
    assert h.cab.to_dict(cache) == h.cab.to_dict()
    for number in range(3):
        parcel_id = h.deposit(f"SF{number:04d}")
        h.grant(parcel_id, f"1234567{number}")
        # Each step shares most frozen leaves with the last: the cache must still see changes.
        assert h.cab.to_dict(cache) == h.cab.to_dict()
    restored = type(h.cab).from_dict(h.cab.to_dict(cache))
    assert restored.to_dict() == h.cab.to_dict()


def test_the_journals_incremental_text_is_the_full_snapshots_json():
    from cabinet.core.serial import JsonSnapshotCache
    from tests.cabinet.core.harness import Harness

    def full(h: Harness) -> str:
        return json.dumps(h.cab.to_dict(), separators=(",", ":"))

    h = Harness()
    cache = JsonSnapshotCache()
    h.add_courier()
    h.sign_in()
    assert h.cab.to_json(cache) == full(h)
    for number in range(3):
        parcel_id = h.deposit(f"SF{number:04d}")
        h.grant(parcel_id, f"1234567{number}")
        # Each step shares most frozen leaves with the last: the cache must still see changes.
        assert h.cab.to_json(cache) == full(h)
    h.cab.couriers['C-\u00e9"quote'] = 'hash"with\\escapes'  # text that needs escaping
    assert h.cab.to_json(cache) == full(h)
    restored = type(h.cab).from_dict(json.loads(h.cab.to_json(cache)))
    assert restored.to_dict() == h.cab.to_dict()
