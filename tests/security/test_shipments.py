"""Attacker tests of /api/v1/shipments: a key of another carrier, at the same site, plays with
the ids of SF Express's shipments. On SQLite and PostgreSQL (the API tests' fixtures).

Finding: the shipment routes take a shipment's id in the URL; without the policy's check, any
key that learnt or guessed an id (they are ULIDs, sortable by time) could read, redirect or
cancel another carrier's shipment. Each test plays that key and must get the same 404 as for an
id that does not exist, with nothing written.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.models import (
    Carrier,
    ErpApiKey,
    ErpKeySite,
    IdempotencyKey,
    ParcelEvent,
    WebhookOutbox,
)
from cloud.db.repo import count_rows
from cloud.services.queries import hash_api_key
from tests.cloud.api.conftest import HEADERS, client, clock, settings, twilio  # noqa: F401
from tests.cloud.conftest import db_url, engine  # noqa: F401
from tests.cloud.db.builders import CAB, SITE, T0

OTHER_KEY = "erp-jd-key-0123456789abcdef0123456789abc"
OTHER = {"X-API-Key": OTHER_KEY}


@pytest.fixture
def other_key(client: TestClient, engine: Engine) -> dict[str, str]:  # noqa: F811
    """A live key of carrier JD, bound to the same site as SF Express's key."""
    with Session(engine) as session:
        session.add(Carrier(id="JD", name="JD", created_at=T0))
        session.flush()
        session.add(
            ErpApiKey(
                id="erp-jd",
                name="JD ERP",
                key_prefix=OTHER_KEY[:8],
                key_hash=hash_api_key(OTHER_KEY),
                carrier_id="JD",
                created_at=T0,
            )
        )
        session.flush()
        session.add(ErpKeySite(key_id="erp-jd", site_id=SITE))
        session.commit()
    return OTHER


def sf_shipment(client: TestClient) -> dict[str, Any]:  # noqa: F811
    body = {
        "order_no": "SO-SF-1",
        "tracking_no": "SF0000000001",
        "phone": "+8613812341234",
        "cabinet_id": CAB,
    }
    answer = client.post(
        "/api/v1/shipments", json=body, headers={**HEADERS, "Idempotency-Key": "sf-1"}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def counts(engine: Engine) -> tuple[int, ...]:  # noqa: F811
    with Session(engine) as session:
        return tuple(
            count_rows(session=session, model=model)
            for model in (ParcelEvent, WebhookOutbox, IdempotencyKey)
        )


def test_another_carriers_shipment_reads_as_missing(
    client: TestClient,  # noqa: F811
    other_key: dict[str, str],
) -> None:
    """Finding: reading a shipment by id must not show another carrier's (404, as missing)."""
    made = sf_shipment(client)
    theirs = client.get(f"/api/v1/shipments/{made['id']}", headers=other_key)
    missing = client.get("/api/v1/shipments/01NOSUCHSHIPMENT", headers=other_key)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace(made["id"], "X") == missing.json()["detail"].replace(
        "01NOSUCHSHIPMENT", "X"
    )
    for query in ("", "?order_no=SO-SF-1", "?tracking_no=SF0000000001", f"?site={SITE}"):
        page = client.get(f"/api/v1/shipments{query}", headers=other_key).json()
        assert page["data"] == [], query
    assert client.get(f"/api/v1/shipments/{made['id']}", headers=HEADERS).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "", {"phone": "+8613999999999"}),  # redirect the pickup code to its phone
        ("PATCH", "", {"cabinet_id": CAB}),
        ("PATCH", "", {"cabinet_id": "CAB-NOWHERE"}),  # a 422 here would say the id exists
        ("POST", "/cancel", {"reason": "mine now"}),
        ("POST", "/confirm-return", None),
    ],
)
def test_another_carriers_shipment_cannot_be_changed(
    client: TestClient,  # noqa: F811
    engine: Engine,  # noqa: F811
    other_key: dict[str, str],
    method: str,
    path: str,
    body: Any,
) -> None:
    """Finding: update, cancel and confirm-return by id must refuse another carrier's shipment
    as a missing one (404), and write nothing: no timeline row, no webhook, no stored key."""
    made = sf_shipment(client)
    before = counts(engine)
    answer = client.request(
        method,
        f"/api/v1/shipments/{made['id']}{path}",
        json=body,
        headers={**other_key, "Idempotency-Key": "attack-1"},
    )
    assert answer.status_code == 404, answer.text
    assert counts(engine) == before
    still = client.get(f"/api/v1/shipments/{made['id']}", headers=HEADERS).json()
    assert (still["status"], still["phone_masked"]) == ("announced", "+86 138****1234")


def test_an_idempotency_key_of_another_api_key_replays_nothing_across_keys(
    client: TestClient,  # noqa: F811
    engine: Engine,  # noqa: F811
    other_key: dict[str, str],
) -> None:
    """Finding: stored answers are keyed by (API key, Idempotency-Key); another key sending the
    same Idempotency-Key must not be handed SF Express's stored answer."""
    made = sf_shipment(client)
    cancel = client.post(
        f"/api/v1/shipments/{made['id']}/cancel", headers={**HEADERS, "Idempotency-Key": "k-9"}
    )
    assert cancel.status_code == 200
    replay = client.post(
        f"/api/v1/shipments/{made['id']}/cancel", headers={**other_key, "Idempotency-Key": "k-9"}
    )
    assert replay.status_code == 404
    assert "idempotent-replayed" not in replay.headers
