"""`GET /metrics`: who may scrape it, and the fleet's figures as an operator reads them.

Two deposits applied (two notices queued, two codes.put in play), a forced door (an open
alarm), a faulted compartment, one event stored but not applied, one cabinet online of two:
each shows as the gauge an alert or a dashboard panel reads. Latency is labelled by route
template, never by the id in the URL. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.api import create_app
from cloud.db.models import Cabinet, Compartment
from cloud.services.ingest import store_events
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import HEADERS, NOW, Clock, apply, deposit
from tests.cloud.db.builders import CAB, deposited, forced, register_cabinet

TOKEN = "scrape-token-0123456789abcdef0123"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# Who may scrape and how latency is labelled do not depend on the database: SQLite alone.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def monitored(
    client: TestClient, engine: Engine, settings: CloudSettings, clock: Clock
) -> Iterator[TestClient]:
    """The API of `client`'s database, with a metrics token."""
    settings = settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    with TestClient(create_app(settings, engine=engine, clock=clock)) as test_client:
        yield test_client


def scrape(client: TestClient) -> Samples:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


@sqlite_only
def test_without_a_token_configured_metrics_do_not_exist(client: TestClient) -> None:
    """No LOCKER_CLOUD_METRICS_TOKEN: a 404 like any path that does not exist."""
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404
    assert answer.json() == client.get("/no-such-path").json()


@sqlite_only
def test_only_the_token_bearer_may_scrape(monitored: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef0123"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        HEADERS,  # an ERP key is not a scrape token
    ):
        answer = monitored.get("/metrics", headers=headers)
        assert answer.status_code == 403, headers
        assert "locker_" not in answer.text
    assert scrape(monitored)[("locker_database_up", ())] == 1


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="METRICS_TOKEN is refused"):
        CloudSettings(metrics_token="short")


def test_the_fleet_figures(monitored: TestClient, engine: Engine, clock: Clock) -> None:
    deposit(engine, 2)
    apply(engine, forced(3))
    with Session(engine) as session:
        register_cabinet(session, "CAB-2")
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None
        cabinet.online = True
        door = session.get(Compartment, (CAB, "A04"))
        assert door is not None
        door.state = "faulted"
        session.add_all([cabinet, door])
        session.commit()
        # Stored, not applied: a worker died between the two, or is behind.
        store_events(session=session, cab=CAB, envelopes=[deposited(4)], now=NOW)
        session.commit()
    clock.advance(90)
    figures = scrape(monitored)
    assert figures[("locker_cabinets", (("presence", "online"),))] == 1
    assert figures[("locker_cabinets", (("presence", "never_seen"),))] == 1
    assert figures[("locker_cabinets", (("presence", "offline"),))] == 0
    assert figures[("locker_compartments_faulted", ())] == 1
    assert figures[("locker_events_unapplied", ())] == 1
    assert figures[("locker_events_unapplied_oldest_age_seconds", ())] == pytest.approx(90)
    assert figures[("locker_commands_pending", ())] == 2  # the two codes.put, never acked
    assert figures[("locker_notice_outbox", (("status", "queued"),))] == 2
    assert figures[("locker_alarms_open", (("kind", "door.forced"),))] == 1
    assert figures[("locker_webhook_outbox", (("status", "dead"),))] == 0
    # Past their expiry the commands are no longer in play (the worker marks them expired).
    clock.advance(timedelta(days=30).total_seconds())
    assert scrape(monitored)[("locker_commands_pending", ())] == 0


@sqlite_only
def test_latency_is_labelled_by_route_template(monitored: TestClient) -> None:
    for parcel in ("P000001", "P000002", "nope"):
        monitored.get(f"/api/v1/parcels/{parcel}", headers=HEADERS)
    monitored.get("/wp-login.php")
    figures = scrape(monitored)
    routes = {
        dict(labels)["route"]
        for name, labels in figures
        if name == "locker_http_request_duration_seconds_count"
    }
    assert routes == {"/api/v1/parcels/{parcel_id}", "unmatched"}
    parcels = (("method", "GET"), ("route", "/api/v1/parcels/{parcel_id}"), ("status", "4xx"))
    assert figures[("locker_http_request_duration_seconds_count", parcels)] == 3
