"""The command outbox: sent once, resent after the interval until acked, expired never again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db import repo
from cloud.db.models import CommandOutbox
from cloud.worker import CommandDispatcher, TickResult
from cloud.worker.commands import EXPIRED_ERROR
from protocol.codec import decode_command
from protocol.messages import Ack, ParcelIdsData
from protocol.topics import cmd_topic
from tests.cloud.db.builders import CAB, T0

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
