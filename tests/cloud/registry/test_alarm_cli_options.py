"""The CLI's alarm settings: a site's offline threshold, a manager's phone for alarm notices."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select
from typer.testing import CliRunner

from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Account, AuditLog, Site
from locker.cli import app

PASSWORD = "correct horse battery staple"


def cli(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["cloud", *args], input=stdin, env={"COLUMNS": "200"})


def test_offline_threshold_and_manager_phone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    db = ("--database-url", url)
    added = cli("site", "add", "s1", "--name", "Estate", "--offline-alarm-min", "20", *db)
    assert added.exit_code == 0, added.output
    shown = " ".join(cli("site", "show", "s1", *db).output.split())  # labels padded to align
    assert "offline alarm: 20 min" in shown
    assert cli("site", "add", "s2", "--name", "X", "--offline-alarm-min", "0", *db).exit_code != 0

    manager = ("account", "add", "mgr", "--role", "site_manager", "--site", "s1")
    made = cli(*manager, "--phone", "138 1234 1234", "--password-stdin", *db, stdin=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    bad = cli("account", "add", "mgr2", "--role", "site_manager", "--site", "s1",
              "--phone", "12", "--password-stdin", *db, stdin=PASSWORD + "\n")  # fmt: skip
    assert bad.exit_code != 0 and "phone" in bad.output

    engine = make_engine(url)
    with Session(engine) as session:
        site = session.get(Site, "s1")
        assert site is not None and site.offline_alarm_s == 1200
        account = session.exec(select(Account).where(Account.username == "mgr")).one()
        assert account.phone == "+8613812341234"
        audited = session.exec(select(AuditLog).where(AuditLog.resource_id == account.id)).one()
        assert audited.detail["phone"] == "+86 138****1234"  # masked in the audit log too
    engine.dispose()
