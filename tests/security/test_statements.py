"""Attacks on the courier statements (对账单): reading another carrier's money."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from cloud.db.models import Carrier, ErpApiKey, ErpKeySite
from cloud.services.queries import hash_api_key

# The API tests' fixtures (app over a migrated SQLite or PostgreSQL database, one key of CARRIER).
from tests.cloud.api.conftest import CARRIER, HEADERS, client, clock, deposit, settings, twilio  # noqa: F401
from tests.cloud.conftest import db_url, engine  # noqa: F401
from tests.cloud.db.builders import SITE, T0

RIVAL_KEY = "erp-rival-key-0123456789abcdef012345678"


def test_a_rival_carriers_key_learns_nothing_of_a_statement(client: TestClient) -> None:  # noqa: F811
    """Finding: a statement lists a carrier's deposits, tracking numbers and what it owes. A key
    bound to another carrier at the same site asks for it by name: it gets the 404 of a carrier
    that does not exist, in every format, and the answer names no parcel."""
    app_engine = client.app.state.engine
    deposit(app_engine, 2)
    with Session(app_engine) as session:
        session.add(Carrier(id="Rival", name="Rival", created_at=T0))
        session.flush()
        session.add(
            ErpApiKey(
                id="erp-rival",
                name="Rival",
                key_prefix=RIVAL_KEY[:8],
                key_hash=hash_api_key(RIVAL_KEY),
                carrier_id="Rival",
                created_at=T0,
            )
        )
        session.flush()
        session.add(ErpKeySite(key_id="erp-rival", site_id=SITE))
        session.commit()
    rival = {"X-API-Key": RIVAL_KEY}
    for path in ("/api/v1/statements", "/api/v1/statements.csv", "/api/v1/statements.xlsx"):
        params = {"carrier": CARRIER, "period": "2024-05"}
        theirs = client.get(path, params=params, headers=rival)
        missing = client.get(path, params={"carrier": "Ghost", "period": "2024-05"}, headers=rival)
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.json()["detail"].replace(CARRIER, "Ghost") == missing.json()["detail"]
        assert "SF000" not in theirs.text
        # The owner's own key reads it.
        assert client.get(path, params=params, headers=HEADERS).status_code == 200
