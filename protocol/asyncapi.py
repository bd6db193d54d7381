"""Describe the MQTT contract as an AsyncAPI 3.0 document, from the models the schemas come from.

AsyncAPI is how MQTT contracts are usually published: tools render it, lint it and generate
clients from it. The document is written from the cloud's side (it receives `event`, `state` and
`ack`, and sends `cmd` and `event-ack`); each message's payload refers to its JSON Schema file
(`protocol.schema`), so the two never disagree. The committed copy is docs/asyncapi.json
(`locker protocol asyncapi docs/asyncapi.json` refreshes it; tests/test_docs.py fails when it is
stale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.messages import PROTOCOL_VERSION
from protocol.schema import schema_docs
from protocol.topics import CABINET_ID_PATTERN, QOS, TopicKind, topic_template

ASYNCAPI_VERSION = "3.0.0"
MQTT_BINDING_VERSION = "0.2.0"

_CHANNELS: dict[TopicKind, tuple[str, str]] = {
    TopicKind.EVENT: (
        "Events",
        "A cabinet's events, each with the next `seq`. Kept in the cabinet's journal and resent "
        "until an event-ack covers them.",
    ),
    TopicKind.STATE: (
        "Presence",
        "Retained: the birth (`online: true`) after each connect, and the Last Will "
        "(`online: false`) with the same `boot`.",
    ),
    TopicKind.CMD: (
        "Commands",
        "Commands to one cabinet. Each id runs at most once, is refused after `expires_at`, and "
        "is always acked.",
    ),
    TopicKind.ACK: ("Command acks", "The cabinet's answer to each command."),
    TopicKind.EVENT_ACK: (
        "Event acks",
        "Every event with `seq` up to `upto` is stored in the cloud; the cabinet may forget it.",
    ),
}


def _operation_id(kind: TopicKind) -> str:
    action = "receive" if kind.publisher == "cabinet" else "send"
    return action + "".join(part.capitalize() for part in str(kind).split("-"))


def asyncapi_document(schemas_ref: str = "schemas/") -> dict[str, Any]:
    """Return the AsyncAPI document; `schemas_ref` is where the schema files are, from it."""
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    all_docs = schema_docs()
    for kind in TopicKind:
        # The `event.json` and `cmd.json` unions are left out: each type is its own message.
        typed = kind in (TopicKind.EVENT, TopicKind.CMD)
        docs = [d for d in all_docs if d.kind is kind and (d.type is not None or not typed)]
        in_channel = {}
        for doc in docs:
            name = doc.file.removesuffix(".json")
            description = doc.schema.get("description", "")
            messages[name] = {
                "name": doc.type or str(kind),
                "title": doc.schema.get("title", name),
                "summary": description.split("\n", 1)[0],
                "contentType": "application/json",
                "payload": {"$ref": f"{schemas_ref}{doc.file}"},
            }
            in_channel[name] = {"$ref": f"#/components/messages/{name}"}
        title, description = _CHANNELS[kind]
        channels[str(kind)] = {
            "address": topic_template(kind),
            "title": title,
            "description": f"Published by the {kind.publisher}. {description}",
            "parameters": {"cab": {"$ref": "#/components/parameters/cab"}},
            "messages": in_channel,
        }
        operations[_operation_id(kind)] = {
            "action": "receive" if kind.publisher == "cabinet" else "send",
            "channel": {"$ref": f"#/channels/{kind}"},
            "messages": [{"$ref": f"#/channels/{kind}/messages/{name}"} for name in in_channel],
            "bindings": {
                "mqtt": {
                    "qos": QOS,
                    "retain": kind.retained,
                    "bindingVersion": MQTT_BINDING_VERSION,
                }
            },
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Parcel lockers: cabinet ↔ cloud",
            "version": str(PROTOCOL_VERSION),
            "description": (
                "The MQTT contract between parcel-locker cabinets and their cloud, seen from the "
                "cloud. Every payload is a JSON object with `v: 1`; the rules (seq, event-ack, "
                "resend, boot) are in docs/mqtt.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "{host}:{port}",
                "protocol": "mqtt",
                "protocolVersion": "3.1.1",
                "description": "Any MQTT 3.1.1 broker: Mosquitto, EMQX, the demo's embedded one.",
                "variables": {"host": {"default": "localhost"}, "port": {"default": "1883"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                "cab": {"description": f"The cabinet id, matching `{CABINET_ID_PATTERN}`."}
            },
            "messages": messages,
        },
    }


def write_asyncapi(path: Path, schemas_ref: str = "schemas/") -> Path:
    """Write the AsyncAPI document as JSON to `path`; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asyncapi_document(schemas_ref), indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return path
