"""What every lock-board family shares: lock polarity, decoder statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar


class Polarity(Enum):
    """How a board's status byte or bit maps to a latched (closed) lock.

    The usual boards report 0x11 / a set bit for a latched lock; some lock and board pairings
    report the inverse, so polarity is a per-board setting, never a global one.
    """

    NORMAL = "normal"
    INVERTED = "inverted"

    def latched_from_byte(self, state_byte: int) -> bool:
        """Read a one-lock status byte (0x00 or 0x11) as "latched"."""
        closed = state_byte == LOCK_CLOSED
        return closed if self is Polarity.NORMAL else not closed

    def byte_for(self, latched: bool) -> int:
        """Write "latched" as the status byte this board sends."""
        closed = latched if self is Polarity.NORMAL else not latched
        return LOCK_CLOSED if closed else LOCK_OPEN

    def latched_from_bit(self, bit_set: bool) -> bool:
        """Read one bit of a query-all reply as "latched"."""
        return bit_set if self is Polarity.NORMAL else not bit_set


# One-lock status bytes, default polarity (docs/lockboard.md#frames).
LOCK_OPEN = 0x00
LOCK_CLOSED = 0x11
LOCK_STATE_BYTES = frozenset({LOCK_OPEN, LOCK_CLOSED})


@dataclass
class DecoderStats:
    """What a streaming decoder kept and threw away; the driver adds these to a board's counters."""

    frames: int = 0
    garbage_bytes: int = 0  # bytes skipped while hunting for a frame head
    bad_checksum: int = 0  # well-shaped frames whose CHK did not match
    malformed: int = 0  # a frame head followed by bytes no frame of that head allows

    def as_dict(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "garbage_bytes": self.garbage_bytes,
            "bad_checksum": self.bad_checksum,
            "malformed": self.malformed,
        }


# --- the streaming decoders' shared loop ----------------------------------------------------
# Every family frames its bytes differently but resynchronises the same way: find a head byte,
# try the shapes it allows, and skip one byte when none parses.

NEED_MORE = object()  # the bytes so far could still become a frame


class Invalid:
    """The bytes at the buffer's start are no frame: why, for the counters."""

    def __init__(self, bad_checksum: bool) -> None:
        self.bad_checksum = bad_checksum


BAD_CHK = Invalid(bad_checksum=True)
MALFORMED = Invalid(bad_checksum=False)


@dataclass
class StreamDecoder:
    """Shared resynchronising loop: find a head, try the shapes it allows, skip a byte if none.

    A family's decoder sets `HEADS` and `_parse(buf)`, which returns NEED_MORE, an `Invalid`, or
    `(frame, length)`.
    """

    stats: DecoderStats = field(default_factory=DecoderStats)
    _buffer: bytearray = field(default_factory=bytearray)

    HEADS: ClassVar[frozenset[int]] = frozenset()

    def feed(self, data: bytes) -> list[object]:
        """Take bytes as they arrive (any split) and return every frame they complete."""
        self._buffer += data
        frames: list[object] = []
        buf = self._buffer
        while buf:
            if buf[0] not in self.HEADS:
                self.stats.garbage_bytes += 1
                del buf[0]
                continue
            outcome = self._parse(buf)
            if outcome is NEED_MORE:
                break
            if isinstance(outcome, Invalid):
                # Skip just the head byte: a real frame may start inside the bytes we rejected.
                if outcome.bad_checksum:
                    self.stats.bad_checksum += 1
                else:
                    self.stats.malformed += 1
                del buf[0]
                continue
            frame, length = outcome  # type: ignore[misc]
            del buf[:length]
            self.stats.frames += 1
            frames.append(frame)
        return frames

    def flush(self) -> int:
        """Drop a partial frame left after the line went quiet; return how many bytes went."""
        dropped = len(self._buffer)
        self.stats.garbage_bytes += dropped
        self._buffer.clear()
        return dropped

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def _parse(self, buf: bytearray) -> object:  # pragma: no cover - overridden
        raise NotImplementedError
