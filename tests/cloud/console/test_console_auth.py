"""Issue 14, item 1: signing in to the console, sessions, CSRF, lockout, who sees what.

Each test runs on SQLite and on PostgreSQL. The clock is the app's injected one: expiry and
lockout are reached by moving it, never by sleeping.
"""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.core import lockout
from cloud.db.models import AuditLog, CommandOutbox
from cloud.services import console_auth
from cloud.services.audit import cli_principal
from tests.cloud.console.conftest import OTHER_CAB, PASSWORD, Clock, form_token, sign_in
from tests.cloud.db.builders import CAB, SEAL_KEY, T0


def main_of(html: str) -> str:
    return html[html.index("<main>") : html.index("</main>")]


def attempt(client: TestClient, username: str, password: str, totp: str = ""):
    page = client.get("/console/sign-in")
    return client.post(
        "/console/sign-in",
        data={"username": username, "password": password, "csrf": form_token(page.text),
              "totp": totp},
        follow_redirects=False,
    )  # fmt: skip


def test_a_page_without_a_session_goes_to_the_sign_in_form_and_back(client: TestClient) -> None:
    response = client.get("/console/cabinets/CAB-1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fcabinets%2FCAB-1"
    page = client.get(response.headers["location"])
    signed = client.post(
        "/console/sign-in",
        data={"username": "mgr-a", "password": PASSWORD, "csrf": form_token(page.text),
              "next": "/console/cabinets/CAB-1"},
        follow_redirects=False,
    )  # fmt: skip
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console/cabinets/CAB-1"
    cookie = signed.headers["set-cookie"]
    assert "console_session=" in cookie
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie
    assert "Path=/console" in cookie
    assert client.get("/console/cabinets/CAB-1").status_code == 200


def test_a_session_row_holds_a_hash_of_the_token_not_the_token(
    client: TestClient, world: Engine
) -> None:
    sign_in(client, "ops")
    token = client.cookies.get("console_session")
    from cloud.db.console_models import ConsoleSession

    with Session(world) as session:
        rows = session.exec(select(ConsoleSession)).all()
    assert [r.token_hash for r in rows] == [console_auth.token_hash(token)]
    assert token not in rows[0].token_hash


def test_a_wrong_password_is_refused_in_the_same_words_as_an_unknown_user(
    client: TestClient, world: Engine
) -> None:
    wrong = attempt(client, "mgr-a", "not the password at all")
    unknown = attempt(client, "nobody", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert "console_session" not in wrong.headers.get("set-cookie", "")
    for response in (wrong, unknown):
        assert "Wrong username, password or code." in response.text or "错误" in response.text
    with Session(world) as session:
        actions = [r.action for r in session.exec(select(AuditLog).order_by(AuditLog.id))]
    assert actions.count("sign_in_failed") == 2


@pytest.mark.parametrize("local_hour", [3, 14], ids=["night", "day"])
def test_five_failures_in_fifteen_minutes_lock_the_account_until_the_oldest_ages_out(
    client: TestClient, clock: Clock, local_hour: int
) -> None:
    """ACCOUNT_LIMIT = 5 in WINDOW = 15 min. Failures at t = 0, 2, 4, 6, 8 min lock the account
    until 0 + 15 = 15 min: at 14 min the right password is refused (429, Retry-After 60 s), at
    15 min the first failure has left the window (4 remain) and it signs in. The hour of day
    (Asia/Shanghai) changes nothing."""
    assert (5, timedelta(minutes=15)) == (lockout.ACCOUNT_LIMIT, lockout.WINDOW)
    clock.now = T0.replace(hour=(local_hour - 8) % 24)
    start = clock.now
    for n in range(5):
        clock.now = start + timedelta(minutes=2 * n)
        assert attempt(client, "mgr-a", "wrong password!!").status_code == 401
    clock.now = start + timedelta(minutes=14)
    locked = attempt(client, "mgr-a", PASSWORD)
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "61"  # 60 s to go, rounded up
    assert attempt(client, "ops", PASSWORD).status_code == 303  # another account is not locked
    clock.now = start + timedelta(minutes=15)
    assert attempt(client, "mgr-a", PASSWORD).status_code == 303


def test_twenty_failures_from_one_address_lock_that_address_for_every_username(
    client: TestClient, clock: Clock
) -> None:
    """ADDRESS_LIMIT = 20 in 15 min, whatever usernames: 4 usernames x 5 guesses. The 21st
    attempt, with a right password for a fresh account, is refused."""
    assert lockout.ADDRESS_LIMIT == 20
    for n in range(20):
        clock.advance(seconds=10)
        assert attempt(client, f"guess-{n % 4}", "wrong password!!").status_code in (401, 429)
    assert attempt(client, "ops", PASSWORD).status_code == 429
    clock.advance(minutes=15)
    assert attempt(client, "ops", PASSWORD).status_code == 303


def test_the_arithmetic_of_the_lock() -> None:
    at = [T0 + timedelta(minutes=m) for m in (0, 1, 2, 3, 10)]
    now = T0 + timedelta(minutes=11)
    assert lockout.locked_until(at, limit=5, now=now) == T0 + timedelta(minutes=15)
    assert lockout.locked_until(at[:4], limit=5, now=now) is None
    assert lockout.locked_until(at, limit=5, now=T0 + timedelta(minutes=15)) is None


def test_the_sign_in_form_refuses_a_post_without_its_csrf_token(client: TestClient) -> None:
    client.get("/console/sign-in")
    response = client.post(
        "/console/sign-in", data={"username": "ops", "password": PASSWORD, "csrf": "forged"}
    )
    assert response.status_code == 403
    assert "console_session" not in response.headers.get("set-cookie", "")


def test_an_act_without_the_sessions_csrf_token_does_nothing(
    client: TestClient, world: Engine
) -> None:
    sign_in(client, "mgr-a")
    response = client.post(
        f"/console/cabinets/{CAB}/doors/A02/open", data={"reason": "stuck", "csrf": "wrong"}
    )
    assert response.status_code == 403
    with Session(world) as session:
        opens = select(CommandOutbox).where(CommandOutbox.type == "compartment.open")
        assert session.exec(opens).all() == []


def test_a_session_ends_after_30_idle_minutes_and_after_12_hours(
    client: TestClient, clock: Clock
) -> None:
    sign_in(client, "ops")
    for _ in range(23):  # a request every 29 minutes keeps it alive ...
        clock.advance(minutes=29)
        assert client.get("/console/fleet", follow_redirects=False).status_code == 200
    clock.advance(minutes=29)  # ... until 12 h after sign-in (24 x 29 min = 11 h 36 min) ...
    assert client.get("/console/fleet", follow_redirects=False).status_code == 200
    clock.advance(minutes=25)  # 12 h 01 min
    assert client.get("/console/fleet", follow_redirects=False).status_code == 303
    sign_in(client, "ops")
    clock.advance(minutes=30)  # idle for 30 minutes
    assert client.get("/console/fleet", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_the_server(client: TestClient) -> None:
    sign_in(client, "ops")
    token = client.cookies.get("console_session")
    page = client.get("/console/fleet")
    out = client.post("/console/sign-out", data={"csrf": form_token(page.text)})
    assert out.status_code == 200 and "/console/sign-in" in str(out.url)
    client.cookies.set("console_session", token, path="/console")  # a stolen copy
    assert client.get("/console/fleet", follow_redirects=False).status_code == 303


def test_a_totp_account_needs_its_code(client: TestClient, world: Engine, clock: Clock) -> None:
    with Session(world) as session:
        uri = console_auth.enrol_totp(
            session=session, username="ops", secret_key=SEAL_KEY, now=clock.now,
            actor=cli_principal("test"),
        )  # fmt: skip
    secret = pyotp.parse_uri(uri).secret
    assert attempt(client, "ops", PASSWORD).status_code == 401
    assert attempt(client, "ops", PASSWORD, totp="000000").status_code == 401
    code = pyotp.TOTP(secret).at(clock.now)
    assert attempt(client, "ops", PASSWORD, totp=code).status_code == 303


def test_a_manager_sees_only_their_sites_and_another_sites_cabinet_is_a_404(
    client: TestClient,
) -> None:
    sign_in(client, "mgr-a")
    fleet = client.get("/console/fleet")
    assert "CAB-1" in fleet.text and OTHER_CAB not in fleet.text
    other = client.get(f"/console/cabinets/{OTHER_CAB}")
    missing = client.get("/console/cabinets/NO-SUCH-CAB")
    assert other.status_code == missing.status_code == 404
    assert main_of(other.text) == main_of(missing.text)  # the same words: no oracle
    live = client.get(f"/console/cabinets/{OTHER_CAB}/live")
    assert live.status_code == 404
    act = client.get(f"/console/cabinets/{OTHER_CAB}/doors/B01/open")
    assert act.status_code == 404


def test_an_operator_sees_every_cabinet(client: TestClient) -> None:
    sign_in(client, "ops")
    fleet = client.get("/console/fleet")
    assert "CAB-1" in fleet.text and OTHER_CAB in fleet.text
    assert client.get(f"/console/cabinets/{OTHER_CAB}").status_code == 200


def test_a_carrier_account_lands_on_its_couriers_and_sees_no_cabinet(client: TestClient) -> None:
    page = client.get("/console/sign-in")
    signed = client.post(
        "/console/sign-in",
        data={"username": "sf-office", "password": PASSWORD, "csrf": form_token(page.text)},
        follow_redirects=False,
    )
    assert signed.headers["location"] == "/console/couriers"
    couriers = client.get("/console/couriers").text
    row = couriers[couriers.index('data-courier="sf-1"') :]
    assert [c.split(">")[-1] for c in row[: row.index("</tr>")].split("</td>")[-3:-1]] == [
        "1",  # its parcel in CAB-1's A01
        "0",
    ]
    assert client.get("/console/fleet").status_code == 403
    assert client.get(f"/console/cabinets/{CAB}").status_code == 403
    assert client.get("/console/audit").status_code == 403
    sign_in(client, "mgr-a")
    assert client.get("/console/couriers").status_code == 403


def test_the_sign_in_form_never_sends_anyone_off_the_console(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/console/..//evil", "/api/v1"):
        page = client.get("/console/sign-in")
        signed = client.post(
            "/console/sign-in",
            data={"username": "ops", "password": PASSWORD, "csrf": form_token(page.text),
                  "next": target},
            follow_redirects=False,
        )  # fmt: skip
        assert signed.headers["location"] == "/console/fleet", target
