"""The common "8A/80" lock-board family: its frames, encoder and streaming decoders.

Frames are exactly those of docs/lockboard.md: a head byte, then bytes, then CHK, the XOR of
every byte before it. Nothing here does I/O or reads a clock: bytes go in, frames come out.

Replies carry no length byte, and some are byte-for-byte ambiguous without context (a head-80
unlock reply looks exactly like a query-one reply; a still-latched unlock reply is identical to
the unlock request itself). So the host's decoder is told which request is in flight
(`ReplyDecoder.expect`) and parses only the shapes that request can be answered with, plus the
unasked `82` state reports that may arrive at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import ClassVar

from protocol.errors import FrameError
from protocol.lockboard.common import BAD_CHK as _BAD_CHK
from protocol.lockboard.common import LOCK_STATE_BYTES, Polarity, StreamDecoder
from protocol.lockboard.common import MALFORMED as _MALFORMED
from protocol.lockboard.common import NEED_MORE as _NEED_MORE
from protocol.lockboard.common import Invalid as _Invalid

BAUD_RATE = 9600  # 9600 8N1
MIN_ADDRESS, MAX_ADDRESS = 0x01, 0x40
# A query-all reply carries one status byte per 8 channels; boards answer with at least
# ceil(channels / 8) of them and some with more (an 8-channel board captured answering three), so
# the decoder accepts up to this many (docs/lockboard.md#frames).
MAX_STATUS_BYTES = 32
# The wire's limit on a board's size: the channel byte `LL` names channels 1-255 and 32 status
# bytes hold 256 bits, so a board has 1 to 255 channels. The board's own count is per board
# (cabinet config, simulator), not this constant.
MAX_CHANNELS = min(0xFF, 8 * MAX_STATUS_BYTES)
UNLOCK_MANY_CHANNELS = 24  # `90 BB S1 S2 S3`: three bitmap bytes

HEAD_UNLOCK = 0x8A
HEAD_QUERY = 0x80
HEAD_UNLOCK_MANY = 0x90
HEAD_HOLD_ON = 0x9A
HEAD_HOLD_OFF = 0x9B
HEAD_REPORT = 0x82

TRAILER_UNLOCK = 0x11  # the fourth byte of unlock and hold requests
TRAILER_QUERY = 0x33  # query requests, and the byte after a query-all reply's status bytes
TRAILER_ADDRESS = 0x99  # read-address request and reply

# The board address a read-address request and its reply carry, whatever the DIP switches say.
READ_ADDRESS_BOARD = 0x01


def checksum(data: bytes | bytearray) -> int:
    """XOR of every byte: the CHK that closes each frame."""
    return reduce(lambda acc, byte: acc ^ byte, data, 0)


def _check_address(board: int) -> None:
    if not MIN_ADDRESS <= board <= MAX_ADDRESS:
        raise FrameError(
            f"board address {board:#04x} is out of range {MIN_ADDRESS:#04x}-{MAX_ADDRESS:#04x}"
        )


def _check_channel(channel: int, limit: int = MAX_CHANNELS) -> None:
    if not 1 <= channel <= limit:
        raise FrameError(f"lock channel {channel} is out of range 1-{limit}")


def status_bytes_for(channels: int) -> int:
    """The fewest status bytes a query-all reply of a board with `channels` channels carries."""
    _check_channel(channels)
    return -(-channels // 8)


def _check_state_byte(state_byte: int) -> None:
    if state_byte not in LOCK_STATE_BYTES:
        raise FrameError(f"lock state byte {state_byte:#04x} is neither 0x00 (open) nor 0x11")


class Frame:
    """A frame of this family; `encode(frame)` gives its bytes."""

    def body(self) -> bytes:  # pragma: no cover - every frame overrides it
        raise NotImplementedError


# --- host -> board --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unlock(Frame):
    """Pulse one lock (`8A BB LL 11`)."""

    board: int
    channel: int

    def __post_init__(self) -> None:
        _check_address(self.board)
        _check_channel(self.channel)

    def body(self) -> bytes:
        return bytes([HEAD_UNLOCK, self.board, self.channel, TRAILER_UNLOCK])


@dataclass(frozen=True, slots=True)
class UnlockAll(Frame):
    """Pulse every lock of a board, one after another (`8A BB 00 11`)."""

    board: int

    def __post_init__(self) -> None:
        _check_address(self.board)

    def body(self) -> bytes:
        return bytes([HEAD_UNLOCK, self.board, 0x00, TRAILER_UNLOCK])


@dataclass(frozen=True, slots=True)
class Query(Frame):
    """Read one lock (`80 BB LL 33`)."""

    board: int
    channel: int

    def __post_init__(self) -> None:
        _check_address(self.board)
        _check_channel(self.channel)

    def body(self) -> bytes:
        return bytes([HEAD_QUERY, self.board, self.channel, TRAILER_QUERY])


@dataclass(frozen=True, slots=True)
class QueryAll(Frame):
    """Read every lock of a board (`80 BB 00 33`)."""

    board: int

    def __post_init__(self) -> None:
        _check_address(self.board)

    def body(self) -> bytes:
        return bytes([HEAD_QUERY, self.board, 0x00, TRAILER_QUERY])


@dataclass(frozen=True, slots=True)
class ReadAddress(Frame):
    """Ask the one board alone on the bus for its DIP address (`80 01 00 99`)."""

    def body(self) -> bytes:
        return bytes([HEAD_QUERY, READ_ADDRESS_BOARD, 0x00, TRAILER_ADDRESS])


@dataclass(frozen=True, slots=True)
class UnlockMany(Frame):
    """Pulse every lock in `channels` (`90 BB S1 S2 S3`, S1 = channels 1-8, bit 0 = channel 1)."""

    board: int
    channels: frozenset[int]

    def __post_init__(self) -> None:
        _check_address(self.board)
        if not self.channels:
            raise FrameError("unlock-many needs at least one channel")
        for channel in self.channels:
            _check_channel(channel, UNLOCK_MANY_CHANNELS)

    def body(self) -> bytes:
        bitmap = sum(1 << (channel - 1) for channel in self.channels)
        # Lowest group first, as the frame table writes it (unlike query-all replies).
        return bytes([HEAD_UNLOCK_MANY, self.board]) + bitmap.to_bytes(3, "little")


@dataclass(frozen=True, slots=True)
class Hold(Frame):
    """Keep a lock powered and released (`9A BB LL 11`), or stop doing so (`9B BB LL 11`)."""

    board: int
    channel: int
    on: bool

    def __post_init__(self) -> None:
        _check_address(self.board)
        _check_channel(self.channel)

    def body(self) -> bytes:
        head = HEAD_HOLD_ON if self.on else HEAD_HOLD_OFF
        return bytes([head, self.board, self.channel, TRAILER_UNLOCK])


Request = Unlock | UnlockAll | Query | QueryAll | ReadAddress | UnlockMany | Hold


# --- board -> host --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockStatus(Frame):
    """One lock's state byte: the reply to an unlock (head 8A, or 80 on some boards) or a query.

    `channel` is 0 in the reply to unlock-all.
    """

    board: int
    channel: int
    state_byte: int
    head: int = HEAD_QUERY

    HEADS: ClassVar[frozenset[int]] = frozenset({HEAD_UNLOCK, HEAD_QUERY})

    def __post_init__(self) -> None:
        _check_address(self.board)
        if not 0 <= self.channel <= MAX_CHANNELS:
            raise FrameError(f"lock channel {self.channel} is out of range 0-{MAX_CHANNELS}")
        _check_state_byte(self.state_byte)
        if self.head not in self.HEADS:
            raise FrameError(f"a lock status reply has head 8A or 80, not {self.head:#04x}")

    def latched(self, polarity: Polarity = Polarity.NORMAL) -> bool:
        return polarity.latched_from_byte(self.state_byte)

    def body(self) -> bytes:
        return bytes([self.head, self.board, self.channel, self.state_byte])


@dataclass(frozen=True, slots=True)
class AllStatus(Frame):
    """Every lock of a board: one status byte per 8 channels, highest group first on the wire."""

    board: int
    status: bytes  # as on the wire: Sn ... S1

    def __post_init__(self) -> None:
        _check_address(self.board)
        if not 1 <= len(self.status) <= MAX_STATUS_BYTES:
            raise FrameError(
                f"a query-all reply carries 1-{MAX_STATUS_BYTES} status bytes, "
                f"not {len(self.status)}"
            )

    @classmethod
    def from_latched(
        cls,
        board: int,
        latched: Sequence[bool],
        polarity: Polarity = Polarity.NORMAL,
        *,
        status_bytes: int | None = None,
    ) -> AllStatus:
        """Build the reply for locks 1..n given whether each is latched.

        The reply carries ceil(n / 8) status bytes, or `status_bytes` if the board sends more
        (the extra high bits are 0, as in the captured `80 01 00 00 00 33 B2`).
        """
        need = status_bytes_for(len(latched)) if latched else 1
        count = need if status_bytes is None else status_bytes
        if not need <= count <= MAX_STATUS_BYTES:
            raise FrameError(
                f"{len(latched)} channels need {need}-{MAX_STATUS_BYTES} status bytes, not {count}"
            )
        bits = 0
        for index, is_latched in enumerate(latched):
            bit_set = is_latched if polarity is Polarity.NORMAL else not is_latched
            bits |= int(bit_set) << index
        return cls(board, bits.to_bytes(count, "big"))

    @property
    def channel_count(self) -> int:
        """How many channels the reply's bytes cover (a board may own fewer of them)."""
        return 8 * len(self.status)

    def latched(self, channel: int, polarity: Polarity = Polarity.NORMAL) -> bool:
        _check_channel(channel, self.channel_count)
        bits = int.from_bytes(self.status, "big")
        return polarity.latched_from_bit(bool(bits >> (channel - 1) & 1))

    def latched_map(
        self, polarity: Polarity = Polarity.NORMAL, *, channels: int | None = None
    ) -> dict[int, bool]:
        """Channel (1-based) -> latched, for the board's own `channels` (default: every bit).

        S1 (channels 1-8) is the last status byte, so a longer reply's extra bytes are the
        high groups: they are ignored, never read as the board's doors.
        """
        count = self.channel_count if channels is None else channels
        if not 1 <= count <= self.channel_count:
            raise FrameError(
                f"a reply of {len(self.status)} status bytes covers 1-{self.channel_count} "
                f"channels, not {count}"
            )
        return {ch: self.latched(ch, polarity) for ch in range(1, count + 1)}

    def body(self) -> bytes:
        return bytes([HEAD_QUERY, self.board]) + self.status + bytes([TRAILER_QUERY])


