"""The pulse-level `door-opening` invariant: each unlock pulse that opened a door traces back to
exactly one recorded act; pulses that opened nothing are retries of the act in hand."""

from __future__ import annotations

from typing import Any

from locker.chaos.checker import Checker, Evidence
from locker.chaos.history import History


def _history(*acts: dict[str, Any]) -> History:
    history = History()
    for act in acts:
        history.records.append({"who": "workload", "cab": "cab-1", **act})
    return history


def _pulse(at: float, door: str, opened: bool = True) -> dict[str, Any]:
    return {"at": at, "door": door, "opened": opened, "jammed": not opened, "kind": "pulse"}


def _violations(history: History, pulses: list[dict[str, Any]]) -> list[str]:
    evidence = Evidence(
        parcels=[], sms=[], sim={}, journals={}, cabinet_doors={}, cloud={},
        pulses={"cab-1": pulses},
    )  # fmt: skip
    checker = Checker(history)
    checker._door_pulses(evidence)
    return [v.detail for v in checker.violations]


def test_each_opening_matched_to_its_act_and_retries_need_none() -> None:
    history = _history(
        {"op": "deposit.door", "compartment": "A01", "mono": 10.1},
        {"op": "pickup.opening", "doors": ["A01"], "mono": 20.1},
        {"op": "retrieve.opening", "doors": ["A02", "A03"], "mono": 30.0},
    )
    pulses = [
        _pulse(10.0, "A01"),
        _pulse(19.0, "A01", opened=False),  # jammed: the cabinet tries again
        _pulse(20.0, "A01"),
        _pulse(30.05, "A02"),  # a take-back's doors open one after another,
        _pulse(30.10, "A03"),  # after the kiosk has said which
    ]
    assert _violations(history, pulses) == []


def test_a_door_opened_twice_for_one_pickup_is_caught() -> None:
    history = _history({"op": "pickup.opening", "doors": ["A01"], "mono": 20.1})
    found = _violations(history, [_pulse(20.0, "A01"), _pulse(25.0, "A01")])
    assert len(found) == 1 and "door A01" in found[0] and "no recorded act" in found[0]


def test_an_opening_with_no_act_is_caught_and_a_failed_try_may_explain_one() -> None:
    assert len(_violations(_history(), [_pulse(5.0, "A04")])) == 1
    failed = _history({"op": "pickup.fail", "compartment": None, "mono": 40.0})
    assert _violations(failed, [_pulse(12.0, "A04")]) == []
    assert len(_violations(failed, [_pulse(12.0, "A04"), _pulse(13.0, "A05")])) == 1
