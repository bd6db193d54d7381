"""Issue 14, items 2, 3 and 7: the fleet, a cabinet's doors and the acts on them, the audit log.

Each test runs on SQLite and on PostgreSQL, through the pages as a browser posts them.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import anyio
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.console.routes.cabinet import grid_updates
from cloud.db.health import put_door_health
from cloud.db.models import Alarm, AuditLog, Cabinet, CommandOutbox, Compartment, Parcel
from tests.cloud.console.conftest import TRACKING, Clock, form_token, sign_in
from tests.cloud.db.builders import CAB, T0


def commands(engine: Engine, type: str) -> list[CommandOutbox]:
    with Session(engine) as session:
        return list(session.exec(select(CommandOutbox).where(CommandOutbox.type == type)))


def audit_rows(engine: Engine, action: str) -> list[AuditLog]:
    with Session(engine) as session:
        return list(session.exec(select(AuditLog).where(AuditLog.action == action)))


def test_the_fleet_row_says_what_a_manager_asks(
    client: TestClient, world: Engine, clock: Clock
) -> None:
    with Session(world) as session:
        cabinet = session.get(Cabinet, CAB)
        cabinet.online, cabinet.presence_since = True, T0
        cabinet.last_seen_at, cabinet.firmware = clock.now - timedelta(seconds=40), "1.4.2"
        session.add(cabinet)
        door = session.get(Compartment, (CAB, "A04"))
        door.state = "faulted"
        session.add(door)
        session.add(Alarm(cabinet_id=CAB, compartment="A02", kind="door.forced", at=T0))
        session.commit()
    sign_in(client, "mgr-a")
    client.cookies.set("console_lang", "en", path="/console")
    page = client.get("/console/fleet").text
    row = page[page.index('data-cab="CAB-1"') :]
    row = row[: row.index("</tr>")]
    assert "online" in row and "since 2024-05-01 10:00" in row  # Asia/Shanghai
    assert "40 s ago" in row and "1.4.2" in row
    assert "M 1/3" in row  # A01 holds the parcel; A04 is faulted and counts as no room
    cells = [c.split(">")[-1] for c in row.split("</td>")[-5:-1]]
    assert cells == ["1", "0", "1", "0"]  # faulted, out of service, open alarms, overdue


def test_a_parcel_past_its_deadline_counts_on_the_fleet_and_shows_on_its_door(
    client: TestClient, world: Engine, clock: Clock
) -> None:
    clock.advance(hours=73)  # the site's window is 72 h
    sign_in(client, "ops")
    with Session(world) as session:
        parcel = session.exec(select(Parcel)).one()
        parcel.status = "expired"  # what the scheduler does at the deadline
        session.add(parcel)
        session.commit()
    page = client.get("/console/fleet").text
    row = page[page.index('data-cab="CAB-1"') :]
    assert row[: row.index("</tr>")].rstrip().endswith('<td class="num warn">1</td>')
    cabinet = client.get(f"/console/cabinets/{CAB}").text
    assert 'class="overdue"' in cabinet


def test_a_door_shows_its_parcel_with_the_phone_masked(client: TestClient) -> None:
    sign_in(client, "mgr-a")
    page = client.get(f"/console/cabinets/{CAB}").text
    door = page[page.index('data-door="A01"') :]
    door = door[: door.index("</article>")]
    assert TRACKING in door and "+86 138****1234" in door and "13812341234" not in door


def test_a_remote_open_needs_a_reason_and_two_steps_and_is_audited(
    client: TestClient, world: Engine
) -> None:
    sign_in(client, "mgr-a")
    confirm = client.get(f"/console/cabinets/{CAB}/doors/A01/open")
    assert confirm.status_code == 200 and TRACKING in confirm.text
    csrf = form_token(confirm.text)
    url = f"/console/cabinets/{CAB}/doors/A01/open"
    empty = client.post(url, data={"csrf": csrf, "reason": "   "})
    assert empty.status_code == 422 and commands(world, "compartment.open") == []
    done = client.post(url, data={"csrf": csrf, "reason": "recipient locked out, ID checked"})
    assert done.status_code == 200 and "A01" in done.text
    [command] = commands(world, "compartment.open")
    assert command.data == {
        "compartment": "A01",
        "reason": "recipient locked out, ID checked",
        "actor": "console:mgr-a",
    }
    [row] = audit_rows(world, "open_door_remotely")
    assert (row.resource_kind, row.resource_id) == ("cabinet", CAB)
    assert row.reason == "recipient locked out, ID checked"
    assert row.detail["door"] == "A01" and row.detail["tracking_no"] == TRACKING
    assert row.detail["command_id"] == command.id


def test_out_of_service_and_back_queue_the_contract_command(
    client: TestClient, world: Engine
) -> None:
    sign_in(client, "mgr-a")
    csrf = form_token(client.get(f"/console/cabinets/{CAB}").text)
    for act in ("service-out", "service-in"):
        url = f"/console/cabinets/{CAB}/doors/A03/{act}"
        assert client.post(url, data={"csrf": csrf, "reason": "hinge repair"}).status_code == 200
    sent = [c.data for c in commands(world, "compartment.service")]
    assert sent == [
        {"compartment": "A03", "in_service": False},
        {"compartment": "A03", "in_service": True},
    ] or sorted(sent, key=str) == sorted(
        [{"compartment": "A03", "in_service": False}, {"compartment": "A03", "in_service": True}],
        key=str,
    )
    assert len(audit_rows(world, "set_out_of_service")) == 2


def test_extending_a_deadline_moves_it_puts_the_code_again_and_is_audited(
    client: TestClient, world: Engine, clock: Clock
) -> None:
    sign_in(client, "mgr-a")
    with Session(world) as session:
        before = session.exec(select(Parcel)).one()
        window = before.window_s
    csrf = form_token(client.get(f"/console/cabinets/{CAB}").text)
    url = f"/console/cabinets/{CAB}/doors/A01/extend"
    response = client.post(url, data={"csrf": csrf, "reason": "on holiday", "hours": "48"})
    assert response.status_code == 200
    with Session(world) as session:
        after = session.exec(select(Parcel)).one()
    assert after.window_s == window + 48 * 3600 and after.status == "in_locker"
    puts = commands(world, "codes.put")
    assert len(puts) == 2  # the deposit's, and the new expiry's
    [row] = audit_rows(world, "extend_deadline")
    assert row.reason == "on holiday" and row.detail["hours"] == 48


def test_a_manager_may_not_cancel_but_an_operator_may_mark_for_return(
    client: TestClient, world: Engine
) -> None:
    sign_in(client, "mgr-a")
    assert client.get(f"/console/cabinets/{CAB}/doors/A01/cancel").status_code == 403
    sign_in(client, "ops")
    csrf = form_token(client.get(f"/console/cabinets/{CAB}").text)
    url = f"/console/cabinets/{CAB}/doors/A01/return"
    assert client.post(url, data={"csrf": csrf, "reason": "refused by recipient"}).is_success
    with Session(world) as session:
        assert session.exec(select(Parcel)).one().status == "expired"
    assert len(commands(world, "retrievals.put")) == 1
    assert audit_rows(world, "cancel_parcel")[0].detail["op"] == "mark_for_return"


def test_the_audit_log_filters_and_exports_what_the_manager_may_read(
    client: TestClient, world: Engine
) -> None:
    sign_in(client, "mgr-a")
    csrf = form_token(client.get(f"/console/cabinets/{CAB}").text)
    client.post(
        f"/console/cabinets/{CAB}/doors/A02/open", data={"csrf": csrf, "reason": "=cmd|stuck"}
    )
    page = client.get("/console/audit?action=open_door_remotely").text
    assert "=cmd|stuck" in page and "mgr-a" in page
    assert "sign_in" not in page.split("<tbody>")[1]  # sign-ins are not a manager's to read
    exported = client.get("/console/audit.csv?action=open_door_remotely")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["action"], r["resource_id"], r["reason"]) for r in rows] == [
        ("open_door_remotely", CAB, "'=cmd|stuck")  # not a formula in a spreadsheet
    ]
    sign_in(client, "ops")
    everything = client.get("/console/audit.csv").text
    assert "sign_in" in everything and "manage_accounts" in everything


def test_the_live_stream_sends_the_grid_when_a_door_changes() -> None:
    """The stream's loop, driven by hand: nothing for an unchanged cabinet, one `grid` and one
    `head` event when the fingerprint moves, and `signed-out` once the session is gone."""
    states = iter([("v1", "g1", "h1")] * 2 + [("v2", "g2", "h2")] * 2)
    signed_in = iter([True])

    async def no_wait(_: float) -> None:
        return None

    async def connected() -> bool:
        return False

    async def run() -> list[dict[str, str]]:
        events = []
        stream = grid_updates(
            lambda: next(states),
            lambda: next(signed_in, False),
            is_disconnected=connected,
            sleep=no_wait,
            poll_s=30.0,  # the session is checked every 60 s: every second poll here
        )
        async for event in stream:
            events.append(event)
        return events

    events = anyio.run(run)
    assert events == [
        {"event": "grid", "data": "g2"},
        {"event": "head", "data": "h2"},
        {"event": "signed-out", "data": ""},
    ]


def test_the_fleet_sorts_all_cabinets_and_draws_a_page_of_them(
    client: TestClient, world: Engine, clock: Clock
) -> None:
    from cloud.core.access import Principal, PrincipalKind
    from cloud.services.console_views import fleet

    with Session(world) as session:
        session.add(Alarm(cabinet_id="CAB-2", compartment="B01", kind="door.forced", at=T0))
        cabinet = session.get(Cabinet, CAB)
        cabinet.online = False
        session.add(cabinet)
        session.commit()
    ops = Principal(PrincipalKind.OPERATOR_ADMIN, "t")
    with Session(world) as session:
        first = fleet(session=session, principal=ops, now=clock.now, sort="alarms", per_page=1)
        second = fleet(
            session=session, principal=ops, now=clock.now, sort="alarms", per_page=1, page=2
        )
        by_status = fleet(session=session, principal=ops, now=clock.now, sort="status")
    assert [r.id for r in first.rows + second.rows] == ["CAB-2", CAB]
    assert (first.total, first.pages, first.offline, first.never_seen, first.open_alarms) == (
        2, 2, 1, 1, 1,
    )  # fmt: skip
    assert [r.id for r in by_status.rows] == [CAB, "CAB-2"]  # offline first, then never seen
    sign_in(client, "ops")
    page = client.get("/console/fleet?sort=alarms").text
    assert page.index('data-cab="CAB-2"') < page.index('data-cab="CAB-1"')


def test_a_door_shows_its_lock_cycles_and_bus_errors_in_both_languages(
    client: TestClient, world: Engine, clock: Clock
) -> None:
    with Session(world) as session:
        put_door_health(
            session=session,
            cabinet_id=CAB,
            doors=[
                {
                    "compartment": "A02",
                    "board": "main:1",
                    "pulses": 1204,
                    "failed_unlocks": 2,
                    "opens_timed": 1180,
                    "open_ms_recent": 310,
                    "open_ms_long": 300,
                    "bus_errors": 31,
                }
            ],
            at=clock.now,
        )
        session.commit()
    sign_in(client, "mgr-a")
    for lang, words in (
        ("en", ("Lock cycles 1204", "failed 2", "bus errors 31", "opens in 310 ms")),
        ("zh-CN", ("开锁次数 1204", "失败 2", "总线错误 31", "开门用时 310 ms")),
    ):
        client.cookies.set("console_lang", lang, path="/console")
        page = client.get(f"/console/cabinets/{CAB}").text
        door = page[page.index('data-door="A02"') :]
        door = door[: door.index("</article>")]
        for word in words:
            assert word in door
        a01 = page[page.index('data-door="A01"') :]
        assert 'class="wear"' not in a01[: a01.index("</article>")]  # never reported