@dataclass(frozen=True, slots=True)
class AddressReply(Frame):
    """A lone board's DIP address (`80 01 AA 99`)."""

    address: int

    def __post_init__(self) -> None:
        _check_address(self.address)

    def body(self) -> bytes:
        return bytes([HEAD_QUERY, READ_ADDRESS_BOARD, self.address, TRAILER_ADDRESS])


@dataclass(frozen=True, slots=True)
class StateReport(Frame):
    """A lock changed state, sent unasked by the few boards that do (`82 BB LL SS`)."""

    board: int
    channel: int
    state_byte: int

    def __post_init__(self) -> None:
        _check_address(self.board)
        _check_channel(self.channel)
        _check_state_byte(self.state_byte)

    def latched(self, polarity: Polarity = Polarity.NORMAL) -> bool:
        return polarity.latched_from_byte(self.state_byte)

    def body(self) -> bytes:
        return bytes([HEAD_REPORT, self.board, self.channel, self.state_byte])


Reply = LockStatus | AllStatus | AddressReply | StateReport


def encode(frame: Frame) -> bytes:
    """The bytes of `frame` on the wire, CHK included."""
    body = frame.body()
    return body + bytes([checksum(body)])


def is_reply_to(request: Request, reply: Reply) -> bool:
    """Whether `reply` answers `request`: right kind, right board, right channel."""
    match request, reply:
        case Unlock(board=b, channel=c), LockStatus(board=rb, channel=rc):
            return (b, c) == (rb, rc)
        case UnlockAll(board=b), LockStatus(board=rb, channel=0):
            return b == rb
        case Query(board=b, channel=c), LockStatus(board=rb, channel=rc, head=head):
            return (b, c) == (rb, rc) and head == HEAD_QUERY
        case QueryAll(board=b), AllStatus(board=rb):
            return b == rb
        case ReadAddress(), AddressReply():
            return True
    return False


