"""A site's "none" (no quiet hours, no reminder) is stored as none and read back as none.

The demo's story once failed every evening: its site was created with no quiet hours, but the
column's INSERT default (22:00-08:00) replaced the explicit None, so the expiry text waited for
the morning whenever the story ran in Shanghai's night. Each way in and out is checked here: the
registry and `locker cloud site add|show` here, `GET /api/v1/sites/{id}` in tests/cloud/api.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, SQLModel
from typer.testing import CliRunner

from cloud.db.models import Site, SiteCreate
from cloud.services.registry import add_site
from locker.cli import app
from tests.cloud.db.builders import T0

ENV = {"COLUMNS": "200"}


def cli(*args: str):
    return CliRunner().invoke(app, ["cloud", *args], env=ENV)


def test_no_column_default_replaces_an_explicit_none() -> None:
    """SQLAlchemy fires a column's INSERT default in place of None: a nullable column has none."""
    import cloud.db.models
    import cloud.db.scan_models  # noqa: F401

    replacing = [
        f"{table.name}.{column.name}"
        for table in SQLModel.metadata.sorted_tables
        for column in table.columns
        if column.nullable
        and column.default is not None
        and getattr(column.default, "arg", None) is not None
    ]
    assert replacing == []


def test_the_registry_stores_none_as_none_and_keeps_the_defaults(engine: Engine) -> None:
    with Session(engine) as session:
        add_site(
            session=session,
            site_create=SiteCreate(
                id="quiet-free", name="Q", quiet_start=None, quiet_end=None, reminder_before_s=None
            ),
            now=T0,
        )
        add_site(session=session, site_create=SiteCreate(id="default", name="D"), now=T0)
    with Session(engine) as session:
        free = session.get(Site, "quiet-free")
        default = session.get(Site, "default")
    assert (free.quiet_start, free.quiet_end, free.reminder_before_s) == (None, None, None)
    assert (default.quiet_start, default.quiet_end) == (time(22, 0), time(8, 0))
    assert default.reminder_before_s == 24 * 3600


def test_the_cli_writes_and_shows_quiet_hours_and_none(tmp_path: Path) -> None:
    from cloud.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    added = cli(
        "site", "add", "night-owls", "--name", "N", "--quiet-hours", "none",
        "--reminder-before-h", "0", "--database-url", url,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = cli("site", "show", "night-owls", "--database-url", url)
    assert shown.exit_code == 0, shown.output
    # The labels are aligned to the longest one: compare with the padding squeezed out.
    shown_text = " ".join(shown.output.split())
    assert "quiet hours: none" in shown_text
    assert "reminder before: none" in shown_text

    cli(
        "site", "add", "early", "--name", "E", "--quiet-hours", "21:30-07:15", "--database-url", url
    )
    early = cli("site", "show", "early", "--database-url", url).output
    assert "quiet hours: 21:30-07:15" in " ".join(early.split())

    bad = cli("site", "add", "x", "--name", "X", "--quiet-hours", "10pm", "--database-url", url)
    assert bad.exit_code == 2 and "HH:MM-HH:MM" in bad.output
    assert cli("site", "show", "x", "--database-url", url).exit_code == 2  # nothing was written
