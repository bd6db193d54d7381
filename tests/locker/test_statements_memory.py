"""The CSV export's memory does not grow with the month: it streams (docs/statements.md)."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime

from sqlmodel import Session

from cloud.core.statements import Period
from cloud.db.engine import make_engine
from cloud.db.statements import CHUNK
from cloud.services import statements as svc
from locker.bench.statements import CARRIER, fill

DEPOSITS = 20_000
# Held in a list, a line costs about 750 bytes (measured: 22 MiB for 30,000), so 20,000 lines
# would take ~14 MiB, and the CSV text itself is ~140 bytes a line (2.7 MiB). Streamed, the
# export holds one chunk of CHUNK (2,000) rows and one CSV buffer of 1,000 lines: it stays
# under 8 MiB of Python allocations whatever the month holds (the bench shows 1,000,000).
BOUND_MIB = 8
# The export's clock, injected: a statement read after its month, whatever day the suite runs.
AFTER_THE_MONTH = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)


class _Counting(io.TextIOBase):
    """A sink that keeps only how much was written."""

    def __init__(self) -> None:
        self.chars = 0
        self.lines = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        self.lines += text.count("\n")
        return len(text)


def test_a_csv_export_streams_in_bounded_memory(postgres_url: str) -> None:
    assert DEPOSITS >= 10 * CHUNK  # many chunks: a bound that holds for one would prove nothing
    fill(postgres_url, DEPOSITS)
    engine = make_engine(postgres_url)
    sink = _Counting()
    try:
        with Session(engine) as session:
            lines = svc.lines(
                session=session, carrier_id=CARRIER, period=Period(2026, 12), now=AFTER_THE_MONTH
            )
            tracemalloc.start()
            try:
                svc.write_csv(lines, sink)  # type: ignore[arg-type]
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        engine.dispose()
    assert sink.lines == 1 + DEPOSITS + 1  # header, lines, one currency's total
    assert sink.chars > DEPOSITS * 100
    assert peak < BOUND_MIB * 2**20, f"peak {peak / 2**20:.1f} MiB"
