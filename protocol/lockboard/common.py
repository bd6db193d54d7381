"""What every lock-board family shares: lock polarity, decoder statistics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
