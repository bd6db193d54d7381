"""One simulated RS485 bus: the host's bytes in, every board's answer out as timed byte chunks.

Pure apart from its lock: `feed(data, now)` returns `Chunk(delay_s, data)` items, "write these
bytes `delay_s` after `now`", so the pty server and in-process tests share one implementation.
Things that happen without a request (a person opening a door on a board that sends `82`
reports, garbage injected on the line) queue up in `take_unsolicited()`, and `on_unsolicited`
is called so a server can wake up for them.

Every board hears every request, as on a real bus, and decides for itself whether it is
addressed. Boards of both families (8A/80 and Kerong KR-CU) may share one wire: each family's
boards hear only their own frames, and, when the host's line rate is known (`feed(..., baud=)`,
the pty server reads it from the port), only bytes sent at their own baud (9600 or 19200);
at another rate a UART hears framing errors, not bytes, and stays silent.

When more than one board answers the same request (a DIP-address clash, or a
read-address with several boards on the bus) their replies collide: see `collide`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from firmware_sim.board import CORRUPT_MODES, Board, BoardConfig, Response
from firmware_sim.control import Faults, Person
from firmware_sim.errors import ConfigError, UnknownBoardError
from protocol.lockboard import family_krcu as kr
from protocol.lockboard.family_8a import Request, RequestDecoder, StateReport, encode

QUERY_REPLY_S = 0.005  # a board's turnaround for anything but a pulse (docs/lockboard.md: ≤ 100 ms)
PULSE_S = 0.05  # one lock's unlock pulse (real boards: up to 1 s)


@dataclass(frozen=True)
class Chunk:
    """Bytes to put on the line `delay_s` after the moment they answer."""

    delay_s: float
    data: bytes


@dataclass
class LineFaults:
    """Faults of the line itself, whoever is talking."""

    garbage: bytes = b""  # noise heard just before a reply
    garbage_count: int | None = 0  # replies left to prefix with it; None = every one

    def as_dict(self) -> dict[str, object]:
        return {"garbage_hex": self.garbage.hex(), "garbage_count": self.garbage_count}


def collide(replies: Sequence[bytes]) -> bytes:
    """What the host hears when several boards answer at once.

    Two transmitters never start in step: each later board is modelled as starting one byte-time
    after the one before, and the line carries the bitwise OR of whatever is being driven. So
    even identical replies garble (`8A 01 01 00 8A` twice gives `8A 8B 01 01 8A 8A`), and the
    result is one byte longer per extra board, as a real collision smears.
    """
    length = max(offset + len(reply) for offset, reply in enumerate(replies))
    wire = bytearray(length)
    for offset, reply in enumerate(replies):
        for index, byte in enumerate(reply):
            wire[offset + index] |= byte
    return bytes(wire)


def corrupt(data: bytes, mode: str) -> bytes:
    """Damage one reply the way `mode` says (see `Faults.corrupt`)."""
    if mode == "checksum":
        return data[:-1] + bytes([data[-1] ^ 0xFF])
    if mode == "flip":
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
    if mode == "truncate":
        return data[: len(data) // 2 + 1]
    raise ConfigError(f"corrupt mode is one of {', '.join(CORRUPT_MODES)}, not {mode!r}")


class SimulatedBus:
    """Several lock boards on one RS485 bus, with the person and the faults that act on them."""

    def __init__(
        self,
        boards: Sequence[BoardConfig],
        *,
        pulse_s: float = PULSE_S,
        query_reply_s: float = QUERY_REPLY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not boards:
            raise ConfigError("a bus needs at least one board")
        if pulse_s < 0 or query_reply_s < 0:
            raise ConfigError("pulse_s and query_reply_s cannot be negative")
        self.boards = [Board(config) for config in boards]
        self.pulse_s = pulse_s
        self.query_reply_s = query_reply_s
        self.clock = clock  # for what the control API does; requests bring their own `now`
        self.lock = threading.RLock()
        self.decoder = RequestDecoder()  # the 8A/80 boards' ears
        self.krcu_decoder = kr.RequestDecoder()  # the KR-CU boards' ears
        self.host_baud: int | None = None  # the rate the host's port is set to, when known
        self.line = LineFaults()
        self.collisions = 0
        self.on_unsolicited: Callable[[], None] | None = None
        self.person = Person(self)
        self.faults = Faults(self)
        self._unsolicited: list[Chunk] = []
        # When each board (by position) is done with its current pulse: a board handles one
        # request at a time, so one heard mid-pulse is answered after the pulse.
        self._busy_until = [float("-inf")] * len(self.boards)

    def board(self, address: int, family: str | None = None) -> Board:
        """The board at `address` (the first, if a DIP clash put two there), of `family` if given
        (an 8A/80 board and a KR-CU board may both be board 1 on a two-family wire)."""
        for board in self.boards:
            if board.address == address and family in (None, board.config.family):
                return board
        addresses = ", ".join(str(b.address) for b in self.boards)
        raise UnknownBoardError(f"no board at address {address!r} (the bus has {addresses})")

    # --- the host's side -----------------------------------------------------------------------

    def feed(self, data: bytes, now: float, *, baud: int | None = None) -> list[Chunk]:
        """Take bytes the host wrote (any split); return what the boards write back, and when.

        `baud` is the host's line rate (default: `host_baud`, which the pty server keeps up to
        date), when known: boards at another rate do not hear it.
        """
        baud = self.host_baud if baud is None else baud
        with self.lock:
            chunks: list[Chunk] = []
            for family, decoder in (("8a", self.decoder), ("krcu", self.krcu_decoder)):
                hearers = [
                    board
                    for board in self.boards
                    if board.config.family == family and (baud is None or board.baud == baud)
                ]
                if not hearers:
                    continue
                for request in decoder.feed(data):
                    chunks += self._dispatch(request, now, hearers)
            return chunks

    def _dispatch(
        self, request: Request | kr.Request, now: float, hearers: list[Board] | None = None
    ) -> list[Chunk]:
        answers: list[tuple[float, bytes, Board]] = []
        for index, board in enumerate(self.boards):
            if hearers is not None and board not in hearers:
                continue
            response = board.handle(request, now)
            if response is None:
                continue
            work_s = self.pulse_s * response.pulses if response.pulses else self.query_reply_s
            done_in_s = max(0.0, self._busy_until[index] - now) + work_s
            self._busy_until[index] = now + done_in_s
            data = self._transmission(board, response)
            if data:
                answers.append((done_in_s + board.tx.extra_delay_s, data, board))
        if not answers:
            return []
        if isinstance(request, kr.StatusAll):
            # Every KR-CU board answers the bus-wide status, one after another in address order
            # (each waits out the replies before its own), so they do not collide.
            slot_s = self.query_reply_s + kr.STATUS_LENGTH * 10 / kr.BAUD_RATE
            ordered = sorted(answers, key=lambda answer: answer[2].address)
            return [
                Chunk(delay_s + rank * slot_s, data)
                for rank, (delay_s, data, _) in enumerate(ordered)
            ]
        if len(answers) == 1:
            delay_s, data, board = answers[0]
            return self._paced(board, delay_s, self._with_garbage(data))
        self.collisions += 1
        delay_s = max(delay for delay, _, _ in answers)
        return [Chunk(delay_s, self._with_garbage(collide([data for _, data, _ in answers])))]

    def _transmission(self, board: Board, response: Response) -> bytes:
        """The bytes `board` drives onto the line for `response`, its faults applied."""
        tx, counters = board.tx, board.counters
        if tx.silent:
            counters.replies_suppressed += len(response.replies)
            return b""
        data = b""
        for reply in response.replies:
            frame = kr.encode(reply) if isinstance(reply, kr.StatusReply) else encode(reply)
            if tx.corrupt_mode and tx.corrupt_count != 0:
                frame = corrupt(frame, tx.corrupt_mode)
                counters.replies_corrupted += 1
                if tx.corrupt_count is not None:
                    tx.corrupt_count -= 1
            data += frame
            counters.replies_sent += 1
        # A reporting board tells of the changes right after its reply (same burst).
        for report in response.reports:
            data += encode(report)
            counters.reports_sent += 1
        return data

    def _with_garbage(self, data: bytes) -> bytes:
        line = self.line
        if not line.garbage or line.garbage_count == 0:
            return data
        if line.garbage_count is not None:
            line.garbage_count -= 1
        return line.garbage + data

    @staticmethod
    def _paced(board: Board, delay_s: float, data: bytes) -> list[Chunk]:
        gap_s = board.tx.byte_gap_s
        if gap_s is None:
            return [Chunk(delay_s, data)]
        return [Chunk(delay_s + i * gap_s, bytes([byte])) for i, byte in enumerate(data)]

    # --- unasked output ------------------------------------------------------------------------

    def take_unsolicited(self) -> list[Chunk]:
        """Bytes no request asked for (reports, injected garbage), delays counted from now."""
        with self.lock:
            chunks, self._unsolicited = self._unsolicited, []
            return chunks

    def emit_reports(self, board: Board, reports: list[StateReport]) -> None:
        """Queue `82` reports a board sends of its own accord."""
        if not reports or board.tx.silent or not board.powered:
            return
        data = b"".join(encode(report) for report in reports)
        board.counters.reports_sent += len(reports)
        self.emit(self._paced(board, board.tx.extra_delay_s + self.query_reply_s, data))

    def inject(self, data: bytes) -> None:
        """Put bytes on the line now, from no board at all."""
        self.emit([Chunk(0.0, data)])

    def emit(self, chunks: list[Chunk]) -> None:
        """Queue bytes for the line now, and wake whoever serves it."""
        with self.lock:
            self._unsolicited += chunks
        if self.on_unsolicited is not None:
            self.on_unsolicited()

    # --- the view from outside -----------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Every board and door as JSON-able data: state, faults and counters."""
        with self.lock:
            return {
                "pulse_s": self.pulse_s,
                "query_reply_s": self.query_reply_s,
                "line": self.line.as_dict(),
                "collisions": self.collisions,
                "decoder": self.decoder.stats.as_dict(),
                "krcu_decoder": self.krcu_decoder.stats.as_dict(),
                "boards": [board.as_dict() for board in self.boards],
            }

    def log(self) -> list[dict[str, object]]:
        """Every board's log, oldest first, each entry tagged with its board's address."""
        with self.lock:
            tagged = [
                (entry.at, board.address, entry) for board in self.boards for entry in board.log
            ]
        tagged.sort(key=lambda item: item[0])  # stable: a board's own entries keep their order
        return [{"board": address, **entry.as_dict()} for _, address, entry in tagged]
