"""`locker bench queries` at a small N: seeded, served by real `locker cloud serve`, loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from locker.bench.queries import TRACE_ENV, Load, run, seeded


def test_the_bench_seeds_serves_and_measures_both_reads(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.json"
    monkeypatch.setenv(TRACE_ENV, str(trace))
    steps: list[str] = []
    figures = run(
        postgres_url,
        parcels=2000,
        load=Load(rate=50, seconds=2, list_seconds=2, walkers=2, replicas=1),
        cabinets=50,
        progress=lambda what, _done, _total: steps.append(what),
    )
    assert steps[0] == "fill" and steps[-1] == "list"
    # Every parcel has its timeline: announced, in the locker and (but one in twenty) out of it.
    assert figures.timeline_rows == 2000 * 3 - 2000 // 20
    # Every tracking read found its parcel (the ERP key's own), none failed or timed out.
    assert figures.tracking.statuses == {"200": 100} and figures.tracking.errors == 0
    assert 0 < figures.tracking.p50_ms <= figures.tracking.p99_ms <= figures.tracking.max_ms
    assert figures.listing.n > 0 and set(figures.listing.statuses) == {"200"}
    # The CPU table has the API and the database doing the work, the generator little.
    assert figures.tracking_cpu.api_s > 0 and figures.tracking_cpu.postgres_s > 0
    # The cursor page reads the (created_at, id) index, not a sort of the key's whole scope.
    assert "ix_parcels_created_id" in figures.plans["list_page"]
    assert "ix_parcel_events_parcel_row_id" in figures.plans["timeline"]
    # The trace has every tracking answer, by when it was due (50 a second for 2 s), with the
    # latency the figures were taken from.
    traced = json.loads(trace.read_text())
    due = [answer[0] for answer in traced["answers"]]
    assert len(due) == 100 and due == sorted(due) and 1.9 < due[-1] < 2.0
    assert max(answer[1] for answer in traced["answers"]) * 1000 == pytest.approx(
        figures.tracking.max_ms, abs=0.05
    )
    assert traced["start_wall"] > 0
    # The database keeps what a later run (`--reuse-db`) needs to serve it without seeding.
    kept = seeded(postgres_url)
    assert kept is not None and (kept.parcels, kept.timeline_rows) == (2000, figures.timeline_rows)
