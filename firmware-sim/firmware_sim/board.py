"""One lock-control board and its doors as a pure model: requests in, replies and reports out.

No I/O, no clock, no threads: whoever drives the model passes `now` (seconds, any monotonic
origin) and gets frames back. The bus (bus.py) turns them into timed bytes.

Each channel is a `Door`: an electromagnetic lock, the lock's feedback switch and the door it
holds. The mechanics, in three states:

    latched ──unlock pulse──▶ released ──springs open / person opens──▶ open
       ▲                          │                                      │
       └────── person closes ─────┴──────────── person closes ───────────┘

- An unlock pulse releases the latch, and the door's spring pushes it open. A sticky door
  (`springs_open=False`) stays shut but released until someone opens it or pushes it shut.
- Closing a door re-latches it (unless a hold keeps the lock powered and released).
- A latched door opens by hand only when forced: the sensor then reads open with no unlock.
- The feedback switch reads "latched" exactly when the latch is engaged; a stuck sensor reads a
  fixed value whatever the mechanics do, and a jammed lock ignores its pulses.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from firmware_sim.errors import ConfigError, RefusedError, UnknownChannelError
from protocol.lockboard import family_krcu as kr
from protocol.lockboard.common import Polarity
from protocol.lockboard.family_8a import (
    HEAD_QUERY,
    HEAD_UNLOCK,
    MAX_ADDRESS,
    MAX_CHANNELS,
    MAX_STATUS_BYTES,
    MIN_ADDRESS,
    AddressReply,
    AllStatus,
    Hold,
    LockStatus,
    Query,
    QueryAll,
    ReadAddress,
    Reply,
    Request,
    StateReport,
    Unlock,
    UnlockAll,
    UnlockMany,
)

FAMILIES = ("8a", "krcu")  # docs/lockboard.md: the "8A/80" boards and Kerong KR-CU16
FAMILY_BAUD = {"8a": 9600, "krcu": kr.BAUD_RATE}
LOG_LENGTH = 1000  # entries kept per board; a demo may run for days
CORRUPT_MODES = ("checksum", "flip", "truncate")  # see control.Faults.corrupt


@dataclass(frozen=True)
class BoardConfig:
    """What a board is: its DIP address, size and the variant quirks docs/lockboard.md names."""

    address: int
    channels: int = 24
    polarity: Polarity = Polarity.NORMAL
    unlock_reply_head: int = HEAD_UNLOCK  # some boards answer an unlock with head 0x80
    sends_reports: bool = False  # unasked `82` frames when a lock's sensor changes
    supports_unlock_many: bool = True  # a variant without it ignores `90` frames
    supports_hold: bool = True  # a variant without it ignores `9A` / `9B` frames
    doors_spring_open: bool = True  # the default for every door; a fault can change one door
    # Status bytes in a query-all reply: None sends ceil(channels / 8); some boards send more
    # (an 8-channel board was captured answering three: `80 01 00 00 00 33 B2`).
    status_bytes: int | None = None
    # The board family: its frames, its line rate, its size. A KR-CU board has 16 locks and 16
    # occupancy sensors; what the spec leaves uncertain is a setting here.
    family: str = "8a"
    baud: int | None = None  # None: the family's own (9600 or 19200); a board deaf at others
    sensor_polarity: Polarity = Polarity.NORMAL  # KR-CU: NORMAL = a set bit is an object
    answers_unlock: bool = True  # KR-CU: a status reply after an unlock, or nothing at all

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"board family is one of {', '.join(FAMILIES)}, not {self.family!r}")
        if self.family == "krcu":
            if not kr.MIN_BOARD <= self.address <= kr.MAX_BOARD:
                raise ConfigError(
                    f"a KR-CU board address is {kr.MIN_BOARD}-{kr.MAX_BOARD}, not {self.address}"
                )
            if not 1 <= self.channels <= kr.CHANNELS:
                raise ConfigError(
                    f"a KR-CU board has 1-{kr.CHANNELS} channels, not {self.channels}"
                )
            return
        if not MIN_ADDRESS <= self.address <= MAX_ADDRESS:
            raise ConfigError(
                f"board address {self.address} is out of range {MIN_ADDRESS}-{MAX_ADDRESS}"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ConfigError(f"a board has 1–{MAX_CHANNELS} channels, not {self.channels}")
        need = -(-self.channels // 8)
        if self.status_bytes is not None and not need <= self.status_bytes <= MAX_STATUS_BYTES:
            raise ConfigError(
                f"a board of {self.channels} channels sends {need}–{MAX_STATUS_BYTES} status "
                f"bytes, not {self.status_bytes}"
            )
        if self.unlock_reply_head not in (HEAD_UNLOCK, HEAD_QUERY):
            raise ConfigError(
                f"the unlock reply head is 0x8A or 0x80, not {self.unlock_reply_head:#04x}"
            )


@dataclass
class Door:
    """One channel: its lock, the lock's feedback switch, the door and what is behind it."""

    channel: int
    latched: bool = True  # the latch holds the door shut
    door_open: bool = False
    held: bool = False  # a hold keeps the lock powered, so the latch stays released
    occupied: bool = False  # a parcel is inside
    springs_open: bool = True  # the door's spring pushes it open once released
    jammed: bool = False  # fault: pulses do not release the latch
    stuck_sensor: bool | None = None  # fault: the switch reads this "latched" value whatever
    stuck_occupancy: bool | None = None  # fault: the occupancy sensor reads this whatever
    pulses: int = 0  # unlock pulses this lock received
    times_opened: int = 0
    times_forced: int = 0

    @property
    def sensor_latched(self) -> bool:
        """What the feedback switch reads: the latch, unless the switch is stuck."""
        return self.latched if self.stuck_sensor is None else self.stuck_sensor

    @property
    def sensor_occupied(self) -> bool:
        """What the occupancy sensor (KR-CU) reads: a parcel inside, unless the sensor is stuck."""
        return self.occupied if self.stuck_occupancy is None else self.stuck_occupancy

    @property
    def state(self) -> str:
        """The mechanics in one word: latched, released (shut, unlatched) or open."""
        if self.door_open:
            return "open"
        return "latched" if self.latched else "released"

    def as_dict(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "state": self.state,
            "latched": self.latched,
            "door_open": self.door_open,
            "sensor_latched": self.sensor_latched,
            "held": self.held,
            "occupied": self.occupied,
            "sensor_occupied": self.sensor_occupied,
            "faults": {
                "jammed": self.jammed,
                "stuck_sensor": self.stuck_sensor,
                "stuck_occupancy": self.stuck_occupancy,
                "sticky": not self.springs_open,
            },
            "pulses": self.pulses,
            "times_opened": self.times_opened,
            "times_forced": self.times_forced,
        }


