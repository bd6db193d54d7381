"""The Kerong KR-CU16 lock-board family: 16 locks and 16 occupancy sensors per board.

Frames are those of docs/lockboard.md#the-second-family-kerong-kr-cu16:
`02 ADDR CMD [DATA ...] 03 SUM`, where SUM is the sum of every byte before it, & 0xFF. ADDR
packs the board into its high nibble (0x0 = board 1, set by DIP switches) and the lock into its
low nibble (0x0 = lock 1); `F0` is the whole bus.
Nothing here does I/O or reads a clock: bytes go in, frames come out.

No vendor manual is public. What is *uncertain* in the spec (the sensors' polarity, whether a
board answers an unlock at all) is a per-board setting of the driver and the simulator, never
decided here: the codec reads and writes bits, the caller says what a bit means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.errors import FrameError
from protocol.lockboard.common import (
    BAD_CHK,
    MALFORMED,
    NEED_MORE,
    Polarity,
    StreamDecoder,
)

BAUD_RATE = 19200  # 19200 8N1
CHANNELS = 16  # locks per board, and occupancy sensors per board
# Board 16 would be ADDR 0xF0 for its lock 1, which is the whole bus's address: 15 is the most a
# bus can hold.
MIN_BOARD, MAX_BOARD = 1, 15
BUS_ADDRESS = 0xF0

STX = 0x02
ETX = 0x03
CMD_STATUS = 0x30
CMD_UNLOCK = 0x31
CMD_STATUS_ALL = 0x32
CMD_UNLOCK_ALL = 0x33
CMD_PULSE = 0x37
REPLY_STATUS = 0x35

REQUEST_LENGTH = 5  # 02 ADDR CMD 03 SUM
STATUS_LENGTH = 9  # 02 ADDR 35 D1 D2 D3 D4 03 SUM


def checksum(data: bytes | bytearray) -> int:
    """The sum of every byte, & 0xFF: the SUM that closes each frame."""
    return sum(data) & 0xFF


def _check_board(board: int) -> None:
    if not MIN_BOARD <= board <= MAX_BOARD:
        raise FrameError(f"KR-CU board {board} is out of range {MIN_BOARD}-{MAX_BOARD}")


def _check_channel(channel: int) -> None:
    if not 1 <= channel <= CHANNELS:
        raise FrameError(f"KR-CU lock {channel} is out of range 1-{CHANNELS}")


def address_byte(board: int, channel: int = 1) -> int:
    """ADDR for a board (1-based) and one of its locks (1-based)."""
    _check_board(board)
    _check_channel(channel)
    return (board - 1) << 4 | (channel - 1)


def split_address(byte: int) -> tuple[int, int]:
    """(board, lock), both 1-based, from an ADDR byte."""
    return (byte >> 4) + 1, (byte & 0x0F) + 1


class Frame:
    """A frame of this family; `encode(frame)` gives its bytes."""

    def body(self) -> bytes:  # pragma: no cover - every frame overrides it
        raise NotImplementedError


# --- host -> board --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status(Frame):
    """Read one board's locks and sensors (`02 ADDR 30 03`)."""

    board: int

    def __post_init__(self) -> None:
        _check_board(self.board)

    def body(self) -> bytes:
        return bytes([STX, address_byte(self.board), CMD_STATUS, ETX])


@dataclass(frozen=True, slots=True)
class Unlock(Frame):
    """Pulse one lock (`02 ADDR 31 03`, the lock in ADDR's low nibble)."""

    board: int
    channel: int

    def __post_init__(self) -> None:
        _check_board(self.board)
        _check_channel(self.channel)

    def body(self) -> bytes:
        return bytes([STX, address_byte(self.board, self.channel), CMD_UNLOCK, ETX])


@dataclass(frozen=True, slots=True)
class StatusAll(Frame):
    """Ask every board on the bus for its status (`02 F0 32 03`)."""

    def body(self) -> bytes:
        return bytes([STX, BUS_ADDRESS, CMD_STATUS_ALL, ETX])


