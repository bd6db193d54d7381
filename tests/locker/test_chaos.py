"""`locker chaos` at CI size: the real processes under a seeded nemesis, then the checker.

The first test is the campaign the issue asks the suite to run (about 60 parcel cycles and 20
faults of every kind; recipients by code, QR and scan-to-open, on SMS and WeChat, a third of the
parcels announced by the ERP with its webhooks); the second plants a bug in the workers (ack an
event before its commit) and proves the checker catches it and names a seed that replays it.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from locker.chaos.campaign import CampaignOptions, Result, replay_options, run
from locker.chaos.nemesis import KINDS
from locker.harness import ServiceMissing
from tests.services import missing_service, pg_admin_url, require_mosquitto

SEED = 20261204


def _run(options: CampaignOptions) -> Result:
    require_mosquitto()
    try:
        return run(options)
    except ServiceMissing as err:
        missing_service(str(err))


def _table(result: Result) -> str:
    lines = [f"seed {result.seed}: {result.outcomes}, faults {result.faults}"]
    for violation, excerpt in zip(result.violations, result.excerpts, strict=True):
        lines += [f"{violation.invariant}: {violation.detail}", excerpt]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.mosquitto
@pytest.mark.timeout(240)
def test_sixty_parcels_through_twenty_faults_lose_nothing(tmp_path: Path) -> None:
    result = _run(
        CampaignOptions(
            data_dir=tmp_path,
            seed=SEED,
            cycles=60,
            faults=20,
            fault_gap_s=0.8,
            max_fault_s=4.0,
            pg_admin_url=pg_admin_url(),
            site_time=time(2, 0),  # a night hour of the site; the planted run takes a day one
        )
    )
    assert result.ok, _table(result)
    assert sum(result.faults.values()) == 20, result.faults
    assert all(result.faults[kind] >= 1 for kind in KINDS), result.faults  # clock-skew too
    assert result.outcomes.get("picked_up", 0) + result.outcomes.get("retrieved", 0) >= 50, (
        result.outcomes
    )
    # Every invariant looked at real facts: each parcel, each seq, each door.
    assert result.checked["parcel-state"] >= 50
    assert result.checked["door-picture"] == 72
    assert result.checked["door-opening"] >= 60  # unlock pulses, each traced to its act
    assert result.checked["seq"] > 60 and result.checked["notice"] > 60
    # Every way a recipient comes was taken, and the ERP's parcels were judged.
    for how in ("code", "qr", "scan"):
        assert result.paths.get(f"picked up by {how}", 0) >= 1, result.paths
    assert result.paths.get("WeChat recipients", 0) >= 5, result.paths
    assert result.checked["webhook"] >= 20 and result.checked["reservation"] >= 5, result.checked


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.mosquitto
@pytest.mark.timeout(180)
def test_a_worker_that_acks_before_commit_is_caught_with_a_replayable_seed(
    tmp_path: Path,
) -> None:
    # The plant: workers ack each batch before committing it (locker/chaos/plants.py patches them
    # through a sitecustomize module on their PYTHONPATH; the product has no trace of it).
    # PostgreSQL refusing then loses acked events.
    options = CampaignOptions(
        data_dir=tmp_path,
        seed=SEED,
        cycles=12,
        faults=5,
        fault_gap_s=0.7,
        max_fault_s=6.0,
        patience_s=8.0,
        pg_admin_url=pg_admin_url(),
        site_time=time(14, 0),
        kinds=("pg-refuse",),
        plant="ack-before-commit",
        quiet_timeout_s=10,
    )
    result = _run(options)
    assert not result.ok
    invariants = {v.invariant for v in result.violations}
    assert "seq" in invariants, _table(result)
    # The report names the seed and shows the history around the violation.
    assert result.seed == SEED and any(result.excerpts)
    # Its history replays it: the same seed, plant and settings, each fault at its step
    # (`locker chaos --replay`; docs/chaos.md shows the replay failing the same way).
    again = replay_options(result.history_path, tmp_path / "replay", pg_admin_url())
    assert (again.seed, again.cycles, again.plant) == (SEED, 12, "ack-before-commit")
    assert again.schedule is not None
    assert [f["kind"] for f in again.schedule] == ["pg-refuse"] * result.faults["pg-refuse"]
    assert all(f["target"] == "postgres" and f["for_s"] > 0 for f in again.schedule)
