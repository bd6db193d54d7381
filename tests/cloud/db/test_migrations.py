"""Migrations from empty reach the models' schema on SQLite and PostgreSQL; the CLI runs them."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlmodel import SQLModel
from typer.testing import CliRunner

import cloud.db.models  # noqa: F401  (registers the tables)
from cloud.db.engine import make_engine
from cloud.db.migrate import current_revision, current_revision_of, head_revision, upgrade
from locker.cli import app


def test_upgrade_from_empty_matches_the_models(db_url: str) -> None:
    assert current_revision(db_url) is None
    steps: list[str] = []
    upgrade(db_url, echo=steps.append)
    assert steps and "initial schema" in steps[0]
    engine = make_engine(db_url)
    try:
        assert current_revision_of(engine) == head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(engine: Engine, db_url: str) -> None:
    upgrade(db_url)
    assert current_revision_of(engine) == head_revision()


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'cloud.db'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    finally:
        engine.dispose()


def test_cli_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    runner = CliRunner()

    result = runner.invoke(app, ["cloud", "db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "upgrade (empty) -> 0001: initial schema" in result.output
    assert f"now at revision: {head_revision()}" in result.output
    assert current_revision(url) == head_revision()

    again = runner.invoke(app, ["cloud", "db", "upgrade", "--database-url", url])
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output

    current = runner.invoke(app, ["cloud", "db", "current", "--database-url", url])
    assert current.exit_code == 0, current.output
    assert "up to date" in current.output


def test_cli_upgrade_reports_a_bad_url_in_one_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    result = CliRunner().invoke(app, ["cloud", "db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert "error: upgrade failed:" in result.output


def test_0008_turns_the_couriers_carriers_into_rows_and_drops_the_unused_managers(
    db_url: str,
) -> None:
    """An existing registry keeps its couriers' carriers as rows keys and accounts bind to."""
    from sqlalchemy import inspect
    from sqlmodel import Session, select

    from cloud.db.models import Carrier

    upgrade(db_url, "0007_sealed_code_keys")
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            for n, carrier in enumerate(("SF Express", "SF Express", "JD")):
                connection.execute(
                    text(
                        "INSERT INTO couriers (id, carrier, name, pin_hash, created_at) "
                        "VALUES (:id, :carrier, '', 'x', :at)"
                    ),
                    {"id": f"c{n}", "carrier": carrier, "at": "2026-12-01 10:00:00"},
                )
        upgrade(db_url)
        tables = set(inspect(engine).get_table_names())
        assert {"accounts", "account_sites", "carriers", "erp_key_sites", "audit_log"} <= tables
        assert not {"managers", "manager_sites"} & tables
        with Session(engine) as session:
            carriers = session.exec(select(Carrier).order_by(Carrier.id)).all()
        assert [(c.id, c.name) for c in carriers] == [("JD", "JD"), ("SF Express", "SF Express")]
        assert all(c.created_at.tzinfo is not None for c in carriers)
    finally:
        engine.dispose()


def test_0015_drops_the_unused_erp_key_webhook_columns_and_keeps_keys_and_endpoints(
    db_url: str,
) -> None:
    """The first schema's `erp_api_keys.webhook_url/webhook_secret` go; the keys, their sites
    and their webhook endpoints (rows pointing at the key, which SQLite's table rebuild must not
    cascade away) stay."""
    from sqlalchemy import inspect

    upgrade(db_url, "0012_webhooks")
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO erp_api_keys (id, name, key_prefix, key_hash, webhook_url, "
                    "merchant_id, created_at) VALUES ('erp-1', 'ERP', 'lk_ab', 'h1', "
                    "'https://old.example', 'shop', '2026-12-01 10:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, key_id, url, event_types, secret_sealed, "
                    "status, failures, created_at) VALUES ('we_1', 'erp-1', "
                    "'https://erp.example/hooks', '[\"*\"]', 'sealed', 'active', 0, "
                    "'2026-12-01 10:00:00')"
                )
            )
        upgrade(db_url)
        columns = {c["name"] for c in inspect(engine).get_columns("erp_api_keys")}
        assert not {"webhook_url", "webhook_secret"} & columns
        with engine.connect() as connection:
            keys = connection.execute(text("SELECT id, merchant_id FROM erp_api_keys")).all()
            endpoints = connection.execute(text("SELECT id, key_id FROM webhook_endpoints")).all()
        assert [tuple(k) for k in keys] == [("erp-1", "shop")]
        assert [tuple(e) for e in endpoints] == [("we_1", "erp-1")]
    finally:
        engine.dispose()
