"""Errors raised by the wire contracts when a topic, message or frame breaks them.

ProtocolError
├── TopicError      an MQTT topic or cabinet id is malformed
├── MessageError    an MQTT payload fails decoding; carries .field (dotted path or None) and .reason
└── FrameError      a lock-board frame is malformed (bad head, length, address, trailer or CHK)

Decoders raise nothing else for bad input, so an adapter can catch `ProtocolError` at its seam,
log the reason and carry on with the next message or frame.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Something on the wire breaks a contract."""


class TopicError(ProtocolError):
    """An MQTT topic or cabinet id is malformed."""


class MessageError(ProtocolError):
    """An MQTT payload fails decoding (or a message cannot be encoded within the contract).

    `field` is the dotted path of the offending field (`data.entries[0].code_hash`), or None when
    the whole message is at fault (not UTF-8, not JSON, too large). `message_id` is the envelope's
    `id` when it could be read, so a cabinet can still ack a command it cannot decode.
    """

    def __init__(self, field: str | None, reason: str, *, message_id: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.message_id = message_id
        super().__init__(f"{field}: {reason}" if field else reason)


# Lock-board (RS485) codec errors live in the same tree so one `except ProtocolError` covers both.
class FrameError(ProtocolError):
    """A lock-board frame is malformed (bad head, length, address, trailer or CHK)."""
