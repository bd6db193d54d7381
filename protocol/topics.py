"""Build and parse the MQTT topics of the cabinet ↔ cloud contract (protocol version 1).

Every topic is `lockers/v1/{cab}/{kind}`. All of them are published with QoS 1; only `state` is
retained (it is the cabinet's presence, birth and Last Will alike).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from protocol.errors import TopicError

PREFIX = "lockers"
VERSION = "v1"
QOS = 1

CABINET_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_CABINET_ID = re.compile(CABINET_ID_PATTERN)

# Long enough to recognise a topic in a log line, short enough that a hostile one cannot flood it.
_SHOWN_CHARS = 100


class TopicKind(StrEnum):
    """The last level of a topic: what travels on it."""

    EVENT = "event"
    STATE = "state"
    CMD = "cmd"
    ACK = "ack"
    EVENT_ACK = "event-ack"

    @property
    def publisher(self) -> Literal["cabinet", "cloud"]:
        """Who publishes on topics of this kind (the other side subscribes)."""
        return "cloud" if self in (TopicKind.CMD, TopicKind.EVENT_ACK) else "cabinet"

    @property
    def retained(self) -> bool:
        """Whether messages of this kind are published with the retain flag."""
        return self is TopicKind.STATE


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: which cabinet and which kind."""

    cab: str
    kind: TopicKind

    def __str__(self) -> str:
        return topic(self.kind, self.cab)


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def validate_cabinet_id(cab: object) -> str:
    """Return `cab` if it is a valid cabinet id, else raise TopicError."""
    if not isinstance(cab, str):
        raise TopicError(f"a cabinet id is a string, not {type(cab).__name__}")
    if not _CABINET_ID.fullmatch(cab):
        raise TopicError(f"bad cabinet id {_shown(cab)}: it must match {CABINET_ID_PATTERN}")
    return cab


def topic(kind: TopicKind | str, cab: str) -> str:
    """Return the topic of `kind` for cabinet `cab`."""
    try:
        kind = TopicKind(kind)
    except ValueError:
        raise TopicError(f"unknown topic kind {_shown(str(kind))}") from None
    return f"{PREFIX}/{VERSION}/{validate_cabinet_id(cab)}/{kind}"


def event_topic(cab: str) -> str:
    """Return the topic cabinet `cab` publishes its events on."""
    return topic(TopicKind.EVENT, cab)


def state_topic(cab: str) -> str:
    """Return the retained presence topic of cabinet `cab` (birth and Last Will)."""
    return topic(TopicKind.STATE, cab)


def cmd_topic(cab: str) -> str:
    """Return the topic the cloud sends commands to cabinet `cab` on."""
    return topic(TopicKind.CMD, cab)


def ack_topic(cab: str) -> str:
    """Return the topic cabinet `cab` acks commands on."""
    return topic(TopicKind.ACK, cab)


def event_ack_topic(cab: str) -> str:
    """Return the topic the cloud acks stored events of cabinet `cab` on."""
    return topic(TopicKind.EVENT_ACK, cab)


def topic_template(kind: TopicKind | str) -> str:
    """Return the topic of `kind` with a `{cab}` placeholder, as the contract writes it."""
    return f"{PREFIX}/{VERSION}/{{cab}}/{TopicKind(kind)}"


def subscription(kind: TopicKind | str) -> str:
    """Return the filter matching topics of `kind` for every cabinet."""
    return f"{PREFIX}/{VERSION}/+/{TopicKind(kind)}"


EVENT_SUBSCRIPTION = subscription(TopicKind.EVENT)
# Spreads events over every cloud worker; the cloud still applies them in seq order per cabinet.
SHARED_EVENT_SUBSCRIPTION = f"$share/cloud/{EVENT_SUBSCRIPTION}"
STATE_SUBSCRIPTION = subscription(TopicKind.STATE)
ACK_SUBSCRIPTION = subscription(TopicKind.ACK)


def cabinet_subscriptions(cab: str) -> tuple[str, str]:
    """Return the topics cabinet `cab` subscribes to: its commands and its event acks."""
    return cmd_topic(cab), event_ack_topic(cab)


def parse_topic(name: object) -> Topic:
    """Parse a topic name `lockers/v1/{cab}/{kind}`, raising TopicError saying what is wrong."""
    if not isinstance(name, str):
        raise TopicError(f"a topic is a string, not {type(name).__name__}")
    if not name:
        raise TopicError("empty topic")
    if "+" in name or "#" in name:
        raise TopicError(
            f"topic {_shown(name)} holds a wildcard (+ or #): it is a filter, not a name"
        )
    levels = name.split("/")
    if levels[0] != PREFIX:
        raise TopicError(f"topic {_shown(name)} does not start with {PREFIX}/")
    if len(levels) < 2 or levels[1] != VERSION:
        version = _shown(levels[1]) if len(levels) > 1 else "nothing"
        raise TopicError(f"topic {_shown(name)} is for protocol version {version}, not {VERSION}")
    if len(levels) != 4:
        raise TopicError(
            f"topic {_shown(name)} has {len(levels)} levels, not 4: "
            f"{PREFIX}/{VERSION}/{{cab}}/{{kind}}"
        )
    cab, kind = levels[2], levels[3]
    try:
        validate_cabinet_id(cab)
    except TopicError as err:
        raise TopicError(f"topic {_shown(name)}: {err}") from None
    try:
        return Topic(cab, TopicKind(kind))
    except ValueError:
        known = ", ".join(TopicKind)
        raise TopicError(
            f"topic {_shown(name)} has unknown kind {_shown(kind)} (known: {known})"
        ) from None
