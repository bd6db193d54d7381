"""WeChat's server push: a bound recipient who writes to the official account gets new codes.

Driven through the API as WeChat would call it (signed query, XML body, plaintext mode); the new
code then goes out through the notice dispatcher to the fake WeChat API, and the test checks it
against the hash the cabinet is sent in `codes.put`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import defusedxml.ElementTree as SafeXml
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from cloud.core.wechat_push import push_signature
from cloud.db import repo
from cloud.db.models import CommandOutbox, NoticeOutbox, Parcel, Site
from cloud.fakes.wechat_server import FakeWechat
from cloud.notify.bindings_db import DbBindings
from cloud.notify.dispatcher import Dispatcher
from cloud.notify.sms_twilio import TwilioSms
from cloud.notify.wechat import WechatTemplates
from cloud.settings import CloudSettings
from protocol.hashing import code_hash
from tests.cloud.api.conftest import FROM, NOW, Clock, deposit
from tests.cloud.db.builders import CODE_KEY, PHONE, SEAL_KEY

TOKEN = "push-token-of-the-official-account"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
ACCOUNT = "gh_lockers"
PUSH = "/api/v1/wechat/push"


@pytest.fixture
def settings(settings: CloudSettings) -> CloudSettings:
    return settings.model_copy(update={"wechat_token": SecretStr(TOKEN)})


@pytest.fixture
def wechat_server() -> Iterator[FakeWechat]:
    with FakeWechat() as server:
        yield server


def signed(clock: Clock, nonce: str = "n0nce", token: str = TOKEN) -> dict[str, str]:
    timestamp = str(int(clock.now.timestamp()))
    return {
        "signature": push_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
    }


def text_message(msg_id: str = "24000000000000001", openid: str = OPENID) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        "<CreateTime>1714528800</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[取件码]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def push(client: TestClient, clock: Clock, body: bytes, **query: str):
    params = signed(clock) | query
    return client.post(PUSH, params=params, content=body, headers={"Content-Type": "text/xml"})


def bind(engine: Engine, openid: str = OPENID, phone: str = PHONE) -> None:
    with Session(engine) as session:
        repo.bind_wechat(session=session, openid=openid, phone=phone, now=NOW)
        session.commit()


def puts(engine: Engine) -> list[CommandOutbox]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(CommandOutbox)
                .where(CommandOutbox.type == "codes.put")
                .order_by(col(CommandOutbox.created_at), col(CommandOutbox.id))
            )
        )


def resend_notices(engine: Engine) -> int:
    with Session(engine) as session:
        statement = select(func.count()).select_from(NoticeOutbox)
        return session.exec(statement.where(NoticeOutbox.kind == "resend")).one()


def reply_content(response) -> str:
    root = SafeXml.fromstring(response.content)
    assert (root.findtext("ToUserName"), root.findtext("FromUserName")) == (OPENID, ACCOUNT)
    assert root.findtext("MsgType") == "text"
    return root.findtext("Content")


def dispatch(engine: Engine, settings: CloudSettings, wechat_server: FakeWechat, now) -> None:
    wechat = WechatTemplates(
        app_id=wechat_server.app_id,
        app_secret=wechat_server.app_secret,
        template_id="TPL-pickup",
        base_url=wechat_server.url,
    )
    sms = TwilioSms(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        from_=FROM,
        base_url=settings.twilio_base_url,
    )
    try:
        Dispatcher(
            engine=engine,
            sms=sms,
            wechat=wechat,
            bindings=DbBindings(engine),
            seal_key=SEAL_KEY,
            base_url=settings.base_url,
        ).tick(now)
    finally:
        wechat.close()


def test_the_url_check_echoes_only_for_the_accounts_token(client: TestClient, clock) -> None:
    good = client.get(PUSH, params=signed(clock) | {"echostr": "4471593462839"})
    assert (good.status_code, good.text) == (200, "4471593462839")

    forged = client.get(PUSH, params=signed(clock, token="guess") | {"echostr": "x"})
    assert forged.status_code == 403
    assert "signature" in forged.json()["detail"]


def test_a_bound_recipient_writing_to_the_account_gets_a_new_code_by_wechat(
    client: TestClient,
    engine: Engine,
    settings: CloudSettings,
    clock: Clock,
    wechat_server: FakeWechat,
) -> None:
    (old_code,) = deposit(engine)
    bind(engine)
    clock.advance(60)

    response = push(client, clock, text_message())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "1 个包裹" in reply_content(response) and "1 parcel(s)" in reply_content(response)
    deposit_put, new_put = puts(engine)
    assert deposit_put.superseded_by == new_put.id  # never sent: the old code is retired
    new_hash = new_put.data["entries"][0]["code_hash"]
    with Session(engine) as session:
        assert session.exec(select(Parcel.code_hash)).one() == new_hash

    dispatch(engine, settings, wechat_server, clock.now)
    (resent,) = [m for m in wechat_server.sent_to(OPENID) if "新取件码" in m.text]
    (new_code,) = re.findall(r"新取件码 (\d{8})", resent.text)
    assert new_code != old_code
    assert code_hash(CODE_KEY, new_code) == new_hash


def test_a_bad_signature_is_refused_and_changes_nothing(client: TestClient, engine, clock) -> None:
    deposit(engine)
    bind(engine)
    before = len(puts(engine))

    response = push(client, clock, text_message(), signature="0" * 40)
    stale = client.post(
        PUSH,
        params=signed(Clock(clock.now - timedelta(minutes=10))),
        content=text_message(),
    )

    assert (response.status_code, stale.status_code) == (403, 403)
    assert len(puts(engine)) == before and resend_notices(engine) == 0


def test_an_unbound_user_is_told_how_to_link_a_phone(client: TestClient, engine, clock) -> None:
    deposit(engine)
    response = push(client, clock, text_message(openid=OPENID))
    assert "尚未绑定" in reply_content(response)
    assert "not linked" in reply_content(response)
    assert len(puts(engine)) == 1 and resend_notices(engine) == 0


def test_nothing_live_gets_a_clear_answer(client: TestClient, engine: Engine, clock) -> None:
    deposit(engine)
    bind(engine, phone="+8613900000000")  # bound, but that phone has no parcel
    content = reply_content(push(client, clock, text_message()))
    assert "没有待取的包裹" in content and "no parcel waiting" in content


def test_the_cabinets_resend_limit_applies_and_a_retried_push_issues_nothing(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    deposit(engine)
    bind(engine)
    with Session(engine) as session:
        limit = session.exec(select(Site.resend_limit)).one()

    for n in range(limit):
        assert "1 个包裹" in reply_content(push(client, clock, text_message(f"msg-{n}")))
    retried = push(client, clock, text_message(f"msg-{limit - 1}"))  # WeChat's retry of a push
    assert retried.text == "success"
    limited = reply_content(push(client, clock, text_message("one-too-many")))

    assert "刚刚发送过" in limited and "try again after" in limited
    assert resend_notices(engine) == limit
    assert len(puts(engine)) == 1 + limit


def test_other_messages_get_no_reply(client: TestClient, engine: Engine, clock) -> None:
    bind(engine)
    event = (
        f"<xml><ToUserName>{ACCOUNT}</ToUserName><FromUserName>{OPENID}</FromUserName>"
        "<CreateTime>1714528800</CreateTime><MsgType>event</MsgType>"
        "<Event>subscribe</Event></xml>"
    ).encode()
    assert push(client, clock, event).text == "success"
    assert push(client, clock, b"<xml><not-wechat/>").status_code == 422
    encrypted = push(client, clock, text_message(), encrypt_type="aes")
    assert encrypted.status_code == 422 and "plaintext" in encrypted.json()["detail"]