# --- streaming decoders ---------------------------------------------------------------------


def _fixed(buf: bytearray, length: int) -> object:
    """Check a fixed-length frame at the start of `buf`: its length, else its CHK."""
    if len(buf) < length:
        return _NEED_MORE
    return None if buf[length - 1] == checksum(buf[: length - 1]) else _BAD_CHK


class _StreamDecoder(StreamDecoder):
    """The shared resynchronising loop (common.StreamDecoder), yielding this family's frames."""

    def feed(self, data: bytes) -> list[Frame]:  # type: ignore[override]
        return super().feed(data)  # type: ignore[return-value]


def _valid_address(byte: int) -> bool:
    return MIN_ADDRESS <= byte <= MAX_ADDRESS


class RequestDecoder(_StreamDecoder):
    """Decode what the host sends, as a board (or the simulated bus) hears it."""

    HEADS = frozenset({HEAD_UNLOCK, HEAD_QUERY, HEAD_UNLOCK_MANY, HEAD_HOLD_ON, HEAD_HOLD_OFF})

    def _parse(self, buf: bytearray) -> object:
        head = buf[0]
        length = 6 if head == HEAD_UNLOCK_MANY else 5
        # Reject on shape as soon as the bytes allow, so garbage never stalls the stream.
        if len(buf) >= 2 and not _valid_address(buf[1]):
            return _MALFORMED
        if length == 5 and len(buf) >= 4:
            channel, trailer = buf[2], buf[3]
            allowed = {TRAILER_QUERY, TRAILER_ADDRESS} if head == HEAD_QUERY else {TRAILER_UNLOCK}
            if trailer not in allowed or channel > MAX_CHANNELS:
                return _MALFORMED
            if trailer == TRAILER_ADDRESS and (buf[1], channel) != (READ_ADDRESS_BOARD, 0):
                return _MALFORMED
            if head in (HEAD_HOLD_ON, HEAD_HOLD_OFF) and channel == 0:
                return _MALFORMED
        if length == 6 and len(buf) >= 5 and not any(buf[2:5]):
            return _MALFORMED
        problem = _fixed(buf, length)
        if problem is not None:
            return problem
        board, channel = buf[1], buf[2]
        frame: Frame
        if head == HEAD_UNLOCK:
            frame = Unlock(board, channel) if channel else UnlockAll(board)
        elif head == HEAD_QUERY and buf[3] == TRAILER_ADDRESS:
            frame = ReadAddress()
        elif head == HEAD_QUERY:
            frame = Query(board, channel) if channel else QueryAll(board)
        elif head == HEAD_UNLOCK_MANY:
            bits = int.from_bytes(buf[2:5], "little")
            channels = frozenset(ch for ch in range(1, 25) if bits >> (ch - 1) & 1)
            frame = UnlockMany(board, channels)
        else:
            frame = Hold(board, channel, on=head == HEAD_HOLD_ON)
        return frame, length


