"""The worker sends the ERP webhooks from a thread of its own: a receiver that hangs (every send
waits out its timeout) must not hold up the cabinets' events, and the thread ends with the
worker."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.outbox_signal import mark_webhook_row
from cloud.worker import MqttClient, Worker, subscriptions
from cloud.worker.service import WEBHOOKS_FALLBACK_S
from tests.cloud.db.builders import SEAL_KEY
from tests.services import Mosquitto, wait_for

WAIT_S = 10


class HangingWebhooks:
    """A webhook dispatcher whose every tick hangs until released, as a stuck receiver would."""

    def __init__(self) -> None:
        self.ticks = 0
        self.release = threading.Event()

    def tick(self, now: datetime) -> None:
        self.ticks += 1
        self.release.wait(WAIT_S)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_hanging_webhook_send_does_not_hold_up_the_worker(
    engine: Engine, mosquitto: Mosquitto
) -> None:
    hooks = HangingWebhooks()
    worker, housekeeping = _worker(engine, mosquitto, "webhook-thread", hooks)
    worker.start()
    try:
        wait_for(lambda: hooks.ticks == 1, WAIT_S, "the webhook thread to tick")
        # The webhook thread is stuck; the worker's own loop still runs its housekeeping.
        wait_for(lambda: len(housekeeping) >= 2, WAIT_S, "the worker's loop to go on")
        assert hooks.ticks == 1
    finally:
        hooks.release.set()
        worker.stop()
    assert not worker.running
    assert worker._webhooks_thread is not None and not worker._webhooks_thread.is_alive()


class CountingWebhooks:
    """A webhook dispatcher that only counts its ticks."""

    def __init__(self) -> None:
        self.ticks = 0

    def tick(self, now: datetime) -> None:
        self.ticks += 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_webhook_thread_sleeps_until_a_webhook_row_is_committed(
    engine: Engine, mosquitto: Mosquitto
) -> None:
    hooks = CountingWebhooks()
    # The fallback poll never comes in this test.
    worker, housekeeping = _worker(engine, mosquitto, "webhook-idle", hooks, fallback_s=3600)
    worker.start()
    try:
        wait_for(lambda: hooks.ticks == 1, WAIT_S, "the webhook thread's first tick")
        # Ten rounds of the worker's loop, half a second at least: polling every 0.2 s, the
        # thread would have ticked twice more; with nothing queued it does not.
        wait_for(lambda: len(housekeeping) >= 10, WAIT_S, "the worker's loop to go round")
        assert hooks.ticks == 1
        with Session(engine) as session:
            session.exec(select(1))
            mark_webhook_row(session)  # what write_effects does when it adds an outbox row
            session.commit()
        wait_for(lambda: hooks.ticks == 2, WAIT_S, "the commit to wake the webhook thread")
    finally:
        worker.stop()
    assert not worker.running
    assert worker._webhooks_thread is not None and not worker._webhooks_thread.is_alive()


def _worker(
    engine: Engine,
    mosquitto: Mosquitto,
    client_id: str,
    hooks: Any,
    fallback_s: float = WEBHOOKS_FALLBACK_S,
) -> tuple[Worker, list[datetime]]:
    """A worker on the test broker with `hooks` as its webhook dispatcher, its loop going round
    every 0.05 s; and the list its housekeeping ticks append to."""
    client = MqttClient(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=client_id,
        subscriptions=subscriptions(shared=False),
    )
    worker = Worker(
        engine=engine,
        client=client,
        seal_key=SEAL_KEY,
        webhooks=hooks,
        dispatch_every_s=0.05,
        webhooks_fallback_s=fallback_s,
    )
    housekeeping: list[datetime] = []
    real_tick = worker.housekeeper.tick
    worker.housekeeper.tick = lambda now: housekeeping.append(now) or real_tick(now)
    return worker, housekeeping
