"""The worker's MQTT adapter: a paho 2.x client that queues what arrives for the worker's thread.

paho calls back on its own network thread; `on_message` only puts the message, with the time it
arrived, on a `queue.Queue` (command acks on a queue of their own, which the worker empties
first), and the worker's thread does every database write. Subscriptions are
made in `on_connect`, so a reconnect (paho retries on its own) subscribes again.

Durability does not come from the broker's acknowledgement. paho PUBACKs a QoS 1 message as soon
as `on_message` returns (its `manual_ack` option could delay that, but it would not help: this
client uses a clean session, and Mosquitto does not hand a vanished shared subscriber's in-flight
messages to another member of the group). What makes an event safe is the contract: the cabinet
keeps it until an `event-ack` covers it, and the worker publishes that only after the event was
committed to the database. A worker that dies with events in its queue simply never acks them,
and the cabinet sends them again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from cloud.worker.mqtt_socket import BufferedClient, BufferedSocket
from protocol.topics import QOS, TopicKind

ACK_SUFFIX = f"/{TopicKind.ACK}"  # lockers/v1/{cab}/ack (not event-ack: the cloud sends those)

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
KEEPALIVE_S = 30
RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30


class BrokerUrlError(ValueError):
    """A broker URL that is not `mqtt://host[:port]`."""


def parse_broker_url(url: str) -> tuple[str, int]:
    """Return (host, port) of `mqtt://host[:port]` (port 1883 if left out)."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise BrokerUrlError(f"broker URL {url!r} must start with mqtt://")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as err:
        raise BrokerUrlError(f"broker URL {url!r}: {err}") from None
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r} names no host")
    if parts.path not in ("", "/"):
        raise BrokerUrlError(f"broker URL {url!r} has a path; use mqtt://host:port")
    return parts.hostname, port


def no_delay(_client: mqtt.Client, _userdata: object, sock: object) -> None:
    """Send small packets at once: paho leaves Nagle's algorithm on, and an `event-ack` written
    right behind a `codes.put` then waits for the broker's delayed ACK, 40 ms on Linux (the p50
    of `locker bench cloud` at 25 events/s was 42 ms)."""
    if isinstance(sock, BufferedSocket):
        sock = sock.raw
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(frozen=True, slots=True)
class Received:
    """A message as it arrived: its topic, its bytes and when (wall clock, UTC)."""

    topic: str
    payload: bytes
    received_at: datetime


class MqttClient:
    """One paho client: subscribes on every connect, queues messages, publishes QoS 1."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        subscriptions: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        inbox: queue.Queue[Received] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.subscriptions = tuple(subscriptions)
        self.inbox: queue.Queue[Received] = inbox if inbox is not None else queue.Queue()
        # Command acks skip the line: behind a backlog of events they would wait longer than
        # the resend interval, and every command would go out again (`locker bench cloud`).
        self.acks: queue.Queue[Received] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.sessions = 0  # connections that got their subscriptions: a reconnect adds one
        self._pending_subscribe_mid: int | None = None
        self._client = BufferedClient(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls or ca_file:
            # Verifies the broker's certificate and host name (paho's defaults), against
            # `ca_file` or the system's CA store.
            self._client.tls_set(ca_certs=ca_file)
        self._client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        # No limit on QoS 1 messages in flight (0). paho's default, 20, holds a burst of
        # codes.put and event-acks back until PUBACKs come, and with any limit paho scans every
        # unacked message at each PUBACK: `locker bench cloud` measured that scan at a tenth of
        # the worker's CPU. The broker bounds what it queues for us; we bound nothing it needs.
        self._client.max_inflight_messages_set(0)
        self._client.on_socket_open = no_delay
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background (paho's thread), retrying until the broker answers."""
        self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop paho's thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def burst(self) -> AbstractContextManager[None]:
        """A block whose publishes (from this thread) go out together as it ends: paho's network
        thread is woken once for them, not once each."""
        return self._client.burst()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Publish with QoS 1; return False if paho refused it (it is then not sent)."""
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        # NO_CONN still queues a QoS 1 message for the next connection; anything else is lost.
        ok = info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)
        if not ok:
            log.warning("publish to %s refused by paho: %s", topic, mqtt.error_string(info.rc))
        return ok

    # --- paho's thread ----------------------------------------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason: mqtt.ReasonCode, _props) -> None:
        if reason.is_failure:
            log.error("broker %s:%d refused %s: %s", self.host, self.port, self.client_id, reason)
            return
        log.info("connected to %s:%d as %s", self.host, self.port, self.client_id)
        self.connected.set()
        if self.subscriptions:
            _rc, mid = client.subscribe([(topic, QOS) for topic in self.subscriptions])
            self._pending_subscribe_mid = mid
        else:
            self.sessions += 1
            self.subscribed.set()

    def _on_subscribe(self, _client, _userdata, mid: int, reasons, _props) -> None:
        refused = [
            topic
            for topic, reason in zip(self.subscriptions, reasons, strict=False)
            if reason.is_failure
        ]
        if refused:
            log.error("broker refused the subscriptions %s", ", ".join(refused))
            return
        if mid == self._pending_subscribe_mid:
            log.info("subscribed to %s", ", ".join(self.subscriptions))
            self.sessions += 1
            self.subscribed.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason: mqtt.ReasonCode, _props) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason.is_failure:
            log.warning("lost the broker %s:%d (%s); reconnecting", self.host, self.port, reason)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        topic = message.topic  # paho decodes it from bytes at each read
        received = Received(topic, bytes(message.payload), datetime.now(UTC))
        (self.acks if topic.endswith(ACK_SUFFIX) else self.inbox).put(received)
