"""An ERP key's principal is kept a few seconds per API process: the bound a revocation, or a
change of the key's sites, takes to apply, on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, delete

from cloud.api import create_app
from cloud.db.models import ErpApiKey, ErpKeySite
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import HEADERS, Clock, deposit
from tests.cloud.db.builders import T0

TRACKING = "/api/v1/tracking/SF0000000001"


def revoke(engine: Engine) -> None:
    """Revoke the test key as `locker cloud erp-key revoke` does: from another process."""
    with Session(engine) as session:
        key = session.get(ErpApiKey, "erp-1")
        assert key is not None
        key.revoked_at = T0
        session.add(key)
        session.commit()


def test_a_revoked_key_works_until_the_bound_and_not_after_it(
    client: TestClient, engine: Engine, settings: CloudSettings, clock: Clock
) -> None:
    deposit(engine)
    assert client.get(TRACKING, headers=HEADERS).status_code == 200
    revoke(engine)
    # Within the bound this process still holds the key's principal...
    clock.advance(settings.erp_key_cache_s - 0.5)
    assert client.get(TRACKING, headers=HEADERS).status_code == 200
    # ... and once it has passed, the key is read again and refused, on every route.
    clock.advance(1)
    for path in (TRACKING, "/api/v1/parcels", "/api/v1/shipments"):
        answer = client.get(path, headers=HEADERS)
        assert answer.status_code == 401, path
        assert answer.json() == {"detail": "unknown or revoked X-API-Key"}


def test_a_key_moved_off_its_site_sees_its_parcels_go_within_the_bound(
    client: TestClient, engine: Engine, settings: CloudSettings, clock: Clock
) -> None:
    deposit(engine)  # a parcel the key's carrier's courier deposited at the key's site
    assert client.get(TRACKING, headers=HEADERS).status_code == 200
    with Session(engine) as session:
        session.exec(delete(ErpKeySite).where(ErpKeySite.key_id == "erp-1"))  # type: ignore[call-overload]
        session.commit()
    clock.advance(settings.erp_key_cache_s)
    assert client.get(TRACKING, headers=HEADERS).status_code == 404


@pytest.fixture
def uncached(
    engine: Engine, settings: CloudSettings, clock: Clock, client: TestClient
) -> Iterator[TestClient]:
    """A second API process over the same database that keeps no principal (bound 0)."""
    no_cache = settings.model_copy(update={"erp_key_cache_s": 0.0})
    with TestClient(create_app(no_cache, engine=engine, clock=clock)) as other:
        yield other


def test_with_the_bound_at_zero_a_revocation_applies_at_once(
    uncached: TestClient, engine: Engine
) -> None:
    deposit(engine)
    assert uncached.get(TRACKING, headers=HEADERS).status_code == 200
    revoke(engine)
    assert uncached.get(TRACKING, headers=HEADERS).status_code == 401
