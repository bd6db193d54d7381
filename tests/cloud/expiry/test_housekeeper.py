"""The worker's housekeeper on an injected clock: expiry, command resends, notices, cleanup."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.models import WechatInbox
from cloud.db.scan_models import ScanOtp
from cloud.fakes.twilio_server import FakeTwilio
from cloud.notify.dispatcher import Dispatcher
from cloud.notify.sms_twilio import TwilioSms
from cloud.services.ingest import apply_pending, store_events
from cloud.settings import CloudSettings
from cloud.worker.mqtt import MqttClient
from cloud.worker.schedule import Cleanup, Housekeeper, notice_dispatcher_from_settings
from cloud.worker.service import Worker, subscriptions
from tests.cloud.db.builders import CAB, PHONE, SEAL_KEY, T0, deposited, register_cabinet

HOUR = timedelta(hours=1)
COURIER_PHONE = "+8613900000007"


class Clock:
    """The worker's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def deposited_engine(engine: Engine) -> Engine:
    """The database with parcel P000001 deposited in CAB-1 at T0 (its SMS not sent yet)."""
    with Session(engine) as session:
        register_cabinet(session)
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=T0)
        apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)
    return engine


def make_worker(engine: Engine, twilio: FakeTwilio, clock: Clock, published: list) -> Worker:
    sms = TwilioSms(
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        from_="+15005550006",
        base_url=twilio.url,
    )
    notices = Dispatcher(
        engine=engine,
        sms=sms,
        seal_key=SEAL_KEY,
        base_url="https://lockers.example",
        courier_phones={"courier-7": COURIER_PHONE},
    )
    # Never started: the test drives the loop's once-a-second tick itself.
    client = MqttClient(
        host="127.0.0.1",
        port=1,
        client_id="housekeeper-test",
        subscriptions=subscriptions(shared=True),
    )
    return Worker(
        engine=engine,
        client=client,
        seal_key=SEAL_KEY,
        clock=clock,
        resend_interval_s=30,
        publish=lambda topic, payload: published.append((topic, json.loads(payload)["type"])),
        notices=notices,
    )


def types(published: list) -> list[str]:
    return [type_ for _, type_ in published]


def test_advancing_the_clock_expires_resends_and_notifies(
    deposited_engine: Engine, twilio: FakeTwilio
) -> None:
    clock = Clock(T0)
    published: list = []
    worker = make_worker(deposited_engine, twilio, clock, published)

    worker._dispatch()  # what the worker's loop runs about every second
    assert types(published) == ["codes.put"]
    assert len(twilio.sent_to(PHONE)) == 1  # the deposit notice

    clock.now = T0 + 48 * HOUR
    worker._dispatch()
    assert types(published) == ["codes.put", "codes.put"]  # unacked, so sent again
    assert len(twilio.sent_to(PHONE)) == 2  # the reminder

    clock.now = T0 + 72 * HOUR
    worker._dispatch()
    # The revoke supersedes the still-unacked put: it is not resent after the revoke.
    assert sorted(types(published)[2:]) == ["codes.revoke", "retrievals.put"]
    assert all(topic == f"lockers/v1/{CAB}/cmd" for topic, _ in published)
    recipient = twilio.sent_to(PHONE)
    assert len(recipient) == 3  # the expiry notice
    assert len(twilio.sent_to(COURIER_PHONE)) == 1  # the courier is asked to take it back

    worker._dispatch()  # the same instant again: nothing new is due
    assert len(published) == 4 and len(twilio.sent_to(PHONE)) == 3


def test_expiry_runs_at_most_every_interval_of_the_clock(deposited_engine: Engine) -> None:
    housekeeper = Housekeeper(engine=deposited_engine, seal_key=SEAL_KEY, expiry_every_s=30)

    assert housekeeper.tick(T0).expiry is not None
    assert housekeeper.tick(T0 + timedelta(seconds=29)).expiry is None
    late = housekeeper.tick(T0 + 72 * HOUR)
    assert late.expiry is not None and late.expiry.expired == 1
    assert (late.commands, late.notices) == (None, None)  # not configured


def test_a_failing_step_does_not_stop_the_others(deposited_engine: Engine) -> None:
    class Broken:
        def tick(self, now: datetime) -> None:
            raise RuntimeError("notice provider bug")

    housekeeper = Housekeeper(engine=deposited_engine, seal_key=SEAL_KEY, notices=Broken())

    result = housekeeper.tick(T0 + 72 * HOUR)

    assert result.notices is None
    assert result.expiry is not None and result.expiry.expired == 1


def test_the_notice_dispatcher_comes_from_the_settings(
    deposited_engine: Engine, twilio: FakeTwilio
) -> None:
    settings = CloudSettings(
        twilio_base_url=twilio.url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from="+15005550006",
        secret_key=SEAL_KEY.decode(),  # the key the deposit's code was sealed with
    )
    dispatcher = notice_dispatcher_from_settings(engine=deposited_engine, settings=settings)

    assert dispatcher.tick(T0).sent == 1
    assert len(twilio.sent_to(PHONE)) == 1


def test_the_hourly_sweep_deletes_one_time_codes_and_push_records_older_than_a_day(
    deposited_engine: Engine,
) -> None:
    def otp(at: datetime) -> ScanOtp:
        return ScanOtp(
            cabinet_id=CAB,
            phone=PHONE,
            code_hash="h",
            expires_at=at + timedelta(minutes=10),
            attempts_left=5,
            created_at=at,
        )

    now = T0 + 72 * HOUR
    with Session(deposited_engine) as session:
        session.add_all([otp(now - 25 * HOUR), otp(now - 23 * HOUR)])
        session.add_all(
            [
                WechatInbox(msg_id="old", openid="o1", received_at=now - 25 * HOUR),
                WechatInbox(msg_id="new", openid="o1", received_at=now - HOUR),
            ]
        )
        session.commit()
    housekeeper = Housekeeper(engine=deposited_engine, seal_key=SEAL_KEY)

    assert housekeeper.tick(now).cleanup == Cleanup(scan_otps=1, wechat_pushes=1)
    assert housekeeper.tick(now + HOUR - timedelta(seconds=1)).cleanup is None  # hourly
    with Session(deposited_engine) as session:
        kept = session.exec(select(ScanOtp.created_at)).all()
        assert kept == [now - 23 * HOUR]
        assert session.exec(select(WechatInbox.msg_id)).all() == ["new"]
    later = housekeeper.tick(now + 2 * HOUR)  # the second row is now a day old too
    assert later.cleanup == Cleanup(scan_otps=1, wechat_pushes=0)
