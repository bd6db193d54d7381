"""Export the MQTT contract as JSON Schema files, one per message, for implementers in any language.

The schemas describe the wire (what `protocol.codec.encode` writes and `decode` accepts), generated
from the pydantic models so they cannot drift. A few rules live only in the decoder: a command's
`expires_at` is after its `ts`, ids in one list are unique, and the payload's `cab` matches the
topic's. One goes the other way: the ack schema tells senders to leave `error` out beside
`ok: true`, while the decoder ignores one it finds there.

The committed copy lives in docs/schemas/ (`locker protocol schema docs/schemas` refreshes it;
tests/test_docs.py fails when it is stale).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from protocol.messages import (
    COMMAND_MODELS,
    EVENT_MODELS,
    PROTOCOL_VERSION,
    Ack,
    Command,
    Event,
    EventAck,
    State,
)
from protocol.topics import QOS, TopicKind, topic_template

DIALECT = "https://json-schema.org/draft/2020-12/schema"
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class SchemaDoc:
    """One schema file: its name, the topic kind it travels on, its `type` if it has one."""

    file: str
    kind: TopicKind
    type: str | None
    schema: dict[str, Any]


def _schema(model: Any, title: str) -> dict[str, Any]:
    schema = TypeAdapter(model).json_schema(mode="validation")
    schema.setdefault("title", title)
    return {"$schema": DIALECT, **schema}


def schema_docs() -> list[SchemaDoc]:
    """Return every message schema of the contract, unions first, then one per type."""
    docs = [SchemaDoc("event.json", TopicKind.EVENT, None, _schema(Event, "Event"))]
    for model in EVENT_MODELS:
        name = model.model_fields["type"].default
        docs.append(SchemaDoc(f"event.{name}.json", TopicKind.EVENT, name, _schema(model, name)))
    docs.append(SchemaDoc("cmd.json", TopicKind.CMD, None, _schema(Command, "Command")))
    for model in COMMAND_MODELS:
        name = model.model_fields["type"].default
        docs.append(SchemaDoc(f"cmd.{name}.json", TopicKind.CMD, name, _schema(model, name)))
    docs.append(SchemaDoc("state.json", TopicKind.STATE, None, _schema(State, "State")))
    docs.append(SchemaDoc("ack.json", TopicKind.ACK, None, _schema(Ack, "Ack")))
    docs.append(
        SchemaDoc("event-ack.json", TopicKind.EVENT_ACK, None, _schema(EventAck, "EventAck"))
    )
    return docs


def index(docs: list[SchemaDoc]) -> dict[str, Any]:
    """Return the index listing each schema file with the topic it travels on."""
    return {
        "protocol_version": PROTOCOL_VERSION,
        "schemas": [
            {
                "file": doc.file,
                "type": doc.type,
                "topic": topic_template(doc.kind),
                "publisher": doc.kind.publisher,
                "qos": QOS,
                "retain": doc.kind.retained,
            }
            for doc in docs
        ],
    }


def write_schemas(out_dir: Path) -> list[Path]:
    """Write one JSON Schema file per message, and `index.json`, into `out_dir`; return paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = schema_docs()
    written = []
    for name, content in [*((doc.file, doc.schema) for doc in docs), (INDEX_FILE, index(docs))]:
        path = out_dir / name
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
