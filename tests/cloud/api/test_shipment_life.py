"""A shipment over its whole life through /api/v1/shipments: announce with dimensions, read by id,
order or tracking number, list in cursor pages with filters, update, cancel, confirm a return.

Every write is idempotent (a replay changes nothing), a wrong state is a 409 naming the state,
bad input a 422 naming the field, and a refusal writes nothing (rows counted on both databases).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.core.parcels import MAX_WINDOW_S, MIN_WINDOW_S
from cloud.db.models import IdempotencyKey, Parcel, ParcelEvent, WebhookOutbox
from cloud.db.repo import count_rows
from protocol.messages import ParcelRetrieved, ParcelRetrievedData, RetrievalReason
from tests.cloud.api.conftest import HEADERS, Clock, apply
from tests.cloud.db.builders import CAB, SITE, T0, deposited, register_cabinet

CAB_2 = "CAB-2"


def body(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "order_no": f"SO-{n}",
        "tracking_no": f"SF{n:010d}",  # what deposited(n) brings
        "phone": "+8613812341234",
        "cabinet_id": CAB,
        **extra,
    }


@pytest.fixture(autouse=True)
def cabinets(engine: Engine) -> None:
    with Session(engine) as session:
        register_cabinet(session)
        register_cabinet(session, CAB_2)


def write(client: TestClient, method: str, url: str, key: str, json: Any = None):
    headers = {**HEADERS, "Idempotency-Key": key}
    return client.request(method, f"/api/v1{url}", headers=headers, json=json)


def announce(client: TestClient, n: int = 1, **extra: Any) -> dict[str, Any]:
    answer = write(client, "POST", "/shipments", f"announce-{n}", body(n, **extra))
    assert answer.status_code == 201, answer.text
    return answer.json()


def counts(engine: Engine) -> tuple[int, int, int, int]:
    with Session(engine) as session:
        return tuple(
            count_rows(session=session, model=model)
            for model in (Parcel, ParcelEvent, WebhookOutbox, IdempotencyKey)
        )


def timeline(engine: Engine, row_id: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(ParcelEvent).where(ParcelEvent.parcel_row_id == row_id).order_by(ParcelEvent.id)
        ).all()
        return [(r.status, r.note) for r in rows]


def retrieved(seq: int, parcel_seq: int) -> ParcelRetrieved:
    return ParcelRetrieved(
        id=f"{CAB}-e{seq}",
        cab=CAB,
        seq=seq,
        ts=T0 + timedelta(seconds=seq),
        data=ParcelRetrievedData(
            compartment="A01",
            parcel_id=f"P{parcel_seq:06d}",
            courier_id="courier-7",
            reason=RetrievalReason.COURIER_CANCEL,
        ),
    )


# --- announce ------------------------------------------------------------------------------------


def test_an_announcement_keeps_dimensions_weight_courier_company_and_window(
    client: TestClient, engine: Engine
) -> None:
    extra = {
        "length_mm": 300,
        "width_mm": 200,
        "height_mm": 100,
        "weight_g": 1500,
        "courier_company": "SF Express",
        "pickup_window_s": 2 * 24 * 3600,
    }
    made = announce(client, **extra)
    for name, value in extra.items():
        assert made[name] == value, name
    assert (made["erp_state"], made["order_state"], made["shipx_status"]) == (
        "shipped",
        "已发货",
        "confirmed",
    )
    read = client.get(f"/api/v1/shipments/{made['id']}", headers=HEADERS).json()
    assert read["weight_g"] == 1500 and read["pickup_window_s"] == 2 * 24 * 3600


def test_the_window_override_is_the_deadline_after_deposit(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    made = announce(client, pickup_window_s=MIN_WINDOW_S)
    apply(engine, deposited(1), now=clock.now)
    read = client.get(f"/api/v1/shipments/{made['id']}", headers=HEADERS).json()
    assert read["status"] == "in_locker"
    assert read["shipx_status"] == "ready_to_pickup"
    # The window starts when the cloud learns of the deposit (clock.now), and is the ERP's hour.
    assert read["deadline"].startswith(
        (clock.now + timedelta(seconds=MIN_WINDOW_S)).isoformat()[:19]
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("length_mm", 0),
        ("width_mm", 2_001),
        ("height_mm", -5),
        ("weight_g", 30_001),  # 30 kg is what a courier carries: 30,000 g is the most
        ("courier_company", ""),
        ("pickup_window_s", MIN_WINDOW_S - 1),  # an hour at least
        ("pickup_window_s", MAX_WINDOW_S + 1),  # 30 days at most: 30 * 86,400 s
    ],
)
def test_bad_announce_fields_are_a_422_naming_the_field_and_write_nothing(
    client: TestClient, engine: Engine, field: str, value: Any
) -> None:
    before = counts(engine)
    answer = write(client, "POST", "/shipments", "bad", body(1, **{field: value}))
    assert answer.status_code == 422, answer.text
    assert f"body.{field}" in [e["field"] for e in answer.json()["errors"]]
    assert counts(engine) == before


# --- read ----------------------------------------------------------------------------------------


def test_a_shipment_is_read_by_id_order_no_and_tracking_no(client: TestClient) -> None:
    made = announce(client)
    announce(client, 2)
    by_id = client.get(f"/api/v1/shipments/{made['id']}", headers=HEADERS)
    assert by_id.status_code == 200 and by_id.json()["order_no"] == "SO-1"
    for query in ("order_no=SO-1", "tracking_no=sf0000000001"):
        page = client.get(f"/api/v1/shipments?{query}", headers=HEADERS).json()
        assert [s["id"] for s in page["data"]] == [made["id"]], query
    tracking = client.get("/api/v1/tracking/SF0000000001", headers=HEADERS).json()
    assert tracking["parcel"]["order_state"] == "已发货"
    assert tracking["timeline"][0]["shipx_status"] == "confirmed"
    missing = client.get("/api/v1/shipments/NOPE", headers=HEADERS)
    assert missing.status_code == 404


# --- list ----------------------------------------------------------------------------------------


def test_cursor_pages_neither_skip_nor_repeat_with_inserts_between_pages(
    client: TestClient, clock: Clock
) -> None:
    for n in range(1, 8):
        announce(client, n)
        clock.advance(1)
    seen: list[str] = []
    url = "/api/v1/shipments?limit=3"
    pages = 0
    inserted = 7
    while url:
        page = client.get(url, headers=HEADERS).json()
        seen += [s["order_no"] for s in page["data"]]
        pages += 1
        if pages <= 2:  # another shipment is announced while the ERP pages through
            inserted += 1
            announce(client, inserted)
            clock.advance(1)
        cursor = page["next_cursor"]
        url = f"/api/v1/shipments?limit=3&cursor={cursor}" if cursor else ""
    assert seen == [f"SO-{n}" for n in range(1, inserted + 1)]
    assert len(set(seen)) == len(seen) == 9
    assert pages == 3  # 9 shipments, 3 a page


def test_a_late_commit_is_missed_by_the_sync_in_hand_and_read_by_the_next_as_documented(
    client: TestClient, clock: Clock
) -> None:
    """docs/shipments.md's caveat and its recipe: a shipment whose creation time is before the
    cursor (its transaction began before the page was read, committed after) is not on a later
    page; the next sync, `changed_since` a minute before the last one started, reads it."""
    for n in (1, 2, 3):
        announce(client, n)
        clock.advance(1)
    started = clock.now
    first = client.get("/api/v1/shipments?limit=2", headers=HEADERS).json()
    assert [s["order_no"] for s in first["data"]] == ["SO-1", "SO-2"]
    clock.now = started - timedelta(seconds=10)  # the straggler's clock: before the cursor
    announce(client, 4)
    clock.now = started + timedelta(seconds=5)
    rest = client.get(
        f"/api/v1/shipments?limit=2&cursor={first['next_cursor']}", headers=HEADERS
    ).json()
    assert [s["order_no"] for s in rest["data"]] == ["SO-3"] and rest["next_cursor"] is None
    since = (started - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    again = client.get(f"/api/v1/shipments?changed_since={since}", headers=HEADERS).json()
    assert "SO-4" in [s["order_no"] for s in again["data"]]


def test_shipments_are_filtered_by_status_site_cabinet_and_changed_since(
    client: TestClient, clock: Clock
) -> None:
    first = announce(client, 1)
    clock.advance(60)
    since = clock.now
    second = announce(client, 2, cabinet_id=CAB_2)
    third = announce(client, 3)
    assert write(client, "POST", f"/shipments/{third['id']}/cancel", "c-3").status_code == 200

    def ids(query: str) -> list[str]:
        answer = client.get(f"/api/v1/shipments?{query}", headers=HEADERS)
        assert answer.status_code == 200, answer.text
        return [s["id"] for s in answer.json()["data"]]

    assert ids("status=cancelled") == [third["id"]]
    assert ids("status=announced") == [first["id"], second["id"]]
    assert ids(f"cabinet={CAB_2}") == [second["id"]]
    assert ids(f"site={SITE}") == [first["id"], second["id"], third["id"]]
    assert ids("site=site-elsewhere") == []
    stamp = since.isoformat().replace("+00:00", "Z")
    assert ids(f"changed_since={stamp}") == [second["id"], third["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=not-a-cursor", "query.cursor"),
        ("status=lost", "query.status"),
        ("limit=0", "query.limit"),
        ("changed_since=2026-12-04T10:00:00", "query.changed_since"),  # no zone
    ],
)
def test_bad_list_queries_are_a_422_naming_the_field(
    client: TestClient, query: str, field: str
) -> None:
    answer = client.get(f"/api/v1/shipments?{query}", headers=HEADERS)
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]]


# --- update --------------------------------------------------------------------------------------


def test_an_update_changes_phone_cabinet_and_window_once_per_key(
    client: TestClient, engine: Engine
) -> None:
    made = announce(client)
    change = {"phone": "+8613900001111", "cabinet_id": CAB_2, "pickup_window_s": 7200}
    first = write(client, "PATCH", f"/shipments/{made['id']}", "u-1", change)
    assert first.status_code == 200, first.text
    assert first.json()["cabinet_id"] == CAB_2
    assert first.json()["phone_masked"] == "+86 139****1111"
    assert first.json()["pickup_window_s"] == 7200
    before = counts(engine)
    again = write(client, "PATCH", f"/shipments/{made['id']}", "u-1", change)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert counts(engine) == before  # the replay wrote no timeline row, webhook or key
    notes = [note for _, note in timeline(engine, made["id"])]
    assert notes[-1] == f"updated: phone +86 139****1111, cabinet {CAB_2}, pickup window 7200 s"
    reused = write(client, "PATCH", f"/shipments/{made['id']}", "u-1", {"phone": "+8613900002222"})
    assert reused.status_code == 409 and "Idempotency-Key" in reused.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phone": "13812341234"}, "body.phone"),  # not E.164
        ({"cabinet_id": "CAB-NOWHERE"}, "body.cabinet_id"),
        ({"pickup_window_s": 60}, "body.pickup_window_s"),
        ({}, "body.phone"),  # nothing to change
        ({"phone_no": "+8613900001111"}, "body.phone_no"),  # a misspelt field
    ],
)
def test_a_bad_update_is_a_422_naming_the_field_and_writes_nothing(
    client: TestClient, engine: Engine, change: dict[str, Any], field: str
) -> None:
    made = announce(client)
    before = counts(engine)
    answer = write(client, "PATCH", f"/shipments/{made['id']}", "u-bad", change)
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert counts(engine) == before


def test_an_update_after_deposit_is_a_409_naming_the_state_and_writes_nothing(
    client: TestClient, engine: Engine
) -> None:
    made = announce(client)
    apply(engine, deposited(1))
    before = counts(engine)
    answer = write(
        client, "PATCH", f"/shipments/{made['id']}", "u-late", {"phone": "+8613900001111"}
    )
    assert answer.status_code == 409, answer.text
    assert "'in_locker'" in answer.json()["detail"]
    assert counts(engine) == before  # not even the key: a corrected retry may reuse it


# --- cancel and return ---------------------------------------------------------------------------


def test_cancel_writes_a_timeline_row_and_a_webhook_and_replays(
    client: TestClient, engine: Engine
) -> None:
    made = announce(client)
    parcels, events, webhooks, keys = counts(engine)
    first = write(client, "POST", f"/shipments/{made['id']}/cancel", "c-1", {"reason": "no stock"})
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["order_state"]) == ("cancelled", "待发货")
    assert counts(engine) == (parcels, events + 1, webhooks + 1, keys + 1)
    assert timeline(engine, made["id"])[-1] == ("cancelled", "cancelled by the ERP: no stock")
    with Session(engine) as session:
        hook = session.exec(select(WebhookOutbox).order_by(WebhookOutbox.id.desc())).first()
    assert hook is not None and hook.payload["status"] == "cancelled"
    # The webhook names the order state as the answer does, three ways.
    assert hook.payload["order_state"] == first.json()["order_state"]
    assert hook.payload["shipx_status"] == first.json()["shipx_status"]
    again = write(client, "POST", f"/shipments/{made['id']}/cancel", "c-1", {"reason": "no stock"})
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert counts(engine) == (parcels, events + 1, webhooks + 1, keys + 1)
    twice = write(client, "POST", f"/shipments/{made['id']}/cancel", "c-2")
    assert twice.status_code == 409 and "'cancelled'" in twice.json()["detail"]
    assert counts(engine) == (parcels, events + 1, webhooks + 1, keys + 1)


def test_a_deposited_shipment_cancelled_is_taken_back_then_its_return_confirmed(
    client: TestClient, engine: Engine
) -> None:
    made = announce(client)
    apply(engine, deposited(1))
    early = write(client, "POST", f"/shipments/{made['id']}/confirm-return", "r-0")
    assert early.status_code == 409 and "'in_locker'" in early.json()["detail"]
    cancel = write(client, "POST", f"/shipments/{made['id']}/cancel", "c-1")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    apply(engine, retrieved(2, 1))
    before = counts(engine)
    done = write(client, "POST", f"/shipments/{made['id']}/confirm-return", "r-1", {"note": "ok"})
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["erp_state"], done.json()["order_state"]) == (
        "returned",
        "returned",
        "已退货",
    )
    assert counts(engine)[1:3] == (before[1] + 1, before[2] + 1)
    replay = write(client, "POST", f"/shipments/{made['id']}/confirm-return", "r-1", {"note": "ok"})
    assert replay.json() == done.json() and replay.headers["idempotent-replayed"] == "true"
    statuses = [status for status, _ in timeline(engine, made["id"])]
    assert statuses == ["announced", "in_locker", "cancelled", "retrieved", "returned"]


def test_a_write_without_an_idempotency_key_is_a_422_naming_the_header(
    client: TestClient, engine: Engine
) -> None:
    made = announce(client)
    before = counts(engine)
    answer = client.post(f"/api/v1/shipments/{made['id']}/cancel", headers=HEADERS)
    assert answer.status_code == 422
    assert "header.Idempotency-Key" in [e["field"] for e in answer.json()["errors"]]
    assert counts(engine) == before
