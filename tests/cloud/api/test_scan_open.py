"""Scan-to-open end to end: the idle-screen QR, an SMS one-time code, a session, an open door."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.models import CommandOutbox, ParcelEvent
from cloud.db.scan_models import ScanOtp
from cloud.fakes.twilio_server import SERVER_ERROR, FakeTwilio
from cloud.services.scan_open import NONCE_TTL_S, OTP_PER_PHONE, SESSION_TTL_S
from tests.cloud.api.conftest import BASE_URL, Clock, cabinet_auth, deliver, deposit
from tests.cloud.db.builders import CAB, PHONE, register_cabinet
from tests.cloud.notify.conftest import assert_nowhere_in_database

MASKED = "+86 138****1234"
TYPED_PHONE = "138 1234 1234"  # as a recipient types it: national, with spaces


def scan(client: TestClient, cab: str = CAB) -> str:
    """Fetch the idle screen's QR as the cabinet does; return its path (`/s/{cab}/{nonce}`)."""
    answer = client.get(
        f"/api/v1/cabinets/{cab}/scan-qr", auth=cabinet_auth(client.app.state.engine, cab)
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.text.lstrip().startswith("<?xml") and "<svg" in answer.text
    url = answer.headers["X-Scan-URL"]
    assert url.startswith(f"{BASE_URL}/s/{cab}/")
    return url.removeprefix(BASE_URL)


def nonce_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def ask_code(client: TestClient, nonce: str, phone: str = TYPED_PHONE, cab: str = CAB):
    """Ask for a code, then let the worker's notice dispatcher send what was queued."""
    answer = client.post(f"/api/v1/scan/{cab}/{nonce}/otp", json={"phone": phone})
    state = client.app.state
    deliver(state.engine, state.settings, state.clock())
    return answer


def otp_texts(twilio: FakeTwilio) -> list:
    """The one-time-code SMS sent (not the parcels' own notices, which the dispatcher sends too)."""
    return [m for m in twilio.messages if "验证码" in m.body or "one-time code" in m.body]


def texted_code(twilio: FakeTwilio) -> str:
    message = otp_texts(twilio)[-1]
    match = re.search(r"\b([0-9]{6})\b", message.body)
    assert match, "the SMS carries a 6-digit code"
    return match[1]


def commands(engine: Engine, type_: str = "compartment.open") -> list[CommandOutbox]:
    with Session(engine) as session:
        return list(session.exec(select(CommandOutbox).where(CommandOutbox.type == type_)))


def test_scan_to_open_end_to_end(
    client: TestClient, engine: Engine, twilio: FakeTwilio, clock: Clock
) -> None:
    deposit(engine, 2)
    nonce = nonce_of(scan(client))

    asked = ask_code(client, nonce)
    assert asked.status_code == 202
    assert MASKED in asked.json()["detail"] and PHONE not in asked.text
    (message,) = otp_texts(twilio)
    code = texted_code(twilio)
    assert message.to == PHONE and "Gate 1" in message.body  # the cabinet's name

    verified = client.post(
        f"/api/v1/scan/{CAB}/{nonce}/verify", json={"phone": TYPED_PHONE, "code": code}
    )
    assert verified.status_code == 200, verified.text
    session_body = verified.json()
    assert session_body["phone_masked"] == MASKED
    assert [p["parcel_id"] for p in session_body["parcels"]] == ["P000001", "P000002"]
    assert PHONE not in verified.text and PHONE[3:] not in session_body["token"]

    opened = client.post(
        f"/api/v1/scan/{CAB}/open",
        json={"token": session_body["token"], "parcel_id": "P000002"},
    )
    assert opened.status_code == 202, opened.text
    (command,) = commands(engine)
    assert opened.json()["command_id"] == command.id
    assert command.cabinet_id == CAB
    assert command.data == {"compartment": "A01", "reason": "scan-to-open", "actor": MASKED}
    # A remote open must not linger: the cabinet drops it if it arrives late.
    assert (command.expires_at - command.created_at).total_seconds() <= 120
    with Session(engine) as session:
        audit = session.exec(
            select(ParcelEvent).where(
                ParcelEvent.parcel_row_id == "P000002", ParcelEvent.source == "recipient"
            )
        ).one()
    assert command.id in audit.note and MASKED in audit.note and audit.status == "in_locker"

    # One time means one time; and the clear code is nowhere in the database.
    again = client.post(
        f"/api/v1/scan/{CAB}/{nonce}/verify", json={"phone": TYPED_PHONE, "code": code}
    )
    assert again.status_code == 401 and "used" in again.json()["detail"]
    assert_nowhere_in_database(engine, code)


def test_the_code_sms_is_in_the_language_the_page_is_read_in(
    client: TestClient, engine: Engine, twilio: FakeTwilio
) -> None:
    deposit(engine)
    nonce = nonce_of(scan(client))
    for language, phrase in (("en", "one-time code"), ("zh-CN", "验证码")):
        answer = client.post(
            f"/api/v1/scan/{CAB}/{nonce}/otp", json={"phone": TYPED_PHONE, "language": language}
        )
        assert answer.status_code == 202, answer.text
        state = client.app.state
        deliver(state.engine, state.settings, state.clock())
        assert phrase in otp_texts(twilio)[-1].body
    bad = client.post(
        f"/api/v1/scan/{CAB}/{nonce}/otp", json={"phone": TYPED_PHONE, "language": "fr"}
    )
    assert bad.status_code == 422


def test_a_phone_without_a_parcel_gets_the_same_answer_and_no_sms(
    client: TestClient, engine: Engine, twilio: FakeTwilio
) -> None:
    deposit(engine)
    nonce = nonce_of(scan(client))
    asked = ask_code(client, nonce, phone="13900001111")
    assert asked.status_code == 202 and "+86 139****1111" in asked.json()["detail"]
    assert otp_texts(twilio) == []


def test_an_expired_or_forged_nonce_is_refused_and_changes_nothing(
    client: TestClient, engine: Engine, twilio: FakeTwilio, clock: Clock
) -> None:
    deposit(engine)
    with Session(engine) as session:
        register_cabinet(session, "CAB-2")
    nonce = nonce_of(scan(client))
    forged = ask_code(client, nonce[:-2] + ("AA" if not nonce.endswith("AA") else "BB"))
    assert forged.status_code == 403 and "not this cabinet's" in forged.json()["detail"]
    other = ask_code(client, nonce, cab="CAB-2")
    assert other.status_code == 403 and "not this cabinet's" in other.json()["detail"]
    clock.advance(NONCE_TTL_S + 1)
    stale = ask_code(client, nonce)
    assert stale.status_code == 403 and "expired" in stale.json()["detail"]
    assert otp_texts(twilio) == []
    with Session(engine) as session:
        assert session.exec(select(ScanOtp)).all() == []


def test_wrong_codes_are_limited_and_open_nothing(
    client: TestClient, engine: Engine, twilio: FakeTwilio
) -> None:
    deposit(engine)
    nonce = nonce_of(scan(client))
    assert ask_code(client, nonce).status_code == 202
    code = texted_code(twilio)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    details = []
    for _ in range(5):
        answer = client.post(
            f"/api/v1/scan/{CAB}/{nonce}/verify", json={"phone": TYPED_PHONE, "code": wrong}
        )
        assert answer.status_code == 401
        details.append(answer.json()["detail"])
    assert details[:4] == ["wrong code"] * 4 and "wrong tries" in details[4]
    # Locked: even the right code is refused now.
    right = client.post(
        f"/api/v1/scan/{CAB}/{nonce}/verify", json={"phone": TYPED_PHONE, "code": code}
    )
    assert right.status_code == 401 and "new code" in right.json()["detail"]
    assert commands(engine) == []


def test_codes_asked_for_too_often_are_rate_limited(
    client: TestClient, engine: Engine, twilio: FakeTwilio
) -> None:
    deposit(engine)
    nonce = nonce_of(scan(client))
    for _ in range(OTP_PER_PHONE):
        assert ask_code(client, nonce).status_code == 202
    limited = ask_code(client, nonce)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert len(otp_texts(twilio)) == OTP_PER_PHONE


def test_a_token_for_another_cabinet_a_stale_token_or_a_foreign_parcel_opens_nothing(
    client: TestClient, engine: Engine, twilio: FakeTwilio, clock: Clock
) -> None:
    deposit(engine)
    with Session(engine) as session:
        register_cabinet(session, "CAB-2")
    nonce = nonce_of(scan(client))
    ask_code(client, nonce)
    token = client.post(
        f"/api/v1/scan/{CAB}/{nonce}/verify",
        json={"phone": TYPED_PHONE, "code": texted_code(twilio)},
    ).json()["token"]

    elsewhere = client.post(
        "/api/v1/scan/CAB-2/open", json={"token": token, "parcel_id": "P000001"}
    )
    assert elsewhere.status_code == 403 and "another cabinet" in elsewhere.json()["detail"]
    foreign = client.post(f"/api/v1/scan/{CAB}/open", json={"token": token, "parcel_id": "P9"})
    assert foreign.status_code == 409
    tampered = client.post(
        f"/api/v1/scan/{CAB}/open", json={"token": "x" + token, "parcel_id": "P000001"}
    )
    assert tampered.status_code == 403
    clock.advance(SESSION_TTL_S + 1)
    stale = client.post(f"/api/v1/scan/{CAB}/open", json={"token": token, "parcel_id": "P000001"})
    assert stale.status_code == 403 and "expired" in stale.json()["detail"]
    assert commands(engine) == []


def test_scan_input_errors_name_the_field(client: TestClient, engine: Engine) -> None:
    deposit(engine)
    nonce = nonce_of(scan(client))
    bad_phone = ask_code(client, nonce, phone="12")
    assert bad_phone.status_code == 422
    assert bad_phone.json()["errors"][0]["field"] == "body.phone"
    bad_code = client.post(
        f"/api/v1/scan/{CAB}/{nonce}/verify", json={"phone": TYPED_PHONE, "code": "12ab"}
    )
    assert bad_code.status_code == 422 and bad_code.json()["errors"][0]["field"] == "body.code"
    missing = client.post(f"/api/v1/scan/{CAB}/open", json={"token": "t"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "body.parcel_id"
    unknown = client.get("/api/v1/cabinets/NOPE/scan-qr", auth=("NOPE", "x"))
    assert unknown.status_code == 401  # as a wrong password: which ids exist is nobody's business


def test_the_qr_url_opens_a_page_that_drives_the_api(client: TestClient, engine: Engine) -> None:
    deposit(engine)
    path = scan(client)
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'"{nonce_of(path)}"' in page.text and "/api/v1/scan/" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert client.get(f"/s/{CAB}/<script>").status_code == 422


def test_a_failed_sms_is_retried_from_the_outbox_and_the_answer_tells_nothing(
    client: TestClient, engine: Engine, twilio: FakeTwilio, clock: Clock
) -> None:
    deposit(engine)
    deliver(engine, client.app.state.settings, clock())  # the parcel's own notice, first
    nonce = nonce_of(scan(client))
    twilio.fail_next(1, SERVER_ERROR)
    asked = ask_code(client, nonce)
    # The page's answer does not wait on Twilio, so it cannot tell a failure (nor a parcel).
    assert asked.status_code == 202 and PHONE not in asked.text and otp_texts(twilio) == []
    clock.advance(10)  # past the dispatcher's first retry delay (at most 5 s)
    deliver(engine, client.app.state.settings, clock())
    assert len(otp_texts(twilio)) == 1 and texted_code(twilio)
