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


class CountingWakeups:
    """paho's wake-up socket, counting the bytes written to wake its network thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_a_burst_of_publishes_wakes_paho_once_and_received_messages_never(
    mosquitto: Mosquitto,
) -> None:
    """paho writes a wake-up byte per packet queued; the worker's publishes after one commit
    wake its network thread once, and the PUBACKs of what it receives not at all."""
    seen = MqttClient(
        host=mosquitto.host, port=mosquitto.port, client_id="seen", subscriptions=["burst/#"]
    )
    worker = MqttClient(
        host=mosquitto.host, port=mosquitto.port, client_id="burster", subscriptions=["in/#"]
    )
    seen.start()
    worker.start()
    try:
        wait_for(lambda: seen.sessions == worker.sessions == 1, WAIT_S, "both to subscribe")
        paho = worker._client
        wakeups = CountingWakeups(paho._sockpairW)
        paho._sockpairW = wakeups
        with worker.burst():
            for n in range(50):
                assert worker.publish(f"burst/{n}", str(n).encode())
            assert wakeups.sends == 0  # held: nothing woke paho's thread yet
        assert wakeups.sends == 1
        wait_for(lambda: seen.inbox.qsize() == 50, WAIT_S, "the burst to arrive")
        got = [seen.inbox.get_nowait().payload for _ in range(50)]
        assert got == [str(n).encode() for n in range(50)]  # all of them, in order

        for n in range(20):  # outside a burst: one wake-up each, as paho does
            worker.publish(f"burst/single/{n}", b"x")
        assert wakeups.sends == 21

        for n in range(30):  # received: paho's own thread queues their PUBACKs
            seen.publish(f"in/{n}", b"y")
        wait_for(lambda: worker.inbox.qsize() == 30, WAIT_S, "the messages to arrive")
        wait_for(lambda: not paho._out_packet, WAIT_S, "the PUBACKs to go out")
        assert wakeups.sends == 21
    finally:
        worker.stop()
        seen.stop()
