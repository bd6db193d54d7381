"""Issue 11, part 5: the HTTP edges, played by an attacker.

The cloud API and the kiosk's local API refuse oversized bodies before reading them, refuse JSON
the MQTT decoder would refuse, bound every integer that reaches SQL, and the kiosk serves only its
own page; a renewed keypad hold cannot blind the cabinet to a forced door.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cabinet.drivers import poll_hold
from cabinet.drivers.rs485 import MAX_POLL_HOLD_S, BoardSpec, BusTiming, Rs485Driver
from cabinet.kiosk.app import MAX_BODY_BYTES as KIOSK_MAX_BODY_BYTES
from cabinet.kiosk.app import build_app
from cabinet.kiosk.maintenance import Maintenance
from cabinet.service import KEYPAD_HOLD_S
from cloud.api import create_app
from cloud.api.app import MAX_BODY_BYTES as CLOUD_MAX_BODY_BYTES
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import ErpApiKey, ErpKeySite, Parcel
from cloud.db.repo import count_rows
from cloud.services.queries import MAX_OFFSET, hash_api_key
from cloud.settings import CloudSettings
from firmware_sim import BoardConfig, SimulatedBus
from protocol.codec import MAX_JSON_DEPTH
from tests.cabinet.conftest import peer, sim  # noqa: F401  (fixtures the kiosk needs)
from tests.cabinet.drivers.virtual_line import VirtualClock, VirtualPort
from tests.cabinet.kiosk.conftest import kiosk, service  # noqa: F401
from tests.cabinet.kiosk.harness import KioskRunner, start_kiosk_for
from tests.cabinet.service.harness import COURIER, PIN, ServiceRunner
from tests.cloud.db.builders import CAB, SITE, T0, register_cabinet

API_KEY = "erp-edge-key-0123456789abcdef0123456789"
MB = 1024 * 1024


# --- helpers ----------------------------------------------------------------------------------


class Body:
    """A request body handed to the app chunk by chunk, counting what the app pulled."""

    def __init__(self, total: int, chunk: int = 16 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def receive(self) -> dict[str, Any]:
        if self.sent >= self.total:
            await asyncio.sleep(3600)  # a client still connected, sending nothing more
        size = min(self.chunk, self.total - self.sent)
        self.sent += size
        return {"type": "http.request", "body": b"[" * size, "more_body": self.sent < self.total}


async def call_asgi(
    app: Any, path: str, body: Body, headers: dict[str, str], server: tuple[str, int]
) -> tuple[int, bytes]:
    """POST `body` to the ASGI `app` directly (as uvicorn would); the status and the answer."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": server,
        "state": {},
    }
    await asyncio.wait_for(app(scope, body.receive, send), 30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], answer


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[TestClient, Engine]]:
    """The cloud API on a migrated SQLite file, with one ERP key and cabinet `CAB`."""
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        session.add(
            ErpApiKey(
                id="erp-1",
                name="ERP",
                key_prefix=API_KEY[:8],
                key_hash=hash_api_key(API_KEY),
                merchant_id="shop",
                created_at=T0,
            )
        )
        session.commit()
        register_cabinet(session)
        session.add(ErpKeySite(key_id="erp-1", site_id=SITE))
        session.commit()
    settings = CloudSettings(database_url=url, secret_key=secrets.token_hex(32))
    app = create_app(settings, engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, engine
    engine.dispose()


def shipment(**extra: str) -> dict[str, str]:
    return {
        "order_no": "SO-1",
        "tracking_no": "SF0001",
        "phone": "+8613812341234",
        "cabinet_id": CAB,
        **extra,
    }


def parcels(engine: Engine) -> int:
    with Session(engine) as session:
        return count_rows(session=session, model=Parcel)


# --- 1. request bodies are limited before parsing ---------------------------------------------


async def test_an_80_mb_body_declared_by_content_length_is_413_and_never_read(
    tmp_path: Path,
) -> None:
    """Finding: an 80 MB POST to an unauthenticated route took the API from 127 to 337 MB."""
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path / 'c.db'}", secret_key=secrets.token_hex(32)
    )
    app = create_app(settings, engine=make_engine(settings.database_url))
    body = Body(80 * MB)
    status, answer = await call_asgi(
        app,
        "/api/v1/callbacks/twilio/status",
        body,
        {
            "host": "api",
            "content-type": "application/x-www-form-urlencoded",
            "content-length": str(80 * MB),
        },
        ("127.0.0.1", 8000),
    )
    assert status == 413
    assert f"over the {CLOUD_MAX_BODY_BYTES}-byte limit" in answer.decode()
    assert body.sent == 0  # refused on the header alone


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(tmp_path: Path) -> None:
    """Finding: no body limit; a chunked body (no Content-Length) streamed without end."""
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path / 'c.db'}", secret_key=secrets.token_hex(32)
    )
    app = create_app(settings, engine=make_engine(settings.database_url))
    body = Body(80 * MB, chunk=16 * 1024)
    status, answer = await call_asgi(
        app,
        "/api/v1/callbacks/twilio/status",
        body,
        {"host": "api", "content-type": "application/x-www-form-urlencoded"},
        ("127.0.0.1", 8000),
    )
    assert status == 413 and b"byte limit" in answer
    # The app pulled no more than the limit and the chunk that crossed it: 64 KiB + 16 KiB.
    assert body.sent <= CLOUD_MAX_BODY_BYTES + body.chunk


