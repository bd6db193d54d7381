"""Alarms on SQLite and PostgreSQL: repeats collapse, managers are told (after quiet hours),
acknowledge and resolve are scoped and audited, offline cabinets, code guessing, failed notices."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.core.access import Principal, PrincipalKind
from cloud.db import repo
from cloud.db.models import (
    Account,
    AccountSite,
    Alarm,
    AuditLog,
    Cabinet,
    CabinetCreate,
    NoticeOutbox,
    SiteCreate,
)
from cloud.errors import Conflict, Forbidden, NotFound
from cloud.notify.errors import PermanentSendError
from cloud.notify.ports import OutgoingMessage, SendReceipt, StaticBindings
from cloud.services import alarms
from cloud.services.ingest import apply_pending, store_events
from cloud.worker.schedule import Housekeeper
from protocol.messages import (
    DoorForced,
    DoorForcedData,
    DoorLeftOpen,
    DoorLeftOpenData,
    EventBase,
    KeypadLockout,
    KeypadLockoutData,
)
from tests.cloud.db.builders import CAB, CODE_KEY, SEAL_KEY, SITE, register_cabinet

# 10:00 and 23:30 in Asia/Shanghai, the site's zone (quiet hours 22:00-08:00).
DAY = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
NIGHT = datetime(2024, 5, 1, 15, 30, tzinfo=UTC)
MORNING = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)  # 08:00 local, the end of the quiet hours
MANAGER_PHONE = "+8613900001111"
ADMIN = Principal(PrincipalKind.OPERATOR_ADMIN, "admin-1")


def manager(site_id: str = SITE, account_id: str = "mgr-1") -> Principal:
    return Principal(PrincipalKind.SITE_MANAGER, account_id, site_ids=frozenset({site_id}))


def add_manager(
    session: Session, account_id: str = "mgr-1", *, site_id: str = SITE, phone: str | None = None
) -> None:
    session.add(
        Account(
            id=account_id,
            username=account_id,
            role="site_manager",
            password_hash="not-a-password",
            phone=phone,
            created_at=DAY,
        )
    )
    session.flush()
    session.add(AccountSite(account_id=account_id, site_id=site_id))
    session.commit()


def forced_at(seq: int, at: datetime, door: str = "A02") -> EventBase:
    return DoorForced(
        id=f"{CAB}-e{seq}", cab=CAB, seq=seq, ts=at, data=DoorForcedData(compartment=door)
    )


def lockout_at(seq: int, at: datetime) -> EventBase:
    return KeypadLockout(
        id=f"{CAB}-e{seq}", cab=CAB, seq=seq, ts=at, data=KeypadLockoutData(seconds=30)
    )


def ingest(session: Session, events: list[EventBase], now: datetime) -> None:
    session.rollback()
    store_events(session=session, cab=CAB, envelopes=events, now=now)
    session.rollback()
    result = apply_pending(session=session, cab=CAB, now=now, seal_key=SEAL_KEY)
    assert result.anomalies == 0
    session.rollback()


def open_alarms(session: Session) -> list[Alarm]:
    session.expire_all()
    statement = select(Alarm).where(Alarm.cleared_at == None).order_by(Alarm.id)  # noqa: E711
    return list(session.exec(statement))


def fresh(session: Session) -> Session:
    """End the test's read snapshot: a service begins its own write transaction."""
    session.rollback()
    return session


def notices(session: Session) -> list[NoticeOutbox]:
    session.expire_all()
    return list(session.exec(select(NoticeOutbox).where(NoticeOutbox.kind == "alarm")))


