"""The registry's service functions on both databases, and Mosquitto's password format."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from cloud.db.models import Cabinet, CabinetCreate, CommandOutbox, Compartment, SiteCreate
from cloud.services.registry import (
    CompartmentSpec,
    RegistryError,
    add_cabinet,
    add_courier,
    add_site,
    layout_compartments,
    mosquitto_acl_lines,
    mosquitto_password_hash,
    verify_mosquitto_password,
)
from tests.cloud.db.builders import SEAL_KEY
from tests.services import MOSQUITTO_PASSWD_CANDIDATES, find_executable, missing_service

NOW = datetime(2024, 5, 1, tzinfo=UTC)
SPECS = [CompartmentSpec("A01", "S"), CompartmentSpec("A02", "XL", low_door=True)]


def test_cabinet_site_and_courier_on_both_databases(engine: Engine) -> None:
    with Session(engine) as session:
        add_site(session=session, site_create=SiteCreate(id="s1", name="Estate"), now=NOW)
        with pytest.raises(RegistryError, match="no site"):
            add_cabinet(
                session=session,
                cabinet_create=CabinetCreate(id="c1", site_id="s2", name="Gate"),
                compartments=SPECS,
                now=NOW,
                seal_key=SEAL_KEY,
            )
        creds = add_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id="c1", site_id="s1", name="Gate"),
            compartments=SPECS,
            now=NOW,
            seal_key=SEAL_KEY,
        )
        pushed = add_courier(
            session=session, courier_id="k1", carrier="SF", pin="1234", site_id="s1", now=NOW
        )
        assert pushed == ["c1"]
        cabinet = session.get(Cabinet, "c1")
        assert cabinet is not None
        assert cabinet.mqtt_password_hash == creds.mqtt_password_hash
        assert session.exec(select(func.count()).select_from(Compartment)).one() == 2
        assert session.exec(select(CommandOutbox.type)).all() == ["couriers.put"]


def test_layout_accepts_the_deploy_files() -> None:
    import tomllib

    deploy = Path(__file__).parents[3] / "deploy"
    for path in deploy.glob("cabinet-*.toml"):
        specs = layout_compartments(tomllib.loads(path.read_text()))
        assert specs and all(spec.size in {"S", "M", "L", "XL"} for spec in specs)


def test_password_hash_matches_mosquitto_passwd_both_ways(tmp_path: Path) -> None:
    stored = mosquitto_password_hash("s3cret", salt=b"0123456789ab")
    assert stored.startswith("$7$101$MDEyMzQ1Njc4OWFi$")
    assert verify_mosquitto_password("s3cret", stored)
    assert not verify_mosquitto_password("s3cret!", stored)
    tool = find_executable(MOSQUITTO_PASSWD_CANDIDATES)
    if tool is None:
        missing_service("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), "u", "s3cret"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert verify_mosquitto_password("s3cret", theirs)


def test_acl_lines_cover_exactly_the_cabinets_topics() -> None:
    assert mosquitto_acl_lines("cab-1").splitlines() == [
        "user cab-1",
        "topic write lockers/v1/cab-1/event",
        "topic write lockers/v1/cab-1/state",
        "topic write lockers/v1/cab-1/ack",
        "topic read lockers/v1/cab-1/cmd",
        "topic read lockers/v1/cab-1/event-ack",
    ]
    with pytest.raises(RegistryError):
        mosquitto_acl_lines("cab/#")
