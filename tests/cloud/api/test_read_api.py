"""The read API on both databases: health, cabinets, parcels, tracking, errors, callbacks."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from twilio.request_validator import RequestValidator

from cloud.api import create_app
from cloud.db.engine import make_engine
from cloud.db.models import ErpApiKey, NoticeOutbox, Site
from cloud.fakes.twilio_server import FakeTwilio
from cloud.notify.dispatcher import Dispatcher
from cloud.notify.ports import StaticBindings
from cloud.notify.sms_twilio import TwilioSms
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import BASE_URL, FROM, HEADERS, NOW, Clock, apply, deposit
from tests.cloud.db.builders import CAB, PHONE, SEAL_KEY, T0, picked_up

MASKED = "+86 138****1234"
CALLBACK_PATH = "/api/v1/callbacks/twilio/status"


def assert_no_secrets(text: str, codes: list[str]) -> None:
    assert PHONE not in text and PHONE[3:] not in text
    for code in codes:
        assert code not in text
    assert "hmac-sha256" not in text and "code_hash" not in text


def test_health_reports_the_database(client: TestClient) -> None:
    answer = client.get("/api/v1/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": True}


def test_health_is_503_when_the_database_does_not_answer(settings: CloudSettings) -> None:
    engine = make_engine(
        "postgresql+psycopg://nobody:x@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    with TestClient(create_app(settings, engine=engine)) as client:
        answer = client.get("/api/v1/health")
    assert answer.status_code == 503
    assert answer.json() == {"status": "degraded", "database": False}


def test_cabinets_show_presence_and_occupancy_by_size(client: TestClient, engine: Engine) -> None:
    deposit(engine)
    listed = client.get("/api/v1/cabinets", headers=HEADERS)
    assert listed.status_code == 200
    (cabinet,) = listed.json()["data"]
    assert cabinet["id"] == CAB and cabinet["name"] == "Gate 1" and cabinet["online"] is None
    assert cabinet["occupancy"] == [
        {"size": "M", "total": 4, "free": 3, "occupied": 1, "out_of_service": 0}
    ]
    assert "code_key" not in listed.text and "mqtt_password" not in listed.text
    assert client.get(f"/api/v1/cabinets/{CAB}", headers=HEADERS).json() == cabinet

    compartments = client.get(f"/api/v1/cabinets/{CAB}/compartments", headers=HEADERS).json()
    assert compartments["count"] == 4
    assert compartments["data"][0] == {
        "id": "A01",
        "size": "M",
        "state": "occupied",
        "in_service": True,
        "low_door": False,
    }


def test_parcels_show_status_and_a_masked_phone_never_the_code(
    client: TestClient, engine: Engine
) -> None:
    codes = deposit(engine, 2)
    one = client.get("/api/v1/parcels/P000001", headers=HEADERS)
    assert one.status_code == 200
    body = one.json()
    assert body["status"] == "in_locker" and body["erp_state"] == "awaiting_pickup"
    assert body["phone_masked"] == MASKED
    assert (body["cabinet_id"], body["compartment"], body["tracking_no"]) == (
        CAB,
        "A01",
        "SF0000000001",
    )
    assert body["deadline"].startswith((NOW + timedelta(hours=72)).isoformat()[:19])
    assert_no_secrets(one.text, codes)

    listed = client.get(
        "/api/v1/parcels", params={"cabinet": CAB, "status": "in_locker"}, headers=HEADERS
    )
    assert [p["parcel_id"] for p in listed.json()["data"]] == ["P000002", "P000001"]
    assert_no_secrets(listed.text, codes)
    none = client.get("/api/v1/parcels", params={"status": "picked_up"}, headers=HEADERS)
    assert none.json() == {"data": [], "count": 0}


def test_tracking_gives_status_erp_state_timeline_and_overdue_fee(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    codes = deposit(engine)
    answer = client.get("/api/v1/tracking/SF0000000001", headers=HEADERS)
    assert answer.status_code == 200
    body = answer.json()
    assert body["parcel"]["status"] == "in_locker" and body["parcel"]["phone_masked"] == MASKED
    assert [(e["status"], e["erp_state"], e["source"]) for e in body["timeline"]] == [
        ("in_locker", "awaiting_pickup", "cabinet")
    ]
    assert body["overdue_fee"] == {"amount_minor": 0, "currency": "CNY", "days": 0}
    assert_no_secrets(answer.text, codes)

    with Session(engine) as session:  # the site charges 1.50 a started day past the deadline
        site = session.exec(select(Site)).one()
        site.overdue_fee_per_day_minor = 150
        session.add(site)
        session.commit()
    clock.advance(73 * 3600)
    late = client.get("/api/v1/tracking/SF0000000001", headers=HEADERS).json()
    assert late["overdue_fee"] == {"amount_minor": 150, "currency": "CNY", "days": 1}

    apply(engine, picked_up(2, 1))
    done = client.get("/api/v1/tracking/SF0000000001", headers=HEADERS).json()
    assert done["parcel"]["status"] == "picked_up" and done["parcel"]["erp_state"] == "signed"
    assert [e["status"] for e in done["timeline"]] == ["in_locker", "picked_up"]


def test_not_found_names_what_was_not_found(client: TestClient, engine: Engine) -> None:
    deposit(engine)
    for path, named in [
        ("/api/v1/cabinets/NOPE", "no cabinet 'NOPE'"),
        ("/api/v1/cabinets/NOPE/compartments", "no cabinet 'NOPE'"),
        ("/api/v1/parcels/P999999", "no parcel 'P999999'"),
        ("/api/v1/tracking/XX1", "no parcel with tracking number 'XX1'"),
    ]:
        answer = client.get(path, headers=HEADERS)
        assert answer.status_code == 404, path
        assert answer.json() == {"detail": named}


def test_invalid_input_is_422_naming_the_field(client: TestClient) -> None:
    answer = client.get("/api/v1/parcels", params={"status": "lost", "limit": 0}, headers=HEADERS)
    assert answer.status_code == 422
    body = answer.json()
    assert {e["field"] for e in body["errors"]} == {"query.status", "query.limit"}
    assert "query.status" in body["detail"]
    bad_id = client.get("/api/v1/cabinets/bad id!", headers=HEADERS)
    assert bad_id.status_code == 422 and bad_id.json()["errors"][0]["field"] == "path.cab"


def test_read_endpoints_need_a_live_api_key(client: TestClient, engine: Engine) -> None:
    deposit(engine)
    for path in ["/api/v1/cabinets", "/api/v1/parcels", "/api/v1/tracking/SF0000000001"]:
        missing = client.get(path)
        assert missing.status_code == 401 and missing.json() == {
            "detail": "missing X-API-Key header"
        }
        wrong = client.get(path, headers={"X-API-Key": "not-a-key"})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]
    with Session(engine) as session:
        key = session.get(ErpApiKey, "erp-1")
        key.revoked_at = T0
        session.add(key)
        session.commit()
    assert client.get("/api/v1/parcels", headers=HEADERS).status_code == 401


def test_twilio_status_callback_is_recorded_only_with_a_good_signature(
    client: TestClient, engine: Engine, twilio: FakeTwilio
) -> None:
    deposit(engine)
    sms = TwilioSms(
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        from_=FROM,
        base_url=twilio.url,
        status_callback_url=BASE_URL + CALLBACK_PATH,
    )
    dispatcher = Dispatcher(
        engine=engine,
        sms=sms,
        seal_key=SEAL_KEY,
        base_url=BASE_URL,
        bindings=StaticBindings(),
        randbelow=lambda n: n - 1,
    )
    assert dispatcher.tick(NOW).sent == 1
    (message,) = twilio.messages
    url, form, signature = twilio.status_callback(message.sid, "delivered")
    path = url.removeprefix(BASE_URL)

    forged = client.post(path, data=form, headers={"X-Twilio-Signature": "AAAA" + signature[4:]})
    assert forged.status_code == 403 and "does not verify" in forged.json()["detail"]
    unsigned = client.post(path, data=form)
    assert unsigned.status_code == 403
    with Session(engine) as session:
        assert session.exec(select(NoticeOutbox)).one().delivery_status == "queued"

    good = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert good.status_code == 200 and good.json() == {"recorded": True}
    with Session(engine) as session:
        assert session.exec(select(NoticeOutbox)).one().delivery_status == "delivered"

    # A callback for a message that is not ours is acknowledged and ignored.
    stranger = {**form, "MessageSid": "SM" + "0" * 32, "SmsSid": "SM" + "0" * 32}
    stranger_url = BASE_URL + CALLBACK_PATH
    stranger_signature = RequestValidator(twilio.auth_token).compute_signature(
        stranger_url, stranger
    )
    ignored = client.post(
        CALLBACK_PATH, data=stranger, headers={"X-Twilio-Signature": stranger_signature}
    )
    assert ignored.status_code == 200 and ignored.json() == {"recorded": False}
