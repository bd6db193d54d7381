"""Fixtures of the console's tests: two sites with a cabinet each, a parcel behind a door of
the first, accounts of every role, and a client over HTTPS (the session cookie is Secure)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.api import create_app
from cloud.db import repo
from cloud.db.models import CabinetCreate, Carrier, Compartment, Courier, SiteCreate
from cloud.services import accounts
from cloud.services.accounts import add_account
from cloud.services.ingest import apply_pending, store_events
from cloud.settings import CloudSettings
from protocol.messages import ParcelDeposited, ParcelDepositedData, Size
from tests.cloud.db.builders import CAB, PHONE, SEAL_KEY, T0, Recording, register_cabinet

OTHER_SITE, OTHER_CAB = "site-2", "CAB-2"
PASSWORD = "correct horse battery staple"
ACCOUNTS = {  # username -> (role, sites, carrier)
    "ops": ("operator_admin", (), None),
    "mgr-a": ("site_manager", ("site-1",), None),
    "mgr-b": ("site_manager", (OTHER_SITE,), None),
    "sf-office": ("carrier", (), "SF"),
}
TRACKING = "SF1234567890"


@dataclass
class Clock:
    """The app's clock, moved by the test (nothing sleeps)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    """argon2id as in production but at its cheapest cost: the recommended cost takes ~0.5 s a
    hash on the test machine, and these tests sign in dozens of times."""
    old = accounts.use_hasher(PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024),)))
    yield
    accounts.use_hasher(old)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(minutes=5))


@pytest.fixture
def world(engine: Engine) -> Engine:
    """CAB-1 (site-1, doors A01-A04, a parcel in A01) and CAB-2 (site-2); four accounts."""
    return make_world(engine)


def make_world(engine: Engine) -> Engine:
    """The `world` fixture's data, on any migrated database."""
    with Session(engine) as session:
        register_cabinet(session)
        repo.create_site(
            session=session, site_create=SiteCreate(id=OTHER_SITE, name="Riverside"), now=T0
        )
        repo.create_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id=OTHER_CAB, site_id=OTHER_SITE, name="Lobby"),
            code_key=b"k" * 32,
            seal_key=SEAL_KEY,
            now=T0,
        )
        session.flush()
        session.add(Compartment(cabinet_id=OTHER_CAB, id="B01", size="L"))
        session.add(Carrier(id="SF", name="SF Express", created_at=T0))
        session.flush()
        session.add(Courier(id="sf-1", carrier="SF", pin_hash="x", created_at=T0))
        session.commit()
        for username, (role, sites, carrier) in ACCOUNTS.items():
            add_account(
                session=session, username=username, role=role, password=PASSWORD, now=T0,
                site_ids=sites, carrier_id=carrier,
            )  # fmt: skip
    deposit(engine, 1)
    return engine


def deposit(engine: Engine, seq: int, door: str = "A01", tracking_no: str = TRACKING) -> None:
    event = ParcelDeposited(
        id=f"{CAB}-e{seq}",
        cab=CAB,
        seq=seq,
        ts=T0 + timedelta(seconds=seq),
        data=ParcelDepositedData(
            parcel_id=f"P{seq:06d}", compartment=door, size=Size.M, tracking_no=tracking_no,
            phone=PHONE, courier_id="sf-1",
        ),
    )  # fmt: skip
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[event], now=T0 + timedelta(minutes=1))
        session.rollback()
        apply_pending(
            session=session, cab=CAB, now=T0 + timedelta(minutes=1), seal_key=SEAL_KEY,
            randbelow=Recording(),
        )  # fmt: skip


@pytest.fixture
def client(world: Engine, clock: Clock) -> Iterator[TestClient]:
    settings = CloudSettings(database_url="sqlite://", secret_key=SEAL_KEY.decode())
    app = create_app(settings, engine=world, clock=clock)
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(
    client: TestClient, username: str, password: str = PASSWORD, *, totp: str = ""
) -> TestClient:
    """Sign `client` in through the form (as a browser would); return it."""
    page = client.get("/console/sign-in")
    response = client.post(
        "/console/sign-in",
        data={"username": username, "password": password, "csrf": form_token(page.text),
              "totp": totp},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303, response.text
    return client
