"""Scan-to-open with WeChat sign-in, end to end through the API and the fake WeChat server.

The phone's browser is played by the test: it follows the API's redirect to the fake's authorize
page (as WeChat's in-app browser would), and the fake redirects back with a code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.api import create_app
from cloud.db import repo
from cloud.db.models import CommandOutbox, WechatBinding
from cloud.fakes.twilio_server import FakeTwilio
from cloud.fakes.wechat_server import FakeWechat
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import BASE_URL, NOW, Clock, deliver, deposit, fetch_nonce
from tests.cloud.db.builders import CAB, PHONE

OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
MASKED = "+86 138****1234"


@pytest.fixture
def wechat_server() -> Iterator[FakeWechat]:
    with FakeWechat() as server:
        yield server


@pytest.fixture
def settings(settings: CloudSettings, wechat_server: FakeWechat) -> CloudSettings:
    return settings.model_copy(
        update={
            "wechat_app_id": wechat_server.app_id,
            "wechat_app_secret": SecretStr(wechat_server.app_secret),
            "wechat_base_url": wechat_server.url,
            "wechat_open_base_url": wechat_server.url,
        }
    )


@pytest.fixture
def browser(engine: Engine, settings: CloudSettings, clock: Clock) -> Iterator[TestClient]:
    """The recipient's phone browser on the API, at its public https address (cookies kept)."""
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as client:
        yield client
    app.state.wechat_oauth.close()


def scan(browser: TestClient) -> str:
    return fetch_nonce(browser)  # as the cabinet does: the phone only reads it off the screen


def bind(engine: Engine) -> None:
    with Session(engine) as session:
        repo.bind_wechat(session=session, openid=OPENID, phone=PHONE, now=NOW)
        session.commit()


def through_wechat(browser: TestClient, nonce: str, wechat_server: FakeWechat) -> str:
    """Start the sign-in and let the fake's authorize page redirect back: the callback URL."""
    start = browser.get(f"/api/v1/scan/{CAB}/{nonce}/wechat")
    assert start.status_code == 303
    authorize = start.headers["location"]
    assert authorize.startswith(f"{wechat_server.url}/connect/oauth2/authorize?")
    assert authorize.endswith("#wechat_redirect")
    query = parse_qs(urlsplit(authorize).query)
    assert query["appid"] == [wechat_server.app_id] and query["scope"] == ["snsapi_base"]
    assert query["redirect_uri"] == [f"{BASE_URL}/api/v1/scan/{CAB}/wechat/callback"]
    assert re.fullmatch(r"[A-Za-z0-9]{1,128}", query["state"][0])  # WeChat's rule for state
    back = httpx.get(authorize.split("#")[0], follow_redirects=False)
    assert back.status_code == 302
    return back.headers["location"]


def outcome(response, nonce: str) -> tuple[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    page, _, fragment = location.partition("#")
    assert page == f"{BASE_URL}/s/{CAB}/{nonce}"
    name, _, value = fragment.partition("=")
    return name, unquote(value)


def opens(engine: Engine) -> list[CommandOutbox]:
    with Session(engine) as session:
        return list(
            session.exec(select(CommandOutbox).where(CommandOutbox.type == "compartment.open"))
        )


def test_a_bound_recipient_signs_in_with_wechat_and_opens_a_door(
    browser: TestClient, engine: Engine, wechat_server: FakeWechat
) -> None:
    deposit(engine, 2)
    bind(engine)
    wechat_server.sign_in_as(OPENID)
    nonce = scan(browser)

    name, token = outcome(browser.get(through_wechat(browser, nonce, wechat_server)), nonce)

    assert name == "session"
    listed = browser.post(f"/api/v1/scan/{CAB}/session", json={"token": token})
    assert listed.status_code == 200
    assert listed.json()["phone_masked"] == MASKED
    parcels = listed.json()["parcels"]
    assert [p["parcel_id"] for p in parcels] == ["P000001", "P000002"]
    opened = browser.post(f"/api/v1/scan/{CAB}/open", json={"token": token, "parcel_id": "P000002"})
    assert opened.status_code == 202
    (command,) = opens(engine)
    assert command.data["actor"] == MASKED and command.data["compartment"] == "A01"


def test_a_callback_in_another_browser_or_a_reused_code_is_refused(
    browser: TestClient,
    engine: Engine,
    wechat_server: FakeWechat,
    settings: CloudSettings,
    clock: Clock,
) -> None:
    deposit(engine)
    bind(engine)
    wechat_server.sign_in_as(OPENID)
    nonce = scan(browser)
    callback = through_wechat(browser, nonce, wechat_server)

    # An attacker's page making a victim's browser finish the attacker's sign-in: no cookie.
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as other:
        refused = other.get(callback)
    app.state.wechat_oauth.close()
    assert refused.status_code == 403
    assert "did not start" in refused.json()["detail"]

    assert outcome(browser.get(callback), nonce)[0] == "session"
    replayed = browser.get(callback)  # the callback dropped the cookie: a replay is refused
    assert replayed.status_code == 403

    # A fresh sign-in's state with the old, spent code: WeChat refuses the code (40163).
    fresh = parse_qs(urlsplit(through_wechat(browser, nonce, wechat_server)).query)
    old_code = parse_qs(urlsplit(callback).query)["code"][0]
    spent = browser.get(
        f"/api/v1/scan/{CAB}/wechat/callback",
        params={"code": old_code, "state": fresh["state"][0]},
    )
    assert spent.status_code == 503 and "40163" in spent.json()["detail"]
    assert opens(engine) == []


def test_an_unbound_user_proves_the_phone_by_sms_once_and_wechat_alone_next_time(
    browser: TestClient,
    engine: Engine,
    wechat_server: FakeWechat,
    twilio: FakeTwilio,
    settings: CloudSettings,
) -> None:
    deposit(engine)
    wechat_server.sign_in_as(OPENID)
    nonce = scan(browser)

    name, ticket = outcome(browser.get(through_wechat(browser, nonce, wechat_server)), nonce)
    assert name == "bind"
    assert browser.post(f"/api/v1/scan/{CAB}/{nonce}/otp", json={"phone": PHONE}).status_code
    deliver(engine, settings, NOW)  # the worker sends the code from the notice outbox
    (sms_code,) = re.findall(r"\b(\d{6})\b", twilio.sent_to(PHONE)[-1].body)
    verified = browser.post(
        f"/api/v1/scan/{CAB}/{nonce}/verify",
        json={"phone": PHONE, "code": sms_code, "wechat_ticket": ticket},
    )
    assert verified.status_code == 200
    with Session(engine) as session:
        assert session.get(WechatBinding, OPENID).phone == PHONE

    name, _ = outcome(browser.get(through_wechat(browser, nonce, wechat_server)), nonce)
    assert name == "session"


def test_a_forged_bind_ticket_binds_nothing(browser: TestClient, engine: Engine) -> None:
    deposit(engine)
    nonce = scan(browser)
    answer = browser.post(
        f"/api/v1/scan/{CAB}/{nonce}/verify",
        json={"phone": PHONE, "code": "123456", "wechat_ticket": "e30.AAAA"},
    )
    assert answer.status_code == 403
    with Session(engine) as session:
        assert session.exec(select(WechatBinding)).all() == []


def test_declining_in_wechat_returns_to_the_page(
    browser: TestClient, engine: Engine, wechat_server: FakeWechat
) -> None:
    deposit(engine)
    wechat_server.sign_in_as(None)
    nonce = scan(browser)
    assert outcome(browser.get(through_wechat(browser, nonce, wechat_server)), nonce) == (
        "wechat",
        "declined",
    )
