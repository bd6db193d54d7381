"""Doors held for announced shipments: the ERP's announce reserves one (or is refused 409
no_door at a full cabinet), cancel and update release or move it, and the courier's deposit
under the reservation's id completes the shipment (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.db.models import CommandOutbox, Compartment, Parcel, WebhookOutbox
from cloud.db.repo import count_rows
from cloud.db.reservation_models import Reservation
from cloud.worker import MqttClient, Worker
from cloud.worker.mqtt import Received
from protocol.messages import ParcelDeposited, ParcelDepositedData, Size
from protocol.topics import ack_topic
from tests.cloud.api.conftest import CARRIER, COURIER, HEADERS, NOW, Clock, apply
from tests.cloud.db.builders import CAB, SEAL_KEY, register_cabinet

CAB_2 = "CAB-2"


@pytest.fixture(autouse=True)
def cabinets(engine: Engine) -> None:
    # CAB: four M doors (the builders'); one of them taken out of service does not count.
    with Session(engine) as session:
        register_cabinet(session)
        register_cabinet(session, CAB_2, compartments=1)
        session.add(Compartment(cabinet_id=CAB, id="B01", size="L", in_service=False))
        session.commit()


def announce(client: TestClient, n: int, **extra: Any):
    body = {
        "order_no": f"SO-{n}",
        "tracking_no": f"SF{n:010d}",
        "phone": "+8613812341234",
        "cabinet_id": CAB,
        **extra,
    }
    headers = {**HEADERS, "Idempotency-Key": f"announce-{n}"}
    return client.post("/api/v1/shipments", headers=headers, json=body)


def commands(engine: Engine, type_: str) -> list[CommandOutbox]:
    with Session(engine) as session:
        statement = select(CommandOutbox).where(CommandOutbox.type == type_)
        return list(session.exec(statement.order_by(col(CommandOutbox.created_at))))


def reservation(engine: Engine, row_id: str) -> Reservation:
    with Session(engine) as session:
        row = session.get(Reservation, row_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_size_or_dimensions_hold_a_door_and_tell_the_cabinet(
    client: TestClient, engine: Engine
) -> None:
    eta = (NOW + timedelta(hours=5)).isoformat()
    answer = announce(client, 1, size="M", eta=eta)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    (command,) = commands(engine, "compartments.reserve")
    assert command.cabinet_id == CAB
    assert command.data == {
        "parcel_id": made["id"],  # the deposit comes back under this id
        "size": "M",
        "until": (NOW + timedelta(hours=29)).isoformat().replace("+00:00", "Z"),
        "phone": "+8613812341234",
        "tracking_no": "SF0000000001",
        "carrier_id": CARRIER,  # only its couriers may deposit it
    }
    held = reservation(engine, made["id"])
    assert (held.size, held.door_size, held.ended_at) == ("M", "M", None)

    made = announce(client, 2, length_mm=300, width_mm=200, height_mm=100).json()
    assert reservation(engine, made["id"]).size == "M"  # 100 mm high: not an S door (80 mm)
    refused = announce(client, 3, length_mm=1900, width_mm=200, height_mm=100)
    assert refused.status_code == 422
    assert "body.length_mm" in [e["field"] for e in refused.json()["errors"]]
    # Without a size or all three dimensions nothing is reserved.
    announce(client, 4, length_mm=300)
    assert len(commands(engine, "compartments.reserve")) == 2

    # The cabinet refuses the second (its own doors said no): that reservation stops counting.
    second = commands(engine, "compartments.reserve")[1]
    refusal = {"v": 1, "cmd": second.id, "ok": False, "error": "no free door of size M"}
    mqtt = MqttClient(host="127.0.0.1", port=1883, client_id="t", subscriptions=[])
    worker = Worker(engine=engine, client=mqtt, seal_key=SEAL_KEY)
    worker.handle([Received(ack_topic(CAB), json.dumps(refusal).encode(), NOW)])
    assert reservation(engine, made["id"]).ended_why == "refused"


def test_a_full_cabinet_answers_409_no_door_until_a_door_is_released_or_lapses(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    # Two announcements race for CAB-2's one door: the cabinet's lock lets exactly one have it.
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def race(n: int) -> None:
        barrier.wait()
        answers.append(announce(client, n, size="M", cabinet_id=CAB_2).status_code)

    racers = [threading.Thread(target=race, args=(n,)) for n in (21, 22)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    assert sorted(answers) == [201, 409]

    made = [announce(client, n, size="S").json() for n in range(1, 5)]  # S fits the M doors
    late = announce(client, 9).json()  # announced without a size: no door held yet

    def rows() -> tuple[int, int]:
        with Session(engine) as session:
            return (
                count_rows(session=session, model=Parcel),
                count_rows(session=session, model=CommandOutbox),
            )

    before = rows()
    refused = announce(client, 5, size="M")
    assert refused.status_code == 409
    message = refused.json()["detail"]
    assert message.startswith("no_door: cabinet CAB-1 has no free door of size M or larger")
    assert "(4 free, 4 of them reserved for other shipments)" in message
    # The late shipment ships: holding its door now is refused the same way.
    shipped = reserve_route(client, late["id"], "ship-9", {"size": "M"})
    assert shipped.status_code == 409 and shipped.json()["detail"].startswith("no_door:")
    assert rows() == before  # nothing written

    cancel_headers = {**HEADERS, "Idempotency-Key": "cancel-1"}
    url = f"/api/v1/shipments/{made[0]['id']}/cancel"
    assert client.post(url, headers=cancel_headers).status_code == 200
    (release,) = commands(engine, "compartments.release")
    assert (release.cabinet_id, release.data) == (CAB, {"parcel_ids": [made[0]["id"]]})
    assert reservation(engine, made[0]["id"]).ended_why == "cancelled"
    eta = (NOW + timedelta(days=2)).isoformat()
    shipped = reserve_route(client, late["id"], "ship-9b", {"size": "M", "eta": eta})
    assert shipped.status_code == 200, shipped.text
    assert reservation(engine, late["id"]).until == NOW + timedelta(days=3)

    clock.advance(73 * 3600)  # past the default hold of three days: those doors are free again
    assert announce(client, 6, size="M").status_code == 201


def reserve_route(client: TestClient, row_id: str, key: str, body: dict[str, Any]):
    headers = {**HEADERS, "Idempotency-Key": key}
    return client.post(f"/api/v1/shipments/{row_id}/reserve", headers=headers, json=body)


def test_a_moved_shipment_moves_its_door_and_its_deposit_completes_it(
    client: TestClient, engine: Engine
) -> None:
    made = announce(client, 1, size="M").json()
    headers = {**HEADERS, "Idempotency-Key": "move-1"}
    url = f"/api/v1/shipments/{made['id']}"
    answer = client.patch(url, headers=headers, json={"cabinet_id": CAB_2})
    assert answer.status_code == 200, answer.text
    (release,) = commands(engine, "compartments.release")
    assert release.cabinet_id == CAB
    reserves = commands(engine, "compartments.reserve")
    assert [c.cabinet_id for c in reserves] == [CAB, CAB_2]
    assert reservation(engine, made["id"]).cabinet_id == CAB_2

    # CAB-2's one door is now held: another shipment there is refused, and a move with it.
    assert announce(client, 2, size="M", cabinet_id=CAB_2).status_code == 409
    other = announce(client, 3, size="M").json()
    headers = {**HEADERS, "Idempotency-Key": "move-3"}
    moved = client.patch(
        f"/api/v1/shipments/{other['id']}", headers=headers, json={"cabinet_id": CAB_2}
    )
    assert moved.status_code == 409 and moved.json()["detail"].startswith("no_door:")
    assert reservation(engine, other["id"]).cabinet_id == CAB

    # The courier deposits the other one at CAB under its reserved id.
    event = ParcelDeposited(
        id="dep-1",
        cab=CAB,
        seq=1,
        ts=NOW,
        data=ParcelDepositedData(
            parcel_id=other["id"],
            compartment="A02",
            size=Size.M,
            tracking_no="SF0000000003",
            phone="+8613812341234",
            courier_id=COURIER,
        ),
    )
    codes = apply(engine, event)
    assert len(codes) == 1  # the recipient's code was issued
    read = client.get(f"/api/v1/shipments/{other['id']}", headers=HEADERS).json()
    assert (read["status"], read["parcel_id"], read["compartment"]) == (
        "in_locker",
        other["id"],
        "A02",
    )
    assert reservation(engine, other["id"]).ended_why == "deposited"
    assert len(commands(engine, "compartments.release")) == 1  # the cabinet ended it itself
    with Session(engine) as session:
        webhooks = session.exec(
            select(WebhookOutbox.event).where(WebhookOutbox.parcel_row_id == other["id"])
        ).all()
    assert list(webhooks) == ["announced", "in_locker"]  # the ERP hears of the deposit
