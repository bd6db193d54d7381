"""`locker bench ingest` at a small size: a batch of many cabinets' deposits is a few statements."""

from __future__ import annotations

from locker.bench.ingest import run


def test_a_batch_of_deposits_sends_each_statement_once(postgres_url: str) -> None:
    figures = run(postgres_url, cabinets=20, batches=2, batch=20)
    assert figures.deposits == 40 and figures.fallback_batches == 0
    # Set-based: each read and each table's write once a batch, for its 20 deposits.
    assert set(figures.statements.values()) == {1.0}
    assert figures.statements_per_batch <= 12
    assert figures.worker_ms_per_deposit > 0
