"""`locker cloud price set|list` and `locker cloud statement`: a price, then the month's export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from openpyxl import load_workbook
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from cloud.db.models import Carrier, Courier
from cloud.services.ingest import apply_pending, store_events
from locker.cli import app
from tests.cloud.db.builders import CAB, SEAL_KEY, SITE, T0, Recording, deposited, register_cabinet

CARRIER = "SF Express"


def _setup(engine: Engine) -> None:
    with Session(engine) as session:
        register_cabinet(session)
        session.add(Carrier(id=CARRIER, name=CARRIER, created_at=T0))
        session.add(Courier(id="courier-7", carrier=CARRIER, pin_hash="x", created_at=T0))
        session.commit()
        store_events(session=session, cab=CAB, envelopes=[deposited(1), deposited(2)], now=T0)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY, randbelow=Recording())


def test_price_then_statement_from_the_command_line(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    _setup(engine)
    runner = CliRunner()
    db = ["--database-url", db_url]
    base = ["cloud", "price", "set", "--site", SITE, "--carrier", CARRIER, "--size", "M"]
    bad = runner.invoke(app, [*base, "--amount-minor", "-5", *db])
    assert bad.exit_code == 2 and "amount_minor" in bad.output
    done = runner.invoke(app, [*base, "--amount-minor", "80", "--currency", "cny", *db])
    assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["cloud", "price", "list", *db])
    assert listed.output.split() == [SITE, "SF", "Express", "M", "80", "CNY"]
    export = ["cloud", "statement", "--carrier", CARRIER, "--period", "2024-05", "--no-progress"]
    for fmt in ("csv", "xlsx", "json"):
        out = tmp_path / f"s.{fmt}"
        result = runner.invoke(app, [*export, "--format", fmt, "--out", str(out), *db])
        assert result.exit_code == 0, result.output
    rows = list(csv.reader((tmp_path / "s.csv").open(encoding="utf-8")))
    assert len(rows) == 4 and rows[-1][:2] == ["#total", "CNY"] and rows[-1][7] == "160"
    sheet = load_workbook(tmp_path / "s.xlsx", read_only=True).active
    assert [list(r) for r in sheet.iter_rows(values_only=True)][-1][7] == 160
    assert json.loads((tmp_path / "s.json").read_text())["totals"]["CNY"]["price_minor"] == 160
    ranged = [*export[:4], "--from", "2024-05-01", "--to", "2024-05-02", "--no-progress"]
    result = runner.invoke(app, [*ranged, "--out", str(tmp_path / "r.csv"), *db])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4
    unknown = runner.invoke(app, [*export, "--carrier", "nobody", "--out", "x.csv", *db])
    assert unknown.exit_code == 2 and "no carrier 'nobody'" in unknown.output
