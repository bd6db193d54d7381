"""What the RS485 driver needs to know about a lock-board family, and nothing more.

The driver (rs485.py) owns the bus: the queue, retries, the never-resend-an-unlock rule, faults
and counters. A family (one codec module in protocol/lockboard/) only says which request reads,
polls or unlocks a door, how a reply reads as locks and sensors, and how long a clean reply is.
So a new family is one more class here and one codec module, not a new driver.

- `8a`    the common "8A/80" boards: 9600 baud, locks only (no sensors)
- `krcu`  Kerong KR-CU16: 19200 baud, 16 locks and 16 occupancy sensors per board
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from protocol.lockboard import family_8a as f8a
from protocol.lockboard import family_krcu as kr
from protocol.lockboard.common import Polarity


@dataclass(frozen=True)
class BoardQuirks:
    """The per-board settings a family reads (the driver's BoardSpec carries them)."""

    address: int
    channels: int
    polarity: Polarity
    unlock_reply_heads: frozenset[int]
    sensor_polarity: Polarity


class BoardFamily(Protocol):
    """One lock-board family, as the driver uses it."""

    name: ClassVar[str]
    baud: ClassVar[int]
    has_sensors: ClassVar[bool]
    max_channels: ClassVar[int]

    def decoder(self, *, echo: bool) -> Any: ...
    def expect(self, decoder: Any, request: Any, board: BoardQuirks, known: int | None) -> None: ...
    def poll_request(self, address: int) -> Any: ...
    def read_request(self, address: int, channel: int) -> Any: ...
    def unlock_request(self, address: int, channel: int) -> Any: ...
    def is_unlock(self, request: Any) -> bool: ...
    def encode(self, request: Any) -> bytes: ...
    def is_reply_to(self, request: Any, frame: Any) -> bool: ...
    def acceptable(self, request: Any, frame: Any, board: BoardQuirks) -> bool: ...
    def is_report(self, frame: Any) -> bool: ...
    def locks(self, reply: Any, board: BoardQuirks) -> dict[int, bool]: ...
    def lock(self, reply: Any, board: BoardQuirks, channel: int) -> bool: ...
    def sensors(self, reply: Any, board: BoardQuirks) -> dict[int, bool] | None: ...
    def reply_length(self, request: Any, board: BoardQuirks, known: int | None) -> int: ...
    def learned_length(self, frame: Any) -> int | None: ...


class Family8A:
    """The "8A/80" boards (protocol/lockboard/family_8a.py)."""

    name: ClassVar[str] = "8a"
    baud: ClassVar[int] = f8a.BAUD_RATE
    has_sensors: ClassVar[bool] = False
    max_channels: ClassVar[int] = f8a.MAX_CHANNELS

    def decoder(self, *, echo: bool) -> f8a.ReplyDecoder:
        return f8a.ReplyDecoder(echo=echo)

    def expect(
        self, decoder: f8a.ReplyDecoder, request: Any, board: BoardQuirks, known: int | None
    ) -> None:
        if isinstance(request, f8a.QueryAll):
            # Until the board's reply length is known, the quiet gap frames it (family_8a).
            status_bytes = known if known is not None else f8a.MAX_STATUS_BYTES
            decoder.expect(request, channels=board.channels, status_bytes=status_bytes)
        else:
            decoder.expect(request)

    def poll_request(self, address: int) -> f8a.QueryAll:
        return f8a.QueryAll(address)

    def read_request(self, address: int, channel: int) -> f8a.Query:
        return f8a.Query(address, channel)

    def unlock_request(self, address: int, channel: int) -> f8a.Unlock:
        return f8a.Unlock(address, channel)

    def is_unlock(self, request: Any) -> bool:
        return isinstance(request, f8a.Unlock | f8a.UnlockAll)

    def encode(self, request: Any) -> bytes:
        return f8a.encode(request)

    def is_reply_to(self, request: Any, frame: Any) -> bool:
        return f8a.is_reply_to(request, frame)

    def acceptable(self, request: Any, frame: Any, board: BoardQuirks) -> bool:
        if (
            isinstance(request, f8a.Unlock)
            and isinstance(frame, f8a.LockStatus)
            and frame.head not in board.unlock_reply_heads
        ):
            return False
        return not (isinstance(frame, f8a.AllStatus) and frame.channel_count < board.channels)

    def is_report(self, frame: Any) -> bool:
        return isinstance(frame, f8a.StateReport)

    def locks(self, reply: f8a.AllStatus, board: BoardQuirks) -> dict[int, bool]:
        # Only the board's own channels: a longer reply's extra (high) bytes are not doors.
        return reply.latched_map(board.polarity, channels=board.channels)

    def lock(self, reply: Any, board: BoardQuirks, channel: int) -> bool:
        return bool(reply.latched(board.polarity))

    def sensors(self, reply: Any, board: BoardQuirks) -> dict[int, bool] | None:
        return None

    def reply_length(self, request: Any, board: BoardQuirks, known: int | None) -> int:
        if not isinstance(request, f8a.QueryAll):
            return 5
        return (known if known is not None else f8a.status_bytes_for(board.channels)) + 4

    def learned_length(self, frame: Any) -> int | None:
        return len(frame.status) if isinstance(frame, f8a.AllStatus) else None


class FamilyKrcu:
    """Kerong KR-CU16 boards (protocol/lockboard/family_krcu.py).

    There is no one-lock query: reading one door reads its board's status, which carries the
    sensors too. An unlock may be answered with a status reply or not at all (uncertain in the
    spec): no reply is the driver's "outcome unknown, ask the lock" path, which for this family
    is the normal one.
    """

    name: ClassVar[str] = "krcu"
    baud: ClassVar[int] = kr.BAUD_RATE
    has_sensors: ClassVar[bool] = True
    max_channels: ClassVar[int] = kr.CHANNELS

    def decoder(self, *, echo: bool) -> kr.ReplyDecoder:
        return kr.ReplyDecoder(echo=echo)

    def expect(
        self, decoder: kr.ReplyDecoder, request: Any, board: BoardQuirks, known: int | None
    ) -> None:
        decoder.expect(request)

    def poll_request(self, address: int) -> kr.Status:
        return kr.Status(address)

    def read_request(self, address: int, channel: int) -> kr.Status:
        return kr.Status(address)

    def unlock_request(self, address: int, channel: int) -> kr.Unlock:
        return kr.Unlock(address, channel)

    def is_unlock(self, request: Any) -> bool:
        return isinstance(request, kr.Unlock | kr.UnlockAll)

    def encode(self, request: Any) -> bytes:
        return kr.encode(request)

    def is_reply_to(self, request: Any, frame: Any) -> bool:
        return kr.is_reply_to(request, frame)

    def acceptable(self, request: Any, frame: Any, board: BoardQuirks) -> bool:
        return True

    def is_report(self, frame: Any) -> bool:
        return False

    def locks(self, reply: kr.StatusReply, board: BoardQuirks) -> dict[int, bool]:
        return {ch: reply.latched(ch, board.polarity) for ch in range(1, board.channels + 1)}

    def lock(self, reply: kr.StatusReply, board: BoardQuirks, channel: int) -> bool:
        return reply.latched(channel, board.polarity)

    def sensors(self, reply: kr.StatusReply, board: BoardQuirks) -> dict[int, bool] | None:
        pol = board.sensor_polarity
        return {ch: reply.occupied(ch, pol) for ch in range(1, board.channels + 1)}

    def reply_length(self, request: Any, board: BoardQuirks, known: int | None) -> int:
        return kr.STATUS_LENGTH

    def learned_length(self, frame: Any) -> int | None:
        return None


FAMILIES: dict[str, BoardFamily] = {"8a": Family8A(), "krcu": FamilyKrcu()}
DEFAULT_FAMILY = "8a"


def family(name: str) -> BoardFamily:
    """The family called `name` ("8a" or "krcu")."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"no lock-board family {name!r}: one of {', '.join(sorted(FAMILIES))}"
        ) from None
