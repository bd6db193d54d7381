"""Helpers for the webhook tests: settings allowing the local receiver, events in the outbox,
the dispatcher as the worker runs it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.models import Parcel, WebhookOutbox
from cloud.notify.webhooks import WebhookDispatcher
from tests.cloud.api.conftest import HEADERS
from tests.cloud.db.builders import CAB, SEAL_KEY

TIMEOUT_S = 0.2  # the dispatcher's HTTP timeout in tests: a hanging receiver costs this


def register(
    client: TestClient, url: str, events: list[str] | None = None, headers: dict | None = None
) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/webhooks",
        json={"url": url, "event_types": events or ["*"]},
        headers=headers or HEADERS,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def announce(client: TestClient, tracking_no: str) -> str:
    """Announce a parcel for the test key (one `announced` outbox row); return its row id."""
    answer = client.post(
        "/api/v1/shipments",
        json={
            "order_no": f"SO-{tracking_no}",
            "tracking_no": tracking_no,
            "phone": "+8613812341234",
            "cabinet_id": CAB,
        },
        headers={**HEADERS, "Idempotency-Key": tracking_no},
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["Location"].rsplit("/", 1)[1]


def add_events(engine: Engine, parcel_row_id: str, events: list[str], now: datetime) -> None:
    """Queue more status events for a parcel, as write_effects does with its change."""
    with Session(engine) as session:
        parcel = session.get(Parcel, parcel_row_id)
        assert parcel is not None
        for n, event in enumerate(events):
            session.add(
                WebhookOutbox(
                    parcel_row_id=parcel_row_id,
                    event=event,
                    payload={"status": event, "tracking_no": parcel.tracking_no, "n": n},
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        session.commit()


def dispatcher(engine: Engine, allow: str, **kwargs: Any) -> WebhookDispatcher:
    return WebhookDispatcher(
        engine=engine,
        seal_key=SEAL_KEY,
        allow_hosts=frozenset({allow}),
        timeout_s=TIMEOUT_S,
        jitter=lambda: 0.0,
        **kwargs,
    )
