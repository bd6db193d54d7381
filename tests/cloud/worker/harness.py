"""A scripted cabinet that speaks the MQTT contract, and helpers to run workers against a broker."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, func, select

from cloud.worker import MqttClient, Worker, subscriptions
from protocol.codec import decode_command, decode_event_ack, encode
from protocol.messages import (
    Ack,
    CommandBase,
    CompartmentInfo,
    CompartmentState,
    EventBase,
    Size,
    State,
)
from protocol.topics import (
    TopicKind,
    ack_topic,
    cabinet_subscriptions,
    event_topic,
    parse_topic,
    state_topic,
)
from tests.cloud.db.builders import CAB, SEAL_KEY
from tests.services import Mosquitto, MqttProbe, wait_for

WAIT_S = 30
COMPARTMENTS = ("A01", "A02", "A03", "A04")  # those tests.cloud.db.builders registers


def make_worker(
    engine: Engine,
    broker: Mosquitto,
    client_id: str,
    *,
    shared: bool = True,
    resend_interval_s: float = 60,
    publish: Callable[[Worker], Callable[[str, bytes], object]] | None = None,
) -> Worker:
    """Return a worker (not started) on `broker`; `publish` wraps its publisher if given."""
    client = MqttClient(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        subscriptions=subscriptions(shared=shared),
    )
    worker = Worker(
        engine=engine, client=client, seal_key=SEAL_KEY, resend_interval_s=resend_interval_s
    )
    if publish is not None:
        wrapped = publish(worker)
        worker.ingest.publish = wrapped
        worker.commands.publish = wrapped
    return worker


def start_workers(*workers: Worker) -> list[Worker]:
    """Start the workers and wait until each has subscribed."""
    for worker in workers:
        worker.start()
    for worker in workers:
        wait_for(worker.client.subscribed.is_set, WAIT_S, f"{worker.client.client_id} to subscribe")
    return list(workers)


class ScriptedCabinet:
    """A cabinet peer: publishes events and states, collects event-acks, acks every command."""

    def __init__(self, broker: Mosquitto, cab: str = CAB, *, ack_commands: bool = True) -> None:
        self.cab = cab
        self.ack_commands = ack_commands
        self.probe = MqttProbe(broker, f"cabinet-{cab}").connected()
        for topic in cabinet_subscriptions(cab):
            self.probe.subscribe(topic)
        self.acked_upto = 0
        self.event_acks: list[int] = []
        self.commands: list[CommandBase] = []

    def publish_events(self, events: Iterable[EventBase]) -> None:
        for event in events:
            self.probe.publish(event_topic(event.cab), encode(event))

    def publish_raw(self, topic: str, payload: bytes) -> None:
        self.probe.publish(topic, payload)

    def publish_state(self, state: State) -> None:
        self.probe.publish(state_topic(state.cab), encode(state), retain=True)

    def birth(self, boot: int, compartments: Iterable[str] = COMPARTMENTS) -> None:
        """Publish the birth of connection `boot` (the retained presence), as on every connect."""
        self.publish_state(birth(self.cab, boot, compartments))

    def reconnect(self, boot: int, events: Iterable[EventBase]) -> None:
        """Do what the cabinet does on reconnect: a birth, then every unacked event, in order."""
        self.pump()
        self.birth(boot)
        self.publish_events(
            e for e in sorted(events, key=lambda e: e.seq) if e.seq > self.acked_upto
        )

    def pump(self) -> None:
        """Take in what arrived: event-acks raise `acked_upto`; commands are recorded and acked."""
        while True:
            try:
                message = self.probe.messages.get_nowait()
            except queue.Empty:
                return
            kind = parse_topic(message.topic).kind
            if kind is TopicKind.EVENT_ACK:
                upto = decode_event_ack(message.payload).upto
                self.event_acks.append(upto)
                self.acked_upto = max(self.acked_upto, upto)
            elif kind is TopicKind.CMD:
                command = decode_command(message.payload, cab=self.cab)
                self.commands.append(command)
                if self.ack_commands:
                    ack = Ack(cmd=command.id, ok=True)
                    self.probe.client.publish(ack_topic(self.cab), encode(ack), qos=1)

    def wait_acked(self, upto: int, timeout_s: float = WAIT_S) -> None:
        def done() -> bool:
            self.pump()
            return self.acked_upto >= upto

        wait_for(done, timeout_s, f"event-ack upto {upto} (have {self.acked_upto})")

    def wait_commands(self, count: int, timeout_s: float = WAIT_S) -> None:
        def done() -> bool:
            self.pump()
            return len({c.id for c in self.commands}) >= count

        wait_for(done, timeout_s, f"{count} commands (have {len(self.commands)})")

    def close(self) -> None:
        self.probe.close()


def birth(cab: str, boot: int, compartments: Iterable[str] = COMPARTMENTS) -> State:
    """Return a birth of cabinet `cab`: online, every compartment free and size M."""
    return State(
        cab=cab,
        online=True,
        boot=boot,
        firmware="1.0.0",
        ts=datetime.now(UTC),
        compartments=[
            CompartmentInfo(id=c, size=Size.M, state=CompartmentState.FREE) for c in compartments
        ],
    )


def will(cab: str, boot: int) -> State:
    """Return the Last Will of connection `boot` of cabinet `cab`."""
    return State(cab=cab, online=False, boot=boot, ts=datetime.now(UTC))


def count(engine: Engine, model: type[SQLModel], *where: object) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()


def distinct(engine: Engine, column: object, *where: object) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count(col(column).distinct())).where(*where)).one()


def now() -> datetime:
    return datetime.now(UTC)