def test_a_legitimate_shipment_still_gets_through(cloud: tuple[TestClient, Engine]) -> None:
    """Finding (the other side): the limit must not refuse what an ERP really sends."""
    client, engine = cloud
    headers = {"X-API-Key": API_KEY, "Idempotency-Key": "k-1"}
    answer = client.post("/api/v1/shipments", json=shipment(), headers=headers)
    assert answer.status_code == 201, answer.text
    assert parcels(engine) == 1


# --- 2. bounded integers, bounded depth, no duplicate keys ------------------------------------


def test_an_offset_past_64_bits_is_a_422_naming_the_field(cloud: tuple[TestClient, Engine]) -> None:
    """Finding: `GET /api/v1/parcels?offset=9223372036854775808` was a 500."""
    client, _ = cloud
    headers = {"X-API-Key": API_KEY}
    answer = client.get("/api/v1/parcels", params={"offset": 2**63}, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "query.offset"
    deepest = client.get("/api/v1/parcels", params={"offset": MAX_OFFSET}, headers=headers)
    assert deepest.status_code == 200 and deepest.json()["data"] == []
    past = client.get("/api/v1/parcels", params={"offset": MAX_OFFSET + 1}, headers=headers)
    assert past.status_code == 422


def test_a_deeply_nested_body_is_a_clear_422_on_the_cloud(cloud: tuple[TestClient, Engine]) -> None:
    """Finding: a deeply nested JSON body was not refused clearly (a parser crash)."""
    client, engine = cloud
    depth = 30_000  # 60 KB: under the body limit, far past the parser's recursion limit
    body = "[" * depth + "]" * depth
    headers = {"X-API-Key": API_KEY, "Idempotency-Key": "k-1", "Content-Type": "application/json"}
    answer = client.post("/api/v1/shipments", content=body, headers=headers)
    assert answer.status_code == 422
    assert f"nested more than {MAX_JSON_DEPTH} deep" in answer.json()["detail"]
    assert parcels(engine) == 0


def test_duplicate_keys_are_refused_by_the_cloud_as_by_mqtt(
    cloud: tuple[TestClient, Engine],
) -> None:
    """Finding: HTTP JSON with duplicate keys was accepted (the last one won), unlike MQTT."""
    client, engine = cloud
    # Which phone would a proxy or a log see? Neither is trusted.
    body = (
        '{"order_no": "SO-1", "tracking_no": "SF0001", "phone": "+8613812341234", '
        '"phone": "+8613900000000", "cabinet_id": "' + CAB + '"}'
    )
    headers = {"X-API-Key": API_KEY, "Idempotency-Key": "k-1", "Content-Type": "application/json"}
    answer = client.post("/api/v1/shipments", content=body, headers=headers)
    assert answer.status_code == 422
    assert "key 'phone' appears twice" in answer.json()["detail"]
    assert answer.json()["errors"][0]["field"] == "body"
    assert parcels(engine) == 0


async def test_the_kiosk_refuses_a_deep_body_and_duplicate_keys_and_changes_nothing(
    kiosk: KioskRunner,  # noqa: F811
    service: ServiceRunner,  # noqa: F811
) -> None:
    """Finding: a deeply nested kiosk body was a 500; duplicate keys were taken."""
    before = service.service.cabinet.to_dict()
    depth = 4000  # 8000 bytes: under the kiosk's 8 KiB limit
    deep = await kiosk.http.post(
        "/api/input",
        content="[" * depth + "]" * depth,
        headers={"Content-Type": "application/json"},
    )
    assert deep.status_code == 422
    assert f"nested more than {MAX_JSON_DEPTH} deep" in deep.json()["error"]
    twice = await kiosk.http.post(
        "/api/input",
        content='{"type": "CourierSignIn", "courier_id": "C1", "pin": "x", "pin": "' + PIN + '"}',
        headers={"Content-Type": "application/json"},
    )
    assert twice.status_code == 422 and "key 'pin' appears twice" in twice.json()["error"]
    assert service.service.cabinet.to_dict() == before
    assert service.service.cabinet.session is None


async def test_the_kiosk_limits_bodies_before_reading_them(kiosk: KioskRunner) -> None:  # noqa: F811
    """Finding: the kiosk read a whole body into memory before checking its size."""
    port = kiosk.server.port
    host = f"127.0.0.1:{port}"
    # Declared: answered at once over the real server, though not a byte of the body comes.
    # (An asyncio connection: the kiosk serves on this test's own loop.)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /api/input HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {80 * MB}\r\n\r\n".encode()
    )
    await writer.drain()
    head = (await asyncio.wait_for(reader.read(4096), 5)).decode()
    writer.close()
    await writer.wait_closed()
    assert head.startswith("HTTP/1.1 413"), head
    # Chunked: the app stops pulling once the limit is passed.
    body = Body(80 * MB, chunk=1024)
    status, answer = await call_asgi(
        build_app(kiosk.kiosk),
        "/api/input",
        body,
        {"host": host, "content-type": "application/json"},
        ("127.0.0.1", port),
    )
    assert status == 413 and b"byte limit" in answer
    assert body.sent <= KIOSK_MAX_BODY_BYTES + body.chunk


