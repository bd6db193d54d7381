"""The command outbox: sent once, resent after the interval until acked, expired never again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.db import repo
from cloud.db.models import CommandOutbox
from cloud.services.expiry import run_due
from cloud.services.ingest import apply_pending, store_events
from cloud.worker import CommandDispatcher, TickResult
from cloud.worker.commands import EXPIRED_ERROR
from cloud.worker.presence import apply_state
from protocol.codec import decode_command
from protocol.messages import Ack, ParcelIdsData
from protocol.topics import cmd_topic
from tests.cloud.db.builders import (
    CAB,
    SEAL_KEY,
    T0,
    deposited,
    register_cabinet,
    resend_requested,
)
from tests.cloud.worker.harness import birth

RESEND_S = 30


class Recorder:
    """A publisher that records what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, payload))
        return True

    def ids(self) -> list[str]:
        return [decode_command(payload, cab=CAB).id for _, payload in self.sent]


def enqueue(engine: Engine, parcel: str = "P1") -> CommandOutbox:
    with Session(engine) as session:
        row = repo.enqueue_command(
            session=session,
            cab=CAB,
            type="codes.revoke",
            data=ParcelIdsData(parcel_ids=[parcel]),
            now=T0,
        )
        session.commit()
        session.refresh(row)
        return row


def row(engine: Engine, command_id: str) -> CommandOutbox:
    with Session(engine) as session:
        return session.get(CommandOutbox, command_id)


def dispatcher(engine: Engine, publish: Recorder) -> CommandDispatcher:
    return CommandDispatcher(engine=engine, publish=publish, resend_interval_s=RESEND_S)


def test_an_unacked_command_is_resent_after_the_interval_until_acked(engine: Engine) -> None:
    command = enqueue(engine)
    publish = Recorder()
    commands = dispatcher(engine, publish)

    assert commands.tick(T0) == TickResult(sent=1, resent=0, expired=0)
    topic, payload = publish.sent[0]
    assert topic == cmd_topic(CAB)
    envelope = decode_command(payload, cab=CAB)
    assert (envelope.id, envelope.type, envelope.expires_at) == (
        command.id,
        "codes.revoke",
        command.expires_at,
    )
    assert envelope.data.parcel_ids == ["P1"]

    assert commands.tick(T0 + timedelta(seconds=RESEND_S - 1)).sent == 0
    assert commands.tick(T0 + timedelta(seconds=RESEND_S)) == TickResult(1, 1, 0)
    assert publish.ids() == [command.id, command.id]
    assert row(engine, command.id).send_count == 2

    assert commands.record_ack(cab=CAB, ack=Ack(cmd=command.id, ok=True), now=T0)
    acked = row(engine, command.id)
    assert (acked.ack_ok, acked.ack_error) == (True, None) and acked.acked_at is not None
    assert commands.tick(T0 + timedelta(days=1)) == TickResult(0, 0, 0)
    assert len(publish.sent) == 2


def test_an_expired_command_is_marked_and_never_sent_again(engine: Engine) -> None:
    command = enqueue(engine)
    publish = Recorder()
    commands = dispatcher(engine, publish)
    commands.tick(T0)

    assert commands.tick(command.expires_at) == TickResult(sent=0, resent=0, expired=1)
    expired = row(engine, command.id)
    assert (expired.ack_ok, expired.ack_error, expired.acked_at) == (False, EXPIRED_ERROR, None)
    assert commands.tick(command.expires_at + timedelta(days=1)) == TickResult(0, 0, 0)
    assert publish.ids() == [command.id]

    # A late ack still says what the cabinet did with it.
    assert commands.record_ack(cab=CAB, ack=Ack(cmd=command.id, ok=True), now=T0)
    assert row(engine, command.id).ack_ok is True


def test_two_dispatchers_send_each_command_once(engine: Engine) -> None:
    first, second = enqueue(engine, "P1"), enqueue(engine, "P2")
    publish = Recorder()
    a, b = dispatcher(engine, publish), dispatcher(engine, publish)
    assert a.tick(T0).sent + b.tick(T0).sent == 2
    later = T0 + timedelta(seconds=RESEND_S)
    assert a.tick(later).sent + b.tick(later).sent == 2
    assert sorted(publish.ids()) == sorted([first.id, first.id, second.id, second.id])


