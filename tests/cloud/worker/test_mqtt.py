"""The MQTT adapter: broker URLs, plain subscriptions, and a broker restart in the middle."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import Engine

from cloud.db.models import InboxEvent
from cloud.worker import parse_broker_url
from cloud.worker.mqtt import BrokerUrlError, MqttClient
from tests.cloud.db.builders import deposited
from tests.cloud.worker.harness import (
    WAIT_S,
    ScriptedCabinet,
    count,
    make_worker,
    start_workers,
)
from tests.services import Mosquitto, wait_for


def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://broker.example:8883") == ("broker.example", 8883)
    assert parse_broker_url("mqtt://10.0.0.5") == ("10.0.0.5", 1883)
    for bad, reason in [
        ("tcp://h:1", "must start with mqtt://"),
        ("mqtt://:1883", "names no host"),
        ("mqtt://h:99999", "out of range"),
        ("mqtt://h:1/x", "has a path"),
    ]:
        with pytest.raises(BrokerUrlError, match=reason):
            parse_broker_url(bad)


def test_one_plain_worker_survives_a_broker_restart(engine: Engine, mosquitto: Mosquitto) -> None:
    worker = make_worker(engine, mosquitto, "solo", shared=False)
    start_workers(worker)
    cabinet = ScriptedCabinet(mosquitto)
    try:
        cabinet.publish_events(deposited(seq) for seq in range(1, 6))
        cabinet.wait_acked(5)
        cabinet.close()
        mosquitto.restart()
        # paho reconnects on its own, and the worker subscribes again on the new connection.
        wait_for(lambda: worker.client.sessions == 2, WAIT_S, "the worker to subscribe again")
        cabinet = ScriptedCabinet(mosquitto)
        cabinet.publish_events(deposited(seq) for seq in range(1, 11))
        cabinet.wait_acked(10)
    finally:
        worker.stop()
        cabinet.close()
    assert count(engine, InboxEvent) == 10


def test_the_worker_sends_small_packets_at_once(mosquitto: Mosquitto) -> None:
    """TCP_NODELAY on every connection, a reconnect's too: with Nagle's algorithm an event-ack
    written right behind a codes.put waits for the broker's delayed ACK (40 ms on Linux)."""
    client = MqttClient(
        host=mosquitto.host, port=mosquitto.port, client_id="nodelay", subscriptions=["x/#"]
    )
    client.start()
    try:
        for sessions in (1, 2):
            wait_for(lambda n=sessions: client.sessions == n, WAIT_S, "the client to subscribe")
            sock = client._client.socket()
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            if sessions == 1:
                mosquitto.restart()
    finally:
        client.stop()
