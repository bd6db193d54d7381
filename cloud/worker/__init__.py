"""The cloud worker (`locker cloud worker`): event ingestion, presence, command dispatch.

- `mqtt`         the paho 2.x adapter: queues deliveries for the worker's thread, publishes QoS 1
- `ingest_loop`  events → store → apply → `event-ack` (after the commit)
- `presence`     the retained `state` topic: online, boot, last seen, birth inventory
- `commands`     the command outbox: publish, resend until acked or expired, record acks
- `service`      `Worker`: one thread that routes every delivery to the above
"""

from cloud.worker.commands import CommandDispatcher, TickResult
from cloud.worker.ingest_loop import IngestLoop
from cloud.worker.mqtt import MqttClient, Received, parse_broker_url
from cloud.worker.presence import PresenceTracker, apply_state
from cloud.worker.service import Worker, subscriptions

__all__ = [
    "CommandDispatcher",
    "IngestLoop",
    "MqttClient",
    "PresenceTracker",
    "Received",
    "TickResult",
    "Worker",
    "apply_state",
    "parse_broker_url",
    "subscriptions",
]
