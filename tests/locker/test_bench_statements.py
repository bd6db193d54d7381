"""`locker bench statements` at a small N: the exported CSV has every deposit and right totals."""

from __future__ import annotations

from locker.bench.statements import PRICE_MINOR, run


def test_the_bench_exports_every_deposit_with_its_totals(postgres_url: str) -> None:
    deposits = 600
    figures = run(postgres_url, deposits)
    assert figures.csv_lines == deposits
    # Two in three deposits are in M doors, the only size priced: 400 x 50 minor units.
    assert figures.total_price_minor == deposits * 2 // 3 * PRICE_MINOR
    # One in six was retrieved a day past its 3-day window: at least 100 each in fees.
    assert figures.total_fee_minor >= deposits // 6 * 100
    assert figures.peak_rss_mib > 0 and figures.export_s > 0
