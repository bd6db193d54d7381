"""`locker cloud erp-key add`: the key is printed once, kept only as its hash, and opens the API;
it is bound to one carrier or merchant and to sites, and a key bound to nothing is refused."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from cloud.api import create_app
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import AuditLog, ErpApiKey, ErpKeySite
from cloud.settings import CloudSettings
from locker.cli import app
from tests.cloud.db.builders import SEAL_KEY


def cli(*args: str):
    return CliRunner().invoke(app, ["cloud", *args], env={"COLUMNS": "200"})


def _registry_with_a_site_and_a_carrier(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    assert cli("site", "add", "s1", "--name", "Estate", "--database-url", url).exit_code == 0
    assert cli("carrier", "add", "SF", "--name", "SF Express", "--database-url", url).exit_code == 0
    return url


def test_the_printed_key_opens_the_api_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    url = _registry_with_a_site_and_a_carrier(tmp_path)
    result = cli(
        "erp-key", "add", "shop", "--name", "The shop's ERP", "--merchant", "shop-1",
        "--site", "s1", "--database-url", url,
    )  # fmt: skip
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

        again = cli(
            "erp-key", "add", "shop", "--name", "Another", "--carrier", "SF", "--site", "s1",
            "--database-url", url,
        )  # fmt: skip
        assert again.exit_code == 2
        assert "ERP key 'shop' exists already" in again.output
        with Session(engine) as session:
            assert len(session.exec(select(ErpApiKey)).all()) == 1
    finally:
        engine.dispose()


def test_a_key_bound_to_nothing_or_to_both_or_to_no_site_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    url = _registry_with_a_site_and_a_carrier(tmp_path)
    cases = {
        "exactly one carrier (--carrier) or one merchant": ["--site", "s1"],
        "exactly one carrier": ["--carrier", "SF", "--merchant", "m", "--site", "s1"],
        "at least one site": ["--carrier", "SF"],
        "no carrier 'DHL'": ["--carrier", "DHL", "--site", "s1"],
        "no site 'elsewhere'": ["--carrier", "SF", "--site", "elsewhere"],
    }
    for message, args in cases.items():
        result = cli("erp-key", "add", "k", "--name", "ERP", *args, "--database-url", url)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            assert session.exec(select(ErpApiKey)).all() == []
    finally:
        engine.dispose()


def test_a_bound_key_keeps_its_sites_and_its_creation_is_audited(tmp_path: Path) -> None:
    url = _registry_with_a_site_and_a_carrier(tmp_path)
    assert cli("site", "add", "s2", "--name", "Campus", "--database-url", url).exit_code == 0
    result = cli(
        "erp-key", "add", "sf-erp", "--name", "SF's ERP", "--carrier", "SF",
        "--site", "s1", "--site", "s2", "--database-url", url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            key = session.get(ErpApiKey, "sf-erp")
            assert key is not None and (key.carrier_id, key.merchant_id) == ("SF", None)
            sites = session.exec(select(ErpKeySite.site_id).where(ErpKeySite.key_id == "sf-erp"))
            assert sorted(sites) == ["s1", "s2"]
            rows = session.exec(select(AuditLog).where(AuditLog.resource_id == "sf-erp")).all()
        assert [(r.principal_kind, r.action, r.resource_kind) for r in rows] == [
            ("operator_admin", "manage_keys", "api_key")
        ]
        assert rows[0].principal_id.startswith("cli:")
        assert rows[0].detail["site_ids"] == ["s1", "s2"]
    finally:
        engine.dispose()


def test_a_revoked_key_is_refused_and_its_revocation_audited_with_the_reason(
    tmp_path: Path,
) -> None:
    url = _registry_with_a_site_and_a_carrier(tmp_path)
    made = cli(
        "erp-key", "add", "sf-erp", "--name", "SF", "--carrier", "SF", "--site", "s1",
        "--database-url", url,
    )  # fmt: skip
    key = made.output.strip().splitlines()[-1]
    no_reason = cli("erp-key", "revoke", "sf-erp", "--reason", " ", "--database-url", url)
    assert no_reason.exit_code == 2 and "say why" in no_reason.output
    revoked = cli("erp-key", "revoke", "sf-erp", "--reason", "leaked", "--database-url", url)
    assert revoked.exit_code == 0, revoked.output
    again = cli("erp-key", "revoke", "sf-erp", "--reason", "leaked", "--database-url", url)
    assert again.exit_code == 2 and "revoked already" in again.output
    engine = make_engine(url)
    try:
        settings = CloudSettings(database_url=url, secret_key=secrets.token_hex(32))
        with TestClient(create_app(settings, engine=engine)) as client:
            assert client.get("/api/v1/cabinets", headers={"X-API-Key": key}).status_code == 401
        with Session(engine) as session:
            rows = session.exec(select(AuditLog).where(AuditLog.resource_id == "sf-erp")).all()
        assert [(r.detail["op"], r.reason) for r in rows] == [("add", ""), ("revoke", "leaked")]
    finally:
        engine.dispose()
