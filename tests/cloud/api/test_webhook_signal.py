"""A commit that queues a webhook outbox row wakes this process's webhook sender
(`cloud.db.outbox_signal`); a request that queues none, or whose transaction rolls back, does not.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from cloud.db.models import WebhookOutbox
from cloud.db.outbox_signal import WEBHOOK_ROWS_COMMITTED, CommitSignal, mark_webhook_row
from tests.cloud.api.conftest import HEADERS
from tests.cloud.api.webhook_helpers import announce


def outbox_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(WebhookOutbox)).one()


def test_announcing_a_parcel_signals_its_webhook_row(client: TestClient, engine: Engine) -> None:
    before = WEBHOOK_ROWS_COMMITTED.generation
    announce(client, "TN-SIGNAL-1")
    assert outbox_rows(engine) == 1
    assert WEBHOOK_ROWS_COMMITTED.generation == before + 1


def test_a_request_that_queues_no_webhook_row_signals_nothing(
    client: TestClient, engine: Engine
) -> None:
    before = WEBHOOK_ROWS_COMMITTED.generation
    assert client.get("/api/v1/webhooks", headers=HEADERS).status_code == 200
    assert outbox_rows(engine) == 0
    assert WEBHOOK_ROWS_COMMITTED.generation == before


def test_a_rolled_back_webhook_row_signals_nothing_at_the_next_commit(engine: Engine) -> None:
    before = WEBHOOK_ROWS_COMMITTED.generation
    with Session(engine) as session:
        session.exec(select(1))
        mark_webhook_row(session)
        session.rollback()
        session.exec(select(1))
        session.commit()
    assert WEBHOOK_ROWS_COMMITTED.generation == before


def test_each_waiter_sees_a_change_without_waiting_for_its_timeout() -> None:
    signal = CommitSignal()
    seen = signal.generation
    signal.notify()
    # Both return at once (a timeout of an hour would hang the test): no waiter consumes it.
    assert signal.wait(seen, 3600) == seen + 1
    assert signal.wait(seen, 3600) == seen + 1
    assert signal.wait(seen + 1, 0) == seen + 1  # unchanged: returns at its timeout
