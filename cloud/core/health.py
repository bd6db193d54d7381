"""Door health: when a door's pulse-to-open time has drifted up enough to send a technician.

Pure: no I/O. A cabinet reports, per door, the median pulse-to-open time of its last few opens
(`open_ms_recent`) and of its longer history (`open_ms_long`), with how many opens were timed
(docs/mqtt.md, a birth's `health`). A lock whose latch is wearing, or a door whose seal or
hinge is binding, opens later and later before it jams: the recent median pulling away from the
long one is that warning, days before a `lock.fault`.

Both a ratio and an absolute margin must be passed: 40 ms against 20 ms doubles but means
nothing, and 1,050 against 900 is a large absolute change on a slow door that is still normal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DriftRule:
    """Drifting: at least `min_opens` timed, recent ≥ `ratio` × long and ≥ long + `margin_ms`."""

    min_opens: int = 20
    ratio: float = 1.5
    margin_ms: int = 150


DRIFT = DriftRule()


def open_time_drifting(
    *, recent_ms: int | None, long_ms: int | None, opens_timed: int, rule: DriftRule = DRIFT
) -> bool:
    """Return whether a door's recent open time has drifted up from its usual one."""
    if recent_ms is None or long_ms is None or opens_timed < rule.min_opens:
        return False
    return recent_ms >= long_ms * rule.ratio and recent_ms - long_ms >= rule.margin_ms


def drift_detail(recent_ms: int, long_ms: int) -> str:
    """The alarm's detail, as the console shows it."""
    return f"opens in {recent_ms} ms, usually {long_ms} ms"