@dataclass(frozen=True, slots=True)
class UnlockAll(Frame):
    """Pulse every lock of a board (`02 ADDR 33 03`)."""

    board: int

    def __post_init__(self) -> None:
        _check_board(self.board)

    def body(self) -> bytes:
        return bytes([STX, address_byte(self.board), CMD_UNLOCK_ALL, ETX])


@dataclass(frozen=True, slots=True)
class PulseQuery(Frame):
    """Ask a board for its unlock pulse length (`02 ADDR 37 03`; its answer is not specified)."""

    board: int

    def __post_init__(self) -> None:
        _check_board(self.board)

    def body(self) -> bytes:
        return bytes([STX, address_byte(self.board), CMD_PULSE, ETX])


Request = Status | Unlock | StatusAll | UnlockAll | PulseQuery


# --- board -> host --------------------------------------------------------------------------


def _bits(values: list[bool]) -> int:
    return sum(int(bool(v)) << i for i, v in enumerate(values))


@dataclass(frozen=True, slots=True)
class StatusReply(Frame):
    """A board's 16 lock bits and 16 sensor bits (`02 ADDR 35 D1 D2 D3 D4 03`).

    `locks` and `sensors` are the raw 16-bit words, bit 0 = lock / sensor 1 (D1 and D3 hold
    bits 0-7, D2 and D4 bits 8-15). `lock_nibble` is ADDR's low nibble as sent (0 in a reply to
    a status request; a board answering an unlock may echo the lock there).
    """

    board: int
    locks: int
    sensors: int
    lock_nibble: int = 0

    def __post_init__(self) -> None:
        _check_board(self.board)
        for name in ("locks", "sensors"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise FrameError(f"{name} is a 16-bit word, not {getattr(self, name):#x}")
        if not 0 <= self.lock_nibble <= 0x0F:
            raise FrameError(f"ADDR's low nibble is 0-15, not {self.lock_nibble}")

    @classmethod
    def from_state(
        cls,
        board: int,
        latched: list[bool],
        occupied: list[bool],
        *,
        polarity: Polarity = Polarity.NORMAL,
        sensor_polarity: Polarity = Polarity.NORMAL,
    ) -> StatusReply:
        """The reply a board sends for locks 1..16 (latched?) and compartments 1..16 (full?)."""
        if len(latched) > CHANNELS or len(occupied) > CHANNELS:
            raise FrameError(f"a KR-CU board has {CHANNELS} locks and sensors")
        lock_bits = [polarity.latched_from_bit(v) for v in latched]  # the map is its own inverse
        sensor_bits = [sensor_polarity.latched_from_bit(v) for v in occupied]
        return cls(board, _bits(lock_bits), _bits(sensor_bits))

    def latched(self, channel: int, polarity: Polarity = Polarity.NORMAL) -> bool:
        _check_channel(channel)
        return polarity.latched_from_bit(bool(self.locks >> (channel - 1) & 1))

    def occupied(self, channel: int, polarity: Polarity = Polarity.NORMAL) -> bool:
        """Whether sensor `channel` sees something (NORMAL: a set bit is an object)."""
        _check_channel(channel)
        return polarity.latched_from_bit(bool(self.sensors >> (channel - 1) & 1))

    def body(self) -> bytes:
        addr = (self.board - 1) << 4 | self.lock_nibble
        data = self.locks.to_bytes(2, "little") + self.sensors.to_bytes(2, "little")
        return bytes([STX, addr, REPLY_STATUS]) + data + bytes([ETX])


Reply = StatusReply


def encode(frame: Frame) -> bytes:
    """The bytes of `frame` on the wire, SUM included."""
    body = frame.body()
    return body + bytes([checksum(body)])


def is_reply_to(request: Request, reply: Reply) -> bool:
    """Whether `reply` answers `request`: a status reply of the board asked (unlocks included)."""
    match request, reply:
        case Status(board=b) | Unlock(board=b) | UnlockAll(board=b), StatusReply(board=rb):
            return b == rb
        case StatusAll(), StatusReply():
            return True
    return False


# --- streaming decoders ---------------------------------------------------------------------


def _fixed(buf: bytearray, length: int) -> object:
    if len(buf) < length:
        return NEED_MORE
    if buf[length - 2] != ETX:
        return MALFORMED
    return None if buf[length - 1] == checksum(buf[: length - 1]) else BAD_CHK


class RequestDecoder(StreamDecoder):
    """Decode what the host sends, as a board (or the simulated bus) hears it."""

    HEADS: ClassVar[frozenset[int]] = frozenset({STX})

    def _parse(self, buf: bytearray) -> object:
        if len(buf) >= 3:
            addr, cmd = buf[1], buf[2]
            board_nibble, lock_nibble = addr >> 4, addr & 0x0F
            if cmd == CMD_STATUS_ALL:
                if addr != BUS_ADDRESS:
                    return MALFORMED
            elif cmd == CMD_UNLOCK:
                if board_nibble == 0x0F:
                    return MALFORMED
            elif cmd in (CMD_STATUS, CMD_UNLOCK_ALL, CMD_PULSE):
                if lock_nibble or board_nibble == 0x0F:
                    return MALFORMED
            else:
                return MALFORMED
        problem = _fixed(buf, REQUEST_LENGTH)
        if problem is not None:
            return problem
        addr, cmd = buf[1], buf[2]
        board, channel = split_address(addr)
        frame: Frame
        if cmd == CMD_STATUS:
            frame = Status(board)
        elif cmd == CMD_UNLOCK:
            frame = Unlock(board, channel)
        elif cmd == CMD_STATUS_ALL:
            frame = StatusAll()
        elif cmd == CMD_UNLOCK_ALL:
            frame = UnlockAll(board)
        else:
            frame = PulseQuery(board)
        return frame, REQUEST_LENGTH

    def feed(self, data: bytes) -> list[Request]:  # type: ignore[override]
        return super().feed(data)  # type: ignore[return-value]


class ReplyDecoder(StreamDecoder):
    """Decode what boards send, as the host hears it: status replies, 9 bytes each.

    The same call shape as the 8A/80 decoder (`expect`, `feed(..., line_quiet=)`), so the driver
    treats both alike; a KR-CU reply has a fixed length, so neither the request in flight nor the
    quiet gap is needed to frame it. `echo=True` drops the request's own bytes first (adapters
    that hear their own transmission).
    """

    HEADS: ClassVar[frozenset[int]] = frozenset({STX})

    def __init__(self, *, echo: bool = False) -> None:
        super().__init__()
        self.echo = echo
        self._echo_left = b""

    def expect(self, request: Request | None, **_: object) -> None:
        """Name the request now in flight (only its echo matters to this family)."""
        self._echo_left = encode(request) if (self.echo and request is not None) else b""

    def feed(self, data: bytes, *, line_quiet: bool = False) -> list[Reply]:  # type: ignore[override]
        if self._echo_left:
            take = min(len(data), len(self._echo_left))
            if data[:take] == self._echo_left[:take]:
                self._echo_left = self._echo_left[take:]
                data = data[take:]
            else:
                self._echo_left = b""
        return super().feed(data)  # type: ignore[return-value]

    def _parse(self, buf: bytearray) -> object:
        if len(buf) >= 2 and buf[1] >> 4 == 0x0F:
            return MALFORMED
        if len(buf) >= 3 and buf[2] != REPLY_STATUS:
            return MALFORMED
        problem = _fixed(buf, STATUS_LENGTH)
        if problem is not None:
            return problem
        board, lock = split_address(buf[1])
        locks = int.from_bytes(buf[3:5], "little")
        sensors = int.from_bytes(buf[5:7], "little")
        return StatusReply(board, locks, sensors, lock - 1), STATUS_LENGTH
