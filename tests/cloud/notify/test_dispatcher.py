"""The outbox dispatcher: backoff retries, permanent failures, never twice, no clear code kept."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud import metrics
from cloud.core.phones import mask_phone
from cloud.db.models import NoticeOutbox
from cloud.fakes.twilio_server import INVALID_NUMBER, SERVER_ERROR, FakeTwilio
from cloud.notify.dispatcher import LEASE_S, Dispatcher
from cloud.notify.errors import AmbiguousSendError
from cloud.notify.ports import OutgoingMessage, Sender, SendReceipt
from cloud.notify.sms_twilio import TwilioSms, record_status_callback
from tests.cloud.db.builders import PHONE
from tests.cloud.notify.conftest import NOW, MakeDispatcher, assert_nowhere_in_database, deposit


def rows(engine: Engine) -> list[NoticeOutbox]:
    with Session(engine) as session:
        return list(session.exec(select(NoticeOutbox).order_by(NoticeOutbox.id)))


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# --- retries --------------------------------------------------------------------------------------


def test_server_errors_are_retried_at_the_backoff_times_and_sent_once(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    twilio.fail_next(2, SERVER_ERROR)
    dispatcher = make_dispatcher()  # randbelow(n) = n - 1: delays of 5 s, then 10 s
    before = {outcome: sms_attempts(outcome) for outcome in ("retried", "sent")}

    assert dispatcher.tick(NOW).retried == 1
    (row,) = rows(engine)
    assert (row.status, row.attempts, row.next_attempt_at) == ("queued", 1, at(5))
    assert "20500" in row.last_error and row.provider_id is None

    assert dispatcher.tick(at(4.9)).retried == 0  # not due yet
    assert twilio.requests == 1
    assert dispatcher.tick(at(5)).retried == 1
    assert rows(engine)[0].next_attempt_at == at(5 + 10)
    assert dispatcher.tick(at(14)).sent == 0
    assert dispatcher.tick(at(15)).sent == 1

    assert twilio.requests == 3 and len(twilio.messages) == 1
    (row,) = rows(engine)
    assert (row.status, row.attempts, row.provider_id) == ("sent", 3, twilio.messages[0].sid)
    assert dispatcher.tick(at(3600)).sent == 0
    assert twilio.requests == 3
    # What Prometheus reads (docs/metrics.md): two SMS attempts retried, one sent.
    assert sms_attempts("retried") - before["retried"] == 2
    assert sms_attempts("sent") - before["sent"] == 1


def sms_attempts(outcome: str) -> float:
    value = metrics.WORKER.get_sample_value(
        "locker_notices_total", {"channel": "sms", "outcome": outcome}
    )
    return value or 0.0


def test_retries_stop_after_the_last_attempt(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    twilio.fail_next(10, SERVER_ERROR)
    dispatcher = make_dispatcher(max_attempts=3)
    for minute in range(10):
        dispatcher.tick(at(minute * 60))
    (row,) = rows(engine)
    assert (row.status, row.attempts, twilio.requests) == ("failed", 3, 3)
    assert row.code_sealed is None


def test_a_permanent_error_fails_the_notice_without_a_retry(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    twilio.fail_next(1, INVALID_NUMBER)
    dispatcher = make_dispatcher()
    assert dispatcher.tick(NOW).failed == 1
    for hours in (1, 24, 100):
        assert dispatcher.tick(at(hours * 3600)).failed == 0
    assert twilio.requests == 1 and twilio.messages == []
    (row,) = rows(engine)
    assert (row.status, row.attempts, row.code_sealed) == ("failed", 1, None)
    assert "21211" in row.last_error


# --- never twice ----------------------------------------------------------------------------------


def test_ticking_again_sends_nothing_again(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    codes = deposit(engine, 5)
    dispatcher = make_dispatcher(batch_size=2)
    sent = sum(dispatcher.tick(NOW).sent for _ in range(5))
    assert sent == 5
    assert make_dispatcher().tick(at(LEASE_S * 2)).sent == 0
    per_code = Counter(code for code in codes for m in twilio.messages if code in m.body)
    assert per_code == Counter({code: 1 for code in codes})
    assert len(twilio.messages) == 5


def test_concurrent_dispatchers_send_each_notice_exactly_once(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    codes = deposit(engine, 24)
    dispatchers = [make_dispatcher(batch_size=3) for _ in range(4)]
    start = threading.Barrier(len(dispatchers))
    errors: list[BaseException] = []

    def run(dispatcher: Dispatcher) -> None:
        try:
            start.wait()
            for _ in range(12):
                dispatcher.tick(NOW)
        except BaseException as err:  # a thread's failure must reach the test
            errors.append(err)

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    per_code = Counter(code for code in codes for m in twilio.messages if code in m.body)
    assert per_code == Counter({code: 1 for code in codes})
    assert len(twilio.messages) == 24
    assert {row.status for row in rows(engine)} == {"sent"}


class SimulatedCrash(BaseException):
    """The process dies: nothing after this line of the dispatcher runs."""


class CrashAfterSend:
    """A sender that hands the message to the real one, then kills the dispatcher."""

    def __init__(self, inner: Sender) -> None:
        self.inner = inner

    def send(self, message: OutgoingMessage) -> SendReceipt:
        self.inner.send(message)
        raise SimulatedCrash


def test_a_crash_after_twilio_accepted_never_sends_a_second_message(
    engine: Engine, twilio: FakeTwilio, sms: TwilioSms, make_dispatcher: MakeDispatcher
) -> None:
    codes = deposit(engine, 3)
    with pytest.raises(SimulatedCrash):
        make_dispatcher(sms=CrashAfterSend(sms)).tick(NOW)
    assert len(twilio.messages) == 1
    crashed = next(row for row in rows(engine) if row.status == "sending")
    assert crashed.provider_id.startswith("attempt:")
    assert [row.status for row in rows(engine)].count("queued") == 2  # claimed one at a time

    restarted = make_dispatcher()
    assert restarted.tick(NOW).sent == 2  # the others go; the crashed one is still leased
    result = restarted.tick(at(LEASE_S))
    assert (result.sent, result.unknown) == (0, 1)
    assert restarted.tick(at(LEASE_S * 10)).sent == 0
    assert len(twilio.messages) == twilio.requests == 3
    per_code = Counter(code for code in codes for m in twilio.messages if code in m.body)
    assert per_code == Counter({code: 1 for code in codes})
    unknown = next(row for row in rows(engine) if row.id == crashed.id)
    assert unknown.status == "unknown"  # maybe sent: for a human, never resent

    # Twilio's status callback names the attempt: it settles the row as sent after all.
    first = twilio.messages[0]
    url, form, signature = twilio.status_callback(first.sid, "delivered")
    with Session(engine) as session:
        record_status_callback(
            session=session,
            auth_token=twilio.auth_token,
            url=url,
            form=form,
            signature=signature,
            now=at(LEASE_S + 1),
        )
    row = next(row for row in rows(engine) if row.id == crashed.id)
    assert (row.status, row.provider_id, row.delivery_status) == ("sent", first.sid, "delivered")
    assert row.code_sealed is None
    for code in codes:
        assert_nowhere_in_database(engine, code)


class LostAnswer:
    """A sender whose request may have arrived but whose answer never came back."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: OutgoingMessage) -> SendReceipt:
        self.calls += 1
        raise AmbiguousSendError("Twilio did not answer: ReadTimeout")


