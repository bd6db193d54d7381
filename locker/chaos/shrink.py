"""Shrink a failing run to the shortest history that still shows its violation.

A failing campaign is replayed (`--replay`: the same seed's parcels, its faults at their workload
steps) with less and less in it, keeping each cut after which the same invariant still fails:

1. fewer parcel cycles, halving while it still fails (the seed plans the first N parcels the same
   whatever the total, so a shorter run is a prefix of the longer one);
2. fewer faults, by delta debugging (Zeller's ddmin): drop a half, then quarters, and so on, of
   the faults that really fired in the last failing run.

Every replay is a whole campaign (tens of seconds to minutes), so the number of replays is capped
(`max_runs`); the result is the smallest failing run found within it, with its history to replay.
A violation that does not come back on a replay (it needed the original instants) ends the
shrinking at once with nothing cut: the original history stays the one to replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from locker.chaos.campaign import CampaignOptions, Result

Schedule = list[dict[str, Any]]


@dataclass
class Shrunk:
    """The smallest failing run found, and how many replays it took."""

    options: CampaignOptions
    result: Result
    runs: int
    reproduced: bool  # False: the violation did not come back on the first replay


def fired_faults(result: Result) -> Schedule:
    """The faults a run injected, from its history (a replay's schedule)."""
    from locker.chaos.history import read_history
    from locker.chaos.nemesis import faults_of

    return faults_of(read_history(result.history_path))


def shrink(
    options: CampaignOptions,
    failing: Result,
    *,
    run_one: Callable[[CampaignOptions], Result],
    max_runs: int = 16,
    faults_fired: Callable[[Result], Schedule] = fired_faults,
    echo: Callable[[str], None] = lambda _line: None,
) -> Shrunk:
    """Replay `options` (a failing run's replay options) with fewer cycles, then fewer faults,
    keeping each cut that still fails on one of `failing`'s invariants."""
    wanted = {v.invariant for v in failing.violations}
    runs = 0

    def attempt(cycles: int, schedule: Schedule) -> Result | None:
        nonlocal runs
        runs += 1
        candidate = replace(
            options,
            cycles=cycles,
            schedule=schedule,
            data_dir=options.data_dir / f"shrink-{runs:02d}",
        )
        candidate.data_dir.mkdir(parents=True, exist_ok=True)
        result = run_one(candidate)
        still = bool(wanted & {v.invariant for v in result.violations})
        echo(
            f"replay {runs}: {cycles} cycles, {len(schedule)} faults: "
            + ("still fails" if still else "passes")
        )
        return result if still else None

    best_cycles, best_schedule = options.cycles, list(options.schedule or [])
    first = attempt(best_cycles, best_schedule)
    if first is None:
        return Shrunk(options, failing, runs, reproduced=False)
    best = first
    best_schedule = faults_fired(best)

    # 1. Halve the cycles while the violation stays.
    while best_cycles > 1 and runs < max_runs:
        half = best_cycles // 2
        got = attempt(half, best_schedule)
        if got is None:
            break
        best, best_cycles, best_schedule = got, half, faults_fired(got)

    # 2. ddmin over the faults that fired.
    chunks = 2
    while len(best_schedule) >= 1 and runs < max_runs:
        size = max(1, len(best_schedule) // chunks)
        pieces = [best_schedule[i : i + size] for i in range(0, len(best_schedule), size)]
        cut = False
        for n in range(len(pieces)):
            if runs >= max_runs:
                break
            rest = [f for k, piece in enumerate(pieces) if k != n for f in piece]
            got = attempt(best_cycles, rest)
            if got is not None:
                best, best_schedule = got, faults_fired(got)
                chunks = max(chunks - 1, 2)
                cut = True
                break
        if not cut:
            if size == 1:
                break  # no single fault can go: this is a minimum
            chunks = min(len(best_schedule), chunks * 2)
    final = replace(options, cycles=best_cycles, schedule=best_schedule)
    return Shrunk(final, best, runs, reproduced=True)
