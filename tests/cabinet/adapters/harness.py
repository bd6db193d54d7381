"""A link on the test's own event loop, and a scripted cloud peer, for the link tests."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from cabinet.core import effects as fx
from cabinet.journal import Journal
from cabinet.mqtt_link import CommandHandler, LinkSettings, MqttLink
from protocol.messages import CommandBase, CompartmentInfo, CompartmentState, EventBase, Size
from protocol.topics import ACK_SUBSCRIPTION, EVENT_SUBSCRIPTION, STATE_SUBSCRIPTION
from tests.cabinet.aio import eventually
from tests.services import Mosquitto, wait_for

CAB = "cab1"


class LinkRunner:
    """An `MqttLink` and its journal on the test's loop; `start_link` builds and starts one."""

    def __init__(
        self,
        broker: Mosquitto,
        journal_path: Path,
        *,
        cab: str = CAB,
        username: str | None = None,
        password: str | None = None,
        on_command: CommandHandler | None = None,
        port: int | None = None,
        clock: Callable[[], datetime] | None = None,
        **settings: Any,
    ) -> None:
        self.executed: list[CommandBase] = []
        self._closed = False
        self.journal = Journal.open(journal_path, cab=cab)
        link_settings = LinkSettings(
            cab=cab,
            host=broker.host,
            port=port or broker.port,
            username=username,
            password=password,
            keepalive_s=5,
            connect_timeout_s=5,
            # Small, so reconnects after a broker restart do not slow the suite down.
            reconnect_min_delay_s=0.05,
            reconnect_max_delay_s=0.5,
            firmware="test-1",
            **settings,
        )
        self.link = MqttLink(
            link_settings,
            self.journal,
            on_command=on_command or self._record,
            compartments=lambda: [
                CompartmentInfo(id="A01", size=Size.M, state=CompartmentState.FREE)
            ],
            **({"clock": clock} if clock is not None else {}),
        )

    def _record(self, command: CommandBase) -> None:
        self.executed.append(command)

    def emit(self, count: int, compartment: str = "A01") -> list[EventBase]:
        """Journal `count` events and hand them to the link, as the daemon does after a step."""
        events = [fx.door_forced(compartment=compartment) for _ in range(count)]
        envelopes = self.journal.commit_step(None, events)
        self.link.publish_events(envelopes)
        return envelopes

    async def wait_online(self, online: bool = True, timeout_s: float = 10) -> None:
        """Wait for the link to be online (and subscribed: a command sent next must arrive)."""
        await eventually(
            lambda: (
                self.link.online.is_set() == online
                and (not online or self.link.subscribed.is_set())
            ),
            timeout_s,
            f"link online={online}",
        )

    async def close(self) -> None:
        """Stop the link (publishing `online: false`) and the journal; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.link.stop()
        self.journal.close()


async def start_link(broker: Mosquitto, journal_path: Path, **kwargs: Any) -> LinkRunner:
    """A `LinkRunner` (same arguments), started on the running loop."""
    runner = LinkRunner(broker, journal_path, **kwargs)
    await runner.link.start()
    return runner


class CloudPeer:
    """A scripted cloud: a persistent paho session that collects events, states and acks."""

    def __init__(
        self, broker: Mosquitto, *, username: str | None = None, password: str | None = None
    ):
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id="cloud-peer",
            clean_session=False,  # the broker queues for us across its own restarts
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.events: list[dict[str, Any]] = []
        self.redelivered: list[dict[str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self._connected = threading.Event()
        self._subscribed: queue.Queue[object] = queue.Queue()
        self.client.on_connect = lambda *_a: self._connected.set()
        self.client.on_subscribe = lambda *_a: self._subscribed.put(True)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        wait_for(self._connected.is_set, 5, "the cloud peer to connect")
        self.client.subscribe(
            [(EVENT_SUBSCRIPTION, 1), (STATE_SUBSCRIPTION, 1), (ACK_SUBSCRIPTION, 1)]
        )
        self._subscribed.get(timeout=5)

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        kind = message.topic.rsplit("/", 1)[-1]
        if kind == "event" and message.dup:
            # The broker re-sending what it had in flight to us when it stopped: MQTT's own
            # at-least-once, not the link's doing. Kept apart so tests see what the link sent.
            self.redelivered.append(payload)
            return
        {"event": self.events, "state": self.states, "ack": self.acks}[kind].append(payload)

    def seqs(self) -> list[int]:
        return [event["seq"] for event in list(self.events)]

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5)

    def event_ack(self, upto: int, cab: str = CAB) -> None:
        self.publish(f"lockers/v1/{cab}/event-ack", {"v": 1, "upto": upto})

    def command(
        self, command_id: str, *, cab: str = CAB, expires_in_s: float = 300, **extra: Any
    ) -> None:
        now = datetime.now(UTC)
        sent_at = now - timedelta(seconds=600) if expires_in_s <= 0 else now
        body = {
            "v": 1,
            "id": command_id,
            "cab": cab,
            "ts": _ts(sent_at),
            "expires_at": _ts(now + timedelta(seconds=expires_in_s)),
            "type": "compartment.service",
            "data": {"compartment": "A01", "in_service": False},
        }
        body.update(extra)
        self.publish(f"lockers/v1/{cab}/cmd", body)

    def acks_for(self, command_id: str) -> list[dict[str, Any]]:
        return [ack for ack in list(self.acks) if ack["cmd"] == command_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _ts(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
