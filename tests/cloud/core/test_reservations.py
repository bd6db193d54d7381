"""The cloud's door arithmetic for reservations: sizes from dimensions, which door size a
reservation counts against, how long a door is held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.core.reservations import (
    DEFAULT_HOLD,
    MAX_HOLD,
    door_size,
    fits,
    hold_until,
    no_door,
    size_for,
)

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sides", "size"),
    [
        ((300, 200, 80), "S"),
        ((80, 300, 200), "S"),  # any way round
        ((300, 200, 100), "M"),
        ((440, 370, 300), "L"),
        ((460, 200, 100), "XL"),  # too wide for the 450 mm doors
        ((601, 100, 100), None),
    ],
)
def test_the_smallest_door_a_parcel_fits(sides: tuple[int, int, int], size: str | None) -> None:
    assert size_for(*sides) == size


def test_a_reservation_counts_against_the_smallest_size_left() -> None:
    free = {"S": 1, "M": 2, "L": 1}
    assert door_size("S", free=free, held={}) == "S"
    assert door_size("S", free=free, held={"S": 1}) == "M"
    assert door_size("M", free=free, held={"M": 2}) == "L"
    assert door_size("M", free=free, held={"M": 2, "L": 1}) is None
    refusal = no_door("cab-1", "M", free=free, held={"M": 2, "L": 1})
    assert refusal.message().startswith("no_door: cabinet cab-1 has no free door of size M")
    assert "(3 free, 3 of them reserved" in refusal.message()
    assert fits("XL", "S") and not fits("S", "M")


def test_a_door_is_held_a_day_past_the_eta_within_bounds() -> None:
    assert hold_until(NOW, None) == NOW + DEFAULT_HOLD
    assert hold_until(NOW, NOW + timedelta(hours=5)) == NOW + timedelta(hours=29)
    assert hold_until(NOW, NOW - timedelta(days=3)) == NOW + timedelta(hours=24)  # late: a day
    assert hold_until(NOW, NOW + timedelta(days=60)) == NOW + MAX_HOLD
