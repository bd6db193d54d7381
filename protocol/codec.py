"""Turn contract messages into MQTT payloads and back, rejecting anything off-contract.

`decode` raises only `MessageError` (bad payload) and `TopicError` (bad topic), whatever the bytes,
so an MQTT adapter can log the reason and go on with the next message.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from protocol.errors import MessageError
from protocol.messages import (
    COMMAND_TYPES,
    EVENT_TYPES,
    ID_PATTERN,
    PROTOCOL_VERSION,
    Ack,
    CommandBase,
    EventAck,
    EventBase,
    Message,
    State,
)
from protocol.topics import Topic, TopicKind, parse_topic

# Room for a codes.put of ~1000 entries (about 200 bytes each), yet little enough that a flood of
# hostile payloads cannot exhaust a cabinet's memory. Senders split bigger batches.
MAX_PAYLOAD_BYTES = 256 * 1024
_SHOWN_CHARS = 64
# No contract nests past 5 levels; a few thousand would crash a recursive parser or validator.
MAX_JSON_DEPTH = 32
_ID = re.compile(ID_PATTERN)

M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=EventBase | CommandBase | State)


def encode(message: Message) -> bytes:
    """Return `message` as compact UTF-8 JSON, leaving out the fields the contract omits."""
    payload = message.model_dump_json(exclude_none=True).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(
            None,
            f"message is {len(payload)} bytes encoded, over the {MAX_PAYLOAD_BYTES}-byte limit: "
            "split it",
            message_id=getattr(message, "id", None),
        )
    return payload


def decode(topic: str | Topic, payload: bytes) -> Message:
    """Decode `payload` received on `topic` into the message model the topic kind carries."""
    where = topic if isinstance(topic, Topic) else parse_topic(topic)
    match where.kind:
        case TopicKind.EVENT:
            return decode_event(payload, cab=where.cab)
        case TopicKind.CMD:
            return decode_command(payload, cab=where.cab)
        case TopicKind.STATE:
            return decode_state(payload, cab=where.cab)
        case TopicKind.ACK:
            return decode_ack(payload)
        case TopicKind.EVENT_ACK:
            return decode_event_ack(payload)


def decode_event(payload: bytes, *, cab: str | None = None) -> EventBase:
    """Decode an event envelope; with `cab`, also require the payload's `cab` to match it."""
    fields = _load(payload)
    model = _model_for(fields, EVENT_TYPES, "event")
    return _check_cab(_validate(model, payload, fields), cab)


def decode_command(payload: bytes, *, cab: str | None = None) -> CommandBase:
    """Decode a command envelope; with `cab`, also require the payload's `cab` to match it."""
    fields = _load(payload)
    model = _model_for(fields, COMMAND_TYPES, "command")
    return _check_cab(_validate(model, payload, fields), cab)


def decode_state(payload: bytes, *, cab: str | None = None) -> State:
    """Decode a presence message; with `cab`, also require the payload's `cab` to match it."""
    fields = _load(payload)
    return _check_cab(_validate(State, payload, fields), cab)


def decode_ack(payload: bytes) -> Ack:
    """Decode a command ack."""
    fields = _load(payload)
    return _validate(Ack, payload, fields)


def decode_event_ack(payload: bytes) -> EventAck:
    """Decode an event ack."""
    fields = _load(payload)
    return _validate(EventAck, payload, fields)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Which of two values a receiver keeps is parser-dependent, so neither is trusted.
    fields = dict(pairs)
    if len(fields) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"key {_shown(duplicate)} appears twice")
    return fields


def strict_loads(text: str | bytes) -> Any:
    """Parse JSON as every receiver of ours does (MQTT payloads, the cloud API, the kiosk).

    ValueError (naming the problem) for: not JSON, a duplicate key, NaN or Infinity, an integer
    of more than 4300 digits, or arrays and objects nested more than MAX_JSON_DEPTH deep.
    """
    try:
        value = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_reject_duplicate_keys
        )
    except RecursionError:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep") from None
    # ValueError covers JSONDecodeError, UnicodeDecodeError and too-long ints: they pass through.
    # Every array or object opens with its own `[` or `{`, so a text with no more of them than
    # the limit cannot nest deeper: the walk is skipped for every message we send (a deposit
    # holds 2), at a C-speed count instead of a Python walk of each value.
    if _containers_at_most(text) > MAX_JSON_DEPTH:
        _check_depth(value)
    return value


def _containers_at_most(text: str | bytes) -> int:
    """How many arrays and objects `text` can hold at most: its `[` and `{` (some may be in
    strings). In UTF-16 or UTF-32 bytes each of them still holds its one ASCII byte."""
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{")
    return text.count("[") + text.count("{")


def _check_depth(value: Any) -> None:
    # Iterative, so a deep value cannot overflow the stack here; pydantic and json.dumps recurse
    # on whatever passes, so the limit is kept far below the interpreter's.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)


def _load(payload: bytes) -> dict[str, Any]:
    """Check the payload is a JSON object of protocol version 1 and return it."""
    if isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise MessageError(None, f"payload must be bytes, not {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(
            None, f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MessageError(None, f"payload is not UTF-8 (byte {err.start})") from None
    try:
        fields = strict_loads(text)
    except ValueError as err:
        raise MessageError(None, f"payload is not JSON: {err}") from None
    if not isinstance(fields, dict):
        raise MessageError(None, f"payload is a JSON {type(fields).__name__}, not an object")
    if "v" not in fields:
        raise MessageError("v", "Field required", message_id=_message_id(fields))
    version = fields["v"]
    if type(version) is not int:  # `true` and `1.0` are not 1
        raise MessageError("v", f"protocol version must be an integer, not {_shown(version)}")
    if version != PROTOCOL_VERSION:
        raise MessageError(
            "v",
            f"unsupported protocol version {version}; this side speaks {PROTOCOL_VERSION}",
            message_id=_message_id(fields),
        )
    return fields


def _message_id(fields: dict[str, Any]) -> str | None:
    """Return the envelope id if it looks like one, so a broken command can still be acked."""
    value = fields.get("id")
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _model_for(fields: dict[str, Any], models: dict[str, type[M]], what: str) -> type[M]:
    if "type" not in fields:
        raise MessageError("type", "Field required", message_id=_message_id(fields))
    kind = fields["type"]
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(models)
        raise MessageError(
            "type",
            f"unknown {what} type {_shown(kind)} (known: {known})",
            message_id=_message_id(fields),
        )
    return model


def _validate(model: type[M], payload: bytes, fields: dict[str, Any]) -> M:
    # Validated from the JSON text, not from `fields`, so pydantic applies JSON-mode strictness
    # (a timestamp arrives as a string, an enum as its value).
    try:
        return model.model_validate_json(payload)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        raise MessageError(
            _dotted(first["loc"]) or None,
            first["msg"].removeprefix("Value error, "),
            message_id=_message_id(fields),
        ) from None


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _check_cab(message: C, cab: str | None) -> C:
    if cab is not None and message.cab != cab:
        raise MessageError(
            "cab",
            f"payload names cabinet {message.cab!r} but came on the topic of cabinet {cab!r}",
            message_id=getattr(message, "id", None),
        )
    return message