def test_a_lost_answer_is_maybe_sent_and_never_retried(
    engine: Engine, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    lost = LostAnswer()
    dispatcher = make_dispatcher(sms=lost)
    assert dispatcher.tick(NOW).unknown == 1
    for hours in (1, 24):
        dispatcher.tick(at(hours * 3600))
    assert lost.calls == 1
    (row,) = rows(engine)
    assert (row.status, row.attempts) == ("unknown", 1)
    assert "ReadTimeout" in row.last_error


class BrokenOnce:
    """A sender with a bug that bites on its first message, then works (the fake Twilio)."""

    def __init__(self, inner: Sender) -> None:
        self.inner = inner
        self.calls = 0

    def send(self, message: OutgoingMessage) -> SendReceipt:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError(f"bug while sending to {message.to}")
        return self.inner.send(message)


def test_a_sender_bug_leaves_that_notice_maybe_sent_and_the_batch_goes_on(
    engine: Engine,
    twilio: FakeTwilio,
    sms: TwilioSms,
    make_dispatcher: MakeDispatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    deposit(engine, 3)
    result = make_dispatcher(sms=BrokenOnce(sms)).tick(NOW)
    assert (result.sent, result.unknown) == (2, 1)
    assert [row.status for row in rows(engine)] == ["unknown", "sent", "sent"]
    assert "unexpected RuntimeError" in rows(engine)[0].last_error
    assert all(PHONE not in record.getMessage() for record in caplog.records)


# --- secrets --------------------------------------------------------------------------------------


def test_after_sending_no_clear_code_is_stored_and_logs_show_only_masked_phones(
    engine: Engine,
    twilio: FakeTwilio,
    make_dispatcher: MakeDispatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    codes = deposit(engine, 3)
    twilio.fail_next(1, SERVER_ERROR)
    with caplog.at_level(logging.DEBUG):
        dispatcher = make_dispatcher()
        dispatcher.tick(NOW)
        dispatcher.tick(at(3600))
    assert len(twilio.messages) == 3
    assert {row.status for row in rows(engine)} == {"sent"}
    for code in codes:
        assert_nowhere_in_database(engine, code)

    logged = [record.getMessage() for record in caplog.records]
    assert any(mask_phone(PHONE) in line for line in logged)
    for line in logged:
        assert PHONE not in line and PHONE[1:] not in line
        for code in codes:
            assert code not in line


# --- couriers -------------------------------------------------------------------------------------

COURIER_PHONE = "+8613912345678"


def queue_courier_notice(engine: Engine) -> None:
    """Queue an expired-parcel notice to courier-7, as the expiry scheduler does."""
    with Session(engine) as session:
        session.add(
            NoticeOutbox(
                dedupe_key="P000001/expired_courier/x",
                parcel_row_id="P000001",
                kind="expired_courier",
                audience="courier",
                courier_id="courier-7",
                deadline=at(72 * 3600),
                next_attempt_at=at(72 * 3600),
                created_at=at(72 * 3600),
            )
        )
        session.commit()


def test_a_courier_notice_goes_to_the_phone_the_courier_lookup_gives(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    make_dispatcher().tick(NOW)
    queue_courier_notice(engine)
    dispatcher = make_dispatcher(courier_phones={"courier-7": COURIER_PHONE})
    assert dispatcher.tick(at(72 * 3600)).sent == 1
    (message,) = twilio.sent_to(COURIER_PHONE)
    assert "A01号格口" in message.body and "SF0000000001" in message.body


def test_a_courier_notice_without_a_phone_fails_with_a_reason(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    make_dispatcher().tick(NOW)
    queue_courier_notice(engine)
    assert make_dispatcher().tick(at(72 * 3600)).failed == 1
    courier_row = rows(engine)[-1]
    assert (courier_row.status, courier_row.last_error) == ("failed", "no phone for this courier")
    assert len(twilio.messages) == 1  # the recipient's deposit notice only
