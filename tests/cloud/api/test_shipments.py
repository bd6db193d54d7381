"""`POST /api/v1/shipments`: an ERP announces a parcel once per Idempotency-Key; bad input is a
clear error that writes nothing; the courier's deposit then completes the announcement."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.models import IdempotencyKey, Parcel, ParcelEvent, WebhookOutbox
from cloud.db.repo import count_rows
from tests.cloud.api.conftest import HEADERS, Clock, apply
from tests.cloud.db.builders import CAB, T0, deposited, register_cabinet

BODY = {
    "order_no": "SO-1001",
    "tracking_no": "sf0001",  # typed in lower case: kept as the cabinet keys it
    "phone": "+8613812341234",
    "cabinet_id": CAB,
}


@pytest.fixture(autouse=True)
def cabinet(engine: Engine) -> None:
    with Session(engine) as session:
        register_cabinet(session)


def post(client: TestClient, body: dict[str, Any], key: str | None = "k-1", **headers: str):
    sent = {**HEADERS, **headers}
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post("/api/v1/shipments", json=body, headers=sent)


def counts(engine: Engine) -> tuple[int, int, int, int]:
    with Session(engine) as session:
        return tuple(
            count_rows(session=session, model=model)
            for model in (Parcel, ParcelEvent, WebhookOutbox, IdempotencyKey)
        )


def test_an_announcement_creates_an_announced_parcel_with_its_timeline(
    client: TestClient, engine: Engine
) -> None:
    answer = post(client, BODY)
    assert answer.status_code == 201, answer.text
    parcel = answer.json()
    assert parcel["status"] == "announced"
    assert parcel["erp_state"] == "shipped"
    assert parcel["tracking_no"] == "SF0001"
    assert parcel["order_no"] == "SO-1001"
    assert parcel["cabinet_id"] == CAB
    assert parcel["parcel_id"] is None  # named by the cabinet at deposit
    assert parcel["phone_masked"] == "+86 138****1234"
    assert "13812341234" not in answer.text
    assert answer.headers["location"] == f"/api/v1/parcels/{parcel['id']}"

    tracking = client.get("/api/v1/tracking/SF0001", headers=HEADERS).json()
    assert [(e["status"], e["source"]) for e in tracking["timeline"]] == [("announced", "erp")]
    with Session(engine) as session:
        webhook = session.exec(select(WebhookOutbox)).one()
    assert webhook.payload["status"] == "announced"
    assert webhook.payload["order_no"] == "SO-1001"


def test_a_retried_post_creates_one_parcel_and_gets_the_same_answer(
    client: TestClient, engine: Engine
) -> None:
    first = post(client, BODY)
    again = post(client, BODY)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert counts(engine) == (1, 1, 1, 1)


def test_the_same_key_with_another_body_is_refused_and_changes_nothing(
    client: TestClient, engine: Engine
) -> None:
    assert post(client, BODY).status_code == 201
    before = counts(engine)
    other = post(client, {**BODY, "tracking_no": "SF0002"})
    assert other.status_code == 409
    assert "Idempotency-Key was used for another request" in other.json()["detail"]
    assert counts(engine) == before


def test_a_live_tracking_number_cannot_be_announced_twice(
    client: TestClient, engine: Engine
) -> None:
    assert post(client, BODY).status_code == 201
    before = counts(engine)
    twice = post(client, BODY, key="k-2")
    assert twice.status_code == 409
    assert "SF0001 is already announced" in twice.json()["detail"]
    assert counts(engine) == before


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"phone": "13812341234"}, "body.phone", "E.164"),
        ({"phone": "+86123"}, "body.phone", "string should have at least 8 characters"),
        ({"phone": "+8612345678901"}, "body.phone", "not usable"),
        ({"tracking_no": "SF 0001"}, "body.tracking_no", "letters, digits and '-'"),
        ({"tracking_no": "X" * 41}, "body.tracking_no", "at most 40 characters"),
        ({"cabinet_id": "cab-nowhere"}, "body.cabinet_id", "no cabinet 'cab-nowhere'"),
        ({"order_no": "   "}, "body.order_no", "must not be empty"),
        ({"order_no": None}, "body.order_no", "valid string"),
    ],
)
def test_bad_input_is_a_clear_422_and_writes_nothing(
    client: TestClient, engine: Engine, change: dict[str, Any], field: str, words: str
) -> None:
    answer = post(client, {**BODY, **change})
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert words.lower() in errors[0]["message"].lower()
    assert counts(engine) == (0, 0, 0, 0)
    # Refused requests keep no key: the corrected request goes through with the same one.
    assert post(client, BODY).status_code == 201


def test_the_idempotency_key_and_the_api_key_are_required(
    client: TestClient, engine: Engine
) -> None:
    missing = post(client, BODY, key=None)
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["header.Idempotency-Key"]
    unknown = client.post(
        "/api/v1/shipments", json=BODY, headers={"X-API-Key": "nope", "Idempotency-Key": "k"}
    )
    assert unknown.status_code == 401
    assert counts(engine) == (0, 0, 0, 0)


def test_the_courier_deposit_completes_the_announcement(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    clock.now = T0 - timedelta(hours=1)  # announced an hour before the courier came
    announced = post(client, {**BODY, "tracking_no": "SF0000000001"}).json()  # deposited(1)
    [code] = apply(engine, deposited(1))
    assert code
    parcel = client.get(f"/api/v1/parcels/{announced['id']}", headers=HEADERS).json()
    assert parcel["status"] == "in_locker"
    assert parcel["order_no"] == "SO-1001"
    timeline = client.get("/api/v1/tracking/SF0000000001", headers=HEADERS).json()["timeline"]
    assert [e["status"] for e in timeline] == ["announced", "in_locker"]