def test_a_failed_ack_is_recorded_and_a_foreign_or_unknown_ack_changes_nothing(
    engine: Engine,
) -> None:
    command = enqueue(engine)
    commands = dispatcher(engine, Recorder())
    commands.tick(T0)
    assert not commands.record_ack(cab="CAB-2", ack=Ack(cmd=command.id, ok=True), now=T0)
    assert not commands.record_ack(cab=CAB, ack=Ack(cmd="nope", ok=True), now=T0)
    assert row(engine, command.id).acked_at is None

    assert commands.record_ack(cab=CAB, ack=Ack.failure(command.id, "no such parcel"), now=T0)
    failed = row(engine, command.id)
    assert (failed.ack_ok, failed.ack_error) == (False, "no such parcel")
    assert not commands.record_ack(cab=CAB, ack=Ack(cmd=command.id, ok=True), now=T0)


# --- a resent codes.put never overtakes the command that undid it -------------------------------


def _cabinet_with_a_parcel(engine: Engine) -> None:
    """Cabinet CAB-1 online (boot 1) and parcel P000001 deposited at T0: its codes.put queued."""
    with Session(engine) as session:
        register_cabinet(session)
        apply_state(session=session, state=birth(CAB, 1), received_at=T0, seal_key=SEAL_KEY)
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=T0)
        apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)


def _published(publish: Recorder) -> list[tuple[str, list[str]]]:
    """The commands as the cabinet would receive them: (type, parcel ids), in order."""
    out = []
    for _, payload in publish.sent:
        command = decode_command(payload, cab=CAB)
        if command.type == "codes.put":
            out.append((command.type, [e.parcel_id for e in command.data.entries]))
        elif command.type == "codes.revoke":
            out.append((command.type, list(command.data.parcel_ids)))
    return out


def test_an_unacked_put_is_superseded_by_the_revoke_and_not_resent_on_reconnect(
    engine: Engine,
) -> None:
    _cabinet_with_a_parcel(engine)
    publish = Recorder()
    commands = dispatcher(engine, publish)
    assert commands.tick(T0).sent == 1  # the deposit's codes.put: lost, the cabinet never acks

    # The parcel expires while that put is unacked: the revoke retires it in the same commit.
    with Session(engine) as session:
        assert run_due(session=session, now=T0 + timedelta(hours=72), seal_key=SEAL_KEY).expired
    with Session(engine) as session:
        put = session.exec(select(CommandOutbox).where(CommandOutbox.type == "codes.put")).one()
        revoke = session.exec(
            select(CommandOutbox).where(CommandOutbox.type == "codes.revoke")
        ).one()
        assert (put.parcel_id, put.superseded_by) == ("P000001", revoke.id)

    # The cabinet drops and comes back (a new session makes unacked commands due at once), and
    # resend intervals pass: the revoke goes out, the old put never again.
    later = T0 + timedelta(hours=72, minutes=1)
    with Session(engine) as session:
        apply_state(session=session, state=birth(CAB, 2), received_at=later, seal_key=SEAL_KEY)
    for step in range(4):
        commands.tick(later + timedelta(seconds=step * RESEND_S))
    sent = _published(publish)
    assert sent[0] == ("codes.put", ["P000001"])
    assert ("codes.put", ["P000001"]) not in sent[1:]
    assert sent[-1] == ("codes.revoke", ["P000001"])
    # The cabinet acks the old put late (it had it after all): recorded, still not sent again.
    assert commands.record_ack(cab=CAB, ack=Ack(cmd=put.id, ok=True), now=later)
    before = len(publish.sent)
    commands.tick(later + timedelta(hours=1))  # the unacked revoke and retrievals.put again
    assert put.id not in publish.ids()[before:]


def test_a_reissued_code_supersedes_the_unacked_put_of_the_old_one(engine: Engine) -> None:
    _cabinet_with_a_parcel(engine)
    publish = Recorder()
    commands = dispatcher(engine, publish)
    commands.tick(T0)  # the first code's put, unacked
    # The recipient asks for a new code at the screen before the first put was acked.
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[resend_requested(2)], now=T0)
        apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)
    with Session(engine) as session:
        puts = session.exec(
            select(CommandOutbox)
            .where(CommandOutbox.type == "codes.put")
            .order_by(col(CommandOutbox.sent_at).is_(None))
        ).all()
        old, new = puts
        assert (old.superseded_by, new.superseded_by) == (new.id, None)
        new_hash = new.data["entries"][0]["code_hash"]

    for step in range(1, 4):
        commands.tick(T0 + timedelta(seconds=step * RESEND_S))
    hashes = [
        decode_command(payload, cab=CAB).data.entries[0].code_hash for _, payload in publish.sent
    ]
    assert hashes[0] != new_hash  # the old put, sent once before the reissue
    assert set(hashes[1:]) == {new_hash}  # after it, only the new code travels
