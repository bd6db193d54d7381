"""WeChat against the fake API: the token cached and refreshed, bound recipients, SMS fallback."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.models import NoticeOutbox
from cloud.fakes.twilio_server import FakeTwilio
from cloud.fakes.wechat_server import FakeWechat
from cloud.notify.errors import PermanentSendError, RetryableSendError
from cloud.notify.ports import OutgoingMessage, StaticBindings
from cloud.notify.wechat import TOKEN_MARGIN_S, WechatTemplates
from tests.cloud.db.builders import CAB, PHONE
from tests.cloud.notify.conftest import BASE_URL, NOW, MakeDispatcher, deposit

OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


def message(to: str = OPENID, text: str = "hello") -> OutgoingMessage:
    return OutgoingMessage(to=to, text=text, ref="1.abc", link=f"{BASE_URL}/pickup/{CAB}")


def test_the_token_is_fetched_once_and_cached_until_it_nears_expiry(
    wechat_server: FakeWechat, wechat: WechatTemplates
) -> None:
    first = wechat.send(message(text="one"))
    wechat.send(message(text="two"))
    assert wechat_server.token_requests == 1
    assert [m.text for m in wechat_server.sent_to(OPENID)] == ["one", "two"]
    assert first.provider_id == str(wechat_server.messages[0].msgid)
    assert wechat_server.messages[0].template_id == "TPL-pickup"
    assert wechat_server.messages[0].url == f"{BASE_URL}/pickup/{CAB}"

    wechat.clock.now_s += wechat_server.token_lifetime_s - TOKEN_MARGIN_S  # type: ignore[attr-defined]
    wechat.send(message(text="three"))
    assert wechat_server.token_requests == 2


def test_an_expired_token_is_refreshed_and_the_send_retried_once(
    wechat_server: FakeWechat, wechat: WechatTemplates
) -> None:
    wechat.send(message(text="before"))
    wechat_server.expire_tokens()  # WeChat retired it early (42001), our clock says it is fine
    wechat.send(message(text="after"))
    assert wechat_server.token_requests == 2
    assert wechat_server.send_requests == 3  # before, after with the dead token, after again
    assert [m.text for m in wechat_server.messages] == ["before", "after"]


def test_neither_the_app_secret_nor_the_token_reaches_a_log(
    wechat_server: FakeWechat, wechat: WechatTemplates, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        wechat.send(message())
    token = wechat.access_token()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "cgi-bin/token" in logged  # httpx did log the requests…
    assert wechat_server.app_secret not in logged and token not in logged  # …without secrets


def test_wechat_errors_are_sorted_into_retryable_and_permanent(
    wechat_server: FakeWechat, wechat: WechatTemplates
) -> None:
    wechat_server.fail_next(1, errcode=-1)
    with pytest.raises(RetryableSendError) as busy:
        wechat.send(message())
    assert busy.value.code == -1
    wechat_server.reject_openid(OPENID, errcode=43004)
    with pytest.raises(PermanentSendError) as unsubscribed:
        wechat.send(message())
    assert unsubscribed.value.code == 43004
    assert wechat_server.messages == []

    wrong = WechatTemplates(
        app_id=wechat_server.app_id,
        app_secret="wrong",
        template_id="TPL-pickup",
        base_url=wechat_server.url,
    )
    with pytest.raises(PermanentSendError) as bad_secret:
        wrong.send(message())
    assert bad_secret.value.code == 40125
    wrong.close()


# --- through the dispatcher ----------------------------------------------------------------------


def rows(engine: Engine) -> list[NoticeOutbox]:
    with Session(engine) as session:
        return list(session.exec(select(NoticeOutbox).order_by(NoticeOutbox.id)))


def test_a_bound_recipient_gets_wechat_and_an_unbound_one_sms(
    engine: Engine,
    twilio: FakeTwilio,
    wechat_server: FakeWechat,
    wechat: WechatTemplates,
    make_dispatcher: MakeDispatcher,
) -> None:
    (code,) = deposit(engine)
    bound = make_dispatcher(wechat=wechat, bindings=StaticBindings({PHONE: OPENID}))
    assert bound.tick(NOW).sent == 1
    (received,) = wechat_server.sent_to(OPENID)
    assert code in received.text and "Gate 1" in received.text
    # The link's fragment holds the QR payload, then the door and deadline for the page to show.
    assert received.url and f"#LKR1:{CAB}:{code};door=" in received.url
    assert twilio.messages == []
    (row,) = rows(engine)
    assert (row.status, row.channel, row.provider_id) == ("sent", "wechat", str(received.msgid))
    assert row.code_sealed is None and code not in row.body


def test_an_unbound_recipient_gets_sms_even_with_wechat_configured(
    engine: Engine,
    twilio: FakeTwilio,
    wechat_server: FakeWechat,
    wechat: WechatTemplates,
    make_dispatcher: MakeDispatcher,
) -> None:
    deposit(engine)
    dispatcher = make_dispatcher(wechat=wechat, bindings=StaticBindings({"+8613900000000": OPENID}))
    assert dispatcher.tick(NOW).sent == 1
    assert len(twilio.sent_to(PHONE)) == 1
    assert wechat_server.messages == [] and wechat_server.token_requests == 0
    assert rows(engine)[0].channel == "sms"


@pytest.mark.parametrize("errcode", [43004, -1])
def test_wechat_failing_falls_back_to_sms_at_once(
    engine: Engine,
    twilio: FakeTwilio,
    wechat_server: FakeWechat,
    wechat: WechatTemplates,
    make_dispatcher: MakeDispatcher,
    errcode: int,
) -> None:
    (code,) = deposit(engine)
    if errcode == -1:
        wechat_server.fail_next(1, errcode=-1)  # busy: the recipient should not wait for it
    else:
        wechat_server.reject_openid(OPENID, errcode=errcode)  # unfollowed: never will work
    dispatcher = make_dispatcher(wechat=wechat, bindings=StaticBindings({PHONE: OPENID}))
    assert dispatcher.tick(NOW).sent == 1
    assert wechat_server.messages == []
    (sms,) = twilio.sent_to(PHONE)
    assert code in sms.body
    (row,) = rows(engine)
    assert (row.status, row.channel, row.provider_id) == ("sent", "sms", sms.sid)
    assert f"errcode {errcode}" in row.last_error
    assert dispatcher.tick(NOW).sent == 0  # and nothing goes again on either channel
    assert len(twilio.messages) == 1 and wechat_server.messages == []