class ReplyDecoder(_StreamDecoder):
    """Decode what boards send, as the host hears it.

    Call `expect(request)` before writing each request, so the decoder parses the shapes that
    request is answered with. `echo=True` is for USB-RS485 adapters that hear their own
    transmission: the request's own bytes are dropped first.

    A query-all reply has no length byte and boards send ceil(channels / 8) status bytes or more,
    so its end is the `33 CHK` tail and the quiet gap after it. Two readings can both parse (a
    status byte 0x33 followed by one equal to the shorter reading's CHK); then the one the quiet
    gap delimits is the reply. `expect(..., channels=n)` sets the fewest status bytes accepted;
    `status_bytes=k` says how many this board is known to send: a reading of k or more bytes is
    taken as soon as it parses, a shorter one is held until the line goes quiet
    (`feed(..., line_quiet=True)`) or 36 bytes arrived. Without `status_bytes`, the shortest
    reading is taken at once.
    """

    HEADS = frozenset({HEAD_UNLOCK, HEAD_QUERY, HEAD_REPORT})

    def __init__(self, *, echo: bool = False) -> None:
        super().__init__()
        self.echo = echo
        self._expected: Request | None = None
        self._fewest = 1  # status bytes
        self._complete_at = 1  # status bytes that make a reading complete before the quiet gap
        self._line_quiet = False
        self._echo_left = b""

    def expect(
        self,
        request: Request | None,
        *,
        channels: int | None = None,
        status_bytes: int | None = None,
    ) -> None:
        """Name the request now in flight (None: only unasked reports are awaited)."""
        fewest = 1 if channels is None else status_bytes_for(channels)
        if status_bytes is not None and not fewest <= status_bytes <= MAX_STATUS_BYTES:
            raise FrameError(
                f"a board of {channels} channels sends {fewest}-{MAX_STATUS_BYTES} status bytes, "
                f"not {status_bytes}"
            )
        self._expected = request
        self._fewest = fewest
        self._complete_at = fewest if status_bytes is None else status_bytes
        self._echo_left = encode(request) if (self.echo and request is not None) else b""

    def feed(self, data: bytes, *, line_quiet: bool = False) -> list[Frame]:
        """Take bytes; `line_quiet=True` when the line has gone quiet after them (ends a reply)."""
        if self._echo_left:
            data = self._strip_echo(data)
        self._line_quiet = line_quiet
        try:
            return super().feed(data)
        finally:
            self._line_quiet = False

    def _strip_echo(self, data: bytes) -> bytes:
        take = min(len(data), len(self._echo_left))
        if data[:take] == self._echo_left[:take]:
            self._echo_left = self._echo_left[take:]
            return data[take:]
        # Not our echo after all (a lost byte, a collision): parse the bytes as they are.
        self._echo_left = b""
        return data

    def _parse(self, buf: bytearray) -> object:
        head = buf[0]
        if len(buf) >= 2 and not _valid_address(buf[1]):
            return _MALFORMED
        if head == HEAD_REPORT:
            return self._lock_status(buf, StateReport, allow_all=False)
        if head == HEAD_UNLOCK:
            return self._lock_status(buf, LockStatus, allow_all=True)
        expected = self._expected
        if isinstance(expected, QueryAll):
            return self._all_status(buf)
        if isinstance(expected, ReadAddress):
            return self._address(buf)
        if isinstance(expected, Unlock | UnlockAll | Query):
            return self._lock_status(buf, LockStatus, allow_all=True)
        # Nothing in flight, or a request with no defined reply: any well-formed 80 frame.
        for parse in (self._lock_status_any, self._address, self._all_status):
            outcome = parse(buf)
            if outcome is _NEED_MORE or not isinstance(outcome, _Invalid):
                return outcome
        return _MALFORMED

    def _lock_status_any(self, buf: bytearray) -> object:
        return self._lock_status(buf, LockStatus, allow_all=True)

    @staticmethod
    def _lock_status(buf: bytearray, cls: type, *, allow_all: bool) -> object:
        if len(buf) >= 4:
            channel, state_byte = buf[2], buf[3]
            lowest = 0 if allow_all else 1
            if not lowest <= channel <= MAX_CHANNELS or state_byte not in LOCK_STATE_BYTES:
                return _MALFORMED
        problem = _fixed(buf, 5)
        if problem is not None:
            return problem
        if cls is StateReport:
            return StateReport(buf[1], buf[2], buf[3]), 5
        return LockStatus(buf[1], buf[2], buf[3], head=buf[0]), 5

    @staticmethod
    def _address(buf: bytearray) -> object:
        if len(buf) >= 2 and buf[1] != READ_ADDRESS_BOARD:
            return _MALFORMED
        if len(buf) >= 4 and (buf[3] != TRAILER_ADDRESS or not _valid_address(buf[2])):
            return _MALFORMED
        problem = _fixed(buf, 5)
        return problem if problem is not None else (AddressReply(buf[2]), 5)

    def _all_status(self, buf: bytearray) -> object:
        readings: list[int] = []  # lengths that parse: head, address, status bytes, 33, CHK
        saw_bad_checksum = False
        for count in range(self._fewest, MAX_STATUS_BYTES + 1):
            length = count + 4
            if len(buf) < length:
                break
            if buf[length - 2] != TRAILER_QUERY:
                continue
            if buf[length - 1] != checksum(buf[: length - 1]):
                saw_bad_checksum = True
                continue
            if count >= self._complete_at and not self._line_quiet:
                return self._reading(buf, length)  # as long as the board sends: complete
            readings.append(length)
        if self._line_quiet:
            if len(buf) in readings and not self._two_replies(buf, readings):
                return self._reading(buf, len(buf))  # the reading the quiet gap delimits
            if readings:
                return self._reading(buf, readings[0])
            return _BAD_CHK if saw_bad_checksum else _MALFORMED
        if len(buf) < MAX_STATUS_BYTES + 4:
            return _NEED_MORE  # a longer reading may still come: wait for it or the quiet gap
        if readings:
            return self._reading(buf, readings[0])
        return _BAD_CHK if saw_bad_checksum else _MALFORMED

    def _two_replies(self, buf: bytearray, readings: list[int]) -> bool:
        """Whether the burst is a whole reply followed by another whole reply of the same board.

        Two replies back to back (a board answering twice, two boards on one DIP address) also
        check as one long reply, since the second's CHK cancels its own bytes. A board's padding
        never starts with its own `80 BB` head, so a split there is two frames, not one.
        """
        for length in readings[:-1]:
            rest = buf[length:]
            if rest[:2] == buf[:2] and rest[-2] == TRAILER_QUERY and checksum(rest) == 0:
                return True
        return False

    @staticmethod
    def _reading(buf: bytearray, length: int) -> tuple[AllStatus, int]:
        return AllStatus(buf[1], bytes(buf[2 : length - 2])), length
