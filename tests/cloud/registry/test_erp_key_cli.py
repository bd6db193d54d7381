"""`locker cloud erp-key add`: the key is printed once, kept only as its hash, and opens the API."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from cloud.api import create_app
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import ErpApiKey
from cloud.settings import CloudSettings
from locker.cli import app
from tests.cloud.db.builders import SEAL_KEY


def cli(*args: str):
    return CliRunner().invoke(app, ["cloud", *args], env={"COLUMNS": "200"})


def test_the_printed_key_opens_the_api_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    result = cli("erp-key", "add", "shop", "--name", "The shop's ERP", "--database-url", url)
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("lk_") and len(key) > 40
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            row = session.exec(select(ErpApiKey)).one()
        assert (row.id, row.name, row.key_prefix) == ("shop", "The shop's ERP", key[:8])
        assert key not in row.key_hash
        settings = CloudSettings(database_url=url, secret_key=SEAL_KEY.decode())
        with TestClient(create_app(settings, engine=engine)) as client:
            assert client.get("/api/v1/cabinets", headers={"X-API-Key": key}).status_code == 200
            assert (
                client.get("/api/v1/cabinets", headers={"X-API-Key": key + "x"}).status_code == 401
            )

        again = cli("erp-key", "add", "shop", "--name", "Another", "--database-url", url)
        assert again.exit_code == 2
        assert "ERP key 'shop' exists already" in again.output
        with Session(engine) as session:
            assert len(session.exec(select(ErpApiKey)).all()) == 1
    finally:
        engine.dispose()
