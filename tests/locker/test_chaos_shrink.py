"""Shrinking a failing run: fewer cycles, then fewer faults, each cut kept only if it still fails.

The replays here are a stand-in for `campaign.run` that fails exactly when a known set of faults
fires within enough cycles, so the search itself is what is checked (a real replay is a whole
campaign; `test_chaos.py` proves a recorded run replays)."""

from __future__ import annotations

from pathlib import Path

from locker.chaos.campaign import CampaignOptions, Result
from locker.chaos.checker import Violation
from locker.chaos.shrink import Shrunk, shrink

CULPRITS = {3, 7}  # the faults that together cause the bug
NEEDS_CYCLES = 9  # ... and the parcel it hits is the ninth


class FakeCampaign:
    """Fails on `seq` when every culprit fired and the run had at least NEEDS_CYCLES cycles.
    A fault fires when its step is reached: a run of `cycles` reaches step 10 × cycles."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, list[int]]] = []
        self.fired: dict[Path, list[dict]] = {}

    def __call__(self, options: CampaignOptions) -> Result:
        schedule = options.schedule or []
        fired = [f for f in schedule if f["at_step"] <= 10 * options.cycles]
        ids = [f["id"] for f in fired]
        self.runs.append((options.cycles, ids))
        fails = set(ids) >= CULPRITS and options.cycles >= NEEDS_CYCLES
        history = options.data_dir / "chaos-history.jsonl"
        self.fired[history] = fired
        return Result(
            seed=options.seed,
            cycles=options.cycles,
            outcomes={},
            faults={},
            checked={},
            paths={},
            violations=[Violation("seq", "cab-1: seq 40 missing")] if fails else [],
            excerpts=[""] if fails else [],
            seconds=1.0,
            history_path=history,
            replayed=True,
        )


def _options(tmp_path: Path, cycles: int = 60, faults: int = 20) -> CampaignOptions:
    # Fault n comes at workload step 5n: all twenty fire within 10 cycles.
    schedule = [{"kind": "pg-refuse", "id": n, "at_step": 5 * n} for n in range(faults)]
    return CampaignOptions(data_dir=tmp_path, seed=7, cycles=cycles, schedule=schedule)


def _failing(tmp_path: Path) -> Result:
    return FakeCampaign()(_options(tmp_path))


def _shrink(tmp_path: Path, campaign: FakeCampaign, max_runs: int) -> Shrunk:
    return shrink(
        _options(tmp_path),
        _failing(tmp_path / "first"),
        run_one=campaign,
        max_runs=max_runs,
        faults_fired=lambda result: campaign.fired[result.history_path],
    )


def test_it_finds_the_two_faults_and_the_fewest_cycles(tmp_path: Path) -> None:
    campaign = FakeCampaign()
    shrunk = _shrink(tmp_path, campaign, max_runs=40)
    assert shrunk.reproduced and not shrunk.result.ok
    # 60 → 30 → 15 fail; 7 passes (below the ninth parcel): 15 is the fewest halving reaches.
    assert shrunk.options.cycles == 15
    assert sorted(f["id"] for f in shrunk.options.schedule or []) == sorted(CULPRITS)
    assert shrunk.runs == len(campaign.runs) <= 40
    # Every kept cut failed; the final options replay to a failure.
    assert not campaign(shrunk.options).ok


def test_it_stops_at_the_replay_budget_with_the_best_so_far(tmp_path: Path) -> None:
    campaign = FakeCampaign()
    shrunk = _shrink(tmp_path, campaign, max_runs=5)
    assert shrunk.runs == 5 == len(campaign.runs)
    assert not campaign(shrunk.options).ok  # still a failing run, just not the smallest


def test_a_violation_that_does_not_replay_is_left_as_it_was(tmp_path: Path) -> None:
    options = _options(tmp_path)
    failing = _failing(tmp_path / "first")
    campaign = FakeCampaign()
    passing_replay = CampaignOptions(**{**options.__dict__, "schedule": []})
    shrunk = shrink(
        passing_replay,
        failing,
        run_one=campaign,
        faults_fired=lambda result: campaign.fired[result.history_path],
    )
    assert not shrunk.reproduced and shrunk.runs == 1
    assert shrunk.result is failing