# --- 3. the kiosk serves its own page only ----------------------------------------------------


async def test_a_cross_site_text_plain_post_cannot_drive_the_kiosk(
    kiosk: KioskRunner,  # noqa: F811
    service: ServiceRunner,  # noqa: F811
) -> None:
    """Finding: a `text/plain` POST from another origin drove `/api/input` (no preflight)."""
    await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN)
    signed_in = service.service.cabinet.to_dict()
    # What <form enctype="text/plain"> or fetch(..., {mode: "no-cors"}) on evil.example sends.
    foreign = await kiosk.http.post(
        "/api/input",
        content='{"type": "CourierSignOut"}',
        headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["error"]
    # Without an Origin (a non-browser on the LAN), text/plain is still no JSON call.
    plain = await kiosk.http.post(
        "/api/input", content='{"type": "CourierSignOut"}', headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 415
    # Even declared as JSON, another origin is refused (a browser would have preflighted it).
    preflighted = await kiosk.post(
        "/api/input", {"type": "CourierSignOut"}, headers={"Origin": "http://evil.example"}
    )
    assert preflighted.status_code == 403
    assert service.service.cabinet.to_dict() == signed_in
    assert (await kiosk.status())["courier"]["courier_id"] == COURIER
    # The kiosk's own page, as Chromium sends it, still works.
    own = await kiosk.post("/api/input", {"type": "CourierSignOut"}, headers={"Origin": kiosk.url})
    assert own.status_code == 200 and own.json()["screens"][0]["type"] == "SignedOut"


async def test_a_dns_rebinding_host_is_refused(kiosk: KioskRunner) -> None:  # noqa: F811
    """Finding: the kiosk answered any Host header, so a rebound evil.example could read it."""
    port = kiosk.server.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}"):
        answer = await kiosk.http.get("/api/status", headers={"Host": host})
        assert answer.status_code == 403, host
        assert "is not this kiosk" in answer.json()["error"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert (await kiosk.http.get("/api/status", headers={"Host": host})).status_code == 200


async def test_every_maintenance_route_needs_the_token(service: ServiceRunner) -> None:  # noqa: F811
    """Finding: a cross-site POST signed the technician out (sign-out took no token)."""
    maintenance = Maintenance("scrypt-stand-in", verify=lambda pin, _hash: pin == "97531")
    runner = await start_kiosk_for(service, maintenance=maintenance)
    try:
        token = (await runner.post("/api/maintenance/sign-in", {"pin": "97531"})).json()["token"]
        tech = {"X-Maintenance-Token": token}
        foreign = await runner.http.post(
            "/api/maintenance/sign-out",
            content="{}",
            headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        tokenless = await runner.post("/api/maintenance/sign-out")
        assert tokenless.status_code == 401
        assert (await runner.http.get("/api/maintenance/status", headers=tech)).status_code == 200
        assert (await runner.post("/api/maintenance/sign-out", headers=tech)).json() == {"ok": True}
        assert (await runner.http.get("/api/maintenance/status", headers=tech)).status_code == 401
    finally:
        await runner.close()


# --- 4. a renewed keypad hold cannot blind the cabinet ----------------------------------------


POLL_INTERVAL_S = BusTiming().poll_interval_s  # the production cadence of status polls
# A forced door is seen by the first poll once its board has gone MAX_UNPOLLED_S unpolled.
FORCED_DOOR_SEEN_WITHIN_S = poll_hold.MAX_UNPOLLED_S + POLL_INTERVAL_S
# The production clocks: the bus runs in virtual time, so they cost nothing; the test polls.
TIMING = replace(BusTiming(), poll_interval_s=0)
CHANNELS = {"D1": 1, "D2": 2, "D3": 3}
FORCED_AT = {"D1": 1.0, "D2": 13.0, "D3": 47.0}  # seconds into the attack


async def attack(hold_every_s: float, release: bool) -> tuple[dict[str, float], list[bool]]:
    """Poll at POLL_INTERVAL_S of injected time for 120 s while an attacker asks for a hold every
    `hold_every_s` (and, with `release`, submits a wrong code first, which releases the hold).

    The kiosk's `POST /api/keypad-active` is `CabinetService.keypad_active`, which is
    `driver.hold_polls(KEYPAD_HOLD_S)`; a checked code is `driver.release_polls()`. The doors of
    FORCED_AT are forced open on the simulated board. Returns when each was seen, and whether
    polls were held at each step. The bus runs in virtual time (one clock for the driver, the
    board and the attack), so the 120 s take no real time.
    """
    clock = VirtualClock()
    bus = SimulatedBus(
        [BoardConfig(address=1, channels=24)], pulse_s=0.01, query_reply_s=0.001, clock=clock
    )
    driver = Rs485Driver(
        VirtualPort(bus, clock),
        [BoardSpec(1, 24)],
        {door: (1, ch) for door, ch in CHANNELS.items()},
        timing=TIMING,
        clock=clock,
        sleep=clock.sleep,
    )
    await driver.start()
    try:
        seen: dict[str, float] = {}
        held: list[bool] = []
        await driver.poll()  # the cabinet has been polling all along
        start = clock() + POLL_INTERVAL_S
        every = round(hold_every_s / POLL_INTERVAL_S)
        for step in range(int(120 / POLL_INTERVAL_S)):
            t = step * POLL_INTERVAL_S
            clock.advance_to(start + t)
            if step % every == 0:
                if release:
                    driver.release_polls()
                driver.hold_polls(KEYPAD_HOLD_S)
            for door, when in FORCED_AT.items():
                if when == t:
                    bus.person.force_door(1, CHANNELS[door])
            held.append(driver.polls_held())
            for door, is_open in (await driver.poll()).items():
                if is_open and door not in seen:
                    seen[door] = t
        return seen, held
    finally:
        await driver.close()


def longest_run(held: list[bool]) -> float:
    longest = run = 0
    for is_held in held:
        run = run + 1 if is_held else 0
        longest = max(longest, run)
    return longest * POLL_INTERVAL_S


async def test_renewing_the_keypad_hold_every_3_s_cannot_hide_a_forced_door() -> None:
    """Finding: `POST /api/keypad-active` every 3 s stopped RS485 polling indefinitely, so a
    forced door went unseen for 27 s."""
    assert MAX_POLL_HOLD_S == poll_hold.MAX_HOLD_S == 10.0
    assert FORCED_DOOR_SEEN_WITHIN_S == 10.5
    seen, held = await attack(hold_every_s=3.0, release=False)
    for door, when in FORCED_AT.items():
        assert door in seen, f"{door} forced at {when} s was never seen"
        assert seen[door] - when <= FORCED_DOOR_SEEN_WITHIN_S, (door, when, seen[door])
    assert held[0] is True  # the hold still does its job for a person typing a code
    assert longest_run(held) <= poll_hold.MAX_HOLD_S  # per entry: renewals do not extend it


async def test_releasing_and_retaking_the_hold_cannot_hide_a_forced_door_either() -> None:
    """Finding (the total cap): a hold released by a wrong code and taken again at once, every
    poll interval, must not keep polls off for good either."""
    seen, held = await attack(hold_every_s=POLL_INTERVAL_S, release=True)
    for door, when in FORCED_AT.items():
        assert door in seen, f"{door} forced at {when} s was never seen"
        assert seen[door] - when <= FORCED_DOOR_SEEN_WITHIN_S, (door, when, seen[door])
    assert longest_run(held) <= poll_hold.MAX_UNPOLLED_S


def test_a_hold_lasts_one_entry_and_no_board_goes_unpolled_past_the_cap() -> None:
    """Finding (the rule in numbers): one entry holds at most MAX_HOLD_S; a board last polled
    MAX_UNPOLLED_S ago is polled through any hold."""
    hold = poll_hold.PollHold()
    polled = 0.0
    assert hold.hold(0.0, 8.0) == 8.0
    assert hold.hold(3.0, 8.0) == 10.0  # renewed, capped at the entry's start + 10 s
    assert hold.hold(9.0, 8.0) == 10.0
    assert hold.held(9.0, polled) and not hold.held(10.0, polled)
    assert hold.hold(10.0, 8.0) == 18.0  # a new entry (the last one lapsed)
    assert not hold.held(10.0, polled)  # but the board was last polled 10 s ago: poll it
    assert hold.held(10.0, 10.0)  # polled now: the hold applies again
    hold.release(12.0)  # the code was checked
    assert not hold.held(12.0, 10.0)
    assert not hold.held(5.0, None)  # a board never polled is polled at once
