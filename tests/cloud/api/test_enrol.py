"""`POST /api/v1/enrol`: a one-time code becomes a cabinet's credentials and config, once.

On SQLite and PostgreSQL. What an installer and an attacker would check: the answer holds a
password the broker's hash accepts and the cabinet's own code key; a second use, an expired
code and a retired code get the same 404 and nothing; guessing is stopped per address, and the
arithmetic says what that is worth against a 160-bit code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.core import enrolment as core
from cloud.db.models import AuditLog, Cabinet, CommandOutbox, EnrolmentCode
from cloud.services.enrolment import issue_code, push_config
from cloud.services.registry import verify_mosquitto_password
from protocol.config_push import config_sha256
from protocol.messages import PutConfigData
from tests.cloud.api.conftest import Clock
from tests.cloud.db.builders import CAB, CODE_KEY, SEAL_KEY

BODY: dict[str, Any] = {
    "mqtt": {"host": "broker.example", "port": 8883, "tls": {}},
    "buses": {"main": {"port": "/dev/ttyUSB0"}},
    "boards": [{"address": 1, "channels": 24}],
    "layout": {
        "compartments": [{"id": "A01", "size": "M", "driver": "rs485", "board": 1, "channel": 1}]
    },
}


def _issue(engine: Engine, clock: Clock, **kwargs: Any) -> str:
    with Session(engine) as session:
        return issue_code(
            session=session, cab=CAB, seal_key=SEAL_KEY, now=clock.now, body=BODY, **kwargs
        ).code


def test_a_code_buys_the_cabinets_credentials_once(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    code = _issue(engine, clock)
    assert len(code) == 39 and code.count("-") == 7  # 32 letters in groups of four
    with Session(engine) as session:
        stored = session.exec(select(EnrolmentCode)).one()
        assert code.replace("-", "") not in repr(stored.model_dump())  # only its hash is kept
    answer = client.post("/api/v1/enrol", json={"code": code.lower().replace("-", " ")})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    grant = answer.json()
    assert grant["cabinet_id"] == CAB
    assert grant["code_key"] == CODE_KEY.decode()
    assert grant["mqtt"]["username"] == CAB
    assert grant["config"] == {"version": 1, "sha256": config_sha256(BODY), "body": BODY}
    with Session(engine) as session:
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None and cabinet.mqtt_password_hash
        # The broker's password file carries this hash: the password handed out logs in.
        assert verify_mosquitto_password(grant["mqtt"]["password"], cabinet.mqtt_password_hash)
        used = session.exec(select(EnrolmentCode)).one()
        assert used.used_at is not None and used.mqtt_password_sealed is None
        ops = [row.detail.get("op") for row in session.exec(select(AuditLog)).all()]
        assert ops == ["enrolment code", "enrol"]
        enrol_row = session.exec(
            select(AuditLog).where(col(AuditLog.principal_kind) == "enrolment")
        ).one()
        assert enrol_row.resource_id == CAB
    again = client.post("/api/v1/enrol", json={"code": code})
    assert again.status_code == 404
    assert "used or expired" in again.json()["detail"]
    assert "password" not in again.text


def test_expired_and_retired_codes_are_refused_alike(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    first = _issue(engine, clock, lifetime=timedelta(hours=1))
    second = _issue(engine, clock, lifetime=timedelta(hours=1))  # retires the first
    retired = client.post("/api/v1/enrol", json={"code": first})
    clock.advance(3601)
    expired = client.post("/api/v1/enrol", json={"code": second})
    unknown = client.post("/api/v1/enrol", json={"code": "A" * 32})
    assert retired.status_code == expired.status_code == unknown.status_code == 404
    assert retired.json() == expired.json() == unknown.json()


def test_guessing_is_stopped_per_address_and_hopeless_anyway(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    code = _issue(engine, clock)
    for n in range(core.TRIES_PER_CLIENT_HOUR):
        wrong = client.post("/api/v1/enrol", json={"code": f"{n:02d}".join(["B" * 15] * 2)[:32]})
        assert wrong.status_code == 404
    # The 11th request this hour is refused before its code is even looked at: the right one too.
    limited = client.post("/api/v1/enrol", json={"code": code})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 3600
    clock.advance(3601)
    assert client.post("/api/v1/enrol", json={"code": code}).status_code == 200
    # The arithmetic (cloud/core/enrolment.py): a million addresses guessing at the limit for a
    # year, against 10,000 live codes, hit one with a chance below 2^-100.
    year_guesses = 2**20 * core.TRIES_PER_CLIENT_HOUR * 24 * 366
    assert year_guesses < 2**37
    assert core.guess_success_bound(guesses=year_guesses, live_codes=10_000) < 2**-100


def test_a_pushed_config_is_versioned_hashed_and_queued(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    _issue(engine, clock)
    changed = {**BODY, "kiosk_language": "en"}
    with Session(engine) as session:
        version, sha = push_config(session=session, cab=CAB, body=changed, now=clock.now)
        assert (version, sha) == (2, config_sha256(changed))
        command = session.exec(
            select(CommandOutbox).where(col(CommandOutbox.type) == "config.put")
        ).one()
        data = PutConfigData.model_validate(command.data)
        assert (data.version, data.sha256, data.config) == (2, sha, changed)
    secret = {**BODY, "mqtt": {**BODY["mqtt"], "password": "x"}}
    with Session(engine) as session:
        try:
            push_config(session=session, cab=CAB, body=secret, now=clock.now)
        except ValueError as err:
            assert "mqtt.password" in str(err)
        else:
            raise AssertionError("a body with a secret was pushed")
