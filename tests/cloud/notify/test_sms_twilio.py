"""The `twilio` library against the fake Twilio server: what it receives, SIDs, status callbacks."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.core.codes import pickup_link
from cloud.core.notices import format_deadline
from cloud.core.policies import Language, SitePolicy
from cloud.db import repo
from cloud.db.models import NoticeOutbox, Site
from cloud.fakes.twilio_server import INVALID_NUMBER, SERVER_ERROR, FakeTwilio
from cloud.notify.errors import PermanentSendError, RetryableSendError, SignatureError
from cloud.notify.ports import OutgoingMessage
from cloud.notify.sms_twilio import TwilioSms, record_status_callback
from tests.cloud.db.builders import CAB, PHONE
from tests.cloud.notify.conftest import BASE_URL, CALLBACK_URL, FROM, NOW, MakeDispatcher, deposit


def notice_row(engine: Engine) -> NoticeOutbox:
    with Session(engine) as session:
        return session.exec(select(NoticeOutbox)).one()


def site_policy(engine: Engine) -> SitePolicy:
    with Session(engine) as session:
        return repo.site_policy(session.exec(select(Site)).one())


@pytest.mark.parametrize(
    ("language", "phrases"),
    [("zh-CN", ["取件码", "请于"]), ("en", ["Pickup code", "Collect it by"])],
)
def test_a_deposit_notice_goes_through_the_twilio_library_with_everything_in_it(
    engine: Engine,
    twilio: FakeTwilio,
    make_dispatcher: MakeDispatcher,
    language: str,
    phrases: list[str],
) -> None:
    (code,) = deposit(engine, language=language)
    result = make_dispatcher().tick(NOW)
    assert (result.sent, result.retried, result.failed, result.unknown) == (1, 0, 0, 0)

    (message,) = twilio.messages
    row = notice_row(engine)
    deadline = format_deadline(row.deadline, site_policy(engine), Language(language))
    assert (message.to, message.from_) == (PHONE, FROM)
    for part in ["Gate 1", "A01", code, deadline, *phrases]:
        assert part in message.body
    # No link beside the code (what phishing texts imitate); the address is on the page.
    assert pickup_link(BASE_URL, CAB, code) not in message.body and "http" not in message.body
    # The callback names the attempt, so Twilio can settle a row whose answer got lost.
    assert message.status_callback.startswith(f"{CALLBACK_URL}?ref={row.id}.")

    assert (row.status, row.channel, row.provider_id) == ("sent", "sms", message.sid)
    assert (row.delivery_status, row.sent_at, row.attempts) == ("queued", NOW, 1)
    assert row.code_sealed is None
    assert code not in row.body and "*" * len(code) in row.body
    assert row.body == message.body.replace(code, "*" * len(code))


def test_a_signed_status_callback_updates_the_delivery_status(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher
) -> None:
    deposit(engine)
    make_dispatcher().tick(NOW)
    (message,) = twilio.messages

    url, form, signature = twilio.status_callback(message.sid, "delivered")
    with Session(engine) as session:
        row = record_status_callback(
            session=session,
            auth_token=twilio.auth_token,
            url=url,
            form=form,
            signature=signature,
            now=NOW,
        )
    assert row is not None and row.delivery_status == "delivered"

    # A late "sent" callback (Twilio does not promise order) never moves it back.
    url, form, signature = twilio.status_callback(message.sid, "sent")
    with Session(engine) as session:
        record_status_callback(
            session=session,
            auth_token=twilio.auth_token,
            url=url,
            form=form,
            signature=signature,
            now=NOW,
        )
    assert notice_row(engine).delivery_status == "delivered"


@pytest.mark.parametrize("tamper", ["signature", "form", "token", "missing"])
def test_a_callback_whose_signature_does_not_verify_is_refused_and_changes_nothing(
    engine: Engine, twilio: FakeTwilio, make_dispatcher: MakeDispatcher, tamper: str
) -> None:
    deposit(engine)
    make_dispatcher().tick(NOW)
    (message,) = twilio.messages
    before = notice_row(engine)

    url, form, signature = twilio.status_callback(message.sid, "undelivered")
    token = twilio.auth_token
    if tamper == "signature":
        signature = signature[:-4] + "AAA="
    elif tamper == "form":
        form["MessageStatus"] = "delivered"
    elif tamper == "token":
        token = "someone-elses-token"
    else:
        signature = ""
    with Session(engine) as session, pytest.raises(SignatureError):
        record_status_callback(
            session=session, auth_token=token, url=url, form=form, signature=signature, now=NOW
        )
    after = notice_row(engine)
    assert after.model_dump() == before.model_dump()


# --- the adapter alone: errors sorted for the dispatcher -----------------------------------------


def message(to: str = PHONE) -> OutgoingMessage:
    return OutgoingMessage(to=to, text="hello", ref="1.abc")


def test_twilio_errors_are_sorted_into_retryable_and_permanent(
    twilio: FakeTwilio, sms: TwilioSms
) -> None:
    twilio.fail_next(1, SERVER_ERROR)
    with pytest.raises(RetryableSendError) as retryable:
        sms.send(message())
    assert retryable.value.code == 20500

    twilio.fail_next(1, INVALID_NUMBER)
    with pytest.raises(PermanentSendError) as permanent:
        sms.send(message())
    assert permanent.value.code == 21211

    with pytest.raises(PermanentSendError) as not_e164:
        sms.send(message(to="13812341234"))
    assert not_e164.value.code == 21211
    assert twilio.messages == []

    receipt = sms.send(message())
    assert (receipt.provider_id, receipt.status) == (twilio.messages[0].sid, "queued")
    assert parse_qs(urlsplit(twilio.messages[0].status_callback).query) == {"ref": ["1.abc"]}


def test_wrong_credentials_and_an_unreachable_twilio(twilio: FakeTwilio) -> None:
    wrong = TwilioSms(
        account_sid=twilio.account_sid, auth_token="wrong", from_=FROM, base_url=twilio.url
    )
    with pytest.raises(PermanentSendError) as refused:
        wrong.send(message())
    assert refused.value.code == 20003

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    nowhere = TwilioSms(
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        from_=FROM,
        base_url=f"http://127.0.0.1:{port}",
    )
    with pytest.raises(RetryableSendError, match="unreachable"):
        nowhere.send(message())
