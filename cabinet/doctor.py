"""The installer's doctor: find what lock boards are on a serial bus, and what is wrong with it.

`scan(port, ...)` walks one RS485 port at both families' line rates (docs/lockboard.md): the
8A/80 boards at 9600 baud (query-all to every address 1-64), then the Kerong KR-CU16 boards at
19200 (status to boards 1-15). A board at the wrong rate hears framing errors, not bytes, so each
family answers only in its own pass, and both may share one wire. For each board it finds:

- address and family; channel count (8A/80: the highest channel that answers a one-lock query,
  since a query-all reply may carry more status bytes than the board has channels; KR-CU: 16);
- polarity: a cabinet being installed has its doors shut, so a board whose every lock reads
  "open" under the normal polarity is taken as inverted (said as a guess in the report);
- every door's lock and, on KR-CU boards, every occupancy sensor, read `reads` times.

It never unlocks anything by itself: `pulse(...)` fires one chosen lock when the installer asks,
and reports the reply head (8A/80) or whether the board answers unlocks at all (KR-CU), read
from what the board actually sent, and never resends.

Wiring problems it names: an address where replies come back garbled every time (two boards on
one DIP address: their replies collide), a board the expected layout names that does not answer
(silent), a door that reads open in every read (it never reports closed: a switch or its wire),
and two families on one wire (the daemon drives one family per port).

Time comes in as `clock`/`sleep` and the port is any pyserial port, so tests run it against the
simulator on a pty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import serial

from protocol.lockboard import family_8a as f8a
from protocol.lockboard import family_krcu as kr
from protocol.lockboard.common import Polarity

FAMILY_BAUD = {"8a": f8a.BAUD_RATE, "krcu": kr.BAUD_RATE}
ADDRESSES = {
    "8a": range(f8a.MIN_ADDRESS, f8a.MAX_ADDRESS + 1),
    "krcu": range(kr.MIN_BOARD, kr.MAX_BOARD + 1),
}


@dataclass(frozen=True)
class Timing:
    """How long to wait for a board (docs/lockboard.md#line-and-timing: queries within 100 ms)."""

    reply_timeout_s: float = 0.1
    quiet_gap_s: float = 0.025
    unlock_timeout_s: float = 1.5
    tries: int = 2  # per address: a garbled first answer is asked again before calling a clash
    reads: int = 2  # status reads per board, `read_gap_s` apart: a door open in all never closed
    read_gap_s: float = 0.2


@dataclass
class Board:
    """One board the scan found."""

    family: str
    address: int
    channels: int
    polarity: Polarity
    polarity_guessed: bool
    status_bytes: int | None = None  # 8A/80: status bytes its query-all reply carries
    # channel -> latched, per read (under `polarity`)
    reads: list[dict[int, bool]] = field(default_factory=list)
    sensors: dict[int, bool] | None = None  # KR-CU: channel -> something inside (last read)
    unlock_reply: str | None = None  # learnt by a pulse: "8A", "80", "status", "none"

    @property
    def doors_open(self) -> list[int]:
        """Channels reading open in every read: doors that never report closed."""
        if not self.reads:
            return []
        return [ch for ch in self.reads[0] if all(not read.get(ch, True) for read in self.reads)]


@dataclass(frozen=True)
class Problem:
    kind: str  # address_clash, silent_board, door_never_closed, two_families, garbled
    family: str | None
    address: int | None
    detail: str


@dataclass
class Report:
    port: str
    boards: list[Board] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    pulse: PulseResult | None = None

    @property
    def families(self) -> list[str]:
        return sorted({board.family for board in self.boards})


@dataclass(frozen=True)
class PulseResult:
    family: str
    address: int
    channel: int
    reply: str  # "8A", "80", "status", "none", "garbled"
    released: bool | None  # read back after the pulse (None: the board did not say)
    seconds: float


class Link:
    """One serial port, switched between the families' rates; one request in flight at a time."""

    def __init__(
        self,
        port: str | serial.SerialBase,
        timing: Timing,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timing = timing
        self._clock, self._sleep = clock, sleep
        if isinstance(port, serial.SerialBase):
            self.port = port
        else:
            self.port = serial.serial_for_url(port, baudrate=f8a.BAUD_RATE, timeout=0)
        self.port.timeout = min(timing.quiet_gap_s, 0.01)
        self.name = str(getattr(self.port, "port", port))

    def rate(self, baud: int) -> None:
        if self.port.baudrate != baud:
            self.port.baudrate = baud

    def exchange(self, data: bytes, timeout_s: float | None = None) -> bytes:
        """Write a request; return what came back until the line went quiet (or the timeout)."""
        self.port.reset_input_buffer()
        self.port.write(data)
        self.port.flush()
        deadline = self._clock() + (timeout_s or self.timing.reply_timeout_s)
        heard = bytearray()
        quiet_since = self._clock()
        while self._clock() < deadline:
            chunk = self.port.read(max(1, self.port.in_waiting))
            now = self._clock()
            if chunk:
                heard += chunk
                quiet_since = now
            elif heard and now - quiet_since >= self.timing.quiet_gap_s:
                break
        return bytes(heard)

    def close(self) -> None:
        self.port.close()


# --- per family ------------------------------------------------------------------------------


def _query_all(link: Link, address: int) -> tuple[f8a.AllStatus | None, bytes]:
    raw = link.exchange(f8a.encode(f8a.QueryAll(address)))
    decoder = f8a.ReplyDecoder()
    decoder.expect(f8a.QueryAll(address), channels=1)
    frames = decoder.feed(raw, line_quiet=True)
    replies = [f for f in frames if isinstance(f, f8a.AllStatus) and f.board == address]
    return (replies[0] if replies else None), raw


def _query_one(link: Link, address: int, channel: int) -> f8a.LockStatus | None:
    # Asked `tries` times before taking silence for "no such channel": one late reply on a busy
    # machine or a noisy line must not cut a board's channel count short.
    for _ in range(link.timing.tries):
        raw = link.exchange(f8a.encode(f8a.Query(address, channel)))
        decoder = f8a.ReplyDecoder()
        decoder.expect(f8a.Query(address, channel))
        for frame in decoder.feed(raw, line_quiet=True):
            if isinstance(frame, f8a.LockStatus) and (frame.board, frame.channel) == (
                address,
                channel,
            ):
                return frame
    return None


def _status(link: Link, board: int) -> tuple[kr.StatusReply | None, bytes]:
    raw = link.exchange(kr.encode(kr.Status(board)))
    replies = [f for f in kr.ReplyDecoder().feed(raw) if f.board == board]
    return (replies[0] if replies else None), raw


def _ask(link: Link, family: str, address: int) -> tuple[Any, bool]:
    """(reply, garbled every time) after up to `tries` attempts."""
    garbled = 0
    for _ in range(link.timing.tries):
        reply, raw = _query_all(link, address) if family == "8a" else _status(link, address)
        if reply is not None:
            return reply, False
        if not raw:
            return None, False  # nobody there: asking again only costs time
        garbled += 1
    return None, garbled == link.timing.tries


def _channels_8a(link: Link, address: int, covered: int) -> int:
    """The highest channel answering a one-lock query (they answer for 1..n, not beyond)."""
    low, high = 0, covered  # channel `low` answers (0: none known), `high + 1` does not
    if _query_one(link, address, 1) is None:
        return covered  # a variant without one-lock queries: trust the reply's width
    low = 1
    while low < high:
        middle = (low + high + 1) // 2
        if _query_one(link, address, middle) is not None:
            low = middle
        else:
            high = middle - 1
    return low


def _latched_8a(reply: f8a.AllStatus, channels: int) -> dict[int, bool]:
    return reply.latched_map(Polarity.NORMAL, channels=channels)


def _latched_kr(reply: kr.StatusReply, channels: int) -> dict[int, bool]:
    return {ch: reply.latched(ch) for ch in range(1, channels + 1)}


def _found(link: Link, family: str, address: int, reply: Any) -> Board:
    if family == "8a":
        channels = _channels_8a(link, address, reply.channel_count)
        read = _latched_8a(reply, channels)
        board = Board(family, address, channels, Polarity.NORMAL, True, len(reply.status))
    else:
        channels = kr.CHANNELS
        read = _latched_kr(reply, channels)
        board = Board(family, address, channels, Polarity.NORMAL, True)
        board.sensors = {ch: reply.occupied(ch) for ch in range(1, channels + 1)}
    reads = [read]
    for _ in range(link.timing.reads - 1):
        link._sleep(link.timing.read_gap_s)
        again, _raw = _ask(link, family, address)
        if again is None:
            continue
        if family == "8a":
            reads.append(_latched_8a(again, channels))
        else:
            reads.append(_latched_kr(again, channels))
            board.sensors = {ch: again.occupied(ch) for ch in range(1, channels + 1)}
    # A cabinet being installed has its doors shut: every lock "open" means the board reads
    # its switches the other way round.
    if all(not latched for latched in reads[0].values()):
        board.polarity = Polarity.INVERTED
        reads = [{ch: not v for ch, v in read.items()} for read in reads]
    board.reads = reads
    return board


# --- the scan --------------------------------------------------------------------------------


def probes(families: Iterable[str], addresses: dict[str, Iterable[int]] | None = None) -> int:
    """How many addresses a scan asks (for a progress bar)."""
    chosen = addresses or ADDRESSES
    return sum(len(list(chosen[family])) for family in families)


def scan(
    link: Link,
    *,
    families: Iterable[str] = ("8a", "krcu"),
    addresses: dict[str, Iterable[int]] | None = None,
    expected: Iterable[tuple[str, int]] = (),
    progress: Callable[[str, int], None] = lambda family, address: None,
) -> Report:
    """Ask every address of every family on `link`; return the boards and the problems seen.

    `expected` is (family, address) of boards a layout names: one that does not answer is a
    silent board.
    """
    report = Report(link.name)
    chosen = addresses or ADDRESSES
    for family in families:
        link.rate(FAMILY_BAUD[family])
        for address in chosen[family]:
            progress(family, address)
            reply, clash = _ask(link, family, address)
            if clash:
                report.problems.append(
                    Problem(
                        "address_clash",
                        family,
                        address,
                        f"{family} address {address}: every reply came back garbled. Two boards "
                        "answer at once: set one's DIP switches to a free address",
                    )
                )
            elif reply is not None:
                report.boards.append(_found(link, family, address, reply))
    for board in report.boards:
        for channel in board.doors_open:
            report.problems.append(
                Problem(
                    "door_never_closed",
                    board.family,
                    board.address,
                    f"{board.family} board {board.address} door {channel} read open in every "
                    "read: shut it; if it is shut, its lock's feedback switch or wire is at "
                    "fault (it never reports closed)",
                )
            )
    seen = {(b.family, b.address) for b in report.boards}
    clashed = {(p.family, p.address) for p in report.problems if p.kind == "address_clash"}
    for family, address in expected:
        if (family, address) not in seen and (family, address) not in clashed:
            report.problems.append(
                Problem(
                    "silent_board",
                    family,
                    address,
                    f"{family} board {address} is in the layout but did not answer: check its "
                    "power, its A/B wires and its DIP address",
                )
            )
    if len(report.families) > 1:
        report.problems.append(
            Problem(
                "two_families",
                None,
                None,
                "8A/80 and KR-CU boards share this wire. Each family answers only at its own "
                "rate and the daemon drives one family per port: give the KR-CU boards their "
                "own USB-RS485 adapter (the written layout names a second bus for them)",
            )
        )
    return report


def pulse(link: Link, family: str, address: int, channel: int, board: Board | None) -> PulseResult:
    """Fire one lock, once; learn how the board answers unlocks; read the lock back."""
    link.rate(FAMILY_BAUD[family])
    started = link._clock()
    timeout_s = link.timing.unlock_timeout_s
    if family == "8a":
        request = f8a.Unlock(address, channel)
        raw = link.exchange(f8a.encode(request), timeout_s)
        decoder = f8a.ReplyDecoder()
        decoder.expect(request)
        replies = [
            f
            for f in decoder.feed(raw, line_quiet=True)
            if isinstance(f, f8a.LockStatus) and f8a.is_reply_to(request, f)
        ]
        reply = f"{replies[0].head:02X}" if replies else ("garbled" if raw else "none")
        seconds = link._clock() - started
        polarity = board.polarity if board else Polarity.NORMAL
        read = _query_one(link, address, channel)
        released = None if read is None else not read.latched(polarity)
    else:
        raw = link.exchange(kr.encode(kr.Unlock(address, channel)), timeout_s)
        answered = [f for f in kr.ReplyDecoder().feed(raw) if f.board == address]
        reply = "status" if answered else ("garbled" if raw else "none")
        seconds = link._clock() - started
        polarity = board.polarity if board else Polarity.NORMAL
        status, _raw = _status(link, address)
        released = None if status is None else not status.latched(channel, polarity)
    if board is not None and reply in ("8A", "80", "status", "none"):
        board.unlock_reply = reply
    return PulseResult(family, address, channel, reply, released, seconds)


# --- the layout it found, as the daemon's TOML -----------------------------------------------


def layout_toml(reports: list[Report]) -> str:
    """The buses, boards and compartments found, as a cabinet config fragment to finish by hand.

    Sizes cannot be seen from the bus: every compartment is written as "M" for the installer to
    correct. One bus per family per port (the daemon drives one family per port).
    """
    lines = [
        "# Written by `locker cabinet doctor`: the boards and doors it found on the bus.",
        '# Sizes cannot be read from the bus: every compartment is "M"; correct them.',
        "",
    ]
    board_lines: list[str] = []
    compartment_lines: list[str] = []
    for index, report in enumerate(reports):
        for family in report.families:
            bus = f"bus{index + 1}" if family == "8a" else f"bus{index + 1}_krcu"
            lines += [f"[buses.{bus}]", f'port = "{report.port}"', f'family = "{family}"']
            if family == "krcu" and len(report.families) > 1:
                lines.append("# shares its wire with 8A/80 boards: move it to its own adapter")
            lines.append("")
            for board in report.boards:
                if board.family != family:
                    continue
                board_lines += [
                    "[[boards]]",
                    f'bus = "{bus}"',
                    f"address = {board.address}",
                    f"channels = {board.channels}",
                    f'polarity = "{board.polarity.value}"',
                ]
                if board.unlock_reply in ("8A", "80"):
                    board_lines.append(f"unlock_reply_heads = [0x{board.unlock_reply}]")
                if board.unlock_reply == "none":
                    board_lines.append("answers_unlock = false")
                board_lines.append("")
                prefix = "K" if family == "krcu" else "B"
                for channel in range(1, board.channels + 1):
                    compartment_lines += [
                        "[[layout.compartments]]",
                        f'id = "{prefix}{board.address:02d}-{channel:02d}"',
                        'size = "M"',
                        'driver = "rs485"',
                        f'bus = "{bus}"',
                        f"board = {board.address}",
                        f"channel = {channel}",
                        "",
                    ]
    return "\n".join(lines + board_lines + compartment_lines)