def test_repeats_of_a_forced_door_are_one_alarm_and_one_message_per_manager(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    register_cabinet(session)
    add_manager(session, "mgr-1", phone=MANAGER_PHONE)
    add_manager(session, "mgr-2")  # no phone: the console only
    with caplog.at_level(logging.WARNING, logger="cloud.services.alarms"):
        ingest(session, [forced_at(1, DAY)], DAY)
        ingest(session, [forced_at(2, DAY + timedelta(minutes=3))], DAY + timedelta(minutes=3))
        ingest(session, [forced_at(3, DAY + timedelta(minutes=9), door="A03")], DAY)

    first, other_door = open_alarms(session)
    assert (first.kind, first.compartment, first.severity) == ("door.forced", "A02", "critical")
    assert (first.count, first.at, first.last_seen_at) == (2, DAY, DAY + timedelta(minutes=3))
    assert (other_door.compartment, other_door.count) == ("A03", 1)
    new_lines = [r.getMessage() for r in caplog.records if " new: " in r.getMessage()]
    assert len(new_lines) == 2 and "door.forced" in new_lines[0] and "door A02" in new_lines[0]

    told = notices(session)
    assert sorted((n.alarm_id, n.to_phone) for n in told) == [
        (first.id, MANAGER_PHONE),
        (other_door.id, MANAGER_PHONE),
    ]
    assert all(n.next_attempt_at == DAY and n.audience == "manager" for n in told)

    # A door left open is on the console but wakes nobody.
    left_open = DoorLeftOpen(
        id="e4", cab=CAB, seq=4, ts=DAY, data=DoorLeftOpenData(compartment="A01", seconds=120)
    )
    ingest(session, [left_open], DAY)
    alarm = next(a for a in open_alarms(session) if a.kind == "door.left_open")
    assert (alarm.severity, alarm.detail, alarm.compartment) == ("warning", "120 s", "A01")
    assert len(notices(session)) == 2


def test_a_night_alarm_waits_for_the_end_of_the_quiet_hours(engine: Engine) -> None:
    from cloud.notify.dispatcher import Dispatcher

    with Session(engine) as session:
        register_cabinet(session)
        add_manager(session, phone=MANAGER_PHONE)
        ingest(session, [forced_at(1, NIGHT), forced_at(2, NIGHT, door="A03")], NIGHT)
        first, second = notices(session)
        assert first.next_attempt_at == second.next_attempt_at == MORNING
        assert first.created_at == NIGHT
        second_alarm = second.alarm_id
    sms = Accepting()
    dispatcher = Dispatcher(
        engine=engine, sms=sms, seal_key=SEAL_KEY, base_url="https://x", bindings=StaticBindings()
    )
    assert dispatcher.tick(NIGHT + timedelta(hours=1)).sent == 0  # 00:30 local: quiet
    # Someone saw the second one on the console and resolved it overnight: it wakes nobody.
    with Session(engine) as session:
        alarms.resolve(
            session=session, principal=ADMIN, alarm_id=second_alarm, note="false alarm", now=NIGHT
        )
    assert dispatcher.tick(MORNING).sent == 1
    assert [m.text.count("A02") for m in sms.sent] == [1]
    with Session(engine) as session:
        assert sorted(n.status for n in notices(session)) == ["sent", "skipped"]
        assert not [a for a in open_alarms(session) if a.kind == "notice.failed"]


def test_acknowledge_and_resolve_are_audited_and_a_new_occurrence_is_a_new_alarm(
    session: Session,
) -> None:
    register_cabinet(session)
    ingest(session, [forced_at(1, DAY)], DAY)
    (alarm,) = open_alarms(session)
    alarm_id = alarm.id
    assert alarm_id is not None

    acked = alarms.acknowledge(
        session=fresh(session),
        principal=manager(),
        alarm_id=alarm_id,
        note="guard on the way",
        now=DAY,
    )
    assert (acked.acked_by, acked.ack_note, acked.cleared_at) == ("mgr-1", "guard on the way", None)
    ingest(session, [forced_at(2, DAY + timedelta(minutes=1))], DAY + timedelta(minutes=1))
    (still,) = open_alarms(session)
    assert (still.id, still.count) == (alarm.id, 2)  # acknowledged, still open: a repeat counts

    done = alarms.resolve(
        session=fresh(session), principal=manager(), alarm_id=alarm_id, note="door fixed", now=DAY
    )
    assert (done.resolved_by, done.resolve_note, done.open_key) == ("mgr-1", "door fixed", None)
    with pytest.raises(Conflict):
        alarms.resolve(
            session=fresh(session), principal=manager(), alarm_id=alarm_id, note="", now=DAY
        )
    ingest(session, [forced_at(3, DAY + timedelta(hours=1))], DAY + timedelta(hours=1))
    (again,) = open_alarms(session)
    assert again.id != alarm.id and again.count == 1

    session.expire_all()
    rows = list(session.exec(select(AuditLog).order_by(AuditLog.id)))
    assert [(r.action, r.principal_id, r.resource_id, r.reason) for r in rows] == [
        ("acknowledge_alarm", "mgr-1", CAB, "guard on the way"),
        ("resolve_alarm", "mgr-1", CAB, "door fixed"),
    ]
    assert rows[0].detail["alarm_id"] == alarm.id


def test_another_sites_manager_sees_no_alarm_and_a_carrier_may_not_ask(session: Session) -> None:
    register_cabinet(session)
    repo.create_site(session=session, site_create=SiteCreate(id="site-2", name="Other"), now=DAY)
    repo.create_cabinet(
        session=session,
        cabinet_create=CabinetCreate(id="CAB-2", site_id="site-2", name="B", address="2 Road"),
        code_key=CODE_KEY,
        seal_key=SEAL_KEY,
        now=DAY,
    )
    session.commit()
    ingest(session, [forced_at(1, DAY)], DAY)
    (alarm,) = open_alarms(session)
    alarm_id = alarm.id
    assert alarm_id is not None
    stranger = manager("site-2", "mgr-9")

    assert alarms.list_for(session=session, principal=stranger) == []
    assert [r.alarm.id for r in alarms.list_for(session=session, principal=manager())] == [alarm.id]
    assert len(alarms.list_for(session=session, principal=ADMIN)) == 1
    with pytest.raises(NotFound) as refused:
        alarms.acknowledge(
            session=fresh(session), principal=stranger, alarm_id=alarm_id, note="", now=DAY
        )
    with pytest.raises(NotFound) as missing:
        alarms.acknowledge(
            session=fresh(session), principal=stranger, alarm_id=99999, note="", now=DAY
        )
    assert str(refused.value) == str(missing.value)  # the same words: no oracle
    carrier = Principal(PrincipalKind.CARRIER, "c-1", carrier_id="SF")
    with pytest.raises(Forbidden):
        alarms.list_for(session=session, principal=carrier)
    with pytest.raises(Forbidden):
        alarms.resolve(
            session=fresh(session), principal=carrier, alarm_id=alarm_id, note="", now=DAY
        )
    assert open_alarms(session)[0].acked_at is None
    assert list(session.exec(select(AuditLog))) == []


def test_lockouts_in_a_burst_are_code_guessing(session: Session) -> None:
    register_cabinet(session)
    add_manager(session, phone=MANAGER_PHONE)
    # Two lockouts an hour apart: a recipient who mistyped, twice. No pattern.
    ingest(session, [lockout_at(1, DAY), lockout_at(2, DAY + timedelta(hours=1))], DAY)
    assert [a.kind for a in open_alarms(session)] == ["keypad.lockout"]
    # Two more within ten minutes of the second: three in the window.
    later = DAY + timedelta(hours=1)
    ingest(
        session,
        [lockout_at(3, later + timedelta(minutes=4)), lockout_at(4, later + timedelta(minutes=9))],
        later + timedelta(minutes=9),
    )
    kinds = {a.kind: a for a in open_alarms(session)}
    assert kinds["keypad.lockout"].count == 4
    brute = kinds["keypad.brute_force"]
    assert (brute.severity, brute.count) == ("critical", 1)  # at the 4th: three in 15 min
    assert "keypad lockouts within 15 min" in brute.detail
    assert [n.alarm_id for n in notices(session)] == [brute.id]  # lockouts alone wake nobody


def set_presence(engine: Engine, *, online: bool, last_seen_at: datetime) -> None:
    with Session(engine) as session:
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None
        cabinet.online, cabinet.last_seen_at = online, last_seen_at
        cabinet.presence_since = last_seen_at
        session.add(cabinet)
        session.commit()


def test_the_worker_raises_offline_after_the_sites_threshold_and_resolves_it_on_return(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        register_cabinet(session)
        add_manager(session, phone=MANAGER_PHONE)
    set_presence(engine, online=False, last_seen_at=DAY)
    worker = Housekeeper(engine=engine, seal_key=SEAL_KEY, alarms_every_s=30)

    assert worker.tick(DAY + timedelta(minutes=9)).alarms == alarms.Evaluation()  # 600 s: not yet
    assert worker.tick(DAY + timedelta(minutes=9, seconds=15)).alarms is None  # not due
    assert worker.tick(DAY + timedelta(minutes=10)).alarms == alarms.Evaluation(raised=1)
    assert worker.tick(DAY + timedelta(minutes=20)).alarms == alarms.Evaluation()  # still one
    with Session(engine) as session:
        (alarm,) = open_alarms(session)
        offline_id = alarm.id
        assert (alarm.kind, alarm.compartment, alarm.severity) == (
            "cabinet.offline",
            None,
            "critical",
        )
        assert len(notices(session)) == 1

    set_presence(engine, online=True, last_seen_at=DAY + timedelta(minutes=25))
    assert worker.tick(DAY + timedelta(minutes=26)).alarms == alarms.Evaluation(resolved=1)
    with Session(engine) as session:
        assert open_alarms(session) == []
        resolved = session.get(Alarm, offline_id)
        assert resolved is not None and resolved.resolved_by == "system"


class Refusing:
    """An SMS provider that refuses every number for good (the fake Twilio's 21211)."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> SendReceipt:
        self.sent.append(message)
        raise PermanentSendError("21211: invalid 'To' phone number")


class Accepting:
    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> SendReceipt:
        self.sent.append(message)
        return SendReceipt(provider_id=f"SM{len(self.sent)}", status="queued")


def test_the_manager_gets_the_alarm_text_and_a_failed_notice_is_an_alarm(engine: Engine) -> None:
    from cloud.notify.dispatcher import Dispatcher

    with Session(engine) as session:
        register_cabinet(session)
        add_manager(session, phone=MANAGER_PHONE)
        ingest(session, [forced_at(1, DAY)], DAY)

    def dispatcher(sms: Refusing | Accepting) -> Dispatcher:
        return Dispatcher(
            engine=engine,
            sms=sms,
            seal_key=SEAL_KEY,
            base_url="https://lockers.example",
            bindings=StaticBindings(),
        )

    accepting = Accepting()
    assert dispatcher(accepting).tick(DAY).sent == 1
    (message,) = accepting.sent
    assert message.to == MANAGER_PHONE
    assert "柜门被撬" in message.text and "A02号格口" in message.text and "Gate 1" in message.text
    # One SMS part, no link (a link in an SMS is what phishing looks like): it says where to go.
    assert "请登录管理后台处理" in message.text and "http" not in message.text

    # A second forced door elsewhere; this time the provider refuses the number.
    with Session(engine) as session:
        ingest(session, [forced_at(2, DAY, door="A04")], DAY)
    refusing = Refusing()
    assert dispatcher(refusing).tick(DAY).failed == 1
    with Session(engine) as session:
        failed = [a for a in open_alarms(session) if a.kind == "notice.failed"]
        assert len(failed) == 1 and failed[0].severity == "warning"
        assert "alarm notice" in failed[0].detail and failed[0].compartment is None
        assert len(notices(session)) == 2  # a warning wakes nobody: no loop of failures
