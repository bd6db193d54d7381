"""`locker bench statements`: a month of N deposits exported to CSV, its time and peak RSS.

The deposits are made in the database itself (one set-based `INSERT ... SELECT generate_series`),
so making a million takes seconds; the export is the real `locker cloud statement --format csv`
in a child process, whose peak RSS (`getrusage(RUSAGE_CHILDREN).ru_maxrss`) is the figure: it
must not grow with N (docs/statements.md#bounded-memory).
"""

from __future__ import annotations

import csv
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from cloud.db.migrate import upgrade
from locker.harness.postgres import libpq_url

CARRIER = "bench-carrier"
PERIOD = "2026-12"
PRICE_MINOR = 50
# 1,000,000 deposits two seconds apart span 23 days: all inside December in Shanghai.
SPACING_S = 2

_SETUP = """
INSERT INTO sites (id, name, pickup_window_s, code_length, timezone, language,
                   overdue_fee_per_day_minor, currency, resend_limit, resend_window_s, created_at)
VALUES ('bench-site', 'Bench', 259200, 8, 'Asia/Shanghai', 'zh-CN', 100, 'CNY', 3, 3600, now());
INSERT INTO cabinets (id, site_id, name, address, code_key, applied_upto, created_at)
VALUES ('bench-cab', 'bench-site', 'Bench', '', 'x', 0, now());
INSERT INTO carriers (id, name, created_at) VALUES ('bench-carrier', 'Bench', now());
INSERT INTO couriers (id, carrier, name, pin_hash, created_at)
VALUES ('bench-courier', 'bench-carrier', '', 'x', now());
INSERT INTO site_prices (site_id, carrier_id, size, amount_minor, currency, updated_at)
VALUES ('bench-site', 'bench-carrier', 'M', 50, 'CNY', now());
"""

# Two in three picked up within a day, one in six retrieved after 4 days (1 overdue day),
# the rest still in the locker.
_DEPOSITS = """
INSERT INTO parcels (id, parcel_id, tracking_no, status, cabinet_id, phone, compartment, size,
                     courier_id, code_generation, deposited_at, clock_started_at, window_s,
                     pauses, left_locker_at, created_at, updated_at)
SELECT 'P' || g, 'P' || g, 'SF' || lpad(g::text, 10, '0'),
       CASE g %% 6 WHEN 0 THEN 'retrieved' WHEN 1 THEN 'in_locker' ELSE 'picked_up' END,
       'bench-cab', '+8613800000000', 'A' || (g %% 48), CASE g %% 3 WHEN 0 THEN 'S' ELSE 'M' END,
       'bench-courier', 1, d, d, 259200, '[]'::json,
       CASE g %% 6 WHEN 0 THEN d + interval '4 days' WHEN 1 THEN NULL
                  ELSE d + interval '5 hours' END,
       d, d
FROM (SELECT g, timestamptz '2026-12-01 00:00:00+08' + g * %(spacing)s * interval '1 second' AS d
      FROM generate_series(1, %(n)s::int) AS g) AS s
"""


@dataclass(frozen=True)
class Figures:
    deposits: int
    generate_s: float
    export_s: float
    peak_rss_mib: float
    csv_lines: int
    csv_bytes: int
    total_price_minor: int
    total_fee_minor: int


def fill(url: str, deposits: int) -> float:
    """Migrate the empty database at `url` and make `deposits` deposits; return the seconds."""
    upgrade(url)
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=False) as conn:
        conn.execute(_SETUP)
        conn.execute(_DEPOSITS, {"n": deposits, "spacing": SPACING_S})
        conn.commit()
        conn.execute("ANALYZE parcels")
    return time.perf_counter() - started


def export(url: str, out: Path) -> tuple[float, float]:
    """Run the CLI's CSV export in a child process; return (seconds, its peak RSS in MiB)."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from locker.cli import app; app()",
            "cloud",
            "statement",
            "--carrier",
            CARRIER,
            "--period",
            PERIOD,
            "--format",
            "csv",
            "--no-progress",
            "--out",
            str(out),
            "--database-url",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux: the largest of the children waited for (only this one).
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def read_totals(path: Path) -> tuple[int, int, int]:
    """Return (lines, price total, fee total) of an exported CSV (one currency: CNY)."""
    lines = price = fee = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if row[0] == "#total":
                price, fee = int(row[7]), int(row[9])
            elif row[0] != "parcel":
                lines += 1
    return lines, price, fee


def run(url: str, deposits: int) -> Figures:
    """Fill the empty PostgreSQL database at `url`, export its month, return the figures."""
    generate_s = fill(url, deposits)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "statement.csv"
        export_s, rss = export(url, out)
        lines, price, fee = read_totals(out)
        size = out.stat().st_size
    return Figures(
        deposits, round(generate_s, 2), round(export_s, 2), round(rss, 1), lines, size, price, fee
    )


def as_dict(figures: Figures) -> dict[str, object]:
    return asdict(figures)