@dataclass
class TxFaults:
    """Faults in what a board transmits; the bus applies them to the board's bytes."""

    silent: bool = False  # the transmitter is dead: the board hears and acts, never answers
    corrupt_mode: str | None = None  # "checksum", "flip" or "truncate"
    corrupt_count: int | None = None  # replies left to corrupt; None = every one
    extra_delay_s: float = 0.0  # added to every reply
    byte_gap_s: float | None = None  # replies go out one byte at a time, this far apart

    def as_dict(self) -> dict[str, object]:
        return {
            "silent": self.silent,
            "corrupt_mode": self.corrupt_mode,
            "corrupt_count": self.corrupt_count,
            "extra_delay_s": self.extra_delay_s,
            "byte_gap_s": self.byte_gap_s,
        }


@dataclass
class BoardCounters:
    """What a board saw and sent, for tests and the maintenance view."""

    requests: int = 0  # requests addressed to it (read-address included)
    ignored: int = 0  # of those, ones it could not act on (no such channel, unsupported frame)
    replies_sent: int = 0  # replies that reached the line (the bus counts these)
    replies_suppressed: int = 0  # replies a silent transmitter swallowed
    replies_corrupted: int = 0
    reports_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(frozen=True)
class LogEntry:
    """Something that happened on a board: a request acted on, a door moving, a fault."""

    at: float
    kind: str  # unlock, released, jammed, door_opened, door_closed, latched, forced, ...
    channel: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"at": self.at, "kind": self.kind, "channel": self.channel, "detail": self.detail}


@dataclass(frozen=True)
class PulseRecord:
    """One unlock pulse (or hold) a lock received: what the coil saw, jammed or not."""

    at: float  # the bus's monotonic seconds (CLOCK_MONOTONIC: comparable across processes)
    family: str
    board: int
    channel: int
    kind: str  # "pulse" | "hold"
    jammed: bool
    opened: bool  # the door was shut and this pulse let it spring open

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "family": self.family,
            "board": self.board,
            "channel": self.channel,
            "kind": self.kind,
            "jammed": self.jammed,
            "opened": self.opened,
        }


