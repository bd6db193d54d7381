"""Exactly-once ingestion on a real Mosquitto, SQLite and PostgreSQL: two workers, duplicates,
reorder, a worker that dies before its event-ack, and one killed with SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.db.models import Cabinet, CommandOutbox, InboxEvent, Parcel, ParcelEvent
from cloud.worker import Worker
from locker.harness.processes import locker_cli
from tests.cloud.db.builders import CAB, SEAL_KEY, deposited
from tests.cloud.worker.harness import (
    WAIT_S,
    ScriptedCabinet,
    count,
    distinct,
    make_worker,
    start_workers,
)
from tests.services import Mosquitto, wait_for

N = 50


def schedule(n: int, *, seed: int = 4) -> list[int]:
    """Return seqs 1..n, shuffled within windows of 5, with every 7th sent twice and 1..10 again."""
    rng = random.Random(seed)
    order: list[int] = []
    for start in range(1, n + 1, 5):
        window = list(range(start, min(start + 5, n + 1)))
        rng.shuffle(window)
        order += window
    order += [seq for seq in range(7, n + 1, 7)]
    order += list(range(1, 11))
    return order


def assert_exactly_once(engine: Engine, n: int) -> None:
    """Every seq stored once and applied once: one parcel, one timeline row, one codes.put each."""
    with Session(engine) as session:
        events = session.exec(select(InboxEvent).order_by(col(InboxEvent.seq))).all()
        assert [e.seq for e in events] == list(range(1, n + 1))
        assert all(e.applied and e.anomaly is None for e in events)
        assert session.get(Cabinet, CAB).applied_upto == n
    assert count(engine, Parcel) == n
    assert distinct(engine, Parcel.parcel_id) == n
    assert count(engine, ParcelEvent) == n
    assert distinct(engine, ParcelEvent.seq) == n
    assert count(engine, CommandOutbox, CommandOutbox.type == "codes.put") == n


def wait_commands_acked(engine: Engine, cabinet: ScriptedCabinet, n: int) -> None:
    """Wait for `n` recorded acks, the cabinet answering resends meanwhile.

    An ack the cabinet sent while no worker was subscribed is gone; the command comes again (on
    the birth, `resend_now`) as a copy of one the cabinet has already counted, so the cabinet
    must go on taking in messages, as the real daemon does, or that copy is never acked.
    """

    def acked() -> bool:
        cabinet.pump()
        return count(engine, CommandOutbox, col(CommandOutbox.acked_at).is_not(None)) == n

    wait_for(acked, WAIT_S, f"{n} acks recorded")


@pytest.fixture
def cabinet(mosquitto: Mosquitto):
    cabinet = ScriptedCabinet(mosquitto)
    yield cabinet
    cabinet.close()


def test_two_workers_share_the_events_and_apply_each_once(
    engine: Engine, mosquitto: Mosquitto, cabinet: ScriptedCabinet
) -> None:
    workers = start_workers(
        make_worker(engine, mosquitto, "w1"), make_worker(engine, mosquitto, "w2")
    )
    try:
        order = schedule(N)
        assert len(order) == N + N // 7 + 10  # 67 publishes: 17 duplicates
        cabinet.publish_events(deposited(seq) for seq in order)
        cabinet.wait_acked(N)
        cabinet.wait_commands(N)
        wait_commands_acked(engine, cabinet, N)
    finally:
        for worker in workers:
            worker.stop()

    assert_exactly_once(engine, N)
    # The shared subscription split the load, and each delivery was seen by one worker only.
    received = [worker.ingest.stats.received for worker in workers]
    assert all(received), received
    assert sum(received) == len(order)
    # One codes.put per deposit, each sent once (claimed by one worker), acked and recorded.
    assert len(cabinet.commands) == N
    assert {c.type for c in cabinet.commands} == {"codes.put"}
    parcels = {c.data.entries[0].parcel_id for c in cabinet.commands}
    assert parcels == {f"P{seq:06d}" for seq in range(1, N + 1)}
    with Session(engine) as session:
        rows = session.exec(select(CommandOutbox)).all()
        assert all(r.send_count == 1 and r.ack_ok is True for r in rows)


def _die_before_event_ack(worker: Worker):
    """A publisher that dies at the worker's first event-ack: that and all after are lost."""
    publish = worker.ingest.publish

    def dying(topic: str, payload: bytes) -> object:
        if topic.endswith("/event-ack"):
            worker.stopping.set()  # its queue, with whatever else the broker gave it, is lost
        if worker.stopping.is_set():
            return False
        return publish(topic, payload)

    return dying


def test_a_worker_dying_before_its_event_ack_loses_nothing(
    engine: Engine, mosquitto: Mosquitto, cabinet: ScriptedCabinet
) -> None:
    doomed = make_worker(engine, mosquitto, "doomed", publish=_die_before_event_ack)
    start_workers(doomed)
    cabinet.birth(1)
    cabinet.publish_events(deposited(seq) for seq in schedule(N))
    wait_for(lambda: not doomed.running, WAIT_S, "the doomed worker to stop")
    stored_before = count(engine, InboxEvent)
    assert stored_before > 0  # it committed a batch, then died before acking it
    cabinet.pump()
    assert cabinet.acked_upto == 0

    # Another worker is up; the cabinet reconnects and re-sends every unacked event, in order.
    survivor = make_worker(engine, mosquitto, "survivor")
    start_workers(survivor)
    try:
        cabinet.reconnect(2, [deposited(seq) for seq in range(1, N + 1)])
        cabinet.wait_acked(N)
        cabinet.wait_commands(N)
        wait_commands_acked(engine, cabinet, N)
    finally:
        survivor.stop()
    assert_exactly_once(engine, N)


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_mid_stream_loses_nothing(
    engine: Engine, db_url: str, mosquitto: Mosquitto, cabinet: ScriptedCabinet, tmp_path: Path
) -> None:
    env = {**os.environ, "LOCKER_CLOUD_SECRET_KEY": SEAL_KEY.decode(), "PYTHONUNBUFFERED": "1"}
    command = locker_cli("cloud", "worker", "--database-url", db_url, "--client-id", "victim")
    command += ["--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}"]
    log_path = tmp_path / "victim.log"
    with log_path.open("wb") as log:
        victim = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: "subscribed to" in log_path.read_text() or victim.poll() is not None,
            WAIT_S,
            "the victim worker to subscribe",
        )
        assert victim.poll() is None, log_path.read_text()
        cabinet.birth(1)
        cabinet.publish_events(deposited(seq) for seq in range(1, N + 1))
        wait_for(lambda: count(engine, InboxEvent) >= N // 5, WAIT_S, "some events stored")
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    stored_at_kill = count(engine, InboxEvent)
    cabinet.pump()
    acked_at_kill = cabinet.acked_upto

    survivor = make_worker(engine, mosquitto, "survivor")
    start_workers(survivor)
    try:
        cabinet.reconnect(2, [deposited(seq) for seq in range(1, N + 1)])
        cabinet.wait_acked(N)
        cabinet.wait_commands(N)
        wait_commands_acked(engine, cabinet, N)
    finally:
        survivor.stop()
    assert_exactly_once(engine, N)
    print(f"killed with {stored_at_kill} stored and {acked_at_kill} acked of {N}")
