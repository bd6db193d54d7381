"""Fixtures for the notice tests: fake Twilio and WeChat servers, a migrated database, deposits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session, SQLModel

from cloud.db.models import Site
from cloud.fakes.twilio_server import FakeTwilio
from cloud.fakes.wechat_server import FakeWechat
from cloud.notify.dispatcher import Dispatcher
from cloud.notify.ports import StaticBindings
from cloud.notify.sms_twilio import TwilioSms
from cloud.notify.wechat import WechatTemplates
from cloud.services.ingest import apply_pending, store_events
from tests.cloud.db.builders import CAB, SEAL_KEY, T0, Recording, deposited, register_cabinet

NOW = T0 + timedelta(minutes=5)
BASE_URL = "https://lockers.example"
CALLBACK_URL = "https://lockers.example/api/v1/callbacks/twilio/status"
FROM = "+15005550006"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    """A fake Twilio Messages API on a free local port."""
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def wechat_server() -> Iterator[FakeWechat]:
    """A fake WeChat official-account API on a free local port."""
    with FakeWechat() as server:
        yield server


@pytest.fixture
def sms(twilio: FakeTwilio) -> TwilioSms:
    """The Twilio SMS sender, pointed at the fake."""
    return TwilioSms(
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        from_=FROM,
        base_url=twilio.url,
        status_callback_url=CALLBACK_URL,
    )


class ManualClock:
    """A monotonic clock tests move by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def wechat(wechat_server: FakeWechat) -> Iterator[WechatTemplates]:
    """The WeChat template sender, pointed at the fake, on a manual clock (`.clock`)."""
    clock = ManualClock()
    sender = WechatTemplates(
        app_id=wechat_server.app_id,
        app_secret=wechat_server.app_secret,
        template_id="TPL-pickup",
        base_url=wechat_server.url,
        clock=clock,
    )
    sender.clock = clock  # type: ignore[attr-defined]
    yield sender
    sender.close()


MakeDispatcher = Callable[..., Dispatcher]


@pytest.fixture
def make_dispatcher(engine: Engine, sms: TwilioSms) -> MakeDispatcher:
    """Build a dispatcher over the test database; keyword arguments override the defaults."""

    def make(**overrides: Any) -> Dispatcher:
        arguments: dict[str, Any] = {
            "engine": engine,
            "sms": sms,
            "seal_key": SEAL_KEY,
            "base_url": BASE_URL,
            "bindings": StaticBindings(),
            "randbelow": lambda n: n - 1,  # the top of each jitter range: predictable backoff
        }
        arguments.update(overrides)
        return Dispatcher(**arguments)

    return make


def deposit(engine: Engine, count: int = 1, *, language: str | None = None) -> list[str]:
    """Deposit `count` parcels (P000001, …) at NOW; return their clear pickup codes."""
    rng = Recording()
    with Session(engine) as session:
        register_cabinet(session)
        if language is not None:
            site = session.exec(select(Site)).scalars().one()
            site.language = language
            session.add(site)
            session.commit()
        envelopes = [deposited(n) for n in range(1, count + 1)]
        store_events(session=session, cab=CAB, envelopes=envelopes, now=NOW)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=NOW, seal_key=SEAL_KEY, randbelow=rng)
    return rng.codes


def assert_nowhere_in_database(engine: Engine, secret: str) -> None:
    """Scan every column of every row of every table, as text, for `secret`."""
    with Session(engine) as session:
        for table in SQLModel.metadata.sorted_tables:
            for row in session.connection().execute(select(table)).mappings():
                for name, value in row.items():
                    if value is None:
                        continue
                    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
                    assert secret not in text, f"the clear code is in {table.name}.{name}"
