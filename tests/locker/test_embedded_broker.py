"""The demo's embedded broker (amqtt) does what the cabinet <-> cloud contract needs of MQTT 3.1.1:
QoS 1 delivery, retained state for late subscribers, and the Last Will of a cabinet that vanished;
and the cloud worker's plain (unshared) subscriptions work on it."""

from __future__ import annotations

import queue
import socket

import paho.mqtt.client as mqtt
import pytest

from cloud.worker import MqttClient, subscriptions
from locker.demo.broker import EmbeddedBroker
from protocol.topics import event_topic, state_topic
from tests.services import wait_for


@pytest.fixture
def broker():
    with EmbeddedBroker() as running:
        yield running


class Client:
    def __init__(self, broker: EmbeddedBroker, client_id: str, *, will: bytes | None = None):
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )
        if will is not None:
            self.client.will_set(state_topic("cab1"), will, qos=1, retain=True)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.subacks: queue.Queue[int] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, mid, _reasons, _p: self.subacks.put(mid)
        self.client.connect(broker.host, broker.port, keepalive=2)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        rc, mid = self.client.subscribe(topic, qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        assert self.subacks.get(timeout=5) == mid

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published()  # the broker's PUBACK came back

    def next(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_retained_state_qos1_events_and_the_last_will(broker: EmbeddedBroker) -> None:
    cabinet = Client(broker, "cabinet-cab1", will=b'{"online": false}')
    cabinet.publish(state_topic("cab1"), b'{"online": true}', retain=True)
    cloud = Client(broker, "cloud")
    try:
        cloud.subscribe("lockers/v1/+/state")
        birth = cloud.next()  # subscribed after the birth: the retained copy comes
        assert (birth.payload, birth.retain, birth.qos) == (b'{"online": true}', True, 1)
        cloud.subscribe("lockers/v1/+/event")
        cabinet.publish(event_topic("cab1"), b"event 1")
        assert cloud.next().payload == b"event 1"

        # The cabinet's connection drops without a DISCONNECT: the broker publishes its Will.
        sock = cabinet.client.socket()
        assert isinstance(sock, socket.socket)
        cabinet.client.loop_stop()
        sock.close()
        assert cloud.next().payload == b'{"online": false}'
        late = Client(broker, "late")
        try:
            late.subscribe("lockers/v1/+/state")
            assert late.next().payload == b'{"online": false}'  # the Will is retained too
        finally:
            late.close()
    finally:
        cloud.close()


def test_the_worker_subscribes_without_shared_subscriptions(broker: EmbeddedBroker) -> None:
    worker = MqttClient(
        host=broker.host,
        port=broker.port,
        client_id="worker-1",
        subscriptions=subscriptions(shared=False),
    )
    worker.start()
    cabinet = Client(broker, "cabinet-cab1")
    try:
        wait_for(worker.subscribed.is_set, 10, "the worker to subscribe")
        cabinet.publish(event_topic("cab1"), b"event 1")
        received = worker.inbox.get(timeout=5)
        assert (received.topic, received.payload) == (event_topic("cab1"), b"event 1")
    finally:
        cabinet.close()
        worker.stop()


def test_a_taken_port_is_a_clear_error() -> None:
    with EmbeddedBroker() as first:
        second = EmbeddedBroker(port=first.port)
        with pytest.raises(Exception, match=f"did not start on mqtt://127.0.0.1:{first.port}"):
            second.start()