@dataclass
class Response:
    """What a board does with a request it heard: replies, unasked reports, pulses fired."""

    replies: list[Reply | kr.StatusReply] = field(default_factory=list)
    reports: list[StateReport] = field(default_factory=list)
    # Locks pulsed one after another: the board answers only when the last pulse is over.
    pulses: int = 0


class Board:
    """A lock-control board on the bus, with its doors."""

    def __init__(self, config: BoardConfig) -> None:
        self.config = config
        self.doors: dict[int, Door] = {
            channel: Door(channel, springs_open=config.doors_spring_open)
            for channel in range(1, config.channels + 1)
        }
        self.powered = True
        self.tx = TxFaults()
        self.counters = BoardCounters()
        self.log: deque[LogEntry] = deque(maxlen=LOG_LENGTH)
        # Told of every unlock pulse and hold, whatever came of it (`locker sim --pulse-log`
        # writes them to a file, which a fault campaign's checker reads: the log above is short).
        self.on_pulse: Callable[[PulseRecord], None] | None = None

    @property
    def address(self) -> int:
        return self.config.address

    def door(self, channel: int) -> Door:
        """The door on `channel`, or UnknownChannelError."""
        try:
            return self.doors[channel]
        except (KeyError, TypeError):
            raise UnknownChannelError(
                f"board {self.address} has channels 1-{self.config.channels}, not {channel!r}"
            ) from None

    def saw(self, kind: str, channel: int | None = None) -> bool:
        """Whether the log holds an entry of `kind` (for `channel`, when given)."""
        return any(e.kind == kind and channel in (None, e.channel) for e in self.log)

    # --- requests from the host ----------------------------------------------------------------

    @property
    def baud(self) -> int:
        return self.config.baud or FAMILY_BAUD[self.config.family]

    def handle(self, request: Request | kr.Request, now: float) -> Response | None:
        """Act on a request heard on the bus; None when the board does not take part."""
        if not self.powered:
            return None
        if self.config.family == "krcu":
            return self._handle_krcu(request, now)  # type: ignore[arg-type]
        if isinstance(request, ReadAddress):
            # Every board hears it as addressed to itself: the host sends it with one board alone.
            self.counters.requests += 1
            self._log(now, "read_address")
            return Response(replies=[AddressReply(self.address)])
        if request.board != self.address:
            return None
        self.counters.requests += 1
        with self._reporting() as response:
            match request:
                case Unlock(channel=channel) if channel in self.doors:
                    door = self.doors[channel]
                    self._log(now, "unlock", channel)
                    self._pulse(door, now)
                    response.pulses = 1
                    response.replies.append(self._lock_status(door, self.config.unlock_reply_head))
                case UnlockAll():
                    self._log(now, "unlock_all")
                    for door in self.doors.values():
                        self._pulse(door, now)
                    response.pulses = len(self.doors)
                    any_latched = any(d.sensor_latched for d in self.doors.values())
                    state_byte = self.config.polarity.byte_for(any_latched)
                    head = self.config.unlock_reply_head
                    response.replies.append(LockStatus(self.address, 0, state_byte, head))
                case Query(channel=channel) if channel in self.doors:
                    response.replies.append(self._lock_status(self.doors[channel], HEAD_QUERY))
                case QueryAll():
                    latched = [door.sensor_latched for door in self.doors.values()]
                    reply = AllStatus.from_latched(
                        self.address,
                        latched,
                        self.config.polarity,
                        status_bytes=self.config.status_bytes,
                    )
                    response.replies.append(reply)
                case UnlockMany(channels=channels) if self.config.supports_unlock_many:
                    # Bits for channels the board lacks are ignored, like a real board's loop.
                    present = sorted(channels & self.doors.keys())
                    self._log(now, "unlock_many", detail=",".join(map(str, present)))
                    for channel in present:
                        self._pulse(self.doors[channel], now)
                    response.pulses = len(present)
                case Hold(channel=channel, on=on) if (
                    self.config.supports_hold and channel in self.doors
                ):
                    self._hold(self.doors[channel], on, now)
                case _:
                    self.counters.ignored += 1
                    self._log(now, "ignored", detail=type(request).__name__)
        return response

    def _handle_krcu(self, request: kr.Request, now: float) -> Response | None:
        """A KR-CU board: status and unlock commands; what it answers to an unlock is a setting."""
        if isinstance(request, kr.StatusAll):
            self.counters.requests += 1
            return Response(replies=[self._krcu_status()])
        if request.board != self.address:
            return None
        self.counters.requests += 1
        response = Response()
        match request:
            case kr.Status():
                response.replies.append(self._krcu_status())
            case kr.Unlock(channel=channel) if channel in self.doors:
                self._log(now, "unlock", channel)
                self._pulse(self.doors[channel], now)
                response.pulses = 1
                if self.config.answers_unlock:
                    response.replies.append(self._krcu_status())
            case kr.UnlockAll():
                self._log(now, "unlock_all")
                for door in self.doors.values():
                    self._pulse(door, now)
                response.pulses = len(self.doors)
                if self.config.answers_unlock:
                    response.replies.append(self._krcu_status())
            case _:
                # The pulse-length command's answer is not specified: a board that is not sure
                # says nothing rather than something wrong.
                self.counters.ignored += 1
                self._log(now, "ignored", detail=type(request).__name__)
        return response

    def _krcu_status(self) -> kr.StatusReply:
        doors = list(self.doors.values())
        return kr.StatusReply.from_state(
            self.address,
            [door.sensor_latched for door in doors],
            [door.sensor_occupied for door in doors],
            polarity=self.config.polarity,
            sensor_polarity=self.config.sensor_polarity,
        )

    def _lock_status(self, door: Door, head: int) -> LockStatus:
        state_byte = self.config.polarity.byte_for(door.sensor_latched)
        return LockStatus(self.address, door.channel, state_byte, head)

    def _pulse(self, door: Door, now: float) -> None:
        door.pulses += 1
        was_open = door.door_open
        if door.jammed:
            self._log(now, "jammed", door.channel)
        else:
            self._release(door, now)
        self._tell_pulse(door, now, "pulse", door.door_open and not was_open)

    def _tell_pulse(self, door: Door, now: float, kind: str, opened: bool) -> None:
        if self.on_pulse is not None:
            self.on_pulse(
                PulseRecord(
                    now, self.config.family, self.address, door.channel, kind, door.jammed, opened
                )
            )

    def _release(self, door: Door, now: float) -> None:
        if door.latched:
            door.latched = False
            self._log(now, "released", door.channel)
        if door.springs_open and not door.door_open:
            self._open(door, now)

    def _hold(self, door: Door, on: bool, now: float) -> None:
        if on:
            self._log(now, "hold_on", door.channel)
            was_open = door.door_open
            if door.jammed:
                self._log(now, "jammed", door.channel)
                self._tell_pulse(door, now, "hold", False)
                return
            door.held = True
            self._release(door, now)
            self._tell_pulse(door, now, "hold", door.door_open and not was_open)
        else:
            self._log(now, "hold_off", door.channel)
            self._let_go(door, now)

    def _let_go(self, door: Door, now: float) -> None:
        # The coil lets go of the catch; a door already pushed shut is caught by it.
        if not door.held:
            return
        door.held = False
        if not door.door_open and not door.latched:
            door.latched = True
            self._log(now, "latched", door.channel)

    # --- the person at the cabinet ---------------------------------------------------------------

    def open_door(self, channel: int, now: float) -> list[StateReport]:
        """Pull a released door open by hand; a latched one will not move (force it)."""
        door = self.door(channel)
        if door.door_open:
            return []
        if door.latched:
            raise RefusedError(
                f"door {channel} of board {self.address} is latched: unlock it first, or force it"
            )
        with self._reporting() as response:
            self._open(door, now)
        return response.reports

    def close_door(self, channel: int, now: float) -> list[StateReport]:
        """Push the door shut: the latch catches it, unless a hold keeps the lock released."""
        door = self.door(channel)
        with self._reporting() as response:
            if door.door_open:
                door.door_open = False
                self._log(now, "door_closed", channel)
            if not door.latched and not door.held:
                door.latched = True
                self._log(now, "latched", channel)
        return response.reports

    def force_door(self, channel: int, now: float) -> list[StateReport]:
        """Wrench the door open, latch or no latch (what a door.forced alarm is made of)."""
        door = self.door(channel)
        if door.door_open:
            return []
        with self._reporting() as response:
            if door.latched:
                door.latched = False
                door.times_forced += 1
                self._log(now, "forced", channel)
            self._open(door, now)
        return response.reports

    def put_parcel(self, channel: int, now: float) -> None:
        """Put a parcel into an open, empty compartment."""
        door = self.door(channel)
        if not door.door_open:
            raise RefusedError(f"door {channel} of board {self.address} is shut")
        if door.occupied:
            raise RefusedError(f"compartment {channel} of board {self.address} is already full")
        door.occupied = True
        self._log(now, "parcel_in", channel)

    def take_parcel(self, channel: int, now: float) -> None:
        """Take the parcel out of an open compartment."""
        door = self.door(channel)
        if not door.door_open:
            raise RefusedError(f"door {channel} of board {self.address} is shut")
        if not door.occupied:
            raise RefusedError(f"compartment {channel} of board {self.address} is empty")
        door.occupied = False
        self._log(now, "parcel_out", channel)

    def _open(self, door: Door, now: float) -> None:
        door.door_open = True
        door.times_opened += 1
        self._log(now, "door_opened", door.channel)

    # --- power and lock faults -------------------------------------------------------------------

    def power_off(self, now: float) -> None:
        """Cut the power: the board goes deaf and dumb, and every hold lets go."""
        if not self.powered:
            return
        self.powered = False
        self._log(now, "power_off")
        for door in self.doors.values():
            self._let_go(door, now)

    def power_on(self, now: float) -> None:
        """Restore power: the board boots and finds its locks as the mechanics left them."""
        if self.powered:
            return
        self.powered = True
        self._log(now, "power_on")

    def note(self, now: float, detail: str) -> None:
        """Log a fault set from outside (transmitter faults live on the bus's side)."""
        self._log(now, "fault", detail=detail)

    def set_jammed(self, channel: int, jammed: bool, now: float) -> None:
        self.door(channel).jammed = jammed
        self._log(now, "fault", channel, f"jammed={jammed}")

    def set_stuck_sensor(self, channel: int, latched: bool | None, now: float) -> list[StateReport]:
        door = self.door(channel)
        with self._reporting() as response:
            door.stuck_sensor = latched
        self._log(now, "fault", channel, f"stuck_sensor={latched}")
        return response.reports

    def set_stuck_occupancy(self, channel: int, occupied: bool | None, now: float) -> None:
        self.door(channel).stuck_occupancy = occupied
        self._log(now, "fault", channel, f"stuck_occupancy={occupied}")

    def set_sticky(self, channel: int, sticky: bool, now: float) -> None:
        self.door(channel).springs_open = not sticky
        self._log(now, "fault", channel, f"sticky={sticky}")

    def clear_faults(self, now: float) -> list[StateReport]:
        """Undo every fault: lock faults, transmitter faults and a power cut."""
        self.tx = TxFaults()
        with self._reporting() as response:
            for door in self.doors.values():
                door.jammed = False
                door.stuck_sensor = None
                door.stuck_occupancy = None
                door.springs_open = self.config.doors_spring_open
        self.power_on(now)
        self._log(now, "faults_cleared")
        return response.reports

    # --- reports ---------------------------------------------------------------------------------

    @contextmanager
    def _reporting(self) -> Iterator[Response]:
        """Collect an `82` report for each sensor the block changes (on boards that send them)."""
        before = {ch: door.sensor_latched for ch, door in self.doors.items()}
        response = Response()
        yield response
        if not (self.config.sends_reports and self.powered):
            return
        for channel, door in self.doors.items():
            if door.sensor_latched != before[channel]:
                state_byte = self.config.polarity.byte_for(door.sensor_latched)
                response.reports.append(StateReport(self.address, channel, state_byte))

    def _log(self, now: float, kind: str, channel: int | None = None, detail: str = "") -> None:
        self.log.append(LogEntry(now, kind, channel, detail))

    def as_dict(self) -> dict[str, object]:
        return {
            "address": self.address,
            "family": self.config.family,
            "baud": self.baud,
            "answers_unlock": self.config.answers_unlock,
            "sensor_polarity": self.config.sensor_polarity.value,
            "channels": self.config.channels,
            # what a query-all reply carries, so a control client sees the captured variant
            "status_bytes": self.config.status_bytes or -(-self.config.channels // 8),
            "polarity": self.config.polarity.value,
            "unlock_reply_head": f"{self.config.unlock_reply_head:02x}",
            "sends_reports": self.config.sends_reports,
            "supports_unlock_many": self.config.supports_unlock_many,
            "supports_hold": self.config.supports_hold,
            "powered": self.powered,
            "tx_faults": self.tx.as_dict(),
            "counters": self.counters.as_dict(),
            "doors": [door.as_dict() for door in self.doors.values()],
        }
