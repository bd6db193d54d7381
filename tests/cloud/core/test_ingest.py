"""Exactly-once, in-order application of a cabinet's events, whatever the broker delivers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.core import ingest
from cloud.core.ingest import Delivery


@dataclass(frozen=True)
class Ev:
    seq: int
    id: str


def ev(seq: int) -> Ev:
    return Ev(seq, f"evt-{seq}")


def seqs(events: tuple[Ev, ...]) -> list[int]:
    return [e.seq for e in events]


def test_applies_in_order_and_stops_at_a_gap() -> None:
    step = ingest.plan(applied_upto=2, stored=[ev(5), ev(3), ev(4), ev(7), ev(2), ev(8)])
    assert seqs(step.apply) == [3, 4, 5]
    assert step.ack_upto == 5 and step.applied_upto == 5
    assert seqs(step.waiting) == [7, 8]
    assert seqs(step.ignored) == [2]


def test_nothing_to_apply_acks_what_was_applied() -> None:
    step = ingest.plan(applied_upto=4, stored=[ev(6), ev(4)])
    assert step.apply == () and step.applied_upto is None
    assert step.ack_upto == 4


def test_a_second_copy_of_a_seq_is_ignored() -> None:
    step = ingest.plan(applied_upto=0, stored=[ev(1), Ev(1, "evt-1"), ev(2)])
    assert seqs(step.apply) == [1, 2] and seqs(step.ignored) == [1]


def test_limit_caps_the_batch_but_not_the_ack() -> None:
    step = ingest.plan(applied_upto=0, stored=[ev(s) for s in range(1, 11)], limit=3)
    assert seqs(step.apply) == [1, 2, 3]
    assert step.ack_upto == 10  # stored is what makes an event safe, applied or not
    assert seqs(step.waiting) == list(range(4, 11))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"applied_upto": -1, "stored": []},
        {"applied_upto": 0, "stored": [], "limit": 0},
        {"applied_upto": 0, "stored": [ev(0)]},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ingest.plan(**kwargs)


def test_classify_delivery() -> None:
    assert ingest.classify_delivery(None, "evt-1") is Delivery.NEW
    assert ingest.classify_delivery("evt-1", "evt-1") is Delivery.DUPLICATE
    assert ingest.classify_delivery("evt-1", "evt-X") is Delivery.CONFLICT


def test_contiguous_upto() -> None:
    assert ingest.contiguous_upto([1, 2, 3, 5]) == 3
    assert ingest.contiguous_upto([5, 6], start=4) == 6
    assert ingest.contiguous_upto([]) == 0


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    """Seqs 1..n, each delivered at least once, any number of copies, in any order."""
    n = draw(st.integers(min_value=1, max_value=25))
    extra = draw(st.lists(st.integers(min_value=1, max_value=n), max_size=3 * n))
    return n, draw(st.permutations(list(range(1, n + 1)) + extra))


@settings(max_examples=300, deadline=None)
@given(
    deliveries(),
    st.lists(st.booleans(), min_size=1, max_size=10),
    st.none() | st.integers(min_value=1, max_value=5),
)
def test_any_delivery_order_is_applied_in_order_exactly_once(
    delivered: tuple[int, list[int]], crashes: list[bool], limit: int | None
) -> None:
    """A worker stores each delivery, plans, applies, and sometimes dies before its commit."""
    n, order = delivered
    stored: dict[int, Ev] = {}
    applied_upto = 0
    applied: list[int] = []
    acked = 0
    for i, seq in enumerate(order):
        kind = ingest.classify_delivery(stored[seq].id if seq in stored else None, f"evt-{seq}")
        assert kind is (Delivery.DUPLICATE if seq in stored else Delivery.NEW)
        stored.setdefault(seq, ev(seq))

        step = ingest.plan(applied_upto=applied_upto, stored=stored.values(), limit=limit)
        assert seqs(step.apply) == list(range(applied_upto + 1, applied_upto + 1 + len(step.apply)))
        if crashes[i % len(crashes)]:
            continue  # killed mid-batch: nothing applied, nothing acked; the next step redoes it
        applied += seqs(step.apply)
        applied_upto = step.applied_upto or applied_upto
        prefix = ingest.contiguous_upto(stored)
        assert step.ack_upto <= max(prefix, 0)
        assert all(s in stored for s in range(1, step.ack_upto + 1))
        assert step.ack_upto >= acked  # acks never go backwards
        acked = step.ack_upto

    # The cabinet resends whatever is unacked; everything is stored by now, so a few more steps
    # (each a worker that survives) drain it.
    while applied_upto < n:
        step = ingest.plan(applied_upto=applied_upto, stored=stored.values(), limit=limit)
        assert step.apply
        applied += seqs(step.apply)
        applied_upto = step.applied_upto or applied_upto
        acked = step.ack_upto

    assert applied == list(range(1, n + 1))
    assert acked == n
