"""At the deadline the courier is told too, at the registry's phone, in the site's language."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.fakes.twilio_server import FakeTwilio
from cloud.notify.bindings_db import DbCourierPhones
from cloud.services.expiry import run_due
from cloud.services.registry import add_courier
from tests.cloud.db.builders import PHONE, SEAL_KEY, SITE
from tests.cloud.notify.conftest import NOW, MakeDispatcher, deposit

COURIER_PHONE = "+8613912345678"
EXPIRY = NOW + timedelta(hours=72)


def register_courier(engine: Engine, phone: str | None = COURIER_PHONE) -> None:
    with Session(engine) as session:
        add_courier(
            session=session,
            courier_id="courier-7",  # the builders' deposits name this courier
            carrier="SF",
            pin="2468",
            site_id=SITE,
            now=NOW,
            phone=phone,
            salt=b"0123456789abcdef",
        )


def expire(engine: Engine) -> None:
    with Session(engine) as session:
        assert run_due(session=session, now=EXPIRY, seal_key=SEAL_KEY).expired == 1


@pytest.mark.parametrize(
    ("language", "expected"),
    [("zh-CN", "超期，请登录柜机取回"), ("en", "Please sign in at the cabinet and take it back")],
)
def test_the_courier_is_texted_at_expiry_and_the_log_masks_the_number(
    engine: Engine,
    twilio: FakeTwilio,
    make_dispatcher: MakeDispatcher,
    caplog: pytest.LogCaptureFixture,
    language: str,
    expected: str,
) -> None:
    deposit(engine, language=language)
    register_courier(engine)
    expire(engine)
    caplog.set_level(logging.INFO)

    make_dispatcher(courier_phones=DbCourierPhones(engine)).tick(EXPIRY)

    (told,) = twilio.sent_to(COURIER_PHONE)
    assert expected in told.body and "SF0000000001" in told.body
    assert any("+86 139****5678" in r.getMessage() for r in caplog.records)
    assert not any(COURIER_PHONE in r.getMessage() for r in caplog.records)
    assert not any(PHONE in r.getMessage() for r in caplog.records)


def test_a_courier_without_a_phone_is_not_told_and_the_notice_says_why(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    register_courier(engine, phone=None)
    expire(engine)
    result = make_dispatcher(courier_phones=DbCourierPhones(engine)).tick(EXPIRY)
    assert result.failed == 1  # the courier's notice: no phone; the recipient's still went out
    assert len(twilio.sent_to(PHONE)) == 2
