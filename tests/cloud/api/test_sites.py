"""`GET /api/v1/sites/{id}`: a site's policy read back as stored, "no quiet hours" as nulls."""

from __future__ import annotations

from datetime import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.models import ErpKeySite, SiteCreate
from cloud.services.registry import add_site
from tests.cloud.api.conftest import HEADERS
from tests.cloud.db.builders import T0


@pytest.mark.parametrize("quiet", [(None, None), (time(22, 0), time(8, 0))], ids=["none", "set"])
def test_the_api_reads_the_policy_back(
    engine: Engine, client: TestClient, quiet: tuple[time | None, time | None]
) -> None:
    with Session(engine) as session:
        add_site(
            session=session,
            site_create=SiteCreate(id="s1", name="S", quiet_start=quiet[0], quiet_end=quiet[1]),
            now=T0,
        )
        add_site(session=session, site_create=SiteCreate(id="not-mine", name="N"), now=T0)
        session.add(ErpKeySite(key_id="erp-1", site_id="s1"))
        session.commit()
    body = client.get("/api/v1/sites/s1", headers=HEADERS).json()
    expected = [None if t is None else t.isoformat() for t in quiet]
    assert [body["quiet_start"], body["quiet_end"]] == expected
    missing = client.get("/api/v1/sites/nope", headers=HEADERS)
    not_mine = client.get("/api/v1/sites/not-mine", headers=HEADERS)
    assert missing.status_code == not_mine.status_code == 404  # another's site reads as missing
    assert client.get("/api/v1/sites/s1").status_code == 401
