"""Fixtures for the API tests: the app over the test database, a fake Twilio, a movable clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.api import create_app
from cloud.db.models import Carrier, Courier, ErpApiKey, ErpKeySite
from cloud.fakes.twilio_server import FakeTwilio
from cloud.services.ingest import apply_pending, store_events
from cloud.services.queries import hash_api_key
from cloud.settings import CloudSettings
from protocol.messages import EventBase
from tests.cloud.db.builders import (
    CAB,
    SEAL_KEY,
    SITE,
    T0,
    Recording,
    deposited,
    register_cabinet,
)

NOW = T0 + timedelta(minutes=5)
BASE_URL = "https://lockers.example"
FROM = "+15005550006"
API_KEY = "erp-test-key-0123456789abcdef0123456789"
HEADERS = {"X-API-Key": API_KEY}
# The test key acts for the carrier of the builders' courier (`courier-7`), at the site of CAB:
# it sees the parcels that courier deposits there and announces for CAB.
CARRIER = "SF Express"
COURIER = "courier-7"
# Every test cabinet's MQTT password, which is also what fetches its scan QR (HTTP Basic).
CAB_PASSWORD = "cabinet-mqtt-password-0123456789abcdef"


class Clock:
    """The app's clock; tests move `now` instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    """A fake Twilio Messages API on a free local port."""
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def settings(db_url: str, twilio: FakeTwilio) -> CloudSettings:
    return CloudSettings(
        database_url=db_url,
        base_url=BASE_URL,
        secret_key=SEAL_KEY.decode(),
        twilio_base_url=twilio.url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=FROM,
    )


@pytest.fixture
def client(engine: Engine, settings: CloudSettings, clock: Clock) -> Iterator[TestClient]:
    """The API over the migrated test database, with one live ERP API key (`HEADERS`) bound to
    `CARRIER` and the site of CAB, whose courier `COURIER` is registered."""
    with Session(engine) as session:
        register_cabinet(session)
        session.add(Carrier(id=CARRIER, name=CARRIER, created_at=T0))
        session.add(Courier(id=COURIER, carrier=CARRIER, pin_hash="x", created_at=T0))
        session.flush()
        session.add(
            ErpApiKey(
                id="erp-1",
                name="Test ERP",
                key_prefix=API_KEY[:8],
                key_hash=hash_api_key(API_KEY),
                carrier_id=CARRIER,
                created_at=T0,
            )
        )
        session.flush()
        session.add(ErpKeySite(key_id="erp-1", site_id=SITE))
        session.commit()
    with TestClient(create_app(settings, engine=engine, clock=clock)) as test_client:
        yield test_client


def apply(engine: Engine, *envelopes: EventBase, now: datetime = NOW) -> list[str]:
    """Register the cabinet, store and apply `envelopes`; return the pickup codes issued."""
    rng = Recording()
    with Session(engine) as session:
        register_cabinet(session)
        store_events(session=session, cab=CAB, envelopes=list(envelopes), now=now)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=now, seal_key=SEAL_KEY, randbelow=rng)
    return rng.codes


def deposit(engine: Engine, count: int = 1) -> list[str]:
    """Deposit parcels P000001.. (seq 1..count) at NOW; return their clear pickup codes."""
    return apply(engine, *(deposited(n) for n in range(1, count + 1)))


def cabinet_auth(engine: Engine, cab: str = CAB) -> tuple[str, str]:
    """Give cabinet `cab` its MQTT password (hash) if it has none; return its Basic credentials."""
    from cloud.db.models import Cabinet
    from cloud.services.registry import mosquitto_password_hash

    with Session(engine) as session:
        cabinet = session.get(Cabinet, cab)
        assert cabinet is not None, f"register cabinet {cab} first"
        if not cabinet.mqtt_password_hash:
            cabinet.mqtt_password_hash = mosquitto_password_hash(CAB_PASSWORD)
            session.add(cabinet)
            session.commit()
    return cab, CAB_PASSWORD


def fetch_nonce(client: TestClient, cab: str = CAB) -> str:
    """Fetch cabinet `cab`'s scan QR as the cabinet does; return its nonce."""
    answer = client.get(
        f"/api/v1/cabinets/{cab}/scan-qr", auth=cabinet_auth(client.app.state.engine, cab)
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Scan-URL"].rsplit("/", 1)[1]


def deliver(engine: Engine, settings: CloudSettings, now: datetime) -> None:
    """Run the notice dispatcher once, as the worker does (the scan codes go out this way)."""
    from cloud.worker.schedule import notice_dispatcher_from_settings

    notice_dispatcher_from_settings(engine=engine, settings=settings).tick(now)
