"""The open-time drift rule: a ratio and a margin, and enough opens to judge."""

from __future__ import annotations

import pytest

from cloud.core.health import DRIFT, open_time_drifting


@pytest.mark.parametrize(
    ("recent", "long", "opens", "drifting"),
    [
        (640, 310, 400, True),  # twice as slow: the latch is wearing
        (450, 300, 400, True),  # exactly 1.5x and 150 ms more
        (449, 300, 400, False),  # just under the ratio
        (40, 20, 400, False),  # doubled, but 20 ms is noise
        (1050, 900, 400, False),  # 150 ms more on a slow door, but only 1.17x
        (640, 310, DRIFT.min_opens - 1, False),  # too few opens to know the door's usual
        (None, None, 0, False),  # never timed
    ],
)
def test_open_time_drift(recent: int | None, long: int | None, opens: int, drifting: bool) -> None:
    assert open_time_drifting(recent_ms=recent, long_ms=long, opens_timed=opens) is drifting
