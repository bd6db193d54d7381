"""`locker cloud cabinet enrol-code` and `config-push` from an operator's terminal."""

from __future__ import annotations

import re

from sqlmodel import Session, col, select

from cloud.db.engine import make_engine
from cloud.db.models import CabinetConfigVersion, CommandOutbox, EnrolmentCode
from tests.cloud.registry.test_registry_cli import LAYOUT, add_cabinet, cli, url  # noqa: F401

CODE = re.compile(r"^\s+([A-Z2-7]{4}(?:-[A-Z2-7]{4}){7})$", re.M)


def test_a_cabinet_added_the_old_way_gets_a_code_once_its_layout_is_given(url: str) -> None:  # noqa: F811
    assert add_cabinet(url, "gate-1").exit_code == 0  # printed its TOML: no config in the cloud
    refused = cli("cabinet", "enrol-code", "gate-1", "--database-url", url)
    assert refused.exit_code == 2 and "--layout" in refused.output
    given = cli(
        "cabinet", "enrol-code", "gate-1", "--layout", str(LAYOUT), "--expires-h", "2",
        "--database-url", url,
    )  # fmt: skip
    assert given.exit_code == 0, given.output
    first = CODE.search(given.output).group(1)
    again = cli("cabinet", "enrol-code", "gate-1", "--database-url", url)  # the config is kept
    assert again.exit_code == 0 and CODE.search(again.output).group(1) != first
    assert "locker cabinet enrol --cloud" in again.output and "mosquitto-config" in again.output
    engine = make_engine(url)
    with Session(engine) as session:
        codes = session.exec(select(EnrolmentCode).order_by(col(EnrolmentCode.created_at))).all()
        assert [c.used_at is None for c in codes] == [False, True]  # the first one is retired
    unknown = cli("cabinet", "enrol-code", "nope", "--database-url", url)
    assert unknown.exit_code == 2 and "no cabinet 'nope'" in unknown.output

    pushed = cli("cabinet", "config-push", "gate-1", "--layout", str(LAYOUT), "--database-url", url)
    assert pushed.exit_code == 0 and "config v2" in pushed.output, pushed.output
    with Session(engine) as session:
        versions = session.exec(select(CabinetConfigVersion.version)).all()
        assert sorted(versions) == [1, 2]
        assert session.exec(
            select(CommandOutbox).where(col(CommandOutbox.type) == "config.put")
        ).one()
    engine.dispose()
